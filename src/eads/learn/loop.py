"""The training loop: minibatch or per-sample EC-Train (or any trainer), trained to
convergence (patience on the validation loss, a learning-rate schedule), checkpoints and
resume; and the online (prequential) mode of a deployed circuit.

"Continuous and iterative training" (seed paper Sec. 3.2): anneal, measure the error currents,
update the conductances, re-anneal, over the training set. With ``batch_size=1`` each sample
updates the conductances as soon as its error has been measured, as the hardware does; with
``batch_size=B`` the updates of B samples are averaged before being applied (what data-parallel
chips or an accumulating update circuit would do). ``optimizer="sgd"`` applies the plain update
``theta -= lr * grad`` that the circuit's programming pulses realise; ``"adam"`` is a digital
convenience that converges in fewer epochs.

Stopping: a run ends on the first of (checked in this order after each epoch, never within one)

* ``"patience"``: ``config.patience`` epochs in a row without a lower validation loss (the
  training loss without a validation split); the protocol meant to end nearly every run;
* ``"epoch_cap"``: ``config.epochs`` epochs (the cap; the only stop when ``patience = 0``);
* ``"wall_time"``: ``config.max_time_s`` seconds of training, accumulated across resumes;

and :attr:`History.stop_reason` says which. At the end the best epoch's parameters are restored.
The learning rate follows ``config.schedule`` (torch's ReduceLROnPlateau on the loss patience
watches, CosineAnnealingLR over the cap, or StepLR every ``schedule_step`` epochs; see
:class:`eads.config.TrainConfig`), stepped once per epoch; :attr:`History.lr` records the rate
each epoch trained with.

Determinism: the sample order of epoch e is ``randperm(n, seed + e)`` and the checkpoint holds the
optimiser's and the schedule's state, so a run resumed from its checkpoint after epoch e continues
exactly as the uninterrupted run would (same parameters on the CPU, bit for bit). A run that
stopped on the cap or the wall time continues when resumed with a higher cap or limit; one that
stopped on patience stays stopped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eads._errors import CheckpointError, DataError
from eads.config import TrainConfig
from eads.learn.trainers import AbstractTrainer
from eads.runs import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


STOP_REASONS = ("patience", "epoch_cap", "wall_time")


@dataclass
class History:
    """Per-epoch losses and learning rates, and the stopping state."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    #: the lowest loss patience watched (validation, or training without validation)
    best_val: float = math.inf
    epochs_run: int = 0
    stopped_early: bool = False  #: patience ended the run (``stop_reason == "patience"``)
    train_time_s: float = 0.0  #: seconds of training, accumulated across resumes
    lr: list[float] = field(default_factory=list)  #: the learning rate each epoch trained with
    #: what ended the run: one of :data:`STOP_REASONS`; "" while it is still training
    stop_reason: str = ""


def _snapshot(model: nn.Module) -> dict:
    """A copy of the state dict (tensors cloned; e.g. neuraloperator adds a ``_metadata`` dict)."""
    return {
        k: v.detach().clone() if torch.is_tensor(v) else v for k, v in model.state_dict().items()
    }


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr)
    return torch.optim.Adam(params, lr=config.lr)


#: the scheduler attributes that come from the config, not from a run's progress: on resume the
#: config's values replace the checkpoint's. (torch's cosine is recursive in the current lr: a run
#: cut mid-way and resumed with a higher cap bends onto the longer curve from its current lr; one
#: that reached its cap sits at the floor and stays there.)
_SCHEDULE_SETTINGS = {
    "plateau": ("factor", "patience", "min_lrs", "default_min_lr", "threshold", "threshold_mode",
                "mode", "mode_worse", "cooldown", "eps"),
    "cosine": ("T_max", "eta_min"),
    "step": ("step_size", "gamma"),
}  # fmt: skip


def schedule_kind(config: TrainConfig) -> str:
    """The schedule that acts: ``config.schedule``, except "none" for "plateau" without
    patience (``patience = 0`` trains with a constant learning rate to the epoch cap)."""
    if config.schedule == "plateau" and not config.patience:
        return "none"
    return config.schedule


def make_scheduler(opt: torch.optim.Optimizer, config: TrainConfig):
    """torch's scheduler for ``config.schedule`` (None when the learning rate stays constant).

    "plateau" counts an epoch as better exactly when patience does (:func:`improved`: relative
    ``threshold = config.improvement_threshold``), so both watch the same improvements.
    """
    kind = schedule_kind(config)
    lr_min = config.min_lr_ratio * config.lr
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt,
            mode="min",
            factor=config.schedule_factor,
            patience=config.schedule_patience,
            threshold=config.improvement_threshold,
            threshold_mode="rel",
            min_lr=lr_min,
        )
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs, eta_min=lr_min)
    if kind == "step":  # lr_e = lr * factor ** floor(e / schedule_step)
        return torch.optim.lr_scheduler.StepLR(
            opt, step_size=config.schedule_step, gamma=config.schedule_factor
        )
    return None


