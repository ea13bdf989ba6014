"""Forecasting models of a benchmark cell trained to validation patience on a masked loss.

A forecasting suite (``tasks/spatiotemporal.py``) frames each model as an
:class:`AbstractForecaster` -- its input framing, its optimiser, one training update -- and the
core trains and measures every model the same way:

* :class:`WindowProtocol` -- which windows of a data set train, validate and test, identical
  for every model of it (:func:`train_indices`, :func:`subset_indices`);
* :func:`train_forecaster` -- minibatch training to patience on the masked validation MAE in
  data units, the learning-rate schedule, the best state restored, a non-finite loss refused;
* :func:`train_forecaster_grid` -- one run per learning rate of ``budget.lr_grid``;
* :func:`validation_mae` -- the score every model stops on (and an untrained one's);
* :func:`evaluate_forecaster` -- the test metrics in both zero conventions, the latency
  (:func:`forecast_latency`) and a few predictions for the plots, as a cell records them;
* :func:`probe_updates` -- an epoch's cost from a few timed updates.

Layout (:mod:`eads.data.spatiotemporal`): windows ``x (B, history, N, F)`` z-scored, targets
``y (B, horizon, N)`` in data units with their mask ``y_mask``; ``splits`` is a
``ForecastSplits`` (``train``, ``val``, ``test`` windows, ``scaler``, ``history``,
``horizon``, ``target_feature``). The scheduler factory is passed in (``make_scheduler``:
:func:`eads.learn.loop.make_scheduler`), because this floor sits below ``learn/``
(docs/ARCHITECTURE.md).

Why not :func:`eads.fit` (:mod:`eads.bench.training`): its validation loss is the unmasked MSE
of standardised outputs; here every model stops on the same criterion, the masked validation
MAE in data units, and trains on its own loss (a masked MAE, EC-Train's clamped error, a
conditional likelihood). Each run can checkpoint after every epoch and continue after a kill
(``checkpoint=`` / ``partial=``), as the core loop's runs do. When not to use: a model whose
training needs the whole split at once (no minibatches).
"""

from __future__ import annotations

import abc
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eads._errors import ConfigError, DataError
from eads._io import atomic_write_with
from eads.bench.budget import Budget
from eads.bench.metrics import forecast_metrics_report, masked_mae
from eads.bench.training import count_parameters, epoch_lines

log = logging.getLogger(__name__)

#: ``make_scheduler(optimizer, train_config)``: torch's scheduler for the budget's schedule, or
#: None for a constant learning rate (:func:`eads.learn.loop.make_scheduler`)
SchedulerFactory = Callable[[torch.optim.Optimizer, Any], Any]


@dataclass(frozen=True)
class WindowProtocol:
    """How the cells of one data set use its windows: the same for every model of it."""

    train_stride: int = 1
    """Train on every k-th training window (windows 0, k, 2k, ...); 1: all of them."""
    max_val_windows: int = 1024
    """Validate on an evenly strided subset of at most this many windows (0: all)."""
    max_test_windows: int = 0
    """Test on an evenly strided subset of at most this many windows (0: all)."""
    val_every: int = 0
    """Also validate every this many updates inside an epoch, patience then counting
    validations (0: once per epoch, patience in epochs)."""
    mape_tolerance: float = 1e-4
    """MAPE (and the zeros-missing convention) treat ``|y|`` below this as zero (data units)."""

    def __post_init__(self):
        for name in ("train_stride", "max_val_windows", "max_test_windows", "val_every"):
            value = getattr(self, name)
            low = 1 if name == "train_stride" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name}={value!r} must be an integer >= {low}.")
        tol = self.mape_tolerance
        if not (isinstance(tol, int | float) and math.isfinite(tol) and tol >= 0):
            raise ConfigError(f"mape_tolerance={tol!r} must be a finite number >= 0.")


def subset_indices(n: int, cap: int) -> np.ndarray:
    """Indices of an evenly strided subset of at most ``cap`` of ``n`` windows (0: all)."""
    if cap <= 0 or n <= cap:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, cap).round().astype(int))


def train_indices(n: int, stride: int) -> np.ndarray:
    """The training windows a stride keeps: ``0, k, 2k, ...`` below ``n``."""
    return np.arange(0, n, stride)


