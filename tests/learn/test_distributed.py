"""Data-parallel EC-Train (torch.distributed, gloo): same parameters as one process.

Durations on 2 shared CPU cores (load ~5): shard bounds and bad input < 1 s; the 2-process
float64 oracle ~15 s (mostly process start-up); the run-directory test with resume ~60 s (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import rel_err

from eads._errors import CheckpointError, ConfigError
from eads.circuit.eads import EADS
from eads.config import RunConfig, TrainConfig
from eads.learn.distributed import (
    ShardedTrainer,
    fit_run_distributed,
    launch,
    shard_bounds,
)
from eads.learn.loop import fit
from eads.learn.trainers import ECTrain
from eads.solve import RK4

N_IN, N_HID, N_OUT = 5, 7, 3
TRAIN = {"epochs": 3, "batch_size": 7, "lr": 1e-2, "optimizer": "adam", "patience": 0, "seed": 3}


def _model() -> EADS:
    return EADS(N_IN, N_HID, N_OUT, solver=RK4(n_steps=4), seed=11, dtype=torch.float64)


def _data():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, N_IN, generator=g, dtype=torch.float64)
    y = torch.tanh(x[:, :N_OUT] * 1.5 + 0.3 * x[:, 1:2])
    return x, y


def _rank_fit(out_dir: str) -> None:
    """Each rank: the same model, data and config; EC-Train sharded over the ranks."""
    import torch.distributed as dist

    from eads.learn.distributed import fit_data_parallel

    model = _model()
    x, y = _data()
    val = (x[:10], y[:10])
    hist = fit_data_parallel(model, ECTrain(), (x, y), val, TrainConfig(**TRAIN), progress=False)
    torch.save(
        {"state": model.state_dict(), "train_loss": hist.train_loss},
        Path(out_dir) / f"rank{dist.get_rank()}.pt",
    )


def test_shard_bounds_cover_the_batch_once():  # < 1 s
    for batch in (1, 2, 7, 10):
        for world in (1, 2, 3, 4):
            bounds = [shard_bounds(batch, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == batch
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_two_gloo_ranks_match_one_process(tmp_path):  # ~15 s: 2 spawned processes
    """float64: 3 epochs x 6 minibatches of 7 (last one 5: shards 3 + 2, unequal weights)."""
    launch(_rank_fit, 2, str(tmp_path), backend="gloo", threads=1)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    ref = _model()
    x, y = _data()
    hist = fit(ref, ECTrain(), (x, y), (x[:10], y[:10]), TrainConfig(**TRAIN), progress=False)
    for name, p in ref.state_dict().items():
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name])  # identical replicas
        assert rel_err(ranks[0]["state"][name], p) < 1e-10, name
        assert rel_err(ranks[0]["state"][name], _model().state_dict()[name]) > 1e-3  # it trained
    np.testing.assert_allclose(ranks[0]["train_loss"], hist.train_loss, rtol=1e-10)


def test_sharded_trainer_rejects_a_non_trainer():  # < 1 s
    with pytest.raises(ConfigError, match="wraps a trainer"):
        ShardedTrainer("ectrain")


def test_bad_nproc_and_existing_run_fail_before_spawning(tmp_path):  # < 1 s
    with pytest.raises(ConfigError, match="nproc"):
        launch(_rank_fit, 0, str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"x")
    cfg = RunConfig().replace(data={"path": str(tmp_path / "d.csv")})
    with pytest.raises(ConfigError, match="already holds a trained model"):
        fit_run_distributed(cfg, tmp_path, nproc=2)
    with pytest.raises(CheckpointError):
        fit_run_distributed(cfg, tmp_path / "nothing", nproc=2, resume=True)


def _csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((90, 3))
    y = np.stack([np.sin(x[:, 0]) + x[:, 1] * x[:, 2], np.cos(x[:, 1])], axis=1)
    lines = ["a,b,c,u,v"] + [",".join(f"{v:.9g}" for v in row) for row in np.hstack([x, y])]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_fit_run_nproc2_matches_one_process_and_resumes(tmp_path):  # ~60 s: 3 launches
    from eads.tasks.fit import fit_run, load_trained

    data = _csv(tmp_path / "d.csv")
    cfg = RunConfig().replace(
        model={"n_hidden": 6, "n_steps": 4},
        train={"epochs": 4, "batch_size": 16, "patience": 0},
        data={"path": str(data), "outputs": ["u", "v"]},
    )
    m1 = fit_run(cfg, tmp_path / "one", progress=False)
    m2 = fit_run_distributed(cfg, tmp_path / "two", nproc=2, progress=False)
    assert m2["world_size"] == 2
    assert m2["val"]["mse_standardized"] == pytest.approx(m1["val"]["mse_standardized"], rel=1e-4)
    one, two = load_trained(tmp_path / "one")[0], load_trained(tmp_path / "two")[0]
    for name, p in one.state_dict().items():
        assert rel_err(two.state_dict()[name], p) < 1e-4  # float32, summed in another order
    meta = json.loads((tmp_path / "two" / "meta.json").read_text())
    assert meta["data_parallel"] == {"world_size": 2, "backend": "gloo"}

    # an interrupted run: stop after 2 epochs, then resume to 4 as on one process
    fit_run_distributed(cfg.replace(train={"epochs": 2}), tmp_path / "cut", nproc=2, progress=False)
    saved = json.loads((tmp_path / "cut" / "config.json").read_text())
    saved["train"]["epochs"] = 4
    (tmp_path / "cut" / "config.json").write_text(json.dumps(saved))
    (tmp_path / "cut" / "model.safetensors").unlink()
    (tmp_path / "cut" / "metrics.json").unlink()
    fit_run_distributed(cfg, tmp_path / "cut", nproc=2, resume=True, progress=False)
    cut = load_trained(tmp_path / "cut")[0]
    for name, p in two.state_dict().items():
        assert torch.equal(cut.state_dict()[name], p), name
