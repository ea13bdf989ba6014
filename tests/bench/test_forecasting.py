"""The core's forecasting training and measurement (eads.bench.forecasting) on scripted toys.

Oracles: scripted validation MAEs whose patience / cap / wall-time / schedule outcomes are
worked out by hand in each test (moved here from the spatio-temporal suite's tests with the loop
itself); the window stride and subsets, the masked MAE of a constant forecast, the z-unit
round trip, and the probe's update counts, all computed by hand. Nothing reads data; < 2 s.
"""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from eads import ConfigError
from eads._errors import DataError
from eads.bench.budget import Budget, stop_mark
from eads.bench.forecasting import (
    AbstractForecaster,
    WindowProtocol,
    evaluate_forecaster,
    forecast_latency,
    probe_updates,
    subset_indices,
    train_forecaster,
    train_forecaster_grid,
    train_indices,
    validation_mae,
)
from eads.learn.loop import make_scheduler


class _Windows:
    def __init__(self, n: int, nodes: int = 1, horizon: int = 1):
        self.x = np.zeros((n, 1, nodes, 1), np.float32)
        self.y = np.zeros((n, horizon, nodes), np.float32)
        self.y_mask = np.ones((n, horizon, nodes), bool)
        self.start = np.arange(n)

    def __len__(self) -> int:
        return len(self.x)


class _Scripted:
    """A forecaster whose i-th validation MAE is ``script[i]`` (targets are 0, so MAE = the
    constant prediction) and whose updates each add 1 to a counter parameter (the bias)."""

    def __init__(self, script, lr=0.1, losses=None):
        self.model = torch.nn.Linear(1, 1)
        with torch.no_grad():
            self.model.bias.zero_()
        self.lr, self.script, self.calls = lr, list(script), 0
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.losses = losses

    def predict(self, x):
        v = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return np.full((len(x), 1, 1), v)

    def targets_z(self, y, m):
        return torch.from_numpy(y), torch.from_numpy(m)

    def step(self, x, y, m):
        with torch.no_grad():
            self.model.bias += 1.0
        return 0.5 if self.losses is None else self.losses.pop(0)


SPLITS = SimpleNamespace(train=_Windows(10), val=_Windows(4))  # batch 5: 2 updates per epoch


def _budget(**kw):
    return Budget(**{"epochs": 50, "batch_size": 5, "patience": 3, "schedule": "none", **kw})


def _train(fc, budget, protocol, splits=SPLITS):
    return train_forecaster(fc, splits, budget, protocol, 0, make_scheduler=make_scheduler)


def test_patience_counts_epochs_and_restores_the_best_state():
    # epochs 1..6 validate at 5, 4, 3, 3.5, 3.2, 3.1: best after epoch 3, then 3 epochs
    # without a lower MAE -> stop after epoch 6 with the state of epoch 3 (6 updates)
    fc = _Scripted([5, 4, 3, 3.5, 3.2, 3.1, 0.1])
    tr = _train(fc, _budget(), WindowProtocol(max_val_windows=0))
    assert tr["stop_reason"] == "patience" and stop_mark(tr["stopped_by"]) == ""
    assert tr["epochs"] == 6 and tr["updates"] == 12
    assert tr["best_epoch"] == 3 and tr["best_val_mae"] == 3 and tr["best_update"] == 6
    assert fc.model.bias.item() == 6.0
    assert [c[2] for c in tr["val_curve"]] == [5, 4, 3, 3.5, 3.2, 3.1]


def test_the_epoch_cap_and_the_wall_cap_are_what_they_say_and_are_marked():
    fc = _Scripted([5, 4, 3, 2, 1])  # always improving: only the cap stops it
    tr = _train(fc, _budget(epochs=4), WindowProtocol())
    assert tr["stop_reason"] == "epoch_cap" and tr["epochs"] == 4 and tr["best_epoch"] == 4
    assert stop_mark(tr["stopped_by"]) != ""
    fc = _Scripted([5, 4, 3, 2, 1])
    tr = _train(fc, _budget(max_time_s=1e-9), WindowProtocol())
    assert tr["stop_reason"] == "wall_time" and tr["epochs"] == 1  # checked after the epoch
    assert stop_mark(tr["stopped_by"]) != ""
    fc = _Scripted([5, 6, 7, 8])  # patience 0: never stops early
    tr = _train(fc, _budget(epochs=4, patience=0), WindowProtocol())
    assert tr["stop_reason"] == "epoch_cap" and tr["best_epoch"] == 1 and fc.model.bias == 2.0


