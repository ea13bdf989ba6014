"""The spatio-temporal benchmark pipeline: a tiny quick run, resume and extension cell by cell,
the runner script, bad names and inputs, the claims."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, shared_data_or_skip

from eads import ConfigError
from eads._errors import DataError
from eads.bench.budget import CAP_MARK
from eads.data.spatiotemporal import load_custom
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
    # the trained cells checkpointed every epoch; each finished cell removed its checkpoints
    partial = run_dir / "partial"
    assert partial.is_dir() and not any(partial.iterdir())
    meta = json.loads((run_dir / "meta.json").read_text())
    assert {"seed", "revision", "device"} <= set(meta)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["budgets"]["eads"]["epochs"] == 1
    assert config["budgets"]["eads"]["max_time_s"] == 2.0  # a quick run's wall cap, marked
    assert config["budgets"]["last_value"] is None  # no training, no budget
    assert config["widths"] == "tiny" and config["seeds"] == [0]
    assert config["protocols"]["beijing_pm25"] == asdict(st.QUICK_PROTOCOL)
    assert "pems04" not in config["datasets"]


def test_quick_cells_record_the_stop_and_the_tables_mark_the_capped_ones(quick_run):
    run_dir, _ = quick_run
    cells = {
        json.loads(p.read_text())["cell"]["model"]: json.loads(p.read_text())
        for p in (run_dir / "cells").glob("*.json")
    }
    for model in ("npgl", "mtgnn"):  # one epoch of the cap: the cap ends them
        tr = cells[model]["training"]
        assert tr["stop_reason"] == "epoch_cap" and tr["epochs"] == 1.0
        assert [round(c[3]) for c in tr["val_curve"]] == [1]  # validated once, at epoch 1
    assert cells["last_value"]["training"]["stop_reason"] == "none"
    assert math.isfinite(cells["last_value"]["training"]["best_val_mae"])  # the curves' scale
    assert cells["mtgnn"]["metrics"]["mape_tolerance"] == 1e-4
    assert cells["mtgnn"]["metrics"]["units"] == "ug/m3"
    assert cells["eads"]["reference_node"] is True and cells["npgl"]["reference_node"] is True
    md = (run_dir / "results.md").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    marked = {ln.split("|")[2].strip() for ln in lines if CAP_MARK in ln}
    assert marked == {"EADS", "NP-GL", "MTGNN"}  # HA and last value never are


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
    what = next(iter(kwargs))  # the core's wording (eads.bench.suite.parse_names)
    valid = st.DATASET_NAMES if what == "datasets" else st.MODEL_NAMES
    assert f"valid {what} are {list(valid)}" in str(info.value)
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


# ------------------------------------------------------------------ a user's own data set

CUSTOM_T, CUSTOM_N, CUSTOM_F = 200, 4, 2


def _write_custom(folder, values=None, adjacency=None, edges=None, key="flow"):
    """A small generated set: positive daily-ish waves per node, feature 1 = a scaled copy."""
    folder.mkdir(parents=True, exist_ok=True)
    if values is None:
        t = np.arange(CUSTOM_T)[:, None]
        phase = np.arange(CUSTOM_N)[None, :]
        base = 20.0 + 5.0 * np.sin(2 * np.pi * t / 48 + phase)  # (T, N)
        noise = np.random.default_rng(0).normal(0, 0.3, (CUSTOM_T, CUSTOM_N))
        values = np.stack([base + noise, 2.0 * base - noise], axis=-1)  # (T, N, F)
    np.savez(folder / "data.npz", **{key: values})
    if adjacency is None:
        ring = np.roll(np.eye(CUSTOM_N), 1, axis=1)
        adjacency = ring + ring.T
    np.savetxt(folder / "adj.csv", adjacency, delimiter=",")
    rows = edges if edges is not None else [(0, 1, 1.0), (1, 2, 2.0), (2, 3, 3.0)]
    lines = ["from,to,cost", *(f"{a},{b},{c}" for a, b, c in rows)]
    (folder / "edges.csv").write_text("\n".join(lines) + "\n")
    return values


def test_custom_data_set_runs_the_quick_pipeline_from_the_cli(tmp_path, monkeypatch, capsys):
    values = _write_custom(tmp_path / "in")
    run_dir = tmp_path / "run"
    models = "eads,npgl,graph_wavenet,historical_average,last_value"
    code, out, err = run_cli(
        monkeypatch, capsys, "bench", "spatiotemporal", "--quick", "--run-dir", run_dir,
        "--models", models, "--custom", tmp_path / "in" / "data.npz", "--key", "flow",
        "--target-feature", 1, "--adjacency", tmp_path / "in" / "adj.csv",
        "--step-minutes", 30, "--in-steps", 12, "--out-steps", 4,
    )  # fmt: skip
    assert code == 0, err
    assert "custom" in out
    for name in ("config.json", "results.json", "table.txt", "plots/predictions_custom.png"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["datasets"] == ["custom"]
    assert config["custom"]["key"] == "flow" and config["custom"]["out_steps"] == 4
    rows = {r["model"]: r for r in json.loads((run_dir / "results.json").read_text())["rows"]}
    assert sorted(rows) == sorted(models.split(","))
    for r in rows.values():
        assert r["status"] == "ok", r
        assert math.isfinite(r["mae"]) and len(r["mae_per_step"]) == 4
    # oracle: last value repeats the target's last history step; test split = steps 160..199,
    # windows 12 -> 4 built inside it (25 windows, all under the quick cap of 64)
    target = values[160:, :, 1]
    errors = [np.abs(target[b + 12 : b + 16] - target[b + 11]).mean() for b in range(40 - 16 + 1)]
    assert rows["last_value"]["mae"] == pytest.approx(float(np.mean(errors)), rel=1e-4)


def test_custom_distance_edge_list_gives_the_gaussian_kernel(tmp_path):
    _write_custom(tmp_path)
    data = load_custom(
        tmp_path / "data.npz", key="flow", distance_path=tmp_path / "edges.csv", step_minutes=5
    )
    sigma = np.std([1.0, 2.0, 3.0])
    expected = np.zeros((CUSTOM_N, CUSTOM_N))
    for a, b, d in [(0, 1, 1.0), (1, 2, 2.0), (2, 3, 3.0)]:
        w = np.exp(-((d / sigma) ** 2))
        expected[a, b] = expected[b, a] = w if w >= 0.1 else 0.0
    np.testing.assert_allclose(data.adjacency, expected, rtol=1e-6)
    assert expected[0, 1] > 0 and expected[1, 2] == 0  # the threshold acted
    assert data.steps_per_day == 288.0 and data.step == "5 min"
    assert data.values.shape == (CUSTOM_T, CUSTOM_N, CUSTOM_F)


def _bad(case, folder):
    """(CustomData kwargs, files written) for one bad input."""
    good = dict(key="flow", step_minutes=5, adjacency=str(folder / "adj.csv"))
    if case == "wrong rank":
        _write_custom(folder, values=np.ones((CUSTOM_T, CUSTOM_N)))
    elif case == "adjacency size":
        _write_custom(folder, adjacency=np.ones((CUSTOM_N + 1, CUSTOM_N + 1)))
    elif case in ("negative distance", "NaN distance"):
        cost = -1.0 if case == "negative distance" else "nan"
        _write_custom(folder, edges=[(0, 1, 1.0), (1, 2, cost)])
        good = dict(good, adjacency=None, distances=str(folder / "edges.csv"))
    else:
        _write_custom(folder)
    return good | {
        "missing key": {"key": "speed"},
        "windows too long": {"in_steps": 150, "out_steps": 60},
        "target out of range": {"target_feature": CUSTOM_F},
        "two graphs": {"distances": str(folder / "edges.csv")},
        "no step": {"step_minutes": 0},
    }.get(case, {})


@pytest.mark.parametrize(
    ("case", "error", "fragment"),
    [
        ("wrong rank", DataError, "(time, nodes, features)"),
        ("missing key", DataError, "'speed'"),
        ("adjacency size", DataError, "(5, 5)"),
        ("negative distance", DataError, "NaN, negative"),
        ("NaN distance", DataError, "NaN, negative"),
        ("windows too long", ConfigError, "history + horizon = 210"),
        ("target out of range", ConfigError, "target_feature=2"),
        ("two graphs", ConfigError, "exactly one graph"),
        ("no step", ConfigError, "step_minutes=0"),
    ],
)
def test_bad_custom_inputs_fail_in_one_sentence_before_writing(tmp_path, case, error, fragment):
    spec = st.CustomData(path=str(tmp_path / "in" / "data.npz"), **_bad(case, tmp_path / "in"))
    with pytest.raises(error) as info:
        st.run_benchmark(tmp_path / "run", quick=True, custom=spec, progress=False)
    message = str(info.value)
    assert fragment in message
    assert message.count(". ") == 0 and "\n" not in message  # one sentence
    assert not (tmp_path / "run").exists()


def test_cli_custom_without_key_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    _write_custom(tmp_path)
    code, _, err = run_cli(
        monkeypatch, capsys, "bench", "spatiotemporal", "--run-dir", tmp_path / "run",
        "--custom", tmp_path / "data.npz", "--adjacency", tmp_path / "adj.csv",
        "--step-minutes", 5,
    )  # fmt: skip
    assert code != 0
    assert "--key" in err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ the convergence protocol


def test_a_run_extended_cell_by_cell_keeps_every_cell_in_its_table(quick_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(quick_run[0], run_dir)
    st.run_benchmark(
        run_dir,
        quick=True,
        datasets="beijing_pm25",
        models="historical_average",
        seeds=(1,),
        quick_steps=300,
        progress=False,
        plots=False,
    )
    config = json.loads((run_dir / "config.json").read_text())
    assert config["models"] == list(MODELS)  # the suite's order, not the order of the calls
    assert config["seeds"] == [0, 1]
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert len(rows) == len(MODELS) + 1
    ha = [r for r in rows if r["model"] == "historical_average"]
    assert [r["seed"] for r in ha] == [0, 1] and ha[0]["mae"] == ha[1]["mae"]  # no training
    with pytest.raises(ConfigError, match="quick=True"):
        st.run_benchmark(run_dir, datasets="beijing_pm25", models="last_value", progress=False)


def test_full_budgets_stop_on_patience_with_no_wall_cap_at_paper_widths():
    for name in st.TRAINED:
        b = st.FULL_BUDGETS[name]
        assert b.max_time_s is None and b.patience > 0 and b.epochs >= 10 * b.patience, name
    assert st.FULL_BUDGETS["eads"].select_trials > 0
    assert all(st.QUICK_BUDGETS[m].max_time_s is not None for m in st.TRAINED)
    assert st.WIDTHS["paper"] == {m: {} for m in st.GNNS}  # the constructors' (papers') defaults
    assert set(st.PROTOCOLS) == set(st.DATASET_NAMES)
    assert all(p.max_test_windows == 0 for p in st.PROTOCOLS.values())  # the whole test split


def test_a_wall_cap_outside_quick_runs_is_refused_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="max_train_s=30") as info:
        st.run_benchmark(tmp_path / "run", max_train_s=30, progress=False)
    assert "patience" in str(info.value)
    assert not (tmp_path / "run").exists()


def test_the_train_stride_is_one_for_all_models_and_recorded(tmp_path):
    _write_custom(tmp_path / "in")
    spec = st.CustomData(
        path=str(tmp_path / "in" / "data.npz"),
        key="flow",
        step_minutes=30,
        adjacency=str(tmp_path / "in" / "adj.csv"),
        in_steps=6,
        out_steps=3,
    )
    run_dir = tmp_path / "run"
    models = ("eads", "graph_wavenet", "last_value")
    st.run_benchmark(
        run_dir,
        quick=True,
        custom=spec,
        models=",".join(models),
        max_epochs=1,
        train_stride=3,
        progress=False,
        plots=False,
    )
    # oracle: training split = steps 0..119 (6:2:2 of 200), windows 6 -> 3 inside it: 112;
    # every third one, windows 0, 3, ..., 111: 38
    n_total = 120 - 9 + 1
    cells = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    assert sorted(c["cell"]["model"] for c in cells) == sorted(models)
    for c in cells:
        assert c["n_train_windows_total"] == n_total and c["n_train_windows"] == 38
        assert c["protocol"]["train_stride"] == 3
    assert (
        json.loads((run_dir / "config.json").read_text())["protocols"]["custom"]["train_stride"]
        == 3
    )
    header = (run_dir / "results.csv").read_text().splitlines()[0].split(",")
    assert {"train_stride", "n_train_windows", "mape_tolerance", "stop_reason"} <= set(header)
    assert "train stride 3 (38 of 112 training windows)" in (run_dir / "table.txt").read_text()


def test_the_runner_script_runs_a_cell_group_and_skips_it_when_done(tmp_path):
    shared_data_or_skip()
    root = Path(__file__).resolve().parents[2]
    env = {
        "PATH": "/usr/bin:/bin",
        "RUN_DIR": str(tmp_path / "run"),
        "QUICK": "1",
        "SEEDS": "0,1,2",
        "PYTHON": sys.executable,  # the interpreter running the tests, wherever its venv is
        "HOME": str(tmp_path),
    }
    script = root / "benchmarks" / "run_spatiotemporal.sh"

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(script), *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )

    done = run("cell", "beijing_pm25", "last_value")
    assert "Last value" in done.stdout
    cells = sorted((tmp_path / "run" / "cells").glob("*.json"))
    assert [json.loads(p.read_text())["cell"]["seed"] for p in cells] == [0, 1, 2]
    before = {p.name: p.stat().st_mtime_ns for p in cells}
    run("cell", "beijing_pm25", "last_value")
    assert {p.name: p.stat().st_mtime_ns for p in cells} == before  # finished: skipped
    listing = run("list", DATASETS="beijing_pm25", MODELS="last_value,eads").stdout.splitlines()
    assert listing[0].split()[2:] == ["s0:ok", "s1:ok", "s2:ok"] and listing[1].split()[2] == "-"
    log = tmp_path / "run" / "logs" / "beijing_pm25_last_value.log"
    size = log.stat().st_size
    # `all` does not even start a finished pair: its log stays as it was
    whole = run("all", DATASETS="beijing_pm25", MODELS="last_value")
    assert "skip beijing_pm25 x last_value: every seed" in whole.stdout
    assert log.stat().st_size == size
    skip = run("cell", "pems04", "eads")
    assert "PEMS04=" in skip.stderr
