"""The attention report rebuilt from a run's cells alone (eads.report.attention.report_run).

Oracle: per-passage NLLs chosen so that every perplexity is known in closed form (a constant
NLL ``log p`` gives perplexity ``p`` in every bootstrap resample, so its interval is ``[p, p]``),
written as real cell files by the core's executor.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from eads._errors import ConfigError
from eads.bench.cells import Cell, run_cells
from eads.report.attention import report_run

N = 50


def _result(cell: Cell, run_dir) -> dict:
    ppl = {"original": 50.0, "eads": 40.0, "npgl": 60.0, "mean": 80.0}[cell.model]
    nll = [math.log(ppl)] * N
    if cell.model == "mean":  # a row that varies: a non-degenerate interval
        nll = list(math.log(ppl) + np.random.default_rng(0).normal(0, 0.5, N))
    out = {
        "lambada": {
            "perplexity": math.exp(sum(nll) / N), "token_perplexity": ppl, "accuracy": 0.5,
            "n_passages": N, "n_target_tokens": N, "word_nll": nll,
        },
        "eval_time_s": 1.0,
    }  # fmt: skip
    if cell.model != "original":
        out.update(
            layer=cell.params["layer"],
            training={"train_time_s": 1.0, "epochs": 3, "stop_reason": "patience"},
            latency={"attention_s_per_token": 1e-4, "kernel_sim_s_per_token": 2e-4},
        )
    return out


def test_a_run_in_progress_renders_its_finished_cells_with_exact_intervals(tmp_path):
    run_dir = tmp_path / "run"
    cells = [Cell("attention", "tiny", "original")] + [
        Cell("attention", "tiny", m, params={"layer": 3}) for m in ("eads", "npgl", "mean")
    ]
    run_cells(cells, _result, run_dir, progress=False)
    config = {"task": "attention", "split": {"eval_index": [], "train_index": []}}
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "meta.json").write_text("{}")
    table = report_run(run_dir, plots=False)
    assert "EADS" in table and "NP-GL" in table
    iv = json.loads((run_dir / "intervals.json").read_text())
    assert iv["n_passages"] == N
    eads = iv["cells"]["eads_3"]
    assert eads["ppl"] == pytest.approx({"value": 40.0, "lo": 40.0, "hi": 40.0})
    assert eads["dppl"] == pytest.approx({"value": -10.0, "lo": -10.0, "hi": -10.0})
    layer = iv["layers"]["3"]
    assert layer["npgl_minus_eads"] == pytest.approx({"value": 20.0, "lo": 20.0, "hi": 20.0})
    mean = layer["eads_minus_mean"]
    assert mean["lo"] < mean["value"] < mean["hi"] and mean["hi"] - mean["lo"] > 1.0
    assert iv["overall"]["n_layers"] == 1
    assert iv["overall"]["npgl_minus_eads"]["value"] == pytest.approx(20.0)
    md = (run_dir / "results.md").read_text()
    assert "50.00 [50.00, 50.00]" in md and "-10.00 [-10.00, -10.00]" in md
    assert "+20.00 [+20.00, +20.00]" in md


def test_over_the_layers_mean_median_and_interval_signs_are_exact(tmp_path):
    # constant NLLs: every resample gives the same perplexity, so each figure is known exactly
    ppl = {"eads": {1: 51.0, 2: 52.0, 3: 80.0}, "npgl": {1: 55.0, 2: 50.0, 3: 90.0}}

    def result(cell, run_dir):
        out = _result(cell, run_dir)
        if cell.model in ppl:
            nll = [math.log(ppl[cell.model][cell.params["layer"]])] * N
            out["lambada"].update(word_nll=nll, perplexity=math.exp(nll[0]))
        return out

    run_dir = tmp_path / "run"
    cells = [Cell("attention", "tiny", "original")] + [
        Cell("attention", "tiny", m, params={"layer": la}) for la in (1, 2, 3) for m in ppl
    ]
    run_cells(cells, result, run_dir, progress=False)
    config = {"task": "attention", "split": {"eval_index": [], "train_index": []}}
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "meta.json").write_text("{}")
    report_run(run_dir, plots=False)
    o = json.loads((run_dir / "intervals.json").read_text())["overall"]
    # EADS - original: +1, +2, +30; NP-GL: +5, 0, +40; NP-GL - EADS: +4, -2, +10
    for key, mean, median in [("eads_dppl", 11.0, 2.0), ("npgl_dppl", 15.0, 5.0),
                              ("npgl_minus_eads", 4.0, 4.0)]:  # fmt: skip
        assert o[key]["value"] == pytest.approx(mean) and o[key]["hi"] == pytest.approx(mean)
        assert o[f"{key}_median"] == pytest.approx({"value": median, "lo": median, "hi": median})
    assert o["signs"] == {
        "eads_dppl": {"above": 3, "below": 0, "include_0": 0},
        "npgl_dppl": {"above": 2, "below": 0, "include_0": 1},
        "npgl_minus_eads": {"above": 2, "below": 1, "include_0": 0},
    }
    md = (run_dir / "results.md").read_text()
    assert "| NP-GL - EADS | +4.00 [+4.00, +4.00] | +4.00 [+4.00, +4.00] | 2 | 1 | 0 |" in md


def test_two_runs_compare_kernel_by_kernel_with_exact_paired_differences(tmp_path):
    from eads.report.attention import compare_runs

    def run(name, ppl_eads, eval_index):
        def result(cell, run_dir):
            out = _result(cell, run_dir)
            if cell.model == "eads":
                nll = [math.log(ppl_eads)] * N
                out["lambada"].update(word_nll=nll, perplexity=ppl_eads)
                out["training"]["kernel_val_r2"] = ppl_eads / 100
            return out

        cells = [Cell("attention", name, "original")] + [
            Cell("attention", name, m, params={"layer": 3}) for m in ("eads", "npgl")
        ]
        run_cells(cells, result, tmp_path / name, progress=False)
        config = {"task": "attention", "split": {"eval_index": eval_index}}
        (tmp_path / name / "config.json").write_text(json.dumps(config))
        return tmp_path / name

    base, other = run("base", 40.0, [1, 2]), run("other", 45.0, [1, 2])
    md = compare_runs(base, other)
    # EADS: 45 - 40 on every resample; NP-GL: the same 60 in both runs
    assert "| 3 | EADS | 40.00 | 45.00 | +5.00 [+5.00, +5.00] | 0.400 | 0.450 |" in md
    assert "| 3 | NP-GL | 60.00 | 60.00 | +0.00 [+0.00, +0.00] |" in md
    elsewhere = run("elsewhere", 45.0, [1, 3])
    with pytest.raises(ConfigError, match="other evaluation passages"):
        compare_runs(base, elsewhere)
    with pytest.raises(ConfigError, match="is not an attention benchmark run"):
        compare_runs(base, tmp_path)


def test_a_folder_that_is_no_attention_run_is_a_one_sentence_error(tmp_path):
    with pytest.raises(ConfigError, match="is not an attention benchmark run"):
        report_run(tmp_path)
    (tmp_path / "cells").mkdir()
    (tmp_path / "config.json").write_text('{"task": "pde"}')
    with pytest.raises(ConfigError, match="is not an attention benchmark run"):
        report_run(tmp_path)


def test_the_runner_script_rebuilds_a_report_and_refuses_unknown_parts(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "run_attention.sh"
    run_dir = tmp_path / "full"
    cells = [Cell("attention", "tiny", "original")] + [
        Cell("attention", "tiny", m, params={"layer": 0}) for m in ("eads", "npgl")
    ]
    run_cells(cells, _result, run_dir, progress=False)
    config = {"task": "attention", "split": {"eval_index": [], "train_index": []}}
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "meta.json").write_text("{}")
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "RESULTS": str(tmp_path)}
    done = subprocess.run([str(script), "report"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(run_dir / "results.md")
    assert "40.00 [40.00, 40.00]" in (run_dir / "results.md").read_text()
    bad = subprocess.run([str(script), "everything"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "run_attention.sh full" in bad.stderr


def test_a_data_curve_over_runs_has_exact_gains_and_paired_intervals(tmp_path, monkeypatch, capsys):
    """Three runs that differ in training pairs only: per kernel, the R2 gain over the next smaller
    count and the perplexity change against the same run's original are exact (constant NLLs);
    a kernel found in one run alone is left out; other passages or another window are refused."""
    from conftest import run_cli

    from eads.report.attention import data_curve, format_data_curve

    def run(name, pairs, r2, ppl_eads, layers=(3,), window=4, eval_index=(1, 2)):
        def result(cell, run_dir):
            out = _result(cell, run_dir)
            if cell.model == "eads":
                nll = [math.log(ppl_eads)] * N
                out["lambada"].update(word_nll=nll, perplexity=ppl_eads)
                out["training"].update(kernel_val_r2=r2, n_train_pairs=pairs)
                out["window"] = window
            return out

        cells = [Cell("attention", name, "original")] + [
            Cell("attention", name, "eads", params={"layer": la}) for la in layers
        ]
        run_cells(cells, result, tmp_path / name, progress=False)
        config = {"task": "attention", "split": {"eval_index": list(eval_index)}}
        (tmp_path / name / "config.json").write_text(json.dumps(config))
        return tmp_path / name

    runs = [run("a", 100, 0.50, 45.0, layers=(3, 7)), run("b", 200, 0.60, 42.0),
            run("c", 400, 0.65, 41.0)]  # fmt: skip
    rows = data_curve(runs[::-1])  # any order of the runs
    assert [(r["layer"], r["pairs"]) for r in rows] == [(3, 100), (3, 200), (3, 400)]
    assert [r["dppl"]["value"] for r in rows] == pytest.approx([-5.0, -8.0, -9.0])
    assert [r["dppl"]["hi"] - r["dppl"]["lo"] for r in rows] == pytest.approx([0.0, 0.0, 0.0])
    md = format_data_curve(rows)
    assert "| 3 | EADS | 200 | 0.600 | +0.100 | -8.00 [-8.00, -8.00] |" in md
    assert "| 3 | EADS | 400 | 0.650 | +0.050 | -9.00 [-9.00, -9.00] |" in md
    plot = tmp_path / "curve.png"
    code, out, err = run_cli(monkeypatch, capsys, "bench", "attention-data", *runs, "--plot", plot)
    assert code == 0, err
    assert out.startswith("| layer | kernel |") and plot.stat().st_size > 0
    with pytest.raises(ConfigError, match="windows of 4, 8 tokens"):
        data_curve([runs[0], run("w8", 100, 0.5, 45.0, window=8)])
    with pytest.raises(ConfigError, match="other evaluation passages"):
        data_curve([runs[0], run("elsewhere", 100, 0.5, 45.0, eval_index=(1, 3))])
