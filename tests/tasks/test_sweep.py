"""Sweeps: specs, Ray vs one-by-one, a killed worker, reruns, Optuna, bad input.

Durations on 2 shared CPU cores (load ~5-10): spec checks and CLI exit codes < 2 s; the
unreachable address ~5 s (imports Ray); Optuna on the local executor ~20 s; each Ray test
60-120 s (Ray start-up and its workers importing torch dominate), so they are marked slow.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from eads._errors import ConfigError
from eads.tasks.sweep import parse_spec, read_spec, run_sweep

TINY = """
[demo]
n_samples = 120
[model]
n_hidden = 8
n_steps = 4
[train]
epochs = {epochs}
batch_size = 16
patience = 0
"""

GRID = (
    TINY
    + """
[sweep]
seeds = [0, 1]
retries = {retries}
[grid]
train.lr = [1e-3, 1e-2]
"""
)


def _spec(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _val(sweep_dir: Path) -> dict[str, float]:
    rows = json.loads((sweep_dir / "results.json").read_text())["rows"]
    return {r["trial"]: r.get("val.relative_mse") for r in rows}


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance with 2 worker CPUs for this module's Ray tests."""
    ray = pytest.importorskip("ray")
    from eads.tasks.executor import connect_ray

    connect_ray(None, num_cpus=2)
    yield ray
    ray.shutdown()


# ----------------------------------------------------------------------------- bad input (fast)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[grid]\nmodel.n_hiden = [8, 16]\n", "Unknown setting 'model.n_hiden'"),
        ("[grid]\nmodel.kind = ['transformer']\n", "model kind must be one of"),
        ("[grid]\n", r"\[grid\] is empty"),
        ("[grid]\ntrain.lr = []\n", "empty list"),
        ("[grid]\ntrain.seed = [1, 2]\n", "seeds go in"),
        ("[sweep]\nmetric = 'test.mae'\n[grid]\ntrain.lr = [1e-3]\n", "validation metric"),
        ("[model]\nn_hiden = 8\n[grid]\ntrain.lr = [1e-3]\n", "Unknown setting"),
        (
            "[sweep]\nsearch = 'optuna'\ntrials = 2\n[space]\ntrain.lr = {log_uniform = [0, 1]}\n",
            "low > 0",
        ),
        ("[sweep]\nsearch = 'random'\n", "needs a non-empty"),
        ("[grid]\nmodel.solver = ['rk9']\n", "Unknown solver"),
        ("[gird]\ntrain.lr = [1]\n", "Unknown table"),
        ("[data]\nval_fraction = 0.0\n[grid]\ntrain.lr = [1e-3]\n", "val_fraction must be > 0"),
    ],
)
def test_bad_specs_raise_config_error(tmp_path, text, match):  # < 1 s
    with pytest.raises(ConfigError, match=match):
        read_spec(_spec(tmp_path, text))


def test_spec_grid_random_and_yaml(tmp_path):  # < 1 s
    from eads.tasks.sweep import _initial_settings

    spec, _ = read_spec(_spec(tmp_path, GRID.format(epochs=2, retries=1)))
    assert spec.swept == ["train.lr"] and spec.seeds == (0, 1) and spec.retries == 1
    assert _initial_settings(spec) == [{"train.lr": 1e-3}, {"train.lr": 1e-2}]
    rnd = parse_spec(
        {
            "sweep": {"search": "random", "trials": 3},
            "grid": {"model": {"n_hidden": [4, 8]}},
            "space": {"train": {"lr": {"log_uniform": [1e-4, 1e-2]}}},
        }
    )
    draws = _initial_settings(rnd)
    assert len(draws) == 6 and draws == _initial_settings(rnd)  # seeded: a rerun draws the same
    assert all(1e-4 <= d["train.lr"] <= 1e-2 for d in draws)
    yml = _spec(tmp_path, "grid:\n  model.n_hidden: [4, 8]\n", "spec.yaml")
    assert read_spec(yml)[0].grid == {"model.n_hidden": [4, 8]}