class AbstractForecaster(abc.ABC):
    """A model framed for forecasting: inputs in, ``(B, horizon, N)`` out, and one update.

    Holds the ``model`` (an ``nn.Module``), its optimiser ``opt`` (set by the subclass) and
    ``lr``. :meth:`forward_z` maps z-scored windows to the target's z-units (override it to
    reframe the input); :meth:`predict` gives data units; :meth:`step` is one training update.
    """

    trainable = True

    def __init__(self, model: torch.nn.Module, splits, lr: float):
        self.model, self.splits, self.lr = model, splits, float(lr)
        self.feature = splits.target_feature
        self.horizon, self.n_nodes = splits.horizon, splits.train.y.shape[2]
        self.opt: torch.optim.Optimizer | None = None

    def forward_z(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, history, N, F)`` z-scored -> ``(B, horizon, N)`` in target z-units."""
        return self.model(x)

    @torch.no_grad()
    def predict(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        """``x (B, history, N, F)`` -> ``(B, horizon, N)`` in data units, in eval mode."""
        self.model.eval()
        out = []
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))
            out.append(self.forward_z(xb).float().numpy())
        z = np.concatenate(out)  # (B, horizon, N)
        return self.splits.scaler.target_inverse(z, self.feature)

    def targets_z(self, y: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets in z-units (0 where missing) and their mask, as float32 / bool tensors."""
        z = self.splits.scaler.target_transform(y, self.feature)
        z = np.where(mask, z, 0.0).astype(np.float32)
        return torch.from_numpy(z), torch.from_numpy(np.ascontiguousarray(mask))

    @abc.abstractmethod
    def step(self, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> float:
        """One update on ``x (B, history, N, F)``, z-targets ``y`` and mask ``m (B, horizon,
        N)``; returns the batch's training loss."""


def validation_mae(fc, val, protocol: WindowProtocol) -> float:
    """The masked MAE (data units) on the protocol's validation subset: what every model stops
    on, and an untrained model's point on the learning-curve plots."""
    vi = subset_indices(len(val), protocol.max_val_windows)
    return masked_mae(fc.predict(val.x[vi]), val.y[vi], val.y_mask[vi])


@dataclass
class _Progress:
    """Where a :func:`train_forecaster` run stands after an epoch: what its checkpoint holds
    besides the tensors."""

    epoch: int = 0
    epochs_done: float = 0.0
    steps: int = 0
    best_val: float = math.inf
    best_update: int = 0
    best_epoch: float = 0.0
    since_best: int = 0
    stop: str = ""
    elapsed_s: float = 0.0
    val_curve: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    lrs: list = field(default_factory=list)


def _identity(fc, budget: Budget, protocol: WindowProtocol, seed: int, n: int, key) -> dict:
    """What a checkpoint must have been written by to be resumed: the lr, seed, the budget's
    training settings, the window protocol, the training windows, the parameters' shapes and
    the caller's ``key`` (e.g. a selection trial's hyperparameters)."""
    settings = {k: v for k, v in budget.to_params().items() if k not in ("max_time_s", "lr_grid")}
    shapes = {k: list(v.shape) for k, v in fc.model.state_dict().items() if torch.is_tensor(v)}
    return {
        "lr": float(fc.lr),
        "seed": int(seed),
        "budget": settings,
        "protocol": {k: v for k, v in asdict(protocol).items() if k != "max_test_windows"},
        "n_train_windows": int(n),
        "shapes": shapes,
        "key": dict(key or {}),
    }


def _save_progress(path: Path, fc, scheduler, best_state, progress: _Progress, identity) -> None:
    """Write the run's state after an epoch, atomically (``torch.save``; read back with
    ``weights_only=True``, so a checkpoint can hold no code)."""
    state = {
        "format": 1,
        "identity": identity,
        "progress": asdict(progress),
        "model": fc.model.state_dict(),
        "best": best_state,
        "opt": fc.opt.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))


