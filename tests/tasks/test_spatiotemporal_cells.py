"""The spatio-temporal suite's cells keep their ids through the move onto the core's
forecasting module (eads.bench.forecasting, eads.tasks._forecasters), and its public names stay
importable from ``eads.tasks.spatiotemporal``.

Oracle: the cell ids below are literals computed by the suite *before* that refactor (commit
d9a85fa's ``tasks/spatiotemporal.py``, 1124 lines) for these fixed configurations, and the
params of a custom data set's cells likewise (with its folder written as ``{dir}``). A cell's
id is the contract with the committed run directories (eads.bench.cells): if one of these
changes, every finished cell of a resumed run would train again. Nothing trains or reads the
shared data (the cells are captured before they would run); < 2 s.

One deliberate change since: MegaCRN's cells carry its release's Adam epsilon (1e-3) in their
optimizer params, so the five MegaCRN ids below are new (the one MegaCRN cell that had run with
the old settings diverged and was discarded, none was committed). And EADS's cells carry their
search space (``space``: weight decay added, 2026-12-06) and 12 selection trials in the full
budget, so the five EADS ids are new too: the EADS cells searched without weight decay are
superseded, not resumed. Every other id is the refactor's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from eads.tasks import spatiotemporal as st

ALL = "eads,npgl,graph_wavenet,mtgnn,ddgcrn,megacrn,historical_average,last_value"
FULL_IDS = [
    "sz_taxi_False-1_eads_s1-f5052e15",
    "sz_taxi_False-1_npgl_s1-58ac9c8b",
    "sz_taxi_False-1_graph_wavenet_s1-5e83a7c9",
    "sz_taxi_False-1_mtgnn_s1-df045ddb",
    "sz_taxi_False-1_ddgcrn_s1-c293c8db",
    "sz_taxi_False-1_megacrn_s1-a22bab78",
    "sz_taxi_False-1_historical_average_s1-415a3265",
    "sz_taxi_False-1_last_value_s1-819bb376",
    "beijing_pm25_False-1_eads_s1-98f5fde1",
    "beijing_pm25_False-1_npgl_s1-ebb43bac",
    "beijing_pm25_False-1_graph_wavenet_s1-ba26b440",
    "beijing_pm25_False-1_mtgnn_s1-6e9188b2",
    "beijing_pm25_False-1_ddgcrn_s1-45834116",
    "beijing_pm25_False-1_megacrn_s1-d1431dc9",
    "beijing_pm25_False-1_historical_average_s1-a629eb7f",
    "beijing_pm25_False-1_last_value_s1-67a25072",
    "pems08_-data-pems08.npz-False-1_eads_s1-bc6d067d",
    "pems08_-data-pems08.npz-False-1_npgl_s1-cf7cc971",
    "pems08_-data-pems08.npz-False-1_graph_wavenet_s1-f243009b",
    "pems08_-data-pems08.npz-False-1_mtgnn_s1-50b84820",
    "pems08_-data-pems08.npz-False-1_ddgcrn_s1-65f6490a",
    "pems08_-data-pems08.npz-False-1_megacrn_s1-720978a0",
    "pems08_-data-pems08.npz-False-1_historical_average_s1-d3f6f76d",
    "pems08_-data-pems08.npz-False-1_last_value_s1-abad6c13",
]
QUICK_IDS = [
    "beijing_pm25_True-600-1_eads_s0-7f379459",
    "beijing_pm25_True-600-1_npgl_s0-402f6b19",
    "beijing_pm25_True-600-1_graph_wavenet_s0-f9c294c1",
    "beijing_pm25_True-600-1_mtgnn_s0-af1251a6",
    "beijing_pm25_True-600-1_ddgcrn_s0-f3989a9d",
    "beijing_pm25_True-600-1_megacrn_s0-a2567b42",
    "beijing_pm25_True-600-1_historical_average_s0-db51198f",
    "beijing_pm25_True-600-1_last_value_s0-ad26dd73",
]
VARIANT_IDS = [
    "beijing_pm25_True-600-2_eads_s0-dac36b93",
    "beijing_pm25_True-600-2_megacrn_s0-7461c689",
    "beijing_pm25_True-600-2_last_value_s0-d5d2165a",
]
CASES = {
    "full": (
        dict(datasets="sz_taxi,beijing_pm25,pems08", pems08="/data/pems08.npz", seeds=(1,)),
        FULL_IDS,
    ),
    "quick": (dict(quick=True), QUICK_IDS),
    "variant": (
        dict(quick=True, max_epochs=3, max_train_s=1.5, train_stride=2, widths="reduced",
             threads=2, models="eads,megacrn,last_value", seeds=(0,)),
        VARIANT_IDS,
    ),
}  # fmt: skip


class _Captured(Exception):
    pass


@pytest.fixture
def capture(monkeypatch):
    """``run_benchmark``'s cells, taken where it would hand them to the executor."""
    got = []

    def fake_run_cells(cells, fn, run_dir, **kwargs):
        got.extend(cells)
        raise _Captured

    monkeypatch.setattr(st, "run_cells", fake_run_cells)

    def run(run_dir, **kwargs):
        with pytest.raises(_Captured):
            st.run_benchmark(run_dir, progress=False, plots=False, **kwargs)
        return list(got)

    return run


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_cell_ids_are_those_the_suite_built_before_the_refactor(tmp_path, capture, case):
    kwargs, want = CASES[case]
    kwargs = {"models": ALL, **kwargs}
    assert [c.id for c in capture(tmp_path / "run", **kwargs)] == want