def test_cli_bad_spec_exits_2_and_starts_nothing(tmp_path, monkeypatch, capsys):  # < 2 s
    from eads.cli import main

    spec = _spec(tmp_path, "[grid]\nmodel.n_hiden = [8]\n")
    monkeypatch.setattr(
        sys,
        "argv",
        ["eads", "sweep", str(spec), "--sweep-dir", str(tmp_path / "out"), "--executor", "local"],
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown setting") and err.count("\n") == 0
    assert not (tmp_path / "out").exists()


def test_unreachable_address_starts_nothing(tmp_path):  # ~5 s (imports Ray)
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray already running in this process")
    spec = _spec(tmp_path, GRID.format(epochs=1, retries=0))
    with pytest.raises(ConfigError, match="Cannot reach a Ray cluster at '127.0.0.1:1'"):
        run_sweep(spec, tmp_path / "out", executor="ray", address="127.0.0.1:1")
    assert not (tmp_path / "out").exists() and not ray.is_initialized()


# ----------------------------------------------------------------------------- local executor


def test_optuna_tpe_sweep_resumes_without_new_trials(tmp_path):  # ~20 s
    pytest.importorskip("optuna")
    text = (
        TINY.format(epochs=1)
        + """
[sweep]
search = "optuna"
trials = 3
batch = 2
metric = "val.mae"
[space]
train.lr = { log_uniform = [1e-3, 3e-2] }
model.n_hidden = { choice = [4, 8] }
"""
    )
    spec = _spec(tmp_path, text)
    out = tmp_path / "out"
    summary = run_sweep(spec, out, executor="local", progress=False)
    assert summary["n_trials"] == 3 and summary["ok"] == 3
    assert summary["test"]["n"] == 18 and "mae" in summary["test"]["mean"]
    assert set(summary["setting"]) == {"train.lr", "model.n_hidden"}

    def must_not_run(cell, sweep_dir):
        raise AssertionError(f"trial {cell.id} started again")

    again = run_sweep(spec, out, executor="local", progress=False, trial_fn=must_not_run)
    assert again["ok"] == 3 and again["setting"] == summary["setting"]  # TPE replayed


# ----------------------------------------------------------------------------- on Ray (slow)


@pytest.mark.slow
def test_ray_sweep_equals_one_by_one_and_rerun_starts_nothing(tmp_path, ray_local):  # ~90 s
    spec = _spec(tmp_path, GRID.format(epochs=2, retries=1))
    on_ray = run_sweep(spec, tmp_path / "ray", executor="ray", progress=False)
    serial = run_sweep(spec, tmp_path / "serial", executor="local", progress=False)
    assert on_ray["n_trials"] == 4 and on_ray["ok"] == 4
    assert _val(tmp_path / "ray") == _val(tmp_path / "serial")  # exact, trial by trial
    assert on_ray["test"]["mean"] == serial["test"]["mean"]
    out = tmp_path / "ray"
    for name in (
        "results.csv",
        "results.json",
        "metric.png",
        "best.json",
        "sweep.json",
        "spec.toml",
    ):
        assert (out / name).is_file(), name
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["revision"] and len(meta["trials"]) == 4
    assert len((out / "results.csv").read_text().strip().splitlines()) == 5

    marker = tmp_path / "started"

    def must_not_run(cell, sweep_dir):
        marker.touch()
        return {}

    again = run_sweep(spec, out, executor="ray", progress=False, trial_fn=must_not_run)
    assert not marker.exists() and again["ok"] == 4


@pytest.mark.slow
def test_killed_worker_is_retried_and_the_table_is_whole(tmp_path, ray_local):  # ~120 s
    """One trial's worker is killed mid-training (after its first checkpoint): it is retried
    and resumes from the checkpoint with the uninterrupted run's metrics; another trial's
    worker dies on every attempt: it is recorded failed after 1 + retries attempts."""
    from eads.tasks.sweep import run_trial

    spec = _spec(tmp_path, GRID.format(epochs=3, retries=1))
    serial = tmp_path / "serial"
    run_sweep(spec, serial, executor="local", progress=False)
    trials = sorted(_val(serial))
    victim, doomed = trials[0], trials[1]
    marks = tmp_path / "marks"
    marks.mkdir()

    def dying(cell, sweep_dir):
        import threading
        import time
        import uuid

        if cell.id == doomed:
            (marks / f"doomed-{uuid.uuid4().hex}").touch()
            os._exit(1)
        if cell.id == victim and not (marks / "killed").exists():
            ckpt = Path(sweep_dir) / "trials" / cell.id / "checkpoint.safetensors"

            def kill_after_first_epoch():
                while not ckpt.exists():
                    time.sleep(0.005)
                (marks / "killed").touch()
                os._exit(1)

            threading.Thread(target=kill_after_first_epoch, daemon=True).start()
        return run_trial(cell, sweep_dir)

    out = tmp_path / "ray"
    summary = run_sweep(spec, out, executor="ray", progress=False, trial_fn=dying)
    rows = {r["trial"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert (marks / "killed").exists()
    assert len(rows) == 4 and summary["ok"] == 3 and summary["failed"] == 1
    assert rows[victim]["status"] == "ok"
    assert rows[victim]["val.relative_mse"] == _val(serial)[victim]  # resumed exactly
    assert rows[doomed]["status"] == "failed" and rows[doomed]["error"]
    assert len(list(marks.glob("doomed-*"))) == 2  # 1 attempt + 1 retry