def _load_progress(path: Path, fc, scheduler, identity) -> tuple[dict, _Progress] | None:
    """Restore a run from its checkpoint; None (and a warning: the run starts afresh) when the
    file is corrupt or was written by another run (:func:`_identity`)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != 1 or state.get("identity") != identity:
            log.warning("checkpoint %s belongs to another run; training starts afresh", path)
            return None
        fc.model.load_state_dict(state["model"])
        fc.opt.load_state_dict(state["opt"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        progress = _Progress(**state["progress"])
        best = state["best"]
    except Exception as exc:  # a damaged file raises one of several types
        log.warning("checkpoint %s is unreadable (%s); training starts afresh", path, exc)
        return None
    log.info("resuming %s after epoch %d", path, progress.epoch)
    return best, progress


def train_forecaster(
    fc,
    splits,
    budget: Budget,
    protocol: WindowProtocol,
    seed: int,
    *,
    make_scheduler: SchedulerFactory,
    progress: bool = False,
    checkpoint: str | Path | None = None,
    key: dict | None = None,
) -> dict:
    """Minibatch training of ``fc`` to validation patience; returns its training record.

    Each epoch visits the strided training windows (:func:`train_indices`) in the order
    ``permutation(seed + epoch)``, batches of ``budget.batch_size`` sorted; after it the masked
    validation MAE (data units) is measured, the best state kept, the schedule stepped
    (``ReduceLROnPlateau`` on that MAE). The run ends on the first of patience
    (``budget.patience`` epochs -- or validations with ``protocol.val_every`` -- in a row
    without a lower MAE; 0: never), the epoch cap ``budget.epochs``, and ``budget.max_time_s``
    of training (checked after each epoch, as the core loop does). The best state is restored.
    A non-finite training loss raises :class:`eads.DataError` naming the lr.

    ``checkpoint``: a file written atomically after every epoch (the model, optimiser, schedule,
    best state, torch's RNG state and the curves), from which a killed run continues where it
    stopped: an interrupted and resumed run gives the record and parameters of an unbroken one
    (tests/bench/test_forecasting.py), except the wall times. A run already finished returns at
    once. A checkpoint that is unreadable or was written by another run (other lr, seed, budget,
    protocol, parameter shapes or ``key``) is ignored with a warning, and the run starts afresh.
    Beside the checkpoint, ``checkpoint.with_suffix(".log")`` gets a line per epoch
    (:func:`eads.bench.training.epoch_lines`), for ``tail -f``.

    ``fc``: an :class:`AbstractForecaster` (or anything with its ``model``, ``opt``, ``lr``,
    ``predict``, ``targets_z`` and ``step``). The record holds the stop reason in the core's
    words (``stop_reason``, :data:`eads.bench.budget.STOP_REASONS`), the best epoch and update,
    the validation curve ``[update, seconds, val_mae, epoch]``, the mean training loss and the
    lr of each epoch, and ``resumed_at_epoch`` (0 for an unbroken run).
    """
    from tqdm.auto import tqdm

    tr, va = splits.train, splits.val
    ti = train_indices(len(tr), protocol.train_stride)
    vi = subset_indices(len(va), protocol.max_val_windows)
    vx, vy, vm = va.x[vi], va.y[vi], va.y_mask[vi]
    n = len(ti)
    scheduler = make_scheduler(fc.opt, budget.train_config("backprop", lr=fc.lr, seed=seed))
    checkpoint = None if checkpoint is None else Path(checkpoint)
    identity = _identity(fc, budget, protocol, seed, n, key)
    restored = None
    if checkpoint is not None and checkpoint.is_file():
        restored = _load_progress(checkpoint, fc, scheduler, identity)
    if restored is None:
        best_state = {k: v.detach().clone() for k, v in fc.model.state_dict().items()}
        p = _Progress()
    else:
        best_state, p = restored
    resumed_at = p.epoch
    t0 = time.perf_counter() - p.elapsed_s

    def validate(epoch: float) -> float:
        nonlocal best_state
        v = masked_mae(fc.predict(vx), vy, vm)
        p.val_curve.append([p.steps, round(time.perf_counter() - t0, 3), v, round(epoch, 4)])
        if v < p.best_val:
            p.best_val, p.best_update, p.best_epoch, p.since_best = v, p.steps, epoch, 0
            best_state = {k: t.detach().clone() for k, t in fc.model.state_dict().items()}
        else:
            p.since_best += 1
        return v

    def out_of_patience() -> bool:
        return budget.patience > 0 and p.since_best >= budget.patience

    bar = tqdm(
        total=budget.epochs, initial=p.epoch, desc="epochs", disable=not progress, leave=False
    )
    log_line = epoch_lines(checkpoint, budget.epochs)
    while not p.stop:
        p.lrs.append(float(fc.opt.param_groups[0]["lr"]))
        order = ti[np.random.default_rng(seed + p.epoch).permutation(n)]
        total, count = 0.0, 0
        for i in range(0, n, budget.batch_size):
            idx = np.sort(order[i : i + budget.batch_size])
            x = torch.from_numpy(np.ascontiguousarray(tr.x[idx]))  # (b, history, N, F)
            y, m = fc.targets_z(tr.y[idx], tr.y_mask[idx])  # (b, horizon, N)
            loss = fc.step(x, y, m)
            if not math.isfinite(loss):
                raise DataError(
                    f"The training loss became {loss} at epoch {p.epoch}; lower the learning "
                    f"rate (lr={fc.lr:g})."
                )
            total, count, p.steps = total + loss * len(idx), count + len(idx), p.steps + 1
            if protocol.val_every and p.steps % protocol.val_every == 0 and count < n:
                validate(p.epoch + count / n)
                if out_of_patience():
                    p.stop, p.epochs_done = "patience", p.epoch + count / n
                    break
        p.train_loss.append(total / max(count, 1))
        if not p.stop:
            p.epoch += 1
            p.epochs_done = float(p.epoch)
            current = validate(float(p.epoch))
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(current)
            elif scheduler is not None:
                scheduler.step()
            bar.update(1)
            if out_of_patience():
                p.stop = "patience"
            elif p.epoch >= budget.epochs:
                p.stop = "epoch_cap"
            elif budget.max_time_s is not None and time.perf_counter() - t0 > budget.max_time_s:
                p.stop = "wall_time"
        if checkpoint is not None:
            p.elapsed_s = time.perf_counter() - t0
            _save_progress(checkpoint, fc, scheduler, best_state, p, identity)
        if log_line is not None:  # after the checkpoint, as epoch_log does
            last_val = p.val_curve[-1][2] if p.val_curve else math.nan
            log_line(
                p.epochs_done, p.train_loss[-1], last_val, p.best_val, p.best_epoch,
                p.lrs[-1], p.elapsed_s,
            )  # fmt: skip
    bar.close()
    fc.model.load_state_dict(best_state)
    return {
        "train_time_s": time.perf_counter() - t0 if checkpoint is None else p.elapsed_s,
        "epochs": round(p.epochs_done, 3),
        "updates": p.steps,
        "lr": fc.lr,
        "best_update": p.best_update,
        "best_epoch": p.best_epoch,
        "best_val_mae": p.best_val,
        "stopped_by": p.stop,
        "stop_reason": p.stop,  # the core's words (eads.bench.budget.STOP_REASONS)
        "n_train_windows": n,
        "val_curve": p.val_curve,
        "val_curve_columns": ["update", "seconds", "val_mae", "epoch"],
        "train_loss": p.train_loss,
        "lr_per_epoch": p.lrs,
        "resumed_at_epoch": resumed_at,
    }


def train_forecaster_grid(
    build: Callable[[float], Any],
    splits,
    budget: Budget,
    protocol: WindowProtocol,
    seed: int,
    *,
    make_scheduler: SchedulerFactory,
    progress: bool = False,
    partial: str | Path | None = None,
) -> tuple[Any, dict]:
    """:func:`train_forecaster` on a fresh ``build(lr)`` for every lr of ``budget.lr_grid``;
    returns the run of the lowest best validation MAE (the first on a tie) and its record, with
    one summary per lr under ``candidates`` (``lr``, ``best_val_mae``, ``epochs``,
    ``stopped_by``) and ``train_cost_s``, the training time of every lr together.

    ``partial``: the folder of the runs' per-epoch checkpoints, ``lr<lr:g>.pt`` each (a
    killed grid continues; the finished lrs return at once); None: no checkpoints."""
    best = None
    candidates = []
    cost = 0.0
    for lr in budget.lr_grid:
        fc = build(lr)
        ckpt = None if partial is None else Path(partial) / f"lr{lr:g}.pt"
        training = train_forecaster(
            fc,
            splits,
            budget,
            protocol,
            seed,
            make_scheduler=make_scheduler,
            progress=progress,
            checkpoint=ckpt,
        )
        candidates.append({k: training[k] for k in ("lr", "best_val_mae", "epochs", "stopped_by")})
        cost += training["train_time_s"]
        if best is None or training["best_val_mae"] < best[1]["best_val_mae"]:
            best = (fc, training)
    assert best is not None  # Budget refuses an empty lr_grid
    fc, training = best
    return fc, {**training, "candidates": candidates, "train_cost_s": cost}


def forecast_latency(fc, x: np.ndarray, repeats: int = 3) -> dict[str, float]:
    """Inference wall time per sample of ``fc.forward_z`` in eval mode: one window alone, and
    within a batch of up to 64; the fastest of ``repeats`` timed calls after one warm-up.
    Wall-clock numbers: never a test's pass criterion."""

    def best(xs):
        xt = torch.from_numpy(np.ascontiguousarray(xs))
        times = []
        with torch.no_grad():
            fc.forward_z(xt)
            for _ in range(repeats):
                t = time.perf_counter()
                fc.forward_z(xt)
                times.append(time.perf_counter() - t)
        return min(times) / len(xs)

    fc.model.eval()
    return {
        "latency_s_per_sample_batch1": best(x[:1]),
        "latency_s_per_sample_batch64": best(x[:64]),
    }


