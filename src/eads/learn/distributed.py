"""Data-parallel training with torch.distributed: several EADS chips, one minibatch, one update.

EC-Train's gradient of the batch-mean loss is a mean over samples. With the minibatch of ``B``
samples split into contiguous shards of ``b_r`` samples (``sum_r b_r = B``), rank ``r``'s
trainer returns the mean gradient ``g_r`` over its shard, and

    g = (1/B) sum_samples grad_i = sum_r (b_r / B) g_r

which is one all-reduce (sum) of ``(b_r / B) g_r``. The loss is combined the same way. The
hardware reading: each chip anneals its shard, measures its error currents and computes its
conductance update; the updates are averaged (weighted by shard size) and every chip programs
the same averaged update, so all chips hold identical conductances after every step.

Every rank runs the unchanged training loop (:func:`eads.learn.loop.fit`) on the whole data with
the same per-epoch order ``randperm(n, seed + epoch)``, so every rank draws the same minibatch
and takes its own shard of it (:class:`ShardedTrainer`); the optimiser state stays identical
because the gradients are. Checkpoints are written by rank 0 only, atomically; on resume rank 0
reads its checkpoint and broadcasts it, so other machines need no shared file system.

Backends: ``gloo`` for CPU tensors, ``nccl`` for CUDA tensors (one GPU per rank). On one machine
:func:`launch` spawns ``nproc`` processes joined in one group; on several, start one process per
rank with ``torchrun`` (``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` in the environment,
:func:`launched_by_torchrun`) and join that group with :func:`init_process_group`. The run
directory level (``eads fit --nproc N``, a ``torchrun`` launch of ``eads fit``) is
:func:`eads.tasks.fit.fit_run` with ``nproc``: this module knows nothing of run directories.

When not to use it: small problems. Every step costs one all-reduce of ``H^2 + (N + M) H``
values plus the launch of the processes; below a few thousand samples per minibatch a single
process with all cores is faster. Validation is evaluated on every rank in full (it is cheap
next to training and keeps early stopping identical on every rank without communication).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil
import socket
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from eads._errors import CheckpointError, ConfigError, EADSError
from eads.learn.loop import History, fit
from eads.learn.trainers import AbstractTrainer

log = logging.getLogger(__name__)
BACKENDS = ("gloo", "nccl")


def shard_bounds(batch: int, rank: int, world: int) -> tuple[int, int]:
    """``[lo, hi)`` of rank ``rank``'s contiguous shard of a minibatch of ``batch`` samples.

    Shards differ in size by at most one sample; ranks beyond ``batch`` get an empty shard.
    """
    base, extra = divmod(batch, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def launched_by_torchrun() -> bool:
    """True inside a process started by ``torchrun`` (or any env:// launcher) with 2+ ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


class ShardedTrainer(AbstractTrainer):
    """Wrap a trainer: this rank computes its shard's gradients, then all ranks all-reduce.

    ``loss_and_gradients(model, x, y)`` takes the *whole* minibatch (identical on every rank)
    and returns the loss and gradients of the whole minibatch's mean loss, identical on every
    rank. One flat all-reduce per step; on ``nccl`` the buffer goes through this rank's GPU.
    """

    def __init__(self, inner: AbstractTrainer, group=None):
        if not isinstance(inner, AbstractTrainer):
            raise ConfigError(f"ShardedTrainer wraps a trainer such as ECTrain(), got {inner!r}.")
        self.inner = inner
        self.group = group
        self.name = inner.name

    def check_model(self, model: nn.Module) -> None:
        self.inner.check_model(model)

    def loss_and_gradients(self, model, x, y):
        rank, world = dist.get_rank(self.group), dist.get_world_size(self.group)
        lo, hi = shard_bounds(x.shape[0], rank, world)
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if hi > lo:
            loss, grads = self.inner.loss_and_gradients(model, x[lo:hi], y[lo:hi])
        else:  # more ranks than samples: this rank contributes nothing
            loss, grads = torch.zeros((), dtype=params[0][1].dtype), {}
        weight = (hi - lo) / x.shape[0]
        dtype, home = params[0][1].dtype, params[0][1].device
        flat = (
            torch.cat(  # (sum of parameter sizes + 1,): every gradient, then the loss
                [
                    grads[n].detach().reshape(-1).to(dtype)
                    if n in grads
                    else torch.zeros(p.numel(), dtype=dtype, device=home)
                    for n, p in params
                ]
                + [loss.detach().reshape(1).to(dtype=dtype, device=home)]
            )
            * weight
        )
        device = _comm_device(self.group)
        out = flat.to(device)
        dist.all_reduce(out, group=self.group)
        out = out.to(flat.device)
        reduced, i = {}, 0
        for n, p in params:
            reduced[n] = out[i : i + p.numel()].view(p.shape)
            i += p.numel()
        return out[-1], reduced

    def __repr__(self) -> str:
        return f"ShardedTrainer({self.inner!r})"


def _comm_device(group=None) -> torch.device:
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def check_replicas(model: nn.Module, group=None) -> float:
    """Largest absolute difference of any parameter between this rank and rank 0 (all ranks)."""
    device = _comm_device(group)
    worst = torch.zeros((), dtype=torch.float64, device=device)
    for p in model.parameters():
        ref = p.detach().clone().to(device)
        dist.broadcast(ref, src=0, group=group)
        worst = torch.maximum(worst, (ref - p.detach().to(device)).abs().max().to(torch.float64))
    dist.all_reduce(worst, op=dist.ReduceOp.MAX, group=group)
    return float(worst)


def fit_data_parallel(
    model: nn.Module,
    trainer: AbstractTrainer,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    config,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> History:
    """:func:`eads.learn.loop.fit` on every rank of the current process group, sharding each
    minibatch; rank 0 alone writes ``checkpoint``; ``resume`` continues from rank 0's file.

    Call it on every rank with the same model initialisation, data and config. Raises
    ``RuntimeError`` if the ranks' parameters differ at the end (they never should).
    """
    if not dist.is_initialized():
        raise ConfigError("fit_data_parallel needs an initialised torch.distributed group.")
    rank = dist.get_rank()
    private = None
    ckpt = checkpoint
    if checkpoint is not None and rank != 0:
        # the loop writes its checkpoint every epoch; other ranks write a private throwaway copy
        private = Path(tempfile.mkdtemp(prefix=f"eads-rank{rank}-"))
        ckpt = private / "checkpoint.safetensors"
    try:
        if resume:
            if checkpoint is None:
                raise CheckpointError("Cannot resume without a checkpoint path.")
            data = [Path(checkpoint).read_bytes() if rank == 0 else None]
            dist.broadcast_object_list(data, src=0)
            if rank != 0:
                Path(ckpt).write_bytes(data[0])
        history = fit(
            model,
            ShardedTrainer(trainer),
            train,
            val,
            config,
            checkpoint=ckpt,
            resume=resume,
            progress=progress and rank == 0,
        )
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
    gap = check_replicas(model)
    if gap != 0.0:
        raise RuntimeError(f"Data-parallel replicas diverged: max parameter difference {gap:.3g}.")
    return history


# ----------------------------------------------------------------------------- launching


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_backend() -> str:
    """``nccl`` when this process has a CUDA device to use, else ``gloo``."""
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def init_process_group(
    backend: str | None = None,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    timeout_s: float = 600.0,
) -> None:
    """Join the group described by the environment (``MASTER_ADDR``/``PORT``, ``RANK``...).

    With ``nccl`` each rank uses GPU ``LOCAL_RANK``.
    """
    backend = backend or "gloo"
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank or 0)))
    ranks = {} if rank is None else {"rank": rank, "world_size": world_size}
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **ranks)


