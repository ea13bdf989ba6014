"""``eads bench spatiotemporal``'s run options: seeds, GNN widths, the training stride and the
progress bar reach ``run_benchmark``, and bad values end in one ``error:`` line, writing nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from eads.tasks import spatiotemporal as st

T, N = 200, 4  # 6:2:2 -> training steps 0..119


def _custom(folder):
    """A small generated set: one positive wave per node, a ring graph; the CLI's --custom args."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(T)[:, None]
    wave = 20.0 + 5.0 * np.sin(2 * np.pi * t / 48 + np.arange(N)[None, :])  # (T, N)
    noise = np.random.default_rng(0).normal(0, 0.3, (T, N))
    np.savez(folder / "data.npz", flow=(wave + noise)[..., None])  # (T, N, 1)
    ring = np.roll(np.eye(N), 1, axis=1)
    np.savetxt(folder / "adj.csv", ring + ring.T, delimiter=",")
    return (
        "--custom", folder / "data.npz", "--key", "flow", "--adjacency", folder / "adj.csv",
        "--step-minutes", 30, "--in-steps", 6, "--out-steps", 3,
    )  # fmt: skip


def test_quick_run_with_two_seeds_writes_a_cell_per_seed(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    models = ("historical_average", "last_value")
    code, out, err = run_cli(
        monkeypatch, capsys, "bench", "spatiotemporal", "--quick", "--run-dir", run_dir,
        "--models", ",".join(models), *_custom(tmp_path / "in"), "--seeds", "0,1",
        "--widths", "reduced", "--train-stride", 3, "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert f"run directory: {run_dir}" in out
    cells = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    recorded = sorted((c["cell"]["model"], c["cell"]["seed"]) for c in cells)
    assert recorded == [(m, s) for m in models for s in (0, 1)]
    # oracle: training steps 0..119 hold 120 - 9 + 1 = 112 windows of 6 -> 3; every third: 38
    for c in cells:
        assert c["protocol"]["train_stride"] == 3
        assert c["n_train_windows_total"] == 112 and c["n_train_windows"] == 38
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seeds"] == [0, 1] and config["datasets"] == ["custom"]
    assert config["widths"] == "reduced" and config["gnn_widths"] == st.WIDTHS["reduced"]
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert sorted((r["model"], r["seed"]) for r in rows) == recorded
    assert "cells:" not in err  # --no-progress: no bar over the cells


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), {"seeds": None, "widths": None, "train_stride": None, "progress": True}),
        (("--seeds", "3"), {"seeds": 3}),
        (("--seeds", "0,1,2"), {"seeds": [0, 1, 2]}),
        (("--seeds", " 5 , 2 "), {"seeds": [5, 2]}),
        (("--seeds", "4,"), {"seeds": [4]}),
        (("--widths", "tiny", "--train-stride", "2"), {"widths": "tiny", "train_stride": 2}),
        (("--no-progress",), {"progress": False}),
    ],
)
def test_options_reach_run_benchmark_as_its_keywords(monkeypatch, capsys, tmp_path, args, expected):
    seen = {}

    def fake(run_dir, **kwargs):
        seen.update(kwargs)
        return "table"

    monkeypatch.setattr(st, "run_benchmark", fake)
    code, out, err = run_cli(
        monkeypatch, capsys, "bench", "spatiotemporal", "--run-dir", tmp_path / "run", *args
    )
    assert code == 0, err
    assert out.startswith("table\n")
    assert {k: seen[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--seeds", "-1"), "--seeds '-1' is a count of seeds"),
        (("--seeds", "0"), "--seeds '0' is a count of seeds"),
        (("--seeds", "0,-1"), "seeds=[0, -1]"),
        (("--seeds", "0,x"), "--seeds '0,x' must be a count"),
        (("--seeds", ""), "--seeds '' must be a count"),
        (("--widths", "huge"), "widths='huge' is unknown"),
        (("--train-stride", "0"), "train_stride=0"),
    ],
)
def test_bad_values_exit_2_with_one_sentence_writing_nothing(
    tmp_path, monkeypatch, capsys, args, fragment
):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        monkeypatch, capsys, "bench", "spatiotemporal", "--quick", "--run-dir", run_dir,
        "--models", "last_value", *_custom(tmp_path / "in"), *args,
    )  # fmt: skip
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    message = lines[0].removeprefix("error: ")
    assert fragment in message
    assert message.endswith(".") and message.count(". ") == 0  # one sentence
    assert out == ""
    assert not run_dir.exists()