def apply_gradients(model: nn.Module, grads: dict[str, torch.Tensor], opt) -> None:
    """Hand a trainer's gradients to the optimiser and take one step."""
    for name, p in model.named_parameters():
        if name in grads:
            p.grad = grads[name].to(p.dtype).reshape(p.shape)
    opt.step()
    opt.zero_grad(set_to_none=True)


def evaluate_mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 4096) -> float:
    """Mean squared error of the annealed outputs."""
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            pred = model(x[i : i + batch])
            total += float(((pred - y[i : i + batch].to(pred.dtype)) ** 2).sum())
            n += pred.numel()
    return total / max(n, 1)


def _check_pair(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{name} inputs and outputs must hold the same number of samples, "
            f"got {x.shape[0]} and {y.shape[0]}."
        )
    if x.shape[0] == 0:
        raise DataError(f"{name} data is empty.")


def save_training_state(path, model, opt, best, history: History, scheduler=None) -> None:
    """Checkpoint: parameters, best parameters, optimiser and schedule state, the history.

    Optimiser tensors go in as ``optim.<param index>.<key>``; 0-d tensors (Adam's step count),
    the param groups and the scheduler's state dict go in the JSON metadata.
    """
    tensors = {f"model.{k}": v for k, v in model.state_dict().items() if torch.is_tensor(v)}
    tensors.update({f"best.{k}": v for k, v in best.items() if torch.is_tensor(v)})
    osd = opt.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for idx, entry in osd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value) and value.ndim > 0:
                tensors[f"optim.{idx}.{key}"] = value
            elif value is not None:
                scalars.setdefault(str(idx), {})[key] = float(value)
    state = {"history": asdict(history), "param_groups": osd["param_groups"], "scalars": scalars}
    if scheduler is not None:
        state["scheduler"] = {"kind": _kind_of(scheduler), "state": scheduler.state_dict()}
    save_checkpoint(path, tensors, state)


def _kind_of(scheduler) -> str:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return "plateau"
    if isinstance(scheduler, torch.optim.lr_scheduler.StepLR):
        return "step"
    return "cosine"


def load_training_state(
    path, model, opt, scheduler=None
) -> tuple[dict[str, torch.Tensor], History]:
    """Restore what :func:`save_training_state` wrote; returns the best parameters and history.

    A checkpoint written before schedules and stop reasons were recorded still loads: its history
    gets a constant learning rate per epoch (what it trained with) and no stop reason, and a
    ``scheduler`` given here starts afresh, as it does when the checkpoint's schedule differs.
    """
    tensors, state = load_checkpoint(path)
    if "history" not in state:
        raise CheckpointError(f"Checkpoint {str(path)!r} holds no training state.")
    model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_sd)
    except RuntimeError as exc:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} does not fit this model ({exc})."
        ) from None
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    opt_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = value
    for idx, entry in state["scalars"].items():
        for name, value in entry.items():
            opt_state.setdefault(int(idx), {})[name] = torch.tensor(value)
    opt.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    known = {f.name for f in fields(History)}
    history = History(**{k: v for k, v in state["history"].items() if k in known})
    if not history.lr and history.epochs_run:  # written before the lr was recorded
        history.lr = [float(state["param_groups"][0]["lr"])] * history.epochs_run
    saved = state.get("scheduler")
    if scheduler is not None:
        kind = _kind_of(scheduler)
        if saved is not None and saved.get("kind") == kind:
            fresh = scheduler.state_dict()
            settings = {k: fresh[k] for k in _SCHEDULE_SETTINGS[kind] if k in fresh}
            scheduler.load_state_dict({**saved["state"], **settings})
        else:
            log.info("checkpoint %s holds no %s schedule state; it starts afresh", path, kind)
    return best, history