def test_val_every_validates_inside_epochs_and_patience_then_counts_validations():
    # val_every=1, 2 updates per epoch: validations at epochs 0.5, 1, 1.5, 2, 2.5, 3 (the one
    # after an epoch's last update is the epoch-end one); best at the 3rd (epoch 1.5), three
    # worse ones after it -> stop at the 6th, epoch 3
    fc = _Scripted([5, 4, 3, 3.5, 3.2, 3.1, 0.1])
    tr = _train(fc, _budget(), WindowProtocol(val_every=1))
    assert [c[3] for c in tr["val_curve"]] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert tr["stop_reason"] == "patience" and tr["epochs"] == 3 and tr["best_epoch"] == 1.5
    assert fc.model.bias.item() == 3.0


def test_the_plateau_schedule_steps_on_the_epoch_end_validation():
    # factor 0.5, schedule_patience 1: the second epoch in a row without a lower MAE (epoch 4)
    # halves the lr for epoch 5 (torch's ReduceLROnPlateau, threshold 0 as in the core loop)
    fc = _Scripted([5, 4, 4.5, 4.6, 4.7])
    budget = _budget(epochs=5, patience=10, schedule="plateau", schedule_patience=1)
    tr = _train(fc, budget, WindowProtocol())
    assert tr["lr_per_epoch"] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05])


def test_a_non_finite_training_loss_is_an_error_naming_the_lr():
    fc = _Scripted([5], losses=[0.5, float("nan")])
    with pytest.raises(DataError, match="lr=0.1"):
        _train(fc, _budget(), WindowProtocol())


def test_the_stride_keeps_every_kth_window_the_same_for_every_epoch():
    assert train_indices(10, 3).tolist() == [0, 3, 6, 9]
    assert train_indices(10, 1).tolist() == list(range(10))
    seen = []

    class _Recording(_Scripted):
        def step(self, x, y, m):
            seen.append(len(x))
            return super().step(x, y, m)

    splits = SimpleNamespace(train=_Windows(11), val=_Windows(4))
    tr = _train(_Recording([5, 4]), _budget(epochs=2), WindowProtocol(train_stride=4), splits)
    assert tr["n_train_windows"] == 3 and seen == [3, 3]  # windows 0, 4, 8; one batch an epoch


def test_subsets_are_evenly_strided_and_capped():
    assert subset_indices(10, 4).tolist() == [0, 3, 6, 9]  # round(linspace(0, 9, 4))
    assert subset_indices(5, 0).tolist() == list(range(5))  # 0: all
    assert subset_indices(3, 5).tolist() == [0, 1, 2]


