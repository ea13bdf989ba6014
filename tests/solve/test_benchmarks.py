"""The benchmark scripts run end to end at toy sizes and write the JSON their readers expect.

No timing is asserted (timings are never a test); this checks the code paths, including the GPU
script's on the CPU (``--device cpu --smoke``), so that a GPU session only has to run it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_core
    import bench_gpu

    yield bench_core, bench_gpu
    for name in ("bench_core", "bench_gpu"):
        sys.modules.pop(name, None)


def test_bench_core_writes_rows_with_ratios_and_fractions(bench_modules, tmp_path):
    bench_core, _ = bench_modules
    out = tmp_path / "core.json"
    bench_core.main(["--hidden", "8", "--threads", "1", "--batch", "64", "--repeats", "2",
                     "--min-time", "0", "--no-compile", "--out", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    assert {"machine", "revision", "command", "rows"} <= set(result)
    (row,) = result["rows"]
    assert row["H"] == 8 and row["threads"] == 1 and len(row["load_before"]) == 3
    for name in ("eads", "eads_rk38", "odeint", "odeint_adjoint"):
        assert row[f"{name}_grad_error"] <= row["target_grad_error"], name
        assert row[f"{name}_train_sps"] > 0
    assert row["ratio_train_vs_odeint"] == pytest.approx(
        row["eads_train_sps"] / row["odeint_train_sps"]
    )
    assert 0 < row["fraction_of_matmul_rate"] < 1
    assert row["eads_infer_output_error"] <= row["output_target"]
    assert row["eads_tape_bytes"] == 5 * row["eads_steps"] * 64 * 8 * 4


def test_bench_gpu_smoke_runs_every_path_on_the_cpu(bench_modules, tmp_path):
    _, bench_gpu = bench_modules
    out = tmp_path / "gpu.json"
    bench_gpu.main(["--device", "cpu", "--smoke", "--no-compile", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["smoke"] and not result["power_sampled"]
    dtypes = [row["dtype"] for row in result["simulator"]]
    assert dtypes == ["float32", "bfloat16"]
    bf16 = result["simulator"][1]
    assert "error" not in bf16 and bf16["eads_steps"] == result["simulator"][0]["eads_steps"]
    models = [m["model"] for cell in result["cells"] for m in cell["models"]]
    assert models == ["eads_simulator_ectrain", "mlp", "fno", "graph_wavenet"]
    assert all(m["train_samples_per_s"] > 0 and m["latency_one_sample_s"] > 0
               for cell in result["cells"] for m in cell["models"])  # fmt: skip


def test_ridge_reference_chooses_its_penalty_on_validation(monkeypatch, tmp_path):
    # oracle: the forecasting framing's shapes (EADS's inputs: 12 steps x 12 stations x 1
    # feature) and the chosen penalty being the validation argmin of the trials it records
    from conftest import shared_data_or_skip

    shared_data_or_skip()
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import ridge_reference

    out = tmp_path / "ridge.json"
    ridge_reference.main(["spatiotemporal", "--datasets", "beijing_pm25", "--out", str(out)])
    sys.modules.pop("ridge_reference", None)
    result = json.loads(out.read_text())
    assert {"machine", "revision", "command", "alphas", "rows"} <= set(result)
    (row,) = result["rows"]
    assert row["n_inputs"] == 144 and row["n_train_windows"] == 10_508
    vals = {t["alpha"]: t["val"] for t in row["trials"]}
    assert sorted(vals) == result["alphas"] and row["alpha"] == min(vals, key=vals.get)
    assert row["val_mae"] == vals[row["alpha"]]
    assert 0 < row["metrics"]["observed"]["mae"] < 38.9  # below HA's 38.92 on this split


def test_bench_operators_times_the_gno_beside_an_older_file(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_operators

    from eads.baselines import operators

    out = tmp_path / "operators.json"
    try:
        bench_operators.main(["--resolutions", "64", "--repeats", "1", "--out", str(out),
                              "--before", operators.__file__])  # fmt: skip
    finally:
        sys.modules.pop("bench_operators", None)
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["resolution"] == 64 and row["sub_grids"] == 1
    assert row["max_abs_output_difference"] == 0.0  # the same file: the same numbers
    for k in ("before", "after"):
        step, val = row[k]["train_step"]["median_s"], row[k]["validation"]["median_s"]
        assert row[k]["epoch_s"] == pytest.approx(29 * step + val)
    assert row["speedup"] == pytest.approx(row["before"]["epoch_s"] / row["after"]["epoch_s"])
    assert "| 64 | 1 |" in bench_operators.table(out)
