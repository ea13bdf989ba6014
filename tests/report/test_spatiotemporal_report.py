"""The spatio-temporal report on cells of the convergence protocol, beside the earlier ones.

Oracles: hand-made cell results whose rows, marks, protocol notes and learning curves are
written out in each test; the committed run (earlier protocol) must keep its CSV columns
(``test_committed_reports.py`` checks it byte for byte). Nothing trains; < 5 s.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from eads.bench.budget import CAP_MARK
from eads.report import spatiotemporal as rst

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "spatiotemporal" / "run"


def _metrics(mae):
    step = {
        "mae": mae,
        "rmse": mae + 1,
        "mape": 10.0,
        "mae_per_step": [mae],
        "rmse_per_step": [mae + 1],
        "mape_per_step": [10.0],
        "zeros_as_missing": False,
        "n_valid": 4,
    }
    return {
        "observed": step,
        "zeros_as_missing": dict(step, zeros_as_missing=True),
        "conventions_differ": False,
        "mape_tolerance": 1e-4,
        "units": "km/h",
    }


def _cell(model, seed, mae, stop, epochs, budget=True):
    return {
        "cell": {
            "task": "spatiotemporal",
            "dataset": "sz_taxi",
            "model": model,
            "seed": seed,
            "params": {},
        },
        "id": f"{model}-{seed}",
        "status": "ok",
        "metrics": _metrics(mae),
        "training": {
            "train_time_s": 10.0 * epochs,
            "epochs": epochs,
            "updates": 7 * epochs,
            "stopped_by": stop,
            "stop_reason": stop,
            "best_epoch": max(epochs - 20, 0),
            "val_curve": [[7, 1.0, mae + 1, 1.0], [14, 2.0, mae, 2.0]],
        },
        "latency_s_per_sample_batch1": 1e-3,
        "latency_s_per_sample_batch64": 1e-4,
        "n_parameters": 10,
        "n_test_windows": 572,
        "n_test_windows_total": 572,
        "n_train_windows": 882,
        "n_train_windows_total": 1763,
        "device": "cpu",
        "budget": {"epochs": 300, "max_time_s": None} if budget else None,
        "protocol": {
            "train_stride": 2,
            "max_val_windows": 1024,
            "max_test_windows": 0,
            "val_every": 0,
            "mape_tolerance": 1e-4,
        },
    }


RESULTS = [
    _cell("eads", 0, 3.0, "patience", 40),
    _cell("eads", 1, 3.2, "patience", 50),
    _cell("mtgnn", 0, 3.4, "epoch_cap", 300),
    _cell("mtgnn", 1, 3.6, "patience", 80),
    _cell("last_value", 0, 3.5, "none", 0, budget=False),
]


def test_protocol_rows_carry_the_stride_stop_and_tolerance():
    rows = rst.rows_of(RESULTS)
    r = rows[0]
    assert (r["max_epochs"], r["max_train_s"]) == (300, None)
    assert (r["train_stride"], r["n_train_windows"], r["stop_reason"]) == (2, 882, "patience")
    assert (r["mape_tolerance"], r["units"]) == (1e-4, "km/h")
    assert rows[-1]["max_epochs"] == 0 and rows[-1]["max_train_s"] is None  # no budget
    assert rst.csv_fields(rows)[-len(rst.PROTOCOL_FIELDS) :] == rst.PROTOCOL_FIELDS
    old = rst.rows_of(rst.results_in_order(RUN))  # the earlier protocol: no extra columns
    assert rst.csv_fields(old) == rst.CSV_FIELDS


def test_markdown_marks_a_group_when_any_seed_hit_the_cap():
    md = rst.format_markdown(rst.rows_of(RESULTS))
    table = md.split("\n\n")[0]  # the CPU-hours table follows
    lines = {ln.split("|")[2].strip(): ln for ln in table.splitlines() if ln.startswith("| ")}
    assert "3.100 \u00b1 0.141" in lines["EADS"] and CAP_MARK not in lines["EADS"]
    assert CAP_MARK in lines["MTGNN"] and "epoch_cap 1, patience 1" in lines["MTGNN"]
    assert "190.0 \u00b1 155.6" in lines["MTGNN"]  # epochs: mean and sample std of 300 and 80
    assert CAP_MARK not in lines["Last value"]
    note = "sz_taxi: train stride 2 (882 of 1763 training windows), 572 of 572 test windows"
    assert note in md and "MAPE treats |y| < 0.0001 km/h as zero." in md


def test_learning_curves_read_both_protocols():
    x, y, label = rst._learning_curve(RESULTS[0]["training"])
    assert label == "epoch" and x.tolist() == [1.0, 2.0] and y.tolist() == [4.0, 3.0]
    x, y, label = rst._learning_curve({"val_curve": [[20, 1.5, 7.0], [40, 3.0, 6.5]]})
    assert label == "update" and x.tolist() == [20, 40] and y.tolist() == [7.0, 6.5]
    x, _, _ = rst._learning_curve({})
    assert len(x) == 0


def test_the_plots_include_a_learning_curve_per_data_set(tmp_path):
    run = tmp_path / "run"
    (run / "cells").mkdir(parents=True)
    for r in RESULTS:
        r = dict(
            r,
            plot={
                "nodes": [0],
                "start": [0, 1],
                "history": 12,
                "pred_first": [[1.0], [2.0]],
                "truth_first": [[1.0], [None]],
            },
        )
        (run / "cells" / f"{r['id']}.json").write_text(json.dumps(r))
    written = {p.name for p in rst.plot_results(run)}
    assert written == {"predictions_sz_taxi.png", "learning_sz_taxi.png", "cost.png"}


def test_the_committed_run_still_plots(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    written = {p.name for p in rst.plot_results(run)}
    assert "learning_sz_taxi.png" in written and "cost.png" in written
    assert np.isfinite(json.loads((RUN / "relative.json").read_text())[0]["eads"])


CONVERGED = RUN.parent / "converged"


def test_the_converged_run_rebuilds_its_committed_results_md(tmp_path, monkeypatch, capsys):
    """``eads bench spatiotemporal-report`` on a copy of the converged run's ``config.json`` and
    ``cells/``: the committed ``results.md``, ``table.txt`` and ``relative.json`` come back byte
    for byte (it fails when cells were committed without rerunning the command), the cells are
    untouched and nothing is trained (no ``partial/``)."""
    from conftest import run_cli

    run = tmp_path / "converged"
    run.mkdir()
    shutil.copy(CONVERGED / "config.json", run / "config.json")
    shutil.copytree(CONVERGED / "cells", run / "cells")
    cells_before = {p.name: p.read_bytes() for p in (run / "cells").iterdir()}

    code, out, err = run_cli(monkeypatch, capsys, "bench", "spatiotemporal-report", run)

    assert code == 0, err
    assert out == f"{run / 'results.md'}\n"
    for name in ("results.md", "table.txt", "relative.json"):
        assert (run / name).read_bytes() == (CONVERGED / name).read_bytes(), (
            f"benchmarks/results/spatiotemporal/converged/{name} is stale against its cells: "
            "rerun `eads bench spatiotemporal-report benchmarks/results/spatiotemporal/converged`"
        )
    assert {p.name: p.read_bytes() for p in (run / "cells").iterdir()} == cells_before
    assert "partial" not in {p.name for p in run.iterdir()}
    assert (run / "plots" / "learning_beijing_pm25.png").is_file()


def test_a_folder_that_is_not_a_spatiotemporal_run_is_one_sentence(tmp_path, monkeypatch, capsys):
    from conftest import run_cli

    (tmp_path / "cells").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"task": "pde"}))

    code, out, err = run_cli(monkeypatch, capsys, "bench", "spatiotemporal-report", tmp_path)

    assert code == 2 and out == ""
    assert "is not a spatio-temporal benchmark run" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells", "config.json"]


def test_cpu_hours_count_every_search_trial_and_leave_out_the_references():
    eads = dict(_cell("eads", 0, 3.0, "patience", 40))
    eads["selection"] = {"trials": [{"seconds": 1800.0}, {"seconds": 5400.0}, {"seconds": 0.0}]}
    grid = _cell("ddgcrn", 0, 3.3, "patience", 30)  # two lrs: both count, not the chosen alone
    grid["training"] = dict(grid["training"], train_cost_s=1800.0)
    rows = rst.rows_of([eads, _cell("mtgnn", 0, 3.4, "patience", 90), grid, RESULTS[-1]])
    # the trials; a one-lr cell of before train_cost_s: its 10 s x 90 epochs; the grid's sum
    assert [r["train_cost_s"] for r in rows] == [7200.0, 900.0, 1800.0, 0.0]
    hours = rst.format_markdown(rows).split("\n\n")[-2].splitlines()
    assert hours[0] == "| data set | EADS | MTGNN | DDGCRN | all models |"
    assert hours[2:] == [
        "| sz_taxi | 2.00 | 0.25 | 0.50 | 2.75 |",
        "| all | 2.00 | 0.25 | 0.50 | 2.75 |",
    ]
