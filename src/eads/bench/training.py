"""One model of a benchmark cell trained to its budget, resumable after a kill, then timed.

A suite declares how to build a model (a :class:`BuiltModel`: the module that predicts, the
trainer strategy, what to record about it); the core trains it:

* :func:`train_one` -- one training run at one learning rate: the budget's
  :meth:`~eads.bench.budget.Budget.train_config` handed to the training loop, with a checkpoint
  written after every epoch and resumed from when it exists, so that a cell killed mid-training
  continues where it stopped (bit for bit on the same machine for the PDE suite's models except
  the GNO, whose resumed parameters differ from an unbroken run's by float rounding, ~1e-8);
* :func:`train_lr_grid` -- one run per learning rate of ``budget.lr_grid``, each on a freshly
  built model, keeping the run of the lowest best validation loss (the first on a tie);
* :func:`train_and_test` -- a cell's training (the lr grid, or a validation search the suite
  passes in, :func:`from_selection`) and its timed run on the test inputs, with the record;
* :func:`partial_dir` / :func:`discard_partial` -- an unfinished cell's checkpoints,
  ``<run_dir>/partial/<cell id>/lr<lr:g>.ckpt``, removed when its result is ready;
* :func:`epoch_log` -- one line per finished epoch beside each checkpoint (``lr<lr:g>.log``),
  so that a cell training for hours shows where it stands (``tail -f``);
* :func:`time_inference` -- latency at batch size one and per sample in one batch;
* :func:`save_predictions` -- a few test predictions for the plots, ``predictions/<id>.npz``.

The loop itself is passed in (``fit``: :func:`eads.fit`), because this floor sits below
``learn/`` (docs/ARCHITECTURE.md). When not to use: a model the loop cannot train -- one whose
validation loss is not the loop's plain MSE (the spatio-temporal suite's masked loss) or one
that does not train at all (a reference predictor).
"""

from __future__ import annotations

import logging
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from eads._errors import DataError
from eads._io import atomic_write_with
from eads.bench.adapters import FlatFunction
from eads.bench.budget import STOP_LABELS, Budget, stop_reason_of
from eads.bench.cells import Cell

log = logging.getLogger(__name__)

#: ``(x_fit, y_fit, x_val, y_val)``: the standardised fitting and validation splits
Splits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class FitFunction(Protocol):
    """The training loop's signature (:func:`eads.fit`); returns its ``History``."""

    def __call__(
        self,
        model: nn.Module,
        trainer: Any,
        train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor],
        config: Any,
        *,
        checkpoint: Path | None,
        resume: bool,
        progress: bool,
        on_epoch: Callable[[int, Any], None] | None,
    ) -> Any: ...


@dataclass(frozen=True)
class BuiltModel:
    """A model as a suite builds it for one training run."""

    module: nn.Module
    """What predicts, on the suite's layout. A :class:`FlatFunction`'s ``inner`` is what
    trains, on flattened inputs and outputs."""
    trainer: Any
    """The training strategy (``eads.ECTrain()``, ``eads.Backprop()``, ...); its ``name`` goes
    into the ``TrainConfig``."""
    info: dict[str, Any] = field(default_factory=dict)
    """What the cell records about the model (``model_info``)."""


@dataclass(frozen=True)
class Trained:
    """A trained candidate: the module, the loop's ``History``, and how the run ended."""

    module: nn.Module
    history: Any
    stopped_by: str
    """The stop reason in the tables' words (:data:`eads.bench.budget.STOP_LABELS`)."""
    info: dict[str, Any]
    lr: float

    def record(self) -> dict[str, Any]:
        """What a cell records about its training: wall time, epochs run and the best one, the
        stop reason (the tables' words and :data:`eads.bench.budget.STOP_REASONS`'), the lr,
        the best validation loss, the trainable parameters and the model's ``info``."""
        h = self.history
        return {
            "train_time_s": h.train_time_s,
            "epochs": h.epochs_run,
            "best_epoch": h.best_epoch,
            "stopped_by": self.stopped_by,
            "stop_reason": stop_reason_of(self.stopped_by),
            "lr": self.lr,
            "val_mse": h.best_val,
            "n_parameters": count_parameters(self.module),
            "model_info": self.info,
        }


