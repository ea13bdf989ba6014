"""``eads fit --resume`` finishes a run killed at any moment, and refuses other settings or data.

The subprocess tests SIGKILL a real ``eads fit`` at a chosen point (the ``EADS_TEST_KILL_AT``
hook of :mod:`eads._faults`), run the same command with ``--resume``, and compare the final
``model.safetensors`` byte for byte with that of an uninterrupted run (oracle: the uninterrupted
run, same settings, one thread everywhere). The library tests check the rules of
``fit_run(..., resume=True)`` in-process.

Durations on 2 shared CPU cores: each subprocess ~3 s (start-up and imports dominate), so each
kill test ~6 s and the uninterrupted reference ~3 s, computed once per session; the library
tests ~1 s each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from eads._errors import CheckpointError, ConfigError, DataError
from eads.config import RunConfig
from eads.runs import RunDir, load_checkpoint
from eads.tasks.fit import fit_run

# 300 rows: 210 train (7 minibatches of 32 per epoch), 45 val, 45 test. Epochs and patience are
# pinned so that a change of the defaults does not slow the test.
ARGS = ["--outputs", "o1,o2,o3", "--hidden", "8", "--epochs", "4", "--patience", "0"]
ARGS += ["--batch-size", "32", "--quiet"]
MINIBATCHES_PER_EPOCH = 7
FROM_SCRATCH = "starting the run from scratch."


def _write_csv(path: Path, n: int = 300) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8))
    y = np.tanh(x @ rng.normal(size=(8, 3)) / 3)
    header = ",".join([f"x{i}" for i in range(8)] + ["o1", "o2", "o3"])
    rows = [",".join(f"{v:.6f}" for v in row) for row in np.hstack([x, y])]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _eads_fit(data: Path, run_dir: Path, *extra: str, kill_at: str | None = None):
    env = {k: v for k, v in os.environ.items() if k != "EADS_TEST_KILL_AT"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    if kill_at is not None:
        env["EADS_TEST_KILL_AT"] = kill_at
    cmd = [sys.executable, "-m", "eads.cli", "fit", str(data), *ARGS, "--run-dir", str(run_dir)]
    return subprocess.run(
        [*cmd, *extra], capture_output=True, text=True, env=env, timeout=300, cwd=data.parent
    )


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """``(data.csv, run directory)`` of the uninterrupted run, made once per pytest session
    (pytest-xdist workers share it through a lock in the session's temporary folder)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this session's folder, shared by its workers
    folder = root / "resume-reference"
    with FileLock(str(root / "resume-reference.lock")):
        run = folder / "ref"
        if not (run / "metrics.json").is_file():
            folder.mkdir(exist_ok=True)
            data = _write_csv(folder / "data.csv")
            proc = _eads_fit(data, run)
            assert proc.returncode == 0, proc.stderr
    return folder / "data.csv", run


def _epochs_in_checkpoint(run: Path) -> int:
    return load_checkpoint(run / "checkpoint.safetensors")[1]["history"]["epochs_run"]


def _temporaries(run: Path) -> list[str]:
    return sorted(p.name for p in run.glob(".tmp-*")) if run.is_dir() else []


def _no_run_dir(run: Path):
    assert not run.exists()


def _after_config_tmp(run: Path):
    assert [n.startswith(".tmp-config.json-") for n in _temporaries(run)] == [True]
    assert not (run / "config.json").exists()


def _in_first_epoch(run: Path):
    assert (run / "config.json").is_file() and (run / "meta.json").is_file()
    assert not (run / "checkpoint.safetensors").exists()


def _mid_run(run: Path):
    assert _epochs_in_checkpoint(run) == 2 and not _temporaries(run)


def _checkpoint_being_written(run: Path):
    assert _epochs_in_checkpoint(run) == 1  # epoch 2's checkpoint was not renamed over it
    assert [n.startswith(".tmp-checkpoint.safetensors-") for n in _temporaries(run)] == [True]


def _model_being_written(run: Path):
    assert _epochs_in_checkpoint(run) == 4 and not (run / "model.safetensors").exists()
    assert [n.startswith(".tmp-model.safetensors-") for n in _temporaries(run)] == [True]


# kill point -> (check of the run directory the kill left, the one line the resume prints)
KILLS = {
    "before-run-dir": (_no_run_dir, "{run} does not exist yet"),
    "before-rename:config.json": (_after_config_tmp, "{run} holds no config.json yet"),
    "minibatch:1": (_in_first_epoch, "{run} holds no checkpoint yet"),
    f"minibatch:{2 * MINIBATCHES_PER_EPOCH + 3}": (_mid_run, None),  # in epoch 3 (0-based 2)
    "before-rename:checkpoint.safetensors:2": (_checkpoint_being_written, None),
    "before-rename:model.safetensors": (_model_being_written, None),
}


@pytest.mark.parametrize("kill_at", list(KILLS))
def test_killed_at_any_moment_resumes_to_the_uninterrupted_model(reference, tmp_path, kill_at):
    data, ref = reference
    run = tmp_path / "run"
    killed = _eads_fit(data, run, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    check_left, note = KILLS[kill_at]
    check_left(run)

    resumed = _eads_fit(data, run, "--resume")  # the same command, with --resume
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = [f"{note.format(run=run)}; {FROM_SCRATCH}"] if note else []
    assert resumed.stderr.strip().splitlines() == expected
    assert (run / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 4
    assert not _temporaries(run)


def test_a_complete_run_is_not_trained_again(reference, tmp_path):
    data, ref = reference
    run = tmp_path / "done"
    shutil.copytree(ref, run)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.iterdir()}
    proc = _eads_fit(data, run, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"{run} is already complete; reporting its metrics without training."
    ]
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.iterdir()} == before
    test = json.loads((ref / "metrics.json").read_text())["test"]
    assert f"MAE {test['mae']:.4g}" in proc.stdout  # the metrics it reports are its own


# -- the library: fit_run(..., resume=True) -------------------------------------------------------
def _config(data: Path, **train) -> RunConfig:
    return RunConfig().replace(
        model={"n_hidden": 4, "n_steps": 4},
        train={"epochs": 3, "batch_size": 32, "patience": 0, **train},
        data={"path": str(data), "outputs": ["o1", "o2", "o3"]},
    )


@pytest.fixture
def small_csv(tmp_path) -> Path:
    return _write_csv(tmp_path / "small.csv", n=80)


def _model_bytes(run: Path) -> bytes:
    return (run / "model.safetensors").read_bytes()


def test_library_resume_starts_from_scratch_and_says_so(small_csv, tmp_path, caplog):
    cfg = _config(small_csv)
    fit_run(cfg, tmp_path / "fresh", progress=False)
    with caplog.at_level(logging.WARNING, logger="eads.tasks.fit"):
        fit_run(cfg, tmp_path / "new", resume=True, progress=False)
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'new'} does not exist yet; {FROM_SCRATCH}"
    ]
    assert _model_bytes(tmp_path / "new") == _model_bytes(tmp_path / "fresh")
    # killed in the first epoch: config.json and meta.json, no checkpoint; a stale temporary
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "fresh", cut)
    for name in ("checkpoint.safetensors", "model.safetensors", "metrics.json"):
        (cut / name).unlink()
    (cut / ".tmp-checkpoint.safetensors-x1y2.safetensors").write_bytes(b"half a checkpoint")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="eads.tasks.fit"):
        fit_run(cfg, cut, resume=True, progress=False)
    assert [r.getMessage() for r in caplog.records] == [
        f"{cut} holds no checkpoint yet; {FROM_SCRATCH}"
    ]
    assert _model_bytes(cut) == _model_bytes(tmp_path / "fresh") and not _temporaries(cut)


