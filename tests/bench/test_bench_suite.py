"""A suite's arguments and run directory (eads.bench.suite): names and seeds parsed as given,
bad ones refused in one sentence naming the value, budgets merged, and a resumed or extended
run's config.json listing every cell of every call. < 1 s."""

from __future__ import annotations

import json

import pytest

from eads._errors import ConfigError
from eads.bench.budget import Budget
from eads.bench.cells import Cell
from eads.bench.suite import cell_dicts, merge_budgets, open_run, parse_names, parse_seeds


def _one_sentence(info) -> str:
    message = str(info.value)
    assert message.endswith(".") and ". " not in message and "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ["a", "b", "c"]),
        ("c,a", ["c", "a"]),
        (" b , b,,a ", ["b", "a"]),
        (["a", "c", "a"], ["a", "c"]),
    ],
)
def test_names_keep_the_given_order_without_duplicates(value, expected):
    assert parse_names(value, ("a", "b", "c"), "models") == expected


def test_names_are_cast_before_they_are_checked():
    assert parse_names("64, 16", (16, 32, 64), "resolutions", cast=int) == [64, 16]
    assert parse_names([32], (16, 32, 64), "resolutions", cast=int) == [32]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a,z", r"models='a,z' names unknown models \['z'\]; valid models are \['a', 'b'\]"),
        ("", r"models='' names unknown models \[\]"),
        ([], r"models=\[\] names unknown models"),
    ],
)
def test_unknown_or_no_names_are_one_sentence(value, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        parse_names(value, ("a", "b"), "models")
    _one_sentence(info)


def test_a_name_that_does_not_cast_is_one_sentence():
    with pytest.raises(ConfigError, match=r"resolutions='16,abc' must be a comma-separated") as i:
        parse_names("16,abc", (16, 32), "resolutions", cast=int)
    assert "[16, 32]" in _one_sentence(i)


def test_seeds_are_a_count_or_the_seeds():
    assert parse_seeds(None, 3) == [0, 1, 2]
    assert parse_seeds(2, 3) == [0, 1]
    assert parse_seeds([4, 2, 4], 3) == [4, 2]
    assert parse_seeds((0,), 3) == [0]


@pytest.mark.parametrize("bad", [0, -1, True, [], [1, -2], ["a"], [1.0]])
def test_bad_seeds_are_one_sentence_naming_them(bad):
    with pytest.raises(ConfigError, match=f"seeds={bad!r}".replace("[", r"\[")) as info:
        parse_seeds(bad, 1)
    _one_sentence(info)


def test_budgets_replace_the_defaults_they_name_and_refuse_others():
    defaults = {"nn": Budget(epochs=10), "fno": Budget(epochs=20)}
    small = Budget(epochs=2)
    merged = merge_budgets({"fno": small}, defaults)
    assert merged == {"nn": defaults["nn"], "fno": small} and list(merged) == ["nn", "fno"]
    assert merge_budgets(None, defaults) == defaults
    with pytest.raises(ConfigError, match=r"\['mlp'\]; valid models are \['nn', 'fno'\]") as i:
        merge_budgets({"mlp": small, "nn": small}, defaults)
    _one_sentence(i)


def test_a_resumed_or_extended_run_lists_every_cell(tmp_path):
    a, b, c = (Cell("toy", "set", m, {"resolution": 4}) for m in ("nn", "fno", "gno"))
    run = tmp_path / "run"
    first = open_run(run, {"task": "toy", "cells": cell_dicts([a, b])}, seed=0)
    assert first == [a, b]
    config = json.loads((run / "config.json").read_text())
    assert [Cell(**x) for x in config["cells"]] == [a, b] and config["task"] == "toy"
    assert json.loads((run / "meta.json").read_text())["seed"] == 0
    # a second call with b again and a new c: a kept, b once (this call's place), then c
    every = open_run(run, {"task": "toy", "cells": cell_dicts([b, c])}, seed=1)
    assert every == [a, b, c]
    config = json.loads((run / "config.json").read_text())
    assert [Cell(**x).id for x in config["cells"]] == [a.id, b.id, c.id]
    assert json.loads((run / "meta.json").read_text())["seed"] == 1
