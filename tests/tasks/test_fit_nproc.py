"""``fit_run(..., nproc=N)`` / ``eads fit --nproc N``: a run directory trained data-parallel.

Durations on 2 shared CPU cores (load ~5): bad input < 1 s (nothing is spawned); the run
directory matching one process, then an interrupted run resumed, ~60 s (slow); ``torchrun``
launching ``eads fit`` as two ranks ~30 s (slow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import rel_err

from eads._errors import ConfigError
from eads.config import RunConfig
from eads.tasks.fit import fit_run, load_trained


def _csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((90, 3))
    y = np.stack([np.sin(x[:, 0]) + x[:, 1] * x[:, 2], np.cos(x[:, 1])], axis=1)
    lines = ["a,b,c,u,v"] + [",".join(f"{v:.9g}" for v in row) for row in np.hstack([x, y])]
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(data: Path, **train) -> RunConfig:
    return RunConfig().replace(
        model={"n_hidden": 6, "n_steps": 4},
        train={"epochs": 4, "batch_size": 16, "patience": 0, **train},
        data={"path": str(data), "outputs": ["u", "v"]},
    )


def test_bad_input_fails_before_spawning(tmp_path, monkeypatch):  # < 1 s
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    cfg = RunConfig().replace(data={"path": str(tmp_path / "d.csv")})
    for bad in (0, -2, True, 2.0):
        with pytest.raises(ConfigError, match="nproc"):
            fit_run(cfg, tmp_path / "bad", nproc=bad)
    with pytest.raises(ConfigError, match="--online trains on one process"):
        fit_run(cfg, tmp_path / "online", nproc=2, online=True)
    with pytest.raises(ConfigError, match="does not exist"):
        fit_run(cfg, tmp_path / "nodata", nproc=2)
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError, match="already holds a trained model"):
        fit_run(cfg, tmp_path, nproc=2)
    # a resume into a run directory that never came to be starts afresh: the data check fires
    with pytest.raises(ConfigError, match="does not exist"):
        fit_run(cfg, tmp_path / "nothing", nproc=2, resume=True)
    for name in ("online", "nodata", "nothing"):
        assert not (tmp_path / name).exists()


@pytest.mark.slow
def test_fit_run_nproc2_matches_one_process_and_resumes(tmp_path):  # ~60 s: 3 launches
    data = _csv(tmp_path / "d.csv")
    cfg = _config(data)
    m1 = fit_run(cfg, tmp_path / "one", progress=False)
    m2 = fit_run(cfg, tmp_path / "two", nproc=2, progress=False)
    assert "world_size" not in m1 and m2["world_size"] == 2
    assert m2["val"]["mse_standardized"] == pytest.approx(m1["val"]["mse_standardized"], rel=1e-4)
    one, two = load_trained(tmp_path / "one")[0], load_trained(tmp_path / "two")[0]
    for name, p in one.state_dict().items():
        assert rel_err(two.state_dict()[name], p) < 1e-4  # float32, summed in another order
    meta = json.loads((tmp_path / "two" / "meta.json").read_text())
    assert meta["data_parallel"] == {"world_size": 2, "backend": "gloo"}
    assert "data_parallel" not in json.loads((tmp_path / "one" / "meta.json").read_text())

    # an interrupted run: stop after 2 epochs, then resume to 4 as on one process
    fit_run(_config(data, epochs=2), tmp_path / "cut", nproc=2, progress=False)
    saved = json.loads((tmp_path / "cut" / "config.json").read_text())
    saved["train"]["epochs"] = 4
    (tmp_path / "cut" / "config.json").write_text(json.dumps(saved))
    (tmp_path / "cut" / "model.safetensors").unlink()
    (tmp_path / "cut" / "metrics.json").unlink()
    fit_run(cfg, tmp_path / "cut", nproc=2, resume=True, progress=False)
    cut = load_trained(tmp_path / "cut")[0]
    for name, p in two.state_dict().items():
        assert torch.equal(cut.state_dict()[name], p), name


@pytest.mark.slow
def test_torchrun_launches_eads_fit_as_two_ranks(tmp_path):  # ~30 s
    """The documented multi-machine path on one machine: ``torchrun ... -m eads.cli fit``."""
    data = _csv(tmp_path / "d.csv")
    run = tmp_path / "tr"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "eads.cli", "fit", str(data), "--outputs", "u,v", "--hidden", "6"]
    cmd += ["--steps", "4", "--epochs", "2", "--batch-size", "16", "--quiet", "--run-dir", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # gloo, CPU
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run directory:") == 1  # rank 0 alone reports
    meta = json.loads((run / "meta.json").read_text())
    assert meta["data_parallel"] == {"world_size": 2, "backend": "gloo"}
    assert json.loads((run / "metrics.json").read_text())["world_size"] == 2
