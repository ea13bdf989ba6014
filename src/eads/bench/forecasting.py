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
conditional likelihood). When not to use: a model whose training needs the whole split at once
(no minibatches), or a cell that must resume mid-training after a kill (no checkpoints here: a
killed cell restarts from its first epoch).
"""

from __future__ import annotations

import abc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from eads._errors import ConfigError, DataError
from eads.bench.budget import Budget
from eads.bench.metrics import forecast_metrics_report, masked_mae
from eads.bench.training import count_parameters

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


def train_forecaster(
    fc,
    splits,
    budget: Budget,
    protocol: WindowProtocol,
    seed: int,
    *,
    make_scheduler: SchedulerFactory,
    progress: bool = False,
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

    ``fc``: an :class:`AbstractForecaster` (or anything with its ``model``, ``opt``, ``lr``,
    ``predict``, ``targets_z`` and ``step``). The record holds the stop reason in the core's
    words (``stop_reason``, :data:`eads.bench.budget.STOP_REASONS`), the best epoch and update,
    the validation curve ``[update, seconds, val_mae, epoch]``, the mean training loss and the
    lr of each epoch.
    """
    from tqdm.auto import tqdm

    tr, va = splits.train, splits.val
    ti = train_indices(len(tr), protocol.train_stride)
    vi = subset_indices(len(va), protocol.max_val_windows)
    vx, vy, vm = va.x[vi], va.y[vi], va.y_mask[vi]
    n = len(ti)
    scheduler = make_scheduler(fc.opt, budget.train_config("backprop", lr=fc.lr, seed=seed))
    best_state = {k: v.detach().clone() for k, v in fc.model.state_dict().items()}
    best_val, best_update, best_epoch, since_best = math.inf, 0, 0.0, 0
    steps, stop = 0, ""
    val_curve, train_loss, lrs = [], [], []
    t0 = time.perf_counter()

    def validate(epoch: float) -> float:
        nonlocal best_val, best_state, best_update, best_epoch, since_best
        v = masked_mae(fc.predict(vx), vy, vm)
        val_curve.append([steps, round(time.perf_counter() - t0, 3), v, round(epoch, 4)])
        if v < best_val:
            best_val, best_update, best_epoch, since_best = v, steps, epoch, 0
            best_state = {k: t.detach().clone() for k, t in fc.model.state_dict().items()}
        else:
            since_best += 1
        return v

    def out_of_patience() -> bool:
        return budget.patience > 0 and since_best >= budget.patience

    bar = tqdm(total=budget.epochs, desc="epochs", disable=not progress, leave=False)
    epoch, epochs_done = 0, 0.0
    while not stop:
        lrs.append(float(fc.opt.param_groups[0]["lr"]))
        order = ti[np.random.default_rng(seed + epoch).permutation(n)]
        total, count = 0.0, 0
        for i in range(0, n, budget.batch_size):
            idx = np.sort(order[i : i + budget.batch_size])
            x = torch.from_numpy(np.ascontiguousarray(tr.x[idx]))  # (b, history, N, F)
            y, m = fc.targets_z(tr.y[idx], tr.y_mask[idx])  # (b, horizon, N)
            loss = fc.step(x, y, m)
            if not math.isfinite(loss):
                raise DataError(
                    f"The training loss became {loss} at epoch {epoch}; lower the learning "
                    f"rate (lr={fc.lr:g})."
                )
            total, count, steps = total + loss * len(idx), count + len(idx), steps + 1
            if protocol.val_every and steps % protocol.val_every == 0 and count < n:
                validate(epoch + count / n)
                if out_of_patience():
                    stop, epochs_done = "patience", epoch + count / n
                    break
        train_loss.append(total / max(count, 1))
        if stop:
            break
        epoch += 1
        epochs_done = float(epoch)
        current = validate(float(epoch))
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(current)
        elif scheduler is not None:
            scheduler.step()
        bar.update(1)
        if out_of_patience():
            stop = "patience"
        elif epoch >= budget.epochs:
            stop = "epoch_cap"
        elif budget.max_time_s is not None and time.perf_counter() - t0 > budget.max_time_s:
            stop = "wall_time"
    bar.close()
    fc.model.load_state_dict(best_state)
    return {
        "train_time_s": time.perf_counter() - t0,
        "epochs": round(epochs_done, 3),
        "updates": steps,
        "lr": fc.lr,
        "best_update": best_update,
        "best_epoch": best_epoch,
        "best_val_mae": best_val,
        "stopped_by": stop,
        "stop_reason": stop,  # the core's words (eads.bench.budget.STOP_REASONS)
        "n_train_windows": n,
        "val_curve": val_curve,
        "val_curve_columns": ["update", "seconds", "val_mae", "epoch"],
        "train_loss": train_loss,
        "lr_per_epoch": lrs,
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
) -> tuple[Any, dict]:
    """:func:`train_forecaster` on a fresh ``build(lr)`` for every lr of ``budget.lr_grid``;
    returns the run of the lowest best validation MAE (the first on a tie) and its record, with
    one summary per lr under ``candidates`` (``lr``, ``best_val_mae``, ``epochs``,
    ``stopped_by``)."""
    best = None
    candidates = []
    for lr in budget.lr_grid:
        fc = build(lr)
        training = train_forecaster(
            fc, splits, budget, protocol, seed, make_scheduler=make_scheduler, progress=progress
        )
        candidates.append({k: training[k] for k in ("lr", "best_val_mae", "epochs", "stopped_by")})
        if best is None or training["best_val_mae"] < best[1]["best_val_mae"]:
            best = (fc, training)
    assert best is not None  # Budget refuses an empty lr_grid
    fc, training = best
    return fc, {**training, "candidates": candidates}


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