def _entry(rank, world, port, backend, threads, err_dir, fn, args):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(threads)
    init_process_group(backend, rank=rank, world_size=world)
    try:
        fn(*args)
    except EADSError as exc:  # carried to the parent as the same one-sentence error
        Path(err_dir, f"rank{rank}").write_text(f"{type(exc).__name__}\n{exc}")
        raise
    except BaseException:
        Path(err_dir, f"rank{rank}").write_text(f"RuntimeError\n{traceback.format_exc()}")
        raise
    finally:
        dist.destroy_process_group()


def launch(
    fn: Callable[..., Any],
    nproc: int,
    *args,
    backend: str | None = None,
    threads: int | None = None,
) -> None:
    """Run ``fn(*args)`` in ``nproc`` spawned processes joined in one process group.

    ``fn`` must be picklable (module level). ``threads``: torch threads per process (default:
    the machine's cores shared out). A user error raised on any rank is raised here again.
    """
    import torch.multiprocessing as mp

    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"nproc must be a positive integer, got {nproc!r}.")
    backend = backend or "gloo"
    if backend == "nccl" and torch.cuda.device_count() < nproc:
        raise ConfigError(
            f"backend 'nccl' needs one GPU per process: nproc={nproc} but "
            f"{torch.cuda.device_count()} GPU(s) are visible; use backend 'gloo'."
        )
    threads = threads or max(1, (os.cpu_count() or 1) // nproc)
    err_dir = tempfile.mkdtemp(prefix="eads-launch-")
    try:
        mp.spawn(
            _entry,
            args=(nproc, _free_port(), backend, threads, err_dir, fn, args),
            nprocs=nproc,
            join=True,
        )
    except Exception as exc:
        errors = sorted(Path(err_dir).glob("rank*"))
        if errors:
            import eads._errors as errs

            name, _, message = errors[0].read_text().partition("\n")
            kind = getattr(errs, name, None)
            if isinstance(kind, type) and issubclass(kind, EADSError):
                raise kind(message) from None
            raise RuntimeError(f"A data-parallel rank failed:\n{message}") from None
        raise RuntimeError(f"A data-parallel rank died ({exc}).") from None
    finally:
        shutil.rmtree(err_dir, ignore_errors=True)