def test_data_fingerprint_is_recorded_and_other_data_are_refused(small_csv, tmp_path):
    cfg = _config(small_csv)
    run = tmp_path / "run"
    fit_run(cfg, run, progress=False)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["data"] == {
        "path": str(small_csv),
        "bytes": len(small_csv.read_bytes()),
        "sha256": hashlib.sha256(small_csv.read_bytes()).hexdigest(),
    }
    (run / "model.safetensors").unlink()  # as if interrupted after the last checkpoint
    moved = tmp_path / "elsewhere" / "same.csv"  # the same bytes under another name: accepted
    moved.parent.mkdir()
    shutil.copy(small_csv, moved)
    fit_run(cfg.replace(data={"path": str(moved)}), run, resume=True, progress=False)
    assert (run / "model.safetensors").is_file()
    lines = small_csv.read_text().splitlines()
    changed = tmp_path / "changed.csv"
    changed.write_text("\n".join(lines[:-1] + [lines[1]]) + "\n")  # one row differs
    with pytest.raises(DataError, match=r"not the data file the run was created with") as info:
        fit_run(cfg.replace(data={"path": str(changed)}), run, resume=True, progress=False)
    assert str(small_csv) in str(info.value) and "sha256" in str(info.value)


def test_other_settings_are_refused_naming_each(small_csv, tmp_path):
    cfg = _config(small_csv)
    run = tmp_path / "run"
    fit_run(cfg, run, progress=False)
    other = cfg.replace(model={"n_hidden": 5}, train={"lr": 0.1})
    with pytest.raises(ConfigError) as info:
        fit_run(other, run, resume=True, progress=False)
    msg = str(info.value)
    assert "model.n_hidden 4 -> 5" in msg and "train.lr 0.003 -> 0.1" in msg
    assert len(msg.splitlines()) == 1 and msg.startswith("Cannot resume")
    # inputs left to their default (every other column) are the run's own once resolved
    assert (
        cfg.data.inputs == ()
        and len(json.loads((run / "config.json").read_text())["data"]["inputs"]) == 8
    )
    assert fit_run(cfg, run, resume=True, progress=False)["epochs_run"] == 3


def test_a_higher_epoch_cap_continues_the_run(small_csv, tmp_path, caplog):
    """The epoch cap may change on resume: 3 epochs then resumed to 5 ends where a run of 5
    does (constant learning rate: patience 0)."""
    five = tmp_path / "five"
    fit_run(_config(small_csv, epochs=5), five, progress=False)
    run = tmp_path / "run"
    fit_run(_config(small_csv), run, progress=False)
    with caplog.at_level(logging.WARNING, logger="eads.tasks.fit"):
        metrics = fit_run(_config(small_csv, epochs=5), run, resume=True, progress=False)
    assert [r.getMessage() for r in caplog.records] == [
        f"{run} resumes with new limits: train.epochs 3 -> 5."
    ]
    assert metrics["epochs_run"] == 5 and _model_bytes(run) == _model_bytes(five)
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 5


def test_a_checkpoint_without_config_is_refused(small_csv, tmp_path):
    run = tmp_path / "run"
    fit_run(_config(small_csv), run, progress=False)
    (run / "model.safetensors").unlink()
    (run / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="holds a checkpoint but no readable config.json"):
        fit_run(_config(small_csv), run, resume=True, progress=False)
    assert RunDir(run).checkpoint.is_file()  # kept, not overwritten by a fresh start
