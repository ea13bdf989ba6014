"""The spatio-temporal benchmark pipeline: a tiny quick run, resume, bad names, the claims."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import shared_data_or_skip

from eads import ConfigError
from eads.tasks import spatiotemporal as st

MODELS = ("eads", "npgl", "mtgnn", "historical_average", "last_value")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    shared_data_or_skip()  # the quick run reads the real Beijing PM2.5 file
    run_dir = tmp_path_factory.mktemp("bench") / "run"
    table = st.run_benchmark(
        run_dir,
        quick=True,
        datasets="beijing_pm25",
        models=",".join(MODELS),
        max_epochs=1,
        max_train_s=2.0,
        quick_steps=300,
        progress=False,
    )
    return run_dir, table


def test_quick_run_writes_the_run_directory(quick_run):
    run_dir, table = quick_run
    for name in (
        "config.json",
        "meta.json",
        "results.json",
        "results.csv",
        "relative.json",
        "table.txt",
        "plots/cost.png",
        "plots/predictions_beijing_pm25.png",
    ):
        assert (run_dir / name).is_file(), name
    assert len(list((run_dir / "cells").glob("*.json"))) == len(MODELS)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert {"seed", "revision", "device"} <= set(meta)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["budgets"]["eads"]["max_epochs"] == 1
    assert "pems04" not in config["datasets"]


def test_quick_run_table_has_every_model_with_finite_metrics(quick_run):
    run_dir, table = quick_run
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert sorted(r["model"] for r in rows) == sorted(MODELS)
    for r in rows:
        assert r["status"] == "ok", r
        for key in ("mae", "rmse", "mape", "train_time_s", "latency_ms_batch1"):
            assert math.isfinite(r[key]), (r["model"], key)
        assert len(r["mae_per_step"]) == 12
        assert r["device"].startswith("cpu")
    for label in ("EADS", "NP-GL", "MTGNN", "HA", "Last value"):
        assert label in table
    assert "vs NP-GL" in table


def test_rerun_skips_finished_cells(quick_run):
    run_dir, _ = quick_run
    cells = sorted((run_dir / "cells").glob("*.json"))
    before = {p.name: p.stat().st_mtime_ns for p in cells}
    st.run_benchmark(
        run_dir,
        quick=True,
        datasets="beijing_pm25",
        models=",".join(MODELS),
        max_epochs=1,
        max_train_s=2.0,
        quick_steps=300,
        progress=False,
    )
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "cells").glob("*.json")}
    assert after == before


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"datasets": "beijing_pm25,mars_taxi"}, "mars_taxi"),
        ({"models": "eads,transformer"}, "transformer"),
    ],
)
def test_unknown_names_raise_config_error_listing_valid_ones(tmp_path, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        st.run_benchmark(tmp_path / "run", quick=True, progress=False, **kwargs)
    assert "valid names" in str(info.value)
    assert not (tmp_path / "run").exists()


def test_pems_without_a_path_is_skipped_with_the_reason():
    run, skipped = st._select_datasets("pems04,beijing_pm25", False, {"pems04": None})
    assert run == ["beijing_pm25"]
    assert "pems04.npz" in skipped["pems04"]


def _row(dataset, model, mae):
    return {"dataset": dataset, "model": model, "seed": 0, "status": "ok", "mae": mae}


def test_relative_claims_on_a_hand_made_table():
    rows = [
        _row("a", "eads", 8.0),
        _row("a", "npgl", 10.0),
        _row("a", "graph_wavenet", 9.0),
        _row("a", "last_value", 12.0),
        _row("b", "eads", 6.0),
        _row("b", "npgl", 5.0),
        _row("b", "mtgnn", 4.0),
        {"dataset": "b", "model": "ddgcrn", "seed": 0, "status": "failed"},
        _row("c", "npgl", 1.0),  # no EADS: left out
    ]
    claims = {c["dataset"]: c for c in st.relative_claims(rows)}
    assert set(claims) == {"a", "b"}
    assert claims["a"]["vs_npgl_pct"] == pytest.approx(20.0)  # (10 - 8) / 10
    assert claims["a"]["best_baseline"] == "graph_wavenet"
    assert claims["a"]["vs_best_baseline_pct"] == pytest.approx(100 * 1 / 9)
    assert claims["b"]["vs_npgl_pct"] == pytest.approx(-20.0)  # EADS worse: negative
    assert claims["b"]["best_baseline"] == "mtgnn"
    assert claims["b"]["vs_best_baseline_pct"] == pytest.approx(-50.0)


def test_relative_claims_average_over_seeds():
    rows = [_row("a", "eads", 8.0), _row("a", "eads", 10.0), _row("a", "npgl", 12.0)]
    (claim,) = st.relative_claims(rows)
    assert claim["eads"] == pytest.approx(9.0)
    assert claim["vs_npgl_pct"] == pytest.approx(25.0)


def test_npgl_mask_is_symmetric_local_and_has_no_input_couplings():
    adj = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=float)  # 0-1 linked, 2 alone
    history, horizon, n = 4, 2, 3
    mask = st.npgl_mask(adj, history, horizon, reach=1)
    assert mask.shape == (18, 18)
    assert (mask == mask.T).all()

    def idx(t, node):
        return t * n + node

    assert not mask[idx(0, 0), idx(1, 0)]  # input-input
    assert mask[idx(4, 0), idx(3, 1)]  # first output with the last input, graph neighbour
    assert not mask[idx(4, 0), idx(3, 2)]  # not linked in the graph
    assert not mask[idx(5, 0), idx(0, 0)]  # too far back in time
    assert mask[idx(5, 2), idx(4, 2)]  # output-output, same node
