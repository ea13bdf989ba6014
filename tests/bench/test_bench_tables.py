"""Rows to tables: mean +- sample std against hand values, the Markdown layout, the writers."""

from __future__ import annotations

import csv
import json
import math

from eads.bench import tables
from eads.bench.tables import (
    fmt,
    fmt_mean_std,
    group_rows,
    markdown_table,
    mean_std,
    write_csv,
    write_json,
    write_text,
)


def test_mean_std_is_the_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sqrt(((1)^2 + 0 + 1^2) / 2) = 1
    assert mean_std([4.0]) == (4.0, 0.0)
    m, s = mean_std([])
    assert math.isnan(m) and math.isnan(s)
    assert mean_std([1.0, float("nan"), 3.0]) == (2.0, math.sqrt(2.0))
    assert fmt_mean_std([1.0, 2.0, 3.0], ".2f") == "2.00 \u00b1 1.00"
    assert fmt_mean_std([0.5], ".3f") == "0.500" and fmt_mean_std([None], ".1f") == "-"
    assert fmt(None, ".1f") == "-" == fmt(float("inf"), ".1f") and fmt(2, "d") == "2"


def test_markdown_table_and_groups():
    text = markdown_table(["a", "b"], [["x|y", "1.0"]], align="lr")
    assert text.splitlines() == ["| a | b |", "| --- | ---: |", "| x\\|y | 1.0 |"]
    rows = [{"k": 1, "v": 1}, {"k": 2, "v": 2}, {"k": 1, "v": 3}]
    assert group_rows(rows, lambda r: (r["k"],)) == {(1,): [rows[0], rows[2]], (2,): [rows[1]]}


def test_writers_write_whole_files(tmp_path):
    rows = [{"a": 1, "b": "x", "extra": 9}, {"a": 2, "b": "y"}]
    write_csv(tmp_path / "t.csv", rows, ["a", "b"])
    with open(tmp_path / "t.csv") as fh:
        assert list(csv.DictReader(fh)) == [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}]
    write_json(tmp_path / "t.json", {"rows": rows})
    assert json.loads((tmp_path / "t.json").read_text()) == {"rows": rows}
    write_text(tmp_path / "t.md", "| a |")
    assert (tmp_path / "t.md").read_text() == "| a |\n"
    assert not list(tmp_path.glob(".tmp-*"))


def test_cpu_hours_table_sums_finished_cells_per_group_and_model():
    rows = [
        {"d": "a", "model": "x", "status": "ok", "train_cost_s": 3600.0},
        {"d": "a", "model": "x", "status": "ok", "train_cost_s": 1800.0},
        {"d": "a", "model": "y", "status": "ok", "train_cost_s": float("nan")},
        {"d": "a", "model": "y", "status": "failed", "train_cost_s": 9e9},
        {"d": "b", "model": "y", "status": "ok", "train_cost_s": 900.0},
        {"d": "b", "model": "ha", "status": "ok", "train_cost_s": 0.0, "stopped_by": "none"},
    ]
    table = tables.cpu_hours_table(rows, lambda r: (r["d"],), ["data set"], {"x": "X"})
    lines = table.split("\n\n")[0].splitlines()
    assert lines[0] == "| data set | X | y | all models |"
    assert lines[2:] == [
        "| a | 1.50 | 0.00 | 1.50 |",  # a NaN time counts 0; a failed cell is left out
        "| b | - | 0.25 | 0.25 |",  # no finished cell of x; ha does not train: no column
        "| all | 1.50 | 0.25 | 1.75 |",
    ]
    assert table.endswith(tables.CPU_HOURS_NOTE)