def nan_to_none(a: np.ndarray) -> list:
    """Nested lists with ``None`` for missing values (strict JSON has no NaN)."""
    return [[None if not math.isfinite(v) else float(v) for v in row] for row in a.tolist()]


def evaluate_forecaster(
    fc, splits, protocol: WindowProtocol, *, units: str, plot_nodes: int, plot_windows: int
) -> dict:
    """What a cell records about a trained (or untrained) forecaster on the test split.

    ``metrics``: :func:`eads.bench.metrics.forecast_metrics_report` of the protocol's test
    subset (both zero conventions, MAPE's zero tolerance ``protocol.mape_tolerance``), with the
    tolerance and the target's ``units``; the latency (:func:`forecast_latency`); the
    parameter count; the window counts; and ``plot``: the first and last horizon step of the
    first ``plot_windows`` test windows at ``plot_nodes`` evenly spaced nodes, predictions
    and truth (None where missing).
    """
    te, n_nodes = splits.test, splits.train.y.shape[2]
    ti = subset_indices(len(te), protocol.max_test_windows)
    report = forecast_metrics_report(
        fc.predict(te.x[ti]), te.y[ti], te.y_mask[ti], mape_floor=protocol.mape_tolerance
    )
    report.update(mape_tolerance=protocol.mape_tolerance, units=units)
    k = min(plot_windows, len(te))
    nodes = np.linspace(0, n_nodes - 1, plot_nodes).round().astype(int)
    pred = fc.predict(te.x[:k])[:, :, nodes]  # (k, horizon, nodes)

    def truth(step: int) -> list:
        return nan_to_none(np.where(te.y_mask[:k, step], te.y[:k, step], np.nan)[:, nodes])

    plot = {
        "nodes": nodes.tolist(),
        "start": te.start[:k].tolist(),
        "history": splits.history,
        "pred_first": pred[:, 0].tolist(),
        "pred_last": pred[:, -1].tolist(),
        "truth_first": truth(0),
        "truth_last": truth(-1),
    }
    return {
        "metrics": report,
        **forecast_latency(fc, te.x[ti]),
        "n_parameters": count_parameters(fc.model),
        "n_test_windows": len(ti),
        "n_test_windows_total": len(te),
        "n_train_windows": len(train_indices(len(splits.train), protocol.train_stride)),
        "n_train_windows_total": len(splits.train),
        "protocol": asdict(protocol),
        "plot": plot,
    }