def train_one(
    built: BuiltModel,
    splits: Splits,
    budget: Budget,
    lr: float,
    seed: int,
    fit: FitFunction,
    checkpoint: Path | None = None,
) -> Trained:
    """Train ``built`` once at ``lr``: ``fit(model, trainer, (x_fit, y_fit), (x_val, y_val),
    budget.train_config(trainer.name, lr=lr, seed=seed))``.

    ``checkpoint``: written after every epoch, and resumed from when the file exists (a cell
    killed mid-training continues where it stopped); each epoch also appends its line to
    ``checkpoint.with_suffix(".log")`` (:func:`epoch_log`). A :class:`FlatFunction` trains its
    ``inner`` on the splits flattened to ``(samples, n)``.
    """
    trained = built.module
    x_tr, y_tr, x_va, y_va = splits
    if isinstance(built.module, FlatFunction):
        trained = built.module.inner
        x_tr, y_tr, x_va, y_va = (t.reshape(len(t), -1) for t in splits)  # (samples, n)
    cfg = budget.train_config(built.trainer.name, lr=lr, seed=seed)
    resume = checkpoint is not None and checkpoint.is_file()
    if resume:
        log.info("resuming from %s", checkpoint)
    history = fit(
        trained,
        built.trainer,
        (x_tr, y_tr),
        (x_va, y_va),
        cfg,
        progress=False,
        checkpoint=checkpoint,
        resume=resume,
        on_epoch=epoch_log(checkpoint, cfg.epochs),
    )
    return Trained(built.module, history, STOP_LABELS[history.stop_reason], built.info, lr)


def train_lr_grid(
    build: Callable[[], BuiltModel],
    splits: Splits,
    budget: Budget,
    seed: int,
    fit: FitFunction,
    partial: Path | None = None,
    name: str = "",
) -> tuple[Trained, list[dict]]:
    """Train a fresh ``build()`` at every learning rate of ``budget.lr_grid``; returns the run
    with the lowest best validation loss (the first on a tie) and one row per candidate
    (``lr``, ``val_mse``, ``epochs``, ``train_time_s``, ``stopped_by``).

    ``partial``: the folder of the per-epoch checkpoints (:func:`partial_dir`), one file
    ``lr<lr:g>.ckpt`` per learning rate; None trains without checkpoints.
    """
    best: Trained | None = None
    candidates = []
    for lr in budget.lr_grid:
        ckpt = None if partial is None else partial / f"lr{lr:g}.ckpt"
        run = train_one(build(), splits, budget, lr, seed, fit, ckpt)
        h = run.history
        candidates.append(
            {
                "lr": lr,
                "val_mse": h.best_val,
                "epochs": h.epochs_run,
                "train_time_s": h.train_time_s,
                "stopped_by": run.stopped_by,
            }
        )
        log.info("%s lr=%g: val %.4g after %d epochs", name, lr, h.best_val, h.epochs_run)
        if best is None or h.best_val < best.history.best_val:
            best = run
    assert best is not None  # Budget refuses an empty lr_grid
    return best, candidates


