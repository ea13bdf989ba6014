"""The spatio-temporal suite's training loop against hand-worked stopping sequences, its window
stride, and the models it builds for a full run (reference node on, paper widths).

Oracles: scripted validation MAEs whose patience / cap / wall-time / schedule outcomes are
worked out by hand in each test; the paper-width parameter counts that
``tests/baselines/test_gnn.py`` derives layer by layer from the releases. Nothing here reads
the shared data; < 2 s.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from eads import ConfigError
from eads._errors import DataError
from eads.baselines.gnn import count_parameters
from eads.bench.budget import Budget, stop_mark
from eads.tasks import spatiotemporal as st


class _Windows:
    def __init__(self, n: int):
        self.x = np.zeros((n, 1, 1, 1), np.float32)
        self.y = np.zeros((n, 1, 1), np.float32)
        self.y_mask = np.ones((n, 1, 1), bool)

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


def test_patience_counts_epochs_and_restores_the_best_state():
    # epochs 1..6 validate at 5, 4, 3, 3.5, 3.2, 3.1: best after epoch 3, then 3 epochs
    # without a lower MAE -> stop after epoch 6 with the state of epoch 3 (6 updates)
    fc = _Scripted([5, 4, 3, 3.5, 3.2, 3.1, 0.1])
    tr = st._train(fc, SPLITS, _budget(), st.WindowProtocol(max_val_windows=0), seed=0)
    assert tr["stop_reason"] == "patience" and stop_mark(tr["stopped_by"]) == ""
    assert tr["epochs"] == 6 and tr["updates"] == 12
    assert tr["best_epoch"] == 3 and tr["best_val_mae"] == 3 and tr["best_update"] == 6
    assert fc.model.bias.item() == 6.0
    assert [c[2] for c in tr["val_curve"]] == [5, 4, 3, 3.5, 3.2, 3.1]


def test_the_epoch_cap_and_the_wall_cap_are_what_they_say_and_are_marked():
    fc = _Scripted([5, 4, 3, 2, 1])  # always improving: only the cap stops it
    tr = st._train(fc, SPLITS, _budget(epochs=4), st.WindowProtocol(), seed=0)
    assert tr["stop_reason"] == "epoch_cap" and tr["epochs"] == 4 and tr["best_epoch"] == 4
    assert stop_mark(tr["stopped_by"]) != ""
    fc = _Scripted([5, 4, 3, 2, 1])
    tr = st._train(fc, SPLITS, _budget(max_time_s=1e-9), st.WindowProtocol(), seed=0)
    assert tr["stop_reason"] == "wall_time" and tr["epochs"] == 1  # checked after the epoch
    assert stop_mark(tr["stopped_by"]) != ""
    fc = _Scripted([5, 6, 7, 8])  # patience 0: never stops early
    tr = st._train(fc, SPLITS, _budget(epochs=4, patience=0), st.WindowProtocol(), seed=0)
    assert tr["stop_reason"] == "epoch_cap" and tr["best_epoch"] == 1 and fc.model.bias == 2.0


def test_val_every_validates_inside_epochs_and_patience_then_counts_validations():
    # val_every=1, 2 updates per epoch: validations at epochs 0.5, 1, 1.5, 2, 2.5, 3 (the one
    # after an epoch's last update is the epoch-end one); best at the 3rd (epoch 1.5), three
    # worse ones after it -> stop at the 6th, epoch 3
    fc = _Scripted([5, 4, 3, 3.5, 3.2, 3.1, 0.1])
    tr = st._train(fc, SPLITS, _budget(), st.WindowProtocol(val_every=1), seed=0)
    assert [c[3] for c in tr["val_curve"]] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert tr["stop_reason"] == "patience" and tr["epochs"] == 3 and tr["best_epoch"] == 1.5
    assert fc.model.bias.item() == 3.0


def test_the_plateau_schedule_steps_on_the_epoch_end_validation():
    # factor 0.5, schedule_patience 1: the second epoch in a row without a lower MAE (epoch 4)
    # halves the lr for epoch 5 (torch's ReduceLROnPlateau, threshold 0 as in the core loop)
    fc = _Scripted([5, 4, 4.5, 4.6, 4.7])
    budget = _budget(epochs=5, patience=10, schedule="plateau", schedule_patience=1)
    tr = st._train(fc, SPLITS, budget, st.WindowProtocol(), seed=0)
    assert tr["lr_per_epoch"] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05])


def test_a_non_finite_training_loss_is_an_error_naming_the_lr():
    fc = _Scripted([5], losses=[0.5, float("nan")])
    with pytest.raises(DataError, match="lr=0.1"):
        st._train(fc, SPLITS, _budget(), st.WindowProtocol(), seed=0)


def test_the_stride_keeps_every_kth_window_the_same_for_every_epoch():
    assert st._train_indices(10, 3).tolist() == [0, 3, 6, 9]
    assert st._train_indices(10, 1).tolist() == list(range(10))
    seen = []

    class _Recording(_Scripted):
        def step(self, x, y, m):
            seen.append(len(x))
            return super().step(x, y, m)

    splits = SimpleNamespace(train=_Windows(11), val=_Windows(4))
    tr = st._train(
        _Recording([5, 4]), splits, _budget(epochs=2), st.WindowProtocol(train_stride=4), 0
    )
    assert tr["n_train_windows"] == 3 and seen == [3, 3]  # windows 0, 4, 8; one batch an epoch


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
        st.WindowProtocol(**kwargs)


def _shapes(n, f, history=12, horizon=12):
    ring = np.roll(np.eye(n), 1, axis=1)
    data = SimpleNamespace(adjacency=ring + ring.T)
    train = SimpleNamespace(x=np.zeros((1, history, n, f), np.float32), y=np.zeros((1, horizon, n)))
    return data, SimpleNamespace(train=train, horizon=horizon, target_feature=0)


def test_the_full_run_builds_eads_and_npgl_with_the_reference_node():
    data, splits = _shapes(4, 2, history=3, horizon=2)
    for model in ("eads", "npgl"):
        fc = st._build(model, data, splits, 1e-3, seed=0)
        assert fc.model.reference is True, model


def test_the_full_run_builds_the_gnns_at_the_papers_widths_and_optimisers():
    # oracle: the counts tests/baselines/test_gnn.py derives from the releases at METR-LA's
    # shape (N = 207, two input features, 12 -> 12)
    data, splits = _shapes(207, 2)
    want = {"graph_wavenet": 293_688, "mtgnn": 402_284}
    for model, count in want.items():
        fc = st._build(
            model, data, splits, 1e-3, 0, st.WIDTHS["paper"][model], st.GNN_OPTIMIZER[model]
        )
        assert count_parameters(fc.model) == count, model
        assert fc.opt.param_groups[0]["weight_decay"] == 1e-4 and fc.grad_clip == 5.0
