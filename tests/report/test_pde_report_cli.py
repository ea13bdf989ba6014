"""``eads bench pde-report RUN_DIR``: a PDE run's tables rebuilt from its cells, nothing trained.

Oracles: the committed ``results.md`` of the converged run (``benchmarks/results/pde/released``),
which must come back byte for byte from its ``config.json`` and ``cells/`` alone (it fails when
cells were added without rerunning the command: rerun it); and the committed ``results.csv`` of
the first CPU-budget run (``benchmarks/results/pde/run``, written by the code before the
benchmark core), which the command must reproduce byte for byte once its later ``seed`` column
is dropped, whether or not ``config.json`` lists the cells. < 5 s.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
PDE = ROOT / "benchmarks" / "results" / "pde"


def _copy_run(name: str, dest: Path, extra: tuple[str, ...] = ()) -> Path:
    """``config.json``, ``cells/`` (and ``extra`` files) of a committed run, copied to ``dest``."""
    src = PDE / name
    dest.mkdir()
    shutil.copy(src / "config.json", dest / "config.json")
    shutil.copytree(src / "cells", dest / "cells")
    for f in extra:
        shutil.copy(src / f, dest / f)
    return dest


def _without_seed(text: str) -> str:
    """The CSV without the columns added since the first run: ``seed`` (all 0 there) and
    ``train_cost_s`` (the training time of all candidates, never below the chosen run's)."""
    rows = list(csv.reader(io.StringIO(text)))
    seed, cost, time = (rows[0].index(c) for c in ("seed", "train_cost_s", "train_time_s"))
    assert {r[seed] for r in rows[1:]} == {"0"}
    assert all(float(r[cost]) >= float(r[time]) for r in rows[1:])
    out = io.StringIO()
    keep = [i for i in range(len(rows[0])) if i not in (seed, cost)]
    csv.writer(out, lineterminator="\n").writerows([[r[i] for i in keep] for r in rows])
    return out.getvalue()


def test_the_released_run_rebuilds_its_committed_results_md(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    run = _copy_run("released", tmp_path / "released", ("references.json",))
    cells_before = {p.name: p.read_bytes() for p in (run / "cells").iterdir()}

    code, out, err = run_cli(monkeypatch, capsys, "bench", "pde-report", run)

    assert code == 0, err
    assert out == f"{run / 'results.md'}\n"
    committed = (PDE / "released" / "results.md").read_bytes()
    assert (run / "results.md").read_bytes() == committed, (
        "benchmarks/results/pde/released/results.md is stale against its cells: rerun "
        "`eads bench pde-report benchmarks/results/pde/released`"
    )
    # the copy has no predictions/: the prediction plot is left out, the other two are drawn
    assert sorted(p.name for p in (run / "plots").iterdir()) == [
        "cost.png",
        "error_vs_resolution.png",
    ]
    assert {p.name: p.read_bytes() for p in (run / "cells").iterdir()} == cells_before
    assert sorted(p.name for p in run.iterdir()) == [
        "cells",
        "config.json",
        "plots",
        "references.json",
        "results.csv",
        "results.json",
        "results.md",
    ]  # nothing trained: no partial/, no predictions/


@pytest.mark.parametrize("lists_cells", [True, False])
def test_the_first_run_rebuilds_its_committed_csv(tmp_path, monkeypatch, capsys, lists_cells):
    run = _copy_run("run", tmp_path / "run")
    if not lists_cells:  # an older config.json without the run's cell list: all of cells/
        config = json.loads((run / "config.json").read_text())
        del config["cells"]
        (run / "config.json").write_text(json.dumps(config))

    code, out, err = run_cli(monkeypatch, capsys, "bench", "pde-report", run, "--no-plots")

    assert code == 0, err
    assert out == f"{run / 'results.md'}\n"
    committed = (PDE / "run" / "results.csv").read_text()
    assert _without_seed((run / "results.csv").read_text()) == committed
    assert not (run / "plots").exists()
    rows = json.loads((run / "results.json").read_text())["rows"]
    table = (run / "results.md").read_text().split("\n\n")[0]  # the CPU-hours table follows
    md_rows = [ln for ln in table.splitlines() if ln.startswith("| ")]
    assert len(md_rows) == 2 + len(rows) == 2 + 28  # header, rule, one line per one-seed cell


def _bad_runs(tmp_path: Path) -> dict[str, Path]:
    missing = tmp_path / "missing"
    no_cells = tmp_path / "no-cells"
    no_cells.mkdir()
    (no_cells / "config.json").write_text(json.dumps({"task": "pde", "cells": []}))
    other = tmp_path / "attention-run"
    (other / "cells").mkdir(parents=True)
    (other / "config.json").write_text(json.dumps({"task": "attention"}))
    garbled = tmp_path / "garbled"
    (garbled / "cells").mkdir(parents=True)
    (garbled / "config.json").write_text("{not json")
    return {"missing": missing, "no-cells": no_cells, "other": other, "garbled": garbled}


@pytest.mark.parametrize("kind", ["missing", "no-cells", "other", "garbled"])
def test_a_directory_that_is_not_a_pde_run_is_one_sentence(tmp_path, monkeypatch, capsys, kind):
    path = _bad_runs(tmp_path)[kind]
    before = sorted(tmp_path.rglob("*"))

    code, out, err = run_cli(monkeypatch, capsys, "bench", "pde-report", path)

    assert code == 2 and out == ""
    assert err == (
        f"error: {str(path)!r} is not a PDE benchmark run (no PDE config.json and cells/ in it).\n"
    )
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