def probe_updates(
    fc, splits, protocol: WindowProtocol, batch_size: int, batches: int, seed: int = 0
) -> dict:
    """Time ``batches`` training updates of ``fc`` at ``batch_size`` (after one untimed warm-up
    update) and one validation pass over at most ``2 * batch_size`` of the protocol's
    validation windows, then scale them to an epoch: ``s_per_epoch = updates_per_epoch *
    median(s_per_update) + n_val / n_timed * s_val``. Trains ``fc`` a little; writes nothing.

    When not to use: as a benchmark of a model's speed (a median of a few batches on a shared
    machine); it sizes a converged run only.
    """
    tr, va = splits.train, splits.val
    ti = train_indices(len(tr), protocol.train_stride)
    order = ti[np.random.default_rng(seed).permutation(len(ti))]
    times = []
    for b in range(batches + 1):
        idx = np.sort(order[(b * batch_size) % len(ti) :][:batch_size])
        x = torch.from_numpy(np.ascontiguousarray(tr.x[idx]))
        y, m = fc.targets_z(tr.y[idx], tr.y_mask[idx])
        t = time.perf_counter()
        fc.step(x, y, m)
        if b:  # the first update warms up
            times.append(time.perf_counter() - t)
    vi = subset_indices(len(va), protocol.max_val_windows)
    timed = vi[: 2 * batch_size]
    t = time.perf_counter()
    fc.predict(va.x[timed])
    s_val = (time.perf_counter() - t) * len(vi) / len(timed)
    updates = math.ceil(len(ti) / batch_size)
    s_update = statistics.median(times)
    return {
        "batch_size": batch_size,
        "train_stride": protocol.train_stride,
        "n_train_windows": len(ti),
        "n_train_windows_total": len(tr),
        "n_val_windows": len(vi),
        "updates_per_epoch": updates,
        "s_per_update": s_update,
        "s_per_update_all": times,
        "s_validation": s_val,
        "s_per_epoch": updates * s_update + s_val,
    }


__all__ = [
    "AbstractForecaster",
    "SchedulerFactory",
    "WindowProtocol",
    "evaluate_forecaster",
    "forecast_latency",
    "nan_to_none",
    "probe_updates",
    "subset_indices",
    "train_forecaster",
    "train_forecaster_grid",
    "train_indices",
    "validation_mae",
]