def test_the_lr_grid_keeps_the_lowest_best_validation_mae_the_first_on_a_tie():
    scripts = {0.1: [5, 4], 0.01: [3, 2], 0.001: [2, 9]}  # best MAEs 4, 2, 2
    fc, tr = train_forecaster_grid(
        lambda lr: _Scripted(scripts[lr], lr=lr),
        SPLITS,
        _budget(epochs=2, lr_grid=(0.1, 0.01, 0.001)),
        WindowProtocol(),
        0,
        make_scheduler=make_scheduler,
    )
    assert fc.lr == 0.01 and tr["lr"] == 0.01 and tr["best_val_mae"] == 2
    assert [c["best_val_mae"] for c in tr["candidates"]] == [4, 2, 2]
    assert [c["lr"] for c in tr["candidates"]] == [0.1, 0.01, 0.001]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"train_stride": 0}, "train_stride=0"),
        ({"val_every": -1}, "val_every=-1"),
        ({"max_val_windows": 2.5}, "max_val_windows=2.5"),
        ({"mape_tolerance": float("nan")}, "mape_tolerance=nan"),
    ],
)
def test_a_bad_window_protocol_is_a_one_sentence_error(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        WindowProtocol(**kwargs)


# ------------------------------------------------------------------ a framed model, evaluated


class _Scaler:
    """z = (y - 2) / 4 for every feature (a hand-made stand-in for the suite's ZScore)."""

    def target_transform(self, y, feature):
        return (y - 2.0) / 4.0

    def target_inverse(self, z, feature):
        return z * 4.0 + 2.0


class _Constant(AbstractForecaster):
    """Predicts z = 1 everywhere (data units: 6); counts its updates and forward calls."""

    def __init__(self, splits):
        super().__init__(torch.nn.Linear(1, 1), splits, lr=0.1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=self.lr)
        self.steps, self.batches = 0, []

    def forward_z(self, x):
        self.batches.append(len(x))
        return torch.ones(len(x), self.horizon, self.n_nodes)

    def step(self, x, y, m):
        self.steps += 1
        return 0.0


def _toy_splits():
    train, val, test = _Windows(11, nodes=3, horizon=2), _Windows(6, 3, 2), _Windows(5, 3, 2)
    test.y = np.arange(30, dtype=np.float32).reshape(5, 2, 3)  # y = 0 .. 29
    test.y_mask[0, 0, 0] = False  # y = 0 missing
    val.y[:] = 10.0
    return SimpleNamespace(
        train=train, val=val, test=test, scaler=_Scaler(), history=1, horizon=2, target_feature=0
    )


def test_the_base_forecaster_maps_z_units_and_masks_missing_targets():
    with pytest.raises(TypeError):
        AbstractForecaster(torch.nn.Linear(1, 1), _toy_splits(), 0.1)  # no step: abstract
    fc = _Constant(_toy_splits())
    assert (fc.predict(np.zeros((3, 1, 3, 1), np.float32)) == 6.0).all()  # 1 * 4 + 2
    y = np.array([[[2.0, 10.0]]])
    z, m = fc.targets_z(y, np.array([[[True, False]]]))
    assert z.tolist() == [[[0.0, 0.0]]] and m.tolist() == [[[True, False]]]  # (2-2)/4; masked 0
    z, _ = fc.targets_z(y, np.ones((1, 1, 2), bool))
    assert z.tolist() == [[[0.0, 2.0]]] and z.dtype == torch.float32  # (10 - 2) / 4


def test_validation_and_test_metrics_of_a_constant_forecast_by_hand():
    splits = _toy_splits()
    fc = _Constant(splits)
    # validation: every target 10, prediction 6; at most 2 windows of 6 (0 and 5)
    assert validation_mae(fc, splits.val, WindowProtocol(max_val_windows=2)) == pytest.approx(4)
    protocol = WindowProtocol(train_stride=4, max_test_windows=0, mape_tolerance=1e-4)
    rec = evaluate_forecaster(fc, splits, protocol, units="u", plot_nodes=2, plot_windows=3)
    # MAE: the mean over the horizon of each step's MAE against 6 (eads.bench.metrics); step 0
    # holds y[b, 0] = 6b .. 6b + 2 without the missing 0, step 1 y[b, 1] = 6b + 3 .. 6b + 5
    step0 = [abs(6 * b + k - 6) for b in range(5) for k in range(3)][1:]
    step1 = [abs(6 * b + 3 + k - 6) for b in range(5) for k in range(3)]
    m = rec["metrics"]["observed"]
    assert m["mae_per_step"] == pytest.approx([np.mean(step0), np.mean(step1)])
    assert m["mae"] == pytest.approx((np.mean(step0) + np.mean(step1)) / 2)
    assert rec["metrics"]["units"] == "u" and rec["metrics"]["mape_tolerance"] == 1e-4
    assert rec["n_test_windows"] == 5 and rec["n_test_windows_total"] == 5
    assert rec["n_train_windows"] == 3 and rec["n_train_windows_total"] == 11  # 0, 4, 8
    assert rec["n_parameters"] == 2 and rec["protocol"]["train_stride"] == 4
    plot = rec["plot"]
    assert plot["nodes"] == [0, 2] and plot["start"] == [0, 1, 2] and plot["history"] == 1
    assert plot["pred_first"] == [[6.0, 6.0]] * 3
    assert plot["truth_first"][0] == [None, 2.0]  # the missing target is None (strict JSON)
    assert plot["truth_last"][1] == [9.0, 11.0]  # window 1, step 1: y[1, 1] = 9, 10, 11
    assert set(rec) >= {"latency_s_per_sample_batch1", "latency_s_per_sample_batch64"}


def test_latency_times_one_window_and_a_batch_of_up_to_64_in_eval_mode():
    fc = _Constant(_toy_splits())
    fc.model.train()
    rec = forecast_latency(fc, np.zeros((70, 1, 3, 1), np.float32), repeats=2)
    assert fc.batches == [1, 1, 1, 64, 64, 64]  # a warm-up and 2 timed calls each
    assert not fc.model.training
    assert all(math.isfinite(v) and v >= 0 for v in rec.values())


def test_the_probe_counts_the_updates_of_a_strided_epoch():
    splits = _toy_splits()
    fc = _Constant(splits)
    out = probe_updates(fc, splits, WindowProtocol(train_stride=2, max_val_windows=4), 4, 3)
    # stride 2 of 11: windows 0, 2, .., 10 (6); batch 4: 2 updates an epoch; 1 + 3 updates run
    assert fc.steps == 4 and len(out["s_per_update_all"]) == 3
    assert out["n_train_windows"] == 6 and out["updates_per_epoch"] == 2
    assert out["n_val_windows"] == 4 and out["n_train_windows_total"] == 11
    assert out["s_per_epoch"] == pytest.approx(2 * out["s_per_update"] + out["s_validation"])


# ------------------------------------------------------------------ checkpoints and resume


class _Killed(Exception):
    pass


class _Noisy(AbstractForecaster):
    """A dropout MLP on random windows, Adam on the masked MSE: its training draws from torch's
    RNG (dropout) and its optimiser and plateau schedule carry state, so a resumed run matches
    an unbroken one only if the checkpoint restores all of them. ``kill_at``: raise after that
    many updates (a kill mid-epoch, after the last checkpoint)."""

    def __init__(self, splits, lr=0.05, kill_at=None):
        torch.manual_seed(3)
        model = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(6, 16),
            torch.nn.Dropout(0.3),
            torch.nn.Linear(16, 6),
        )
        super().__init__(model, splits, lr)
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)
        self.kill_at, self.updates = kill_at, 0

    def forward_z(self, x):
        return self.model(x).reshape(len(x), self.horizon, self.n_nodes)

    def step(self, x, y, m):
        if self.kill_at is not None and self.updates == self.kill_at:
            raise _Killed
        self.updates += 1
        self.model.train()
        loss = ((self.forward_z(x) - y) ** 2)[m].mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def _noisy_splits():
    rng = np.random.default_rng(0)

    def windows(n):
        w = _Windows(n, nodes=3, horizon=2)
        w.x = rng.normal(size=(n, 2, 3, 1)).astype(np.float32)
        w.y = (w.x[:, :, :, 0] * 0.5 + rng.normal(scale=0.3, size=(n, 2, 3))).astype(np.float32)
        return w

    return SimpleNamespace(
        train=windows(40),
        val=windows(12),
        test=windows(5),
        scaler=_Scaler(),
        history=2,
        horizon=2,
        target_feature=0,
    )