def test_a_custom_data_sets_cells_carry_the_params_they_carried_before(tmp_path, capture):
    folder = tmp_path / "in"
    folder.mkdir()
    t = np.arange(200)[:, None]
    base = 20.0 + 5.0 * np.sin(2 * np.pi * t / 48 + np.arange(4)[None, :])  # (T, N)
    np.savez(folder / "data.npz", flow=np.stack([base, 2 * base], axis=-1))
    ring = np.roll(np.eye(4), 1, axis=1)
    np.savetxt(folder / "adj.csv", ring + ring.T, delimiter=",")
    spec = st.CustomData(path=str(folder / "data.npz"), key="flow", step_minutes=30,
                         adjacency=str(folder / "adj.csv"), target_feature=1, in_steps=6,
                         out_steps=3)  # fmt: skip
    cells = capture(
        tmp_path / "run",
        quick=True,
        custom=spec,
        models="eads,graph_wavenet,last_value",
        train_stride=3,
    )
    budget = {"batch_size": 32, "epochs": 2, "hyperparameters": {}, "lr_grid": [0.001],
              "max_time_s": 5.0, "patience": 2, "schedule": "none", "schedule_factor": 0.5,
              "schedule_patience": 5, "schedule_step": 100}  # fmt: skip
    common = {
        "custom": {"adjacency": "{dir}/adj.csv", "distances": None, "in_steps": 6, "key": "flow",
                   "out_steps": 3, "path": "{dir}/data.npz", "step_minutes": 30,
                   "target_feature": 1},
        "path": None, "quick": True, "steps": 600, "threads": 1,
        "protocol": {"mape_tolerance": 0.0001, "max_test_windows": 64, "max_val_windows": 64,
                     "train_stride": 3, "val_every": 0},
    }  # fmt: skip
    want = {
        "eads": {**common, "budget": {**budget, "select_trials": 2}, "space": st.EADS_SPACE},
        "graph_wavenet": {
            **common,
            "budget": {**budget, "select_trials": 0},
            "optimizer": {"grad_clip": 5.0, "weight_decay": 0.0001},
            "widths": {
                "dilation_channels": 4,
                "end_channels": 8,
                "residual_channels": 4,
                "skip_channels": 8,
            },
        },
        "last_value": {**common, "budget": None},
    }
    assert [(c.task, c.dataset, c.model, c.seed) for c in cells] == [
        ("spatiotemporal", "custom", m, 0) for m in want
    ]
    for c in cells:
        got = json.loads(json.dumps(c.params).replace(str(folder.resolve()), "{dir}"))
        assert got == want[c.model], c.model


def test_the_names_callers_import_from_the_suite_stay_there():
    # the CLI (CustomData, run_benchmark), benchmarks/run_spatiotemporal.sh (TRAINED,
    # probe_epoch_cost), docs/spatiotemporal.md and the tests
    names = [
        "BUDGETS", "CustomData", "DATASET_NAMES", "FULL_BUDGETS", "GNN_OPTIMIZER", "GNNS",
        "PROTOCOLS", "QUICK_BUDGETS", "QUICK_PROTOCOL", "TRAINED", "UNITS", "WIDTHS",
        "WindowProtocol", "npgl_mask", "probe_epoch_cost", "relative_claims", "run_benchmark",
    ]  # fmt: skip
    missing = [n for n in names if not hasattr(st, n)]
    assert not missing
    assert set(st.__all__) <= set(vars(st))
