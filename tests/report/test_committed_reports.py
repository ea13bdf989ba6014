"""The committed results of today's runs still render table for table from their run directories.

Oracles: the committed ``results.csv`` / ``results.json`` / ``relative.json`` of each run (which
the code before ``eads.report`` wrote, and which it reproduced byte for byte), and the text tables
that code rendered from the same directories (``golden/``, see its README). The PDE rows gained a
``seed`` column (all 0 in these runs) and both suites' rows a ``train_cost_s`` column (the
training time of every candidate a cell trained, never less than its chosen run's); with those
dropped they must equal the committed ones. The new Markdown tables mark exactly the cells that
patience did not stop. Nothing trains; < 2 s.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from eads.bench.budget import CAP_MARK
from eads.report import attention as rat
from eads.report import pde as rpde
from eads.report import spatiotemporal as rst

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
GOLDEN = Path(__file__).resolve().parent / "golden"


#: Columns the reports gained after these runs were committed.
ADDED = ("seed", "train_cost_s")


def _csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _drop_cost(rows: list[dict]) -> list[dict]:
    """The rows without ``train_cost_s``, after checking it is at least the chosen run's time."""
    for r in rows:
        if r.get("status", "ok") == "ok" and r.get("train_time_s") not in (None, ""):
            assert float(r["train_cost_s"]) >= float(r["train_time_s"]) - 1e-9
    return [{k: v for k, v in r.items() if k != "train_cost_s"} for r in rows]


def _main_table(md: str) -> list[str]:
    """The body lines of the first Markdown table in ``md`` (the CPU-hours table follows it)."""
    first = md.split("\n\n", 1)[0].splitlines()
    return [
        ln for ln in first if ln.startswith("| ") and not ln.startswith(("| data set", "| ---"))
    ]


@pytest.mark.parametrize("name", ["run", "run-hires"])
def test_pde_runs_render_as_committed(tmp_path, name):
    committed = RESULTS / "pde" / name
    run = tmp_path / name
    shutil.copytree(committed, run)
    rows = rpde.write_report(run, plots=False)

    assert rpde.format_table(rows) + "\n" == (GOLDEN / f"pde-{name}.txt").read_text()
    head, new = _csv(run / "results.csv")
    old_head, old = _csv(committed / "results.csv")
    assert [h for h in head if h not in ADDED] == old_head
    assert {r.pop("seed") for r in new} == {"0"}
    assert _drop_cost(new) == old
    got = json.loads((run / "results.json").read_text())
    want = json.loads((committed / "results.json").read_text())
    assert [c for c in got["columns"] if c not in ADDED] == want["columns"]
    assert (
        _drop_cost([{k: v for k, v in r.items() if k != "seed"} for r in got["rows"]])
        == want["rows"]
    )

    lines = _main_table((run / "results.md").read_text())
    assert len(lines) == len(want["rows"])  # one seed each: one line per cell
    capped = {
        (r["dataset"], str(r["resolution"]), r["model"])
        for r in want["rows"]
        if r["stopped_by"] != "early stopping"
    }
    marked = {tuple(c.strip() for c in ln.split("|")[1:4]) for ln in lines if CAP_MARK in ln}
    assert capped and marked == capped


def test_pde_plots_draw_from_the_committed_runs(tmp_path):
    runs = [RESULTS / "pde" / "run", RESULTS / "pde" / "run-hires"]
    before = {p: p.stat().st_mtime_ns for r in runs for p in r.rglob("*")}
    pytest.importorskip("matplotlib")
    written = rpde.plot_runs(runs, tmp_path / "plots")
    # the committed runs keep no predictions/*.npz: the prediction plots are left out
    assert sorted(p.name for p in written) == ["cost.png", "error_vs_resolution.png"]
    assert {p: p.stat().st_mtime_ns for r in runs for p in r.rglob("*")} == before  # read only


def test_the_spatiotemporal_run_renders_as_committed(tmp_path):
    committed = RESULTS / "spatiotemporal" / "run"
    run = tmp_path / "run"
    shutil.copytree(committed, run)
    skipped = json.loads((committed / "results.json").read_text())["skipped"]
    results = rst.results_in_order(run)
    table = rst.write_report(run, results, skipped, plots=False)

    assert table + "\n" == (GOLDEN / "st-run.txt").read_text()
    assert (run / "table.txt").read_text() == table + "\n"
    head, new = _csv(run / "results.csv")
    old_head, old = _csv(committed / "results.csv")
    assert [h for h in head if h != "train_cost_s"] == old_head
    assert _drop_cost(new) == old
    assert json.loads((run / "relative.json").read_text()) == json.loads(
        (committed / "relative.json").read_text()
    )
    got = json.loads((run / "results.json").read_text())
    want = json.loads((committed / "results.json").read_text())
    assert _drop_cost(got["rows"]) == want["rows"] and got["relative"] == want["relative"]

    md = "\n".join(_main_table((run / "results.md").read_text()))
    capped = {
        (r["dataset"], rst.MODEL_LABELS[r["model"]])
        for r in want["rows"]
        if r["stopped_by"] not in ("early stopping", "no training")
    }
    marked = {
        tuple(c.strip() for c in ln.split("|")[1:3])
        for ln in md.splitlines()
        if ln.startswith("| ") and CAP_MARK in ln
    }
    assert capped and marked == capped


def test_the_attention_summary_renders_as_committed(tmp_path):
    summary = RESULTS / "attention" / "smollm2.json"
    assert rat.summary_table(summary) + "\n" == (GOLDEN / "att.txt").read_text()
    rows = json.loads(summary.read_text())["rows"]
    from eads.bench.tables import write_csv

    write_csv(tmp_path / "results.csv", rows, rat.CSV_FIELDS)
    assert (tmp_path / "results.csv").read_text() == (GOLDEN / "att.csv").read_text()