def _noisy_budget():
    return Budget(epochs=40, batch_size=8, patience=4, schedule="plateau", schedule_patience=1)


def _same_run(a, b):
    for key in (
        "epochs",
        "updates",
        "best_epoch",
        "best_update",
        "best_val_mae",
        "stop_reason",
        "train_loss",
        "lr_per_epoch",
    ):
        assert a[key] == b[key], key
    assert [c[:1] + c[2:] for c in a["val_curve"]] == [c[:1] + c[2:] for c in b["val_curve"]]


def test_a_killed_run_resumes_from_its_checkpoint_to_the_unbroken_runs_result(tmp_path):
    splits, budget, protocol = _noisy_splits(), _noisy_budget(), WindowProtocol()
    ref = _Noisy(splits)
    unbroken = train_forecaster(ref, splits, budget, protocol, 0, make_scheduler=make_scheduler)
    assert unbroken["stop_reason"] == "patience" and unbroken["epochs"] >= 8  # a real run
    assert len(set(unbroken["lr_per_epoch"])) > 1  # the schedule acted: its state matters
    ckpt = tmp_path / "run.pt"
    # 5 updates an epoch: killed in epoch 9, after 8 checkpointed epochs; the plateau schedule
    # then holds one bad epoch (best at 7), so a fresh one would not halve the lr after epoch 9
    with pytest.raises(_Killed):
        train_forecaster(
            _Noisy(splits, kill_at=42),
            splits,
            budget,
            protocol,
            0,
            make_scheduler=make_scheduler,
            checkpoint=ckpt,
        )
    fc = _Noisy(splits)
    resumed = train_forecaster(
        fc, splits, budget, protocol, 0, make_scheduler=make_scheduler, checkpoint=ckpt
    )
    assert resumed["resumed_at_epoch"] == 8 and unbroken["resumed_at_epoch"] == 0
    assert fc.updates == unbroken["updates"] - 40  # epochs 1-8 were not trained again
    _same_run(resumed, unbroken)
    # one line per epoch beside the checkpoint: 8 before the kill, the rest after the resume,
    # with the unbroken run's validation MAEs
    lines = ckpt.with_suffix(".log").read_text().splitlines()
    n = round(unbroken["epochs"])
    assert [ln.split()[1] for ln in lines] == [f"{e}/{budget.epochs}" for e in range(1, n + 1)]
    vals = [float(ln.split()[5]) for ln in lines]
    assert vals == [float(f"{v[2]:.6g}") for v in unbroken["val_curve"]]
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, fc.model.state_dict()[k]), k
    # the run is finished: again from its checkpoint, it returns at once with the same result
    again = _Noisy(splits, kill_at=0)  # any update would raise
    _same_run(
        train_forecaster(
            again, splits, budget, protocol, 0, make_scheduler=make_scheduler, checkpoint=ckpt
        ),
        unbroken,
    )
    assert torch.equal(again.model[1].weight, ref.model[1].weight)