def train_and_test(
    cell: Cell,
    run_dir: Path,
    build: Callable[[], BuiltModel],
    splits: Splits,
    x_test: torch.Tensor,
    budget: Budget,
    fit: FitFunction,
    select: Callable[[Path], tuple[Trained, list[dict], dict]] | None = None,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Train one cell's model, then run it on ``x_test`` (:func:`time_inference`); returns what
    the cell records about its training and timing, and the test outputs (still standardised).

    ``select(partial)``: a validation search that trains its candidates itself, with their
    per-epoch checkpoints in the folder ``partial``, and returns the chosen run, one row per
    trial and the search's summary (:func:`from_selection`); None: :func:`train_lr_grid` on
    ``build``. Either way the checkpoints go in :func:`partial_dir` (the suite removes them,
    :func:`discard_partial`, once the cell's result is complete).
    ``selection_time_s`` is the wall time of every candidate together.
    """
    t0 = time.perf_counter()
    selection = None
    partial = partial_dir(run_dir, cell)
    if select is not None:
        best, candidates, selection = select(partial)
    else:
        best, candidates = train_lr_grid(build, splits, budget, cell.seed, fit, partial, cell.id)
    selection_time = time.perf_counter() - t0
    timed = time_inference(best.module, x_test)
    record = {
        **best.record(),
        "selection_time_s": selection_time,
        **timed.record(),
        "candidates": candidates,
        "selection": selection,
    }
    return record, timed.output


def from_selection(
    selection: Any, wrap: Callable[[nn.Module], nn.Module], info: dict[str, Any]
) -> tuple[Trained, list[dict], dict]:
    """A validation search's chosen trial as a trained candidate, every trial's row (its stop
    reason also in the tables' words, ``stopped_by``) and the search's summary.

    ``selection``: an :class:`eads.tasks.select.Selection` whose ``payload`` is the chosen
    trial's ``(model, history)`` and whose ``params`` hold the chosen ``lr``; ``wrap`` turns
    that model into what predicts (e.g. a :class:`FlatFunction`).
    """
    model, history = selection.payload
    trials = [
        {**t, "stopped_by": STOP_LABELS.get(t["stop_reason"], t["stop_reason"])}
        for t in selection.table()
    ]
    stopped_by = trials[selection.best_trial]["stopped_by"]
    best = Trained(wrap(model), history, stopped_by, info, selection.params["lr"])
    return best, trials, selection.summary(trials=False)


def epoch_log(checkpoint: Path | None, epoch_cap: int) -> Callable[[int, Any], None] | None:
    """An ``on_epoch`` for :func:`eads.fit` that appends one line per finished epoch beside
    ``checkpoint``, to ``checkpoint.with_suffix(".log")`` (None without a checkpoint): the epoch
    (counted from 1, of the cap), its training and validation loss, the best validation loss
    so far and its epoch, the learning rate and the seconds trained (:func:`epoch_lines`).

    The line follows the epoch's checkpoint, so after a kill and resume the file goes on from
    the checkpoint's epoch (an epoch trained but not checkpointed appears twice). Written for
    people watching a long cell (``tail -f``); nothing reads it back.
    """
    write_line = epoch_lines(checkpoint, epoch_cap)
    if write_line is None:
        return None

    def write(epoch: int, history: Any) -> None:
        val = history.val_loss[-1] if history.val_loss else history.train_loss[-1]
        write_line(
            epoch + 1,
            history.train_loss[-1],
            val,
            history.best_val,
            history.best_epoch + 1,
            history.lr[-1],
            history.train_time_s,
        )

    return write


def epoch_lines(checkpoint: Path | None, epoch_cap: int) -> Callable[..., None] | None:
    """The line writer behind :func:`epoch_log`, for training loops of their own (the
    forecasters'): ``write(epoch, train, val, best, best_epoch, lr, seconds)`` appends
    ``epoch E/CAP  train T  val V  best B at epoch BE  lr L  S s`` to
    ``checkpoint.with_suffix(".log")``, epochs counted from 1; None without a checkpoint."""
    if checkpoint is None:
        return None
    path = Path(checkpoint).with_suffix(".log")

    def write(epoch, train, val, best, best_epoch, lr, seconds) -> None:
        line = (
            f"epoch {epoch:g}/{epoch_cap}  train {train:.6g}  val {val:.6g}  "
            f"best {best:.6g} at epoch {best_epoch:g}  lr {lr:.3g}  {seconds:.1f} s\n"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(line)

    return write


def partial_dir(run_dir: Path, cell: Cell) -> Path:
    """``<run_dir>/partial/<cell id>``: the checkpoints of a cell not yet finished."""
    return Path(run_dir) / "partial" / cell.id


def discard_partial(run_dir: Path, cell: Cell) -> None:
    """Remove a cell's checkpoints once its result is ready (the result replaces them)."""
    shutil.rmtree(partial_dir(run_dir, cell), ignore_errors=True)


@dataclass(frozen=True)
class Inference:
    """A module's outputs on a test set and how long they took."""

    output: torch.Tensor
    """The whole test set's outputs, computed in one batch."""
    batch_s_per_sample: float
    """Seconds of that one batch, per sample."""
    latency_s_per_sample: float
    """Median seconds per sample at batch size one."""

    def record(self) -> dict[str, float]:
        """The timings as a cell records them."""
        return {
            "latency_s_per_sample": self.latency_s_per_sample,
            "batch_time_s_per_sample": self.batch_s_per_sample,
        }


def time_inference(module: nn.Module, x: torch.Tensor, n_single: int = 20) -> Inference:
    """Run ``module`` on ``x`` under ``no_grad``: one warm-up call on ``x[:1]`` (lazy
    initialisation, caches), the whole of ``x`` in one timed batch, then the median of
    ``n_single`` timed calls at batch size one on the first samples. Wall-clock numbers: never
    a test's pass criterion."""
    if len(x) == 0:
        raise DataError(
            f"time_inference needs at least one sample, got x of shape {tuple(x.shape)}."
        )
    with torch.no_grad():
        module(x[:1])
        t0 = time.perf_counter()
        out = module(x)
        batch = (time.perf_counter() - t0) / len(x)
        times = []
        for i in range(min(n_single, len(x))):
            t0 = time.perf_counter()
            module(x[i : i + 1])
            times.append(time.perf_counter() - t0)
    return Inference(out, batch, statistics.median(times))


def count_parameters(module: nn.Module) -> int:
    """The number of trainable parameters (``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def save_predictions(run_dir: Path, cell: Cell, **arrays: np.ndarray) -> str:
    """Write ``arrays`` to ``<run_dir>/predictions/<cell id>.npz`` atomically; returns that
    path relative to ``run_dir`` (what the cell records and the plots read)."""
    path = Path(run_dir) / "predictions" / f"{cell.id}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda p: np.savez(p, **arrays))
    return str(path.relative_to(run_dir))


__all__ = [
    "BuiltModel",
    "FitFunction",
    "Inference",
    "Splits",
    "Trained",
    "count_parameters",
    "discard_partial",
    "epoch_log",
    "from_selection",
    "partial_dir",
    "save_predictions",
    "time_inference",
    "train_and_test",
    "train_lr_grid",
    "train_one",
]
