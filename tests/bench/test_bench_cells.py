"""The benchmark cell: its id is the committed run directories' contract (every listed cell of
every committed run is found under its id), a finished cell is skipped, and a corrupt cell file
(not JSON, not an object, a field missing, another cell's) is recomputed with a warning instead
of being trusted or failing the grid. < 1 s.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from eads.bench.cells import CELL_FIELDS, Cell, load_results, read_cell, run_cells

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
PDE_RUNS = [RESULTS / "pde" / "run", RESULTS / "pde" / "run-hires"]


def test_the_ids_of_the_committed_pde_cells_are_unchanged():
    for run in PDE_RUNS:
        listed = [Cell(**c) for c in json.loads((run / "config.json").read_text())["cells"]]
        files = {p.stem for p in (run / "cells").glob("*.json")}
        assert listed and {c.id for c in listed} == files, run
        for c in listed:
            assert read_cell(run / "cells" / f"{c.id}.json", c)["status"] == "ok"


def test_an_id_names_its_fields_and_hashes_the_rest():
    c = Cell("pde", "burgers", "fno", {"resolution": 256, "budget": {"epochs": 5}}, seed=2)
    assert c.id.startswith("burgers_256_fno_s2-") and len(c.id.rsplit("-", 1)[1]) == 8
    other = Cell("pde", "burgers", "fno", {"resolution": 256, "budget": {"epochs": 6}}, seed=2)
    assert other.id != c.id and other.id.rsplit("-", 1)[0] == c.id.rsplit("-", 1)[0]


def _count(calls: list):
    def fn(cell: Cell, run_dir: Path) -> dict:
        calls.append(cell.id)
        return {"value": cell.seed * 10}

    return fn


CORRUPT = {
    "not JSON": '{"cell": {"task": ',
    "not an object": "[1, 2, 3]",
    "no status": json.dumps({"cell": {}, "id": "x"}),
    "no cell": json.dumps({"id": "x", "status": "ok"}),
}


@pytest.mark.parametrize("why", sorted(CORRUPT))
def test_a_corrupt_cell_file_is_recomputed_with_a_warning(tmp_path, caplog, why):
    cells = [Cell("t", "d", "m", seed=s) for s in range(3)]
    calls: list = []
    run_cells(cells, _count(calls), tmp_path, progress=False)
    assert len(calls) == 3
    run_cells(cells, _count(calls), tmp_path, progress=False)  # all done: nothing reruns
    assert len(calls) == 3
    path = tmp_path / "cells" / f"{cells[1].id}.json"
    path.write_text(CORRUPT[why])
    with caplog.at_level(logging.WARNING, logger="eads.bench.cells"):
        kept = load_results(tmp_path, cells)  # a report leaves the corrupt cell out
        assert [r["id"] for r in kept] == [cells[0].id, cells[2].id]
        results = run_cells(cells, _count(calls), tmp_path, progress=False)
    assert calls[3:] == [cells[1].id]  # only the corrupt cell ran again
    assert [r["value"] for r in results] == [0, 10, 20]
    assert all(r["status"] == "ok" and set(CELL_FIELDS) <= set(r) for r in results)
    assert json.loads(path.read_text())["value"] == 10  # rewritten whole
    warned = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert warned and all(str(path) in w for w in warned)


def test_another_cells_file_under_this_id_is_not_trusted(tmp_path, caplog):
    a, b = Cell("t", "d", "m", seed=0), Cell("t", "d", "m", seed=1)
    calls: list = []
    run_cells([a], _count(calls), tmp_path, progress=False)
    (tmp_path / "cells" / f"{b.id}.json").write_text(
        (tmp_path / "cells" / f"{a.id}.json").read_text()
    )
    with caplog.at_level(logging.WARNING, logger="eads.bench.cells"):
        results = run_cells([a, b], _count(calls), tmp_path, progress=False)
    assert calls == [a.id, b.id] and results[1]["value"] == 10
    assert any("written for cell" in r.getMessage() for r in caplog.records)


def test_a_failed_cell_is_recorded_and_tried_again(tmp_path):
    cell = Cell("t", "d", "m")

    def boom(cell, run_dir):
        raise ValueError("no")

    (result,) = run_cells([cell], boom, tmp_path, progress=False)
    assert result["status"] == "failed" and result["error"] == "ValueError: no"
    calls: list = []
    (result,) = run_cells([cell], _count(calls), tmp_path, progress=False)
    assert calls == [cell.id] and result["status"] == "ok"


def test_a_cell_another_runner_finished_meanwhile_is_skipped(tmp_path):
    a, b, c = (Cell("t", "d", "m", seed=s) for s in range(3))
    calls: list = []
    other = _count([])

    def first_and_the_other_runner(cell, run_dir):
        if cell == a:  # while this runner works on a, a second one on the same directory does c
            run_cells([c], other, run_dir, progress=False)
        return _count(calls)(cell, run_dir)

    results = run_cells([a, b, c], first_and_the_other_runner, tmp_path, progress=False)
    assert calls == [a.id, b.id]  # c was planned here but found done when its turn came
    assert [r["value"] for r in results] == [0, 10, 20]


def test_the_old_import_path_is_the_same_object():
    from eads.tasks import executor

    assert executor.Cell is Cell and executor.run_cells is run_cells