def fit(
    model: nn.Module,
    trainer: AbstractTrainer,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    config: TrainConfig,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[int, History], None] | None = None,
) -> History:
    """Train ``model`` with ``trainer`` on ``train = (x, y)`` until patience on ``val`` (or the
    epoch cap, or the wall time) stops it; the module docstring gives the rules.

    Writes ``checkpoint`` (atomically) after every epoch when given; ``resume=True`` continues
    from it. At the end the parameters of the best validation epoch are restored.
    ``on_epoch(epoch, history)`` runs after each epoch's checkpoint; setting
    ``history.stopped_early = True`` there ends the run after that epoch.
    """
    from tqdm.auto import tqdm

    x, y = train
    _check_pair("training", x, y)
    if val is not None:
        _check_pair("validation", *val)
    trainer.check_model(model)
    opt = make_optimizer(model, config)
    scheduler = make_scheduler(opt, config)
    history = History()
    best = _snapshot(model)
    if resume:
        if checkpoint is None or not Path(checkpoint).is_file():
            raise CheckpointError(f"Cannot resume: checkpoint {str(checkpoint)!r} does not exist.")
        best, history = load_training_state(checkpoint, model, opt, scheduler)
        log.info("resumed from %s after epoch %d", checkpoint, history.epochs_run)
    n = x.shape[0]
    bar = tqdm(
        desc=f"{trainer.name}",
        disable=not progress,
        initial=history.epochs_run,
        total=config.epochs,
    )
    t_start = time.perf_counter() - history.train_time_s
    # re-judged with this config: a run resumed with a higher cap or time limit goes on
    history.stop_reason = _stop_reason(history, config)
    while not history.stop_reason:
        epoch = history.epochs_run
        lr = float(opt.param_groups[0]["lr"])
        order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed + epoch))
        total = 0.0
        for i in range(0, n, config.batch_size):
            idx = order[i : i + config.batch_size]
            loss, grads = trainer.loss_and_gradients(model, x[idx], y[idx])
            apply_gradients(model, grads, opt)
            total += float(loss) * idx.numel()
        history.train_loss.append(total / n)
        history.lr.append(lr)
        if not math.isfinite(history.train_loss[-1]):
            raise DataError(
                f"The training loss became {history.train_loss[-1]} at epoch {epoch}; "
                "lower the learning rate."
            )
        if val is not None:
            history.val_loss.append(evaluate_mse(model, *val))
            current = history.val_loss[-1]
        else:
            current = history.train_loss[-1]
        if improved(current, history.best_val, config.improvement_threshold):
            history.best_val, history.best_epoch = current, epoch
            best = _snapshot(model)
        elif config.patience and epoch - history.best_epoch >= config.patience:
            history.stopped_early = True
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(current)
        elif scheduler is not None:
            scheduler.step()
        history.epochs_run = epoch + 1
        history.train_time_s = time.perf_counter() - t_start
        history.stop_reason = _stop_reason(history, config)
        bar.update(1)
        bar.set_postfix(train=f"{history.train_loss[-1]:.4g}", val=f"{current:.4g}", lr=f"{lr:.3g}")
        if checkpoint is not None:
            save_training_state(checkpoint, model, opt, best, history, scheduler)
        if on_epoch is not None:
            on_epoch(epoch, history)
            history.stop_reason = _stop_reason(history, config)  # it may have stopped the run
    bar.close()
    if history.stop_reason != "patience":
        log.info(
            "training stopped on the %s after %d epochs, not on patience",
            history.stop_reason.replace("_", " "),
            history.epochs_run,
        )
    model.load_state_dict(best)
    return history


def improved(current: float, best: float, threshold: float = 0.0) -> bool:
    """Whether ``current`` beats ``best`` by the relative ``threshold``:
    ``current < best - threshold * |best|`` (any finite loss beats ``best = inf``)."""
    if not math.isfinite(best):
        return current < best
    return current < best - threshold * abs(best)


def _stop_reason(history: History, config: TrainConfig) -> str:
    """What ends the run after the epochs in ``history`` ("" if nothing does), in the order of
    the module docstring: patience, then the epoch cap, then the wall time."""
    if history.stopped_early:
        return "patience"
    if history.epochs_run >= config.epochs:
        return "epoch_cap"
    if config.max_time_s is not None and history.train_time_s >= config.max_time_s:
        return "wall_time"
    return ""


@dataclass
class OnlineResult:
    """Prequential errors: each sample's squared error *before* it was used for an update."""

    errors: np.ndarray  #: (n_samples,) mean squared error over outputs, predicted first
    running: np.ndarray  #: (n_samples,) exponential running mean of ``errors``


def fit_online(
    model: nn.Module,
    trainer: AbstractTrainer,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    smoothing: int = 50,
    progress: bool = True,
) -> OnlineResult:
    """Self-adaptation: a deployed circuit predicts each arriving chunk, then learns from it.

    Samples arrive in order, ``config.batch_size`` at a time (1 = one by one). Each chunk is first
    annealed and its error recorded (prequential evaluation), then used for one update, so the
    circuit tracks a target that drifts or changes abruptly.
    """
    from tqdm.auto import tqdm

    _check_pair("stream", x, y)
    trainer.check_model(model)
    opt = make_optimizer(model, config)
    errors = np.empty(x.shape[0])
    for i in tqdm(range(0, x.shape[0], config.batch_size), disable=not progress, desc="online"):
        xb, yb = x[i : i + config.batch_size], y[i : i + config.batch_size]
        with torch.no_grad():
            pred = model(xb)
        errors[i : i + xb.shape[0]] = ((pred - yb.to(pred.dtype)) ** 2).mean(dim=1).cpu().numpy()
        _, grads = trainer.loss_and_gradients(model, xb, yb)
        apply_gradients(model, grads, opt)
    alpha = 1.0 / smoothing
    running = np.empty_like(errors)
    acc = errors[0]
    for i, e in enumerate(errors):
        acc = (1 - alpha) * acc + alpha * e
        running[i] = acc
    return OnlineResult(errors, running)
