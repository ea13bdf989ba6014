"""Data-parallel EC-Train (torch.distributed, gloo): same parameters as one process.

Durations on 2 shared CPU cores (load ~5): shard bounds and bad input < 1 s; the 2-process
float64 oracle ~15 s (mostly process start-up). The run-directory level (``fit_run(nproc=2)``,
``eads fit --nproc``) is tested in tests/tasks/test_fit_nproc.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import rel_err

from eads._errors import ConfigError
from eads.circuit.eads import EADS
from eads.config import TrainConfig
from eads.learn.distributed import ShardedTrainer, launch, shard_bounds
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


def test_bad_nproc_fails_before_spawning(tmp_path):  # < 1 s
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ConfigError, match="nproc"):
            launch(_rank_fit, bad, str(tmp_path))
