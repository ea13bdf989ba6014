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
