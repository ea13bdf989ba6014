"""The training budget of a benchmark cell and its stopping protocol, mapped onto ``TrainConfig``.

Protocol: every trained cell ends on **patience** on its validation loss (``patience`` epochs in
a row without a lower one; the best epoch's parameters are kept). ``epochs`` is a cap that a
full budget sets high enough never to be what ends a run, and ``max_time_s`` a wall-time cap
that full budgets leave at None; a cell that a cap stopped anyway records so
(``stop_reason`` "epoch_cap" or "wall_time", :data:`eads.learn.loop.STOP_REASONS`) and every
table marks it (:func:`stop_mark`). ``--quick`` budgets stop on the cap by design (a smoke run)
and are marked the same way.

When not to use: a model that does not train (a reference predictor) has no budget; its stop
reason is "none".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from eads._errors import ConfigError
from eads.config import TrainConfig

#: why a cell's training ended, in the loop's words (``History.stop_reason``), plus "none" for a
#: model that does not train
STOP_REASONS = ("patience", "epoch_cap", "wall_time", "none")

#: the words the suites' committed tables use for each stop reason (read back by
#: :func:`stop_reason_of`; the PDE suite's first, then the spatio-temporal suite's)
STOP_LABELS = {
    "patience": "early stopping",
    "epoch_cap": "epoch budget",
    "wall_time": "time budget",
}
_LABEL_TO_REASON = {
    **{v: k for k, v in STOP_LABELS.items()},
    "epochs": "epoch_cap",
    "wall time": "wall_time",
    "no training": "none",
}

#: the mark a table puts on a cell that patience did not stop (and its footnote)
CAP_MARK = "\u2020"
CAP_NOTE = f"{CAP_MARK}: stopped by the epoch or wall-time cap, not by validation patience."


def stop_reason_of(value: str | None) -> str:
    """A stop reason (:data:`STOP_REASONS`) from a loop reason or a table's label ("" unknown)."""
    if value in STOP_REASONS:
        return value
    return _LABEL_TO_REASON.get(value or "", "")


def stop_mark(value: str | None) -> str:
    """:data:`CAP_MARK` for a cell that a cap stopped (or whose reason is unknown), else ""."""
    return "" if stop_reason_of(value) in ("patience", "none") else CAP_MARK


@dataclass(frozen=True)
class Budget:
    """How one model of a suite is trained; :meth:`train_config` maps it onto ``TrainConfig``."""

    epochs: int
    """The epoch cap (see the module docstring: not meant to end a full run)."""
    lr_grid: tuple[float, ...] = (1e-3,)
    """Initial learning rates tried; the one with the lowest validation loss is kept (unless
    ``select_trials`` > 0, where the selection chooses the lr)."""
    batch_size: int = 32
    patience: int = 20
    """Epochs without a lower validation loss before the run stops (0: train to the cap)."""
    schedule: str = "plateau"
    """``TrainConfig.schedule``: "none", "plateau", "cosine" or "step"."""
    schedule_factor: float = 0.5
    schedule_patience: int = 5
    schedule_step: int = 100
    max_time_s: float | None = None
    """Wall-time cap per training run in seconds; None (full budgets): none."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    """Passed to the model's constructor -- fixed, not searched."""
    select_trials: int = 0
    """Models with a validation search (EADS): its trials; 0: the ``lr_grid`` instead."""

    def __post_init__(self):
        object.__setattr__(self, "lr_grid", tuple(float(v) for v in self.lr_grid))
        if not self.lr_grid:
            raise ConfigError("budget.lr_grid must hold at least one learning rate.")
        value = self.select_trials
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"budget.select_trials must be an integer >= 0, got {value!r}.")
        for lr in self.lr_grid:  # TrainConfig checks every other field, in its words
            self.train_config("backprop", lr=lr)

    def train_config(self, trainer: str, *, lr: float | None = None, seed: int = 0) -> TrainConfig:
        """The ``TrainConfig`` of one training run (``lr``: default the grid's first)."""
        return TrainConfig(
            trainer=trainer,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr_grid[0] if lr is None else lr,
            optimizer="adam",
            patience=self.patience,
            schedule=self.schedule,
            schedule_factor=self.schedule_factor,
            schedule_patience=self.schedule_patience,
            schedule_step=self.schedule_step,
            max_time_s=self.max_time_s,
            seed=seed,
        )

    def to_params(self) -> dict:
        """JSON-able (a cell's ``params["budget"]``); :meth:`from_params` reads it back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_params(cls, params: dict) -> Budget:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"budget names unknown fields {unknown}; valid are {sorted(known)}.")
        return cls(**params)
