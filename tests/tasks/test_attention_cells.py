"""The attention suite's cells: the ids a committed run's files are named by are the ones today's
code plans from that run's ``config.json``, so a rerun of the same command continues the run.

Oracles: the committed ``benchmarks/results/attention/full/cells/*.json`` (written by the code
that started the run) and cells written out by hand. No LM and no training; < 1 s.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from eads.bench.cells import Cell
from eads.tasks import attention as at

FULL_RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "attention" / "full"


@pytest.fixture(scope="module")
def full_config() -> dict:
    path = FULL_RUN / "config.json"
    if not path.is_file():
        pytest.skip(f"no committed full attention run at {path}")
    return json.loads(path.read_text())


def test_every_committed_cell_of_the_full_run_is_planned_with_its_params(full_config):
    """``eads bench attention --run-dir .../full --layers all --models eads,npgl,mean`` plans
    its cells from what it writes to config.json (:func:`plan_cells`); every committed cell
    file must be one of them, with the very ``cell`` it recorded."""
    planned = {c.id: c for c in at.plan_cells(full_config)}
    assert len(planned) == 1 + len(full_config["layers"]) * len(full_config["models"])
    files = sorted((FULL_RUN / "cells").glob("*.json"))
    if not files:
        pytest.skip("the committed full attention run has no finished cell yet")
    for path in files:
        assert path.stem in planned, f"{path.name} is not among the cells today's code plans"
        recorded = json.loads(path.read_text())
        assert recorded["id"] == path.stem
        assert recorded["cell"] == asdict(planned[path.stem])
        assert Cell(**recorded["cell"]).id == path.stem


def test_the_full_run_is_the_default_command(full_config):
    """The run was started with FULL's settings and every layer: a change to FULL, to the
    settings' fields or to the layer parsing would plan other cells for the same command."""
    assert full_config["settings"] == asdict(at.FULL)
    assert asdict(at.AttentionSettings(**full_config["settings"])) == full_config["settings"]
    assert at.parse_layers("all", full_config["n_layers"], quick=False) == full_config["layers"]
    assert full_config["source"] == at.DEFAULT_SOURCE_NOTE
    assert full_config["models"] == ["eads", "npgl", "mean"]


def test_plan_cells_lists_the_original_then_each_layer_and_model():
    settings = at.AttentionSettings(n_eval=3, n_train=4)
    config = {
        "model": "gpt2",
        "source": "/models/gpt2",
        "settings": asdict(settings),
        "layers": [3, 0],
        "models": ["npgl", "eads"],
    }
    params = {"settings": asdict(settings), "source": "/models/gpt2"}
    expected = [Cell("attention", "gpt2", "original", params=params, seed=0)] + [
        Cell("attention", "gpt2", m, params={**params, "layer": la}, seed=0)
        for la, m in [(3, "npgl"), (3, "eads"), (0, "npgl"), (0, "eads")]
    ]
    assert at.plan_cells(config) == expected
    # no checkpoint: config.json says where the model came from, the cells keep the short name
    default = {**config, "source": at.DEFAULT_SOURCE_NOTE}
    assert {c.params["source"] for c in at.plan_cells(default)} == {at.DEFAULT_SOURCE}
    # the settings and the seed are part of the id: another seed is another cell
    seeded = {**config, "settings": asdict(at.AttentionSettings(n_eval=3, n_train=4, seed=1))}
    assert not {c.id for c in at.plan_cells(seeded)} & {c.id for c in expected}
