"""The models the spatio-temporal suite builds for a full run (reference node on, paper widths)
and how each is trained (eads.tasks._forecasters); the training loop itself is the core's,
tested in tests/bench/test_forecasting.py.

Oracles: the paper-width parameter counts that ``tests/baselines/test_gnn.py`` derives layer by
layer from the releases; the last-value reference's validation MAE computed by hand. Nothing
here reads the shared data; < 2 s.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from eads.baselines.gnn import count_parameters
from eads.bench.forecasting import WindowProtocol
from eads.tasks import _forecasters as fcs
from eads.tasks import spatiotemporal as st


def _shapes(n, f, history=12, horizon=12):
    ring = np.roll(np.eye(n), 1, axis=1)
    data = SimpleNamespace(adjacency=ring + ring.T)
    train = SimpleNamespace(x=np.zeros((1, history, n, f), np.float32), y=np.zeros((1, horizon, n)))
    return data, SimpleNamespace(train=train, horizon=horizon, target_feature=0)


def test_the_full_run_builds_eads_and_npgl_with_the_reference_node():
    data, splits = _shapes(4, 2, history=3, horizon=2)
    for model in ("eads", "npgl"):
        fc = fcs.build_forecaster(model, data, splits, 1e-3, seed=0)
        assert fc.model.reference is True, model


def test_the_full_run_builds_the_gnns_at_the_papers_widths_and_optimisers():
    # oracle: the counts tests/baselines/test_gnn.py derives from the releases at METR-LA's
    # shape (N = 207, two input features, 12 -> 12)
    data, splits = _shapes(207, 2)
    want = {"graph_wavenet": 293_688, "mtgnn": 402_284}
    for model, count in want.items():
        fc = fcs.build_forecaster(
            model, data, splits, 1e-3, 0, st.WIDTHS["paper"][model], st.GNN_OPTIMIZER[model]
        )
        assert count_parameters(fc.model) == count, model
        assert fc.opt.param_groups[0]["weight_decay"] == 1e-4 and fc.grad_clip == 5.0
        assert fc.opt.param_groups[0]["eps"] == 1e-8  # torch's default, as in these releases


def test_megacrn_trains_with_its_releases_adam_epsilon():
    # oracle: a hand-made Adam(lr, eps=1e-3) step from the same weights and gradients; torch's
    # default eps (1e-8) moves a weight whose gradient is ~1e-4 by ~lr, eps 1e-3 by ~lr / 11
    import torch

    data, splits = _shapes(6, 1, history=3, horizon=2)
    opt = st.GNN_OPTIMIZER["megacrn"]
    fc = fcs.build_forecaster("megacrn", data, splits, 1e-2, 0, st.WIDTHS["tiny"]["megacrn"], opt)
    assert fc.opt.param_groups[0]["eps"] == 1e-3 and fc.grad_clip == 5.0
    w = next(p for p in fc.model.parameters() if p.requires_grad)
    before = w.detach().clone()
    g = torch.full_like(w, 1e-4)
    for p in fc.model.parameters():
        p.grad = torch.zeros_like(p)
    w.grad = g.clone()
    fc.opt.step()
    # Adam's first step: m = (1 - b1) g, v = (1 - b2) g^2, bias-corrected: lr g / (|g| + eps)
    want = before - 1e-2 * g / (g.abs() + 1e-3)
    torch.testing.assert_close(w.detach(), want)


class _Scaler:
    """The identity: z-units are data units."""

    def target_transform(self, y, feature):
        return y

    def target_inverse(self, z, feature):
        return z


class _Windows(SimpleNamespace):
    def __len__(self):
        return len(self.x)


def test_a_reference_model_is_not_trained_but_scored_like_the_trained_ones():
    # last value on one node, history 2 -> horizon 1: inputs 1, 2 -> the forecast 2 (the
    # identity scaler: z-units are data units); validation targets 5 and 3 -> masked MAE
    # (|5 - 2| + |3 - 2|) / 2 = 2
    x = np.array([[[[1.0]], [[2.0]]]] * 2, np.float32)  # (2, 2, 1, 1)
    mask = np.ones((2, 1, 1), bool)
    splits = SimpleNamespace(
        train=_Windows(x=x, y=np.zeros((2, 1, 1)), y_mask=mask),
        val=_Windows(x=x, y=np.array([[[5.0]], [[3.0]]]), y_mask=mask),
        scaler=_Scaler(),
        horizon=1,
        target_feature=0,
    )
    data = SimpleNamespace(adjacency=np.zeros((1, 1)))
    fc, training, selection = fcs.fit_forecaster(
        "last_value", data, splits, None, WindowProtocol(), seed=0
    )
    assert training["stop_reason"] == "none" and training["epochs"] == 0 and selection is None
    assert training["best_val_mae"] == pytest.approx(2.0)
    assert fc.opt is None  # nothing to train


def _random_splits(n_train=32, nodes=2, history=3, horizon=2):
    rng = np.random.default_rng(1)

    def windows(n):
        x = rng.normal(size=(n, history, nodes, 1)).astype(np.float32)
        y = x[:, -horizon:, :, 0] * 0.8 + rng.normal(scale=0.2, size=(n, horizon, nodes))
        return _Windows(x=x, y=y.astype(np.float32), y_mask=np.ones((n, horizon, nodes), bool))

    return SimpleNamespace(
        train=windows(n_train),
        val=windows(12),
        scaler=_Scaler(),
        horizon=horizon,
        target_feature=0,
    )


def test_a_killed_eads_selection_continues_to_the_unbroken_searchs_choice(tmp_path, monkeypatch):
    # 2 TPE trials, each to patience; the run is killed in the second trial's training. Run
    # again on the same folder, the search proposes the same trials, the first returns from its
    # finished checkpoint, the second continues: trials, choice and record are the unbroken's.
    from eads.bench.budget import Budget

    splits = _random_splits()
    data = SimpleNamespace(adjacency=np.ones((2, 2)))
    budget = Budget(epochs=30, batch_size=8, patience=3, select_trials=2, schedule="none")
    protocol = WindowProtocol()
    fc0, unbroken, sel0 = fcs.fit_forecaster("eads", data, splits, budget, protocol, seed=0)
    first_updates = sel0["trials"][0]["epochs"] * 4  # 32 windows, batch 8

    class Killed(Exception):
        pass

    calls = {"n": 0, "kill_after": first_updates + 6}  # trial 1, 2 updates into epoch 2
    step = fcs.EADSForecaster.step

    def dying_step(self, x, y, m):
        calls["n"] += 1
        if calls["n"] > calls["kill_after"]:
            raise Killed
        return step(self, x, y, m)

    monkeypatch.setattr(fcs.EADSForecaster, "step", dying_step)
    with pytest.raises(Killed):
        fcs.fit_forecaster("eads", data, splits, budget, protocol, seed=0, partial=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["trial0.log", "trial0.pt", "trial1.log", "trial1.pt"]  # a log beside each
    calls.update(n=0, kill_after=10**9)
    fc1, resumed, sel1 = fcs.fit_forecaster(
        "eads", data, splits, budget, protocol, seed=0, partial=tmp_path
    )
    strip = lambda trials: [{k: v for k, v in t.items() if k != "seconds"} for t in trials]  # noqa: E731
    assert strip(sel1["trials"]) == strip(sel0["trials"]) and sel1["params"] == sel0["params"]
    # trial 0 trained nothing again, trial 1 only from its checkpointed epoch 1 on
    assert calls["n"] == sel0["trials"][1]["epochs"] * 4 - 4
    for key in ("best_val_mae", "epochs", "updates", "train_loss", "lr"):
        assert resumed[key] == unbroken[key], key
    for k, v in fc0.model.state_dict().items():
        assert np.array_equal(v.numpy(), fc1.model.state_dict()[k].numpy()), k


def test_eads_weight_decay_shrinks_each_conductance_by_lr_times_decay_per_update():
    # oracle: decoupled weight decay (AdamW) = the same Adam step as without decay, plus
    # -lr * weight_decay * p from the weights before the step
    import torch

    splits = _random_splits(n_train=8)
    data = SimpleNamespace(adjacency=np.ones((2, 2)))
    lr, wd = 1e-2, 3.0
    plain = fcs.build_forecaster("eads", data, splits, lr, 0, params={"weight_decay": 0.0})
    decayed = fcs.build_forecaster("eads", data, splits, lr, 0, params={"weight_decay": wd})
    assert isinstance(decayed.opt, torch.optim.AdamW)
    assert not isinstance(plain.opt, torch.optim.AdamW)
    before = {k: v.clone() for k, v in decayed.model.state_dict().items()}
    x = torch.from_numpy(splits.train.x)
    y, m = plain.targets_z(splits.train.y, splits.train.y_mask)
    plain.step(x, y, m)
    decayed.step(x, y, m)
    after_plain, after_decayed = plain.model.state_dict(), decayed.model.state_dict()
    moved = 0
    for name, p in decayed.model.named_parameters():
        if p.requires_grad:
            want = after_plain[name] - lr * wd * before[name]
            assert torch.allclose(after_decayed[name], want, atol=1e-6), name
            moved += int(not torch.equal(before[name], after_plain[name]))
    assert moved >= 2  # P, Q (and J) took a real step as well


def test_eads_weight_decay_is_searched_on_validation_and_recorded():
    from eads.bench.budget import Budget

    splits = _random_splits()
    data = SimpleNamespace(adjacency=np.ones((2, 2)))
    budget = Budget(epochs=4, batch_size=8, patience=2, select_trials=2, schedule="none")
    fc, _, sel = fcs.fit_forecaster("eads", data, splits, budget, WindowProtocol(), seed=0)
    low, high = fcs.EADS_SPACE["weight_decay"]["log_uniform"]
    assert sel["space"]["weight_decay"] == {"log_uniform": [low, high]}
    wds = [t["params"]["weight_decay"] for t in sel["trials"]]
    assert all(low <= w <= high for w in wds) and len(set(wds)) == 2
    assert fc.opt.param_groups[0]["weight_decay"] == sel["params"]["weight_decay"]
    with pytest.raises(ValueError, match="weight_decay=-1.0 must be a finite number >= 0"):
        fcs.build_forecaster("eads", data, splits, 1e-3, 0, params={"weight_decay": -1.0})


def test_the_full_run_records_eads_search_space_in_its_cells():
    # the space is part of an EADS cell's identity: a cell searched without weight decay is
    # not taken for one searched with it
    from eads.bench.cells import Cell

    assert st.FULL_BUDGETS["eads"].select_trials == 12
    assert "weight_decay" in st.EADS_SPACE and st.EADS_SPACE["n_hidden"] == st.EADS_HIDDEN
    params = {"budget": st.FULL_BUDGETS["eads"].to_params(), "space": st.EADS_SPACE}
    without = {**params, "space": {k: v for k, v in st.EADS_SPACE.items() if k != "weight_decay"}}
    ids = {Cell(st.TASK, "sz_taxi", "eads", seed=0, params=p).id for p in (params, without)}
    assert len(ids) == 2