def test_a_foreign_or_corrupt_checkpoint_is_ignored_and_the_run_starts_afresh(tmp_path, caplog):
    splits, budget, protocol = _noisy_splits(), _noisy_budget(), WindowProtocol()
    unbroken = train_forecaster(
        _Noisy(splits), splits, budget, protocol, 0, make_scheduler=make_scheduler
    )
    ckpt = tmp_path / "run.pt"
    with pytest.raises(_Killed):
        train_forecaster(
            _Noisy(splits, kill_at=12),
            splits,
            budget,
            protocol,
            0,
            make_scheduler=make_scheduler,
            checkpoint=ckpt,
            key={"trial": 0},
        )
    for other in ({"key": {"trial": 1}}, {"key": {"trial": 0}, "seed": 1}):
        fc = _Noisy(splits, kill_at=0)
        with caplog.at_level("WARNING"), pytest.raises(_Killed):  # trains from epoch 0
            train_forecaster(
                fc,
                splits,
                budget,
                protocol,
                other.get("seed", 0),
                make_scheduler=make_scheduler,
                checkpoint=ckpt,
                key=other["key"],
            )
        assert "belongs to another run" in caplog.text
        caplog.clear()
    ckpt.write_bytes(b"not a checkpoint")
    with caplog.at_level("WARNING"):
        fresh = train_forecaster(
            _Noisy(splits),
            splits,
            budget,
            protocol,
            0,
            make_scheduler=make_scheduler,
            checkpoint=ckpt,
        )
    assert "unreadable" in caplog.text and fresh["resumed_at_epoch"] == 0
    _same_run(fresh, unbroken)


def test_the_lr_grid_resumes_each_lr_from_its_own_checkpoint(tmp_path):
    splits, protocol = _noisy_splits(), WindowProtocol()
    budget = replace(_noisy_budget(), lr_grid=(0.05, 0.01))
    kills = iter([None, 20])  # the first lr finishes, the second is killed in its 5th epoch

    def build(lr, kill=True):
        return _Noisy(splits, lr=lr, kill_at=next(kills) if kill else None)

    with pytest.raises(_Killed):
        train_forecaster_grid(
            build, splits, budget, protocol, 0, make_scheduler=make_scheduler, partial=tmp_path
        )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["lr0.01.log", "lr0.01.pt", "lr0.05.log", "lr0.05.pt"]  # a log beside each
    assert len((tmp_path / "lr0.01.log").read_text().splitlines()) == 4  # killed in epoch 5
    _, unbroken = train_forecaster_grid(
        lambda lr: build(lr, False), splits, budget, protocol, 0, make_scheduler=make_scheduler
    )
    _, resumed = train_forecaster_grid(
        lambda lr: build(lr, False),
        splits,
        budget,
        protocol,
        0,
        make_scheduler=make_scheduler,
        partial=tmp_path,
    )
    assert resumed["candidates"] == unbroken["candidates"]
    assert unbroken["train_cost_s"] > unbroken["train_time_s"] > 0  # both lrs' time, not one
    _same_run(resumed, unbroken)
