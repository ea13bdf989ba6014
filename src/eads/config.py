"""Frozen configuration dataclasses, one per concern, readable from TOML.

A run's resolved configuration is ``RunConfig(model=..., train=..., data=...)``; it is written to
each run directory as ``config.json`` and can be read back with :func:`load_run_config`. A TOML
file has one table per concern::

    [model]
    kind = "eads"
    n_hidden = 64
    [model.nonideal]        # optional: an imperfect circuit (eads.circuit.nonideal.NonIdealities)
    conductance_bits = 6
    noise_std = 0.01
    [train]
    epochs = 50
    trainer = "hw-ectrain"  # EC-Train through the imperfect circuit
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eads._errors import ConfigError

MODEL_KINDS = ("eads", "npgl", "mlp")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "plateau", "cosine", "step")


@dataclass(frozen=True)
class ModelConfig:
    """Which circuit and how it is simulated."""

    kind: str = "eads"  #: "eads", "npgl" or "mlp" (the digital reference)
    n_hidden: int = 64  #: hidden nodes (EADS) or hidden width (MLP)
    duration: float = 1.0  #: coupling-stage duration T, in node time constants
    solver: str = "rk38"  #: integrator of the coupling stage (see eads.solve.SOLVERS)
    n_steps: int = 8  #: fixed steps over [0, T] for fixed-step solvers
    stages: str = "equilibrium"  #: "equilibrium" (closed forms) or "transient"
    coupling_init: float = 0.5  #: std of J's initial entries times sqrt(H)
    #: a reference node (a clamped constant voltage with trained conductances into the hidden
    #: nodes of EADS, the outputs of NP-GL); False: the paper's literal equations. The MLP has
    #: biases of its own and ignores it.
    reference: bool = True
    reference_voltage: float = 1.0  #: the reference node's voltage, in state units
    #: non-idealities of the circuit, the fields of ``eads.circuit.nonideal.NonIdealities``
    #: (``[model.nonideal]`` in TOML); empty: the ideal circuit. EADS only.
    nonideal: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"model kind must be one of {MODEL_KINDS}, got {self.kind!r}.")
        if not isinstance(self.nonideal, dict):
            raise ConfigError(
                f"model.nonideal must be a table of non-idealities, got {self.nonideal!r}."
            )
        if self.nonideal and self.kind != "eads":
            raise ConfigError(
                f"model.nonideal describes an EADS circuit; model kind {self.kind!r} has none."
            )
        for name in ("n_hidden", "n_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}.")
        if not self.duration > 0:
            raise ConfigError(f"model.duration must be positive, got {self.duration!r}.")


@dataclass(frozen=True)
class TrainConfig:
    """How the model is fitted."""

    #: "ectrain", "hw-ectrain" (a non-ideal EADS), "backprop", "likelihood" (NP-GL) or
    #: "backprop-sampled" (graph kernel networks)
    trainer: str = "ectrain"
    #: the epoch cap: the most epochs a run trains. High enough that patience ends nearly every
    #: run; a run that reaches it records ``stop_reason = "epoch_cap"``
    epochs: int = 2000
    batch_size: int = 32  #: 1 = per-sample updates, as the hardware applies them
    lr: float = 3e-3  #: the initial learning rate (the schedule lowers it from there)
    optimizer: str = "adam"  #: "sgd" (the plain update the circuit applies) or "adam"
    #: stop after this many epochs without a lower validation loss (the training loss when
    #: there is no validation split), keeping the best epoch's parameters; 0: no patience-based
    #: stopping, the run trains to the epoch cap (or ``max_time_s``)
    patience: int = 20
    #: the learning-rate schedule: "none" (constant ``lr``); "plateau" (torch's
    #: ReduceLROnPlateau on the loss that patience watches: multiply the lr by
    #: ``schedule_factor`` after ``schedule_patience`` + 1 epochs in a row without a lower loss;
    #: it acts only when ``patience`` > 0, so ``patience = 0`` keeps the lr constant, and it
    #: lowers the lr before patience stops a run only if ``schedule_patience`` < ``patience``);
    #: "cosine" (torch's CosineAnnealingLR from ``lr`` down to the floor over the epoch cap,
    #: lr_t = lr_min + (lr - lr_min) (1 + cos(pi t / epochs)) / 2 in epoch t; for a run meant to
    #: reach the cap, e.g. ``patience = 0``); "step" (torch's StepLR: the lr of epoch e, counted
    #: from 0, is lr * schedule_factor ** floor(e / schedule_step), the FNO paper's halving every
    #: 100 epochs; no floor, ``min_lr_ratio`` does not apply)
    schedule: str = "plateau"
    #: "plateau" and "step": the factor in (0, 1) each reduction multiplies by
    schedule_factor: float = 0.5
    #: "plateau": epochs in a row without a lower loss that are tolerated before a reduction
    schedule_patience: int = 5
    #: "step": epochs between two reductions (a positive integer)
    schedule_step: int = 100
    #: the floor of either schedule as a fraction of ``lr``: lr_min = ``min_lr_ratio * lr``,
    #: in [0, 1)
    min_lr_ratio: float = 1e-3
    #: a wall-time limit, in seconds of training accumulated across resumes, checked after each
    #: epoch (an epoch is never cut short); None: no limit. A run that reaches it records
    #: ``stop_reason = "wall_time"`` and depends on the machine's speed
    max_time_s: float | None = None
    #: relative improvement an epoch needs to count as better, for patience, the plateau
    #: schedule and the kept parameters alike: loss < best - threshold * |best| (torch's
    #: ReduceLROnPlateau ``threshold_mode="rel"`` for a loss >= 0), in [0, 1); 0: any lower loss
    #: counts. A loss that creeps down by ever smaller steps never lets patience stop a run at 0
    improvement_threshold: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"train.{name} must be a positive integer, got {value!r}.")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr!r}.")
        if self.patience < 0:
            raise ConfigError(f"train.patience must be >= 0, got {self.patience!r}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        if not 0 < self.schedule_factor < 1:
            raise ConfigError(
                f"train.schedule_factor must be in (0, 1), got {self.schedule_factor!r}."
            )
        value = self.schedule_patience
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"train.schedule_patience must be an integer >= 0, got {value!r}.")
        value = self.schedule_step
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"train.schedule_step must be a positive integer, got {value!r}.")
        if not 0 <= self.improvement_threshold < 1:
            raise ConfigError(
                "train.improvement_threshold must be in [0, 1), got "
                f"{self.improvement_threshold!r}."
            )
        if not 0 <= self.min_lr_ratio < 1:
            raise ConfigError(f"train.min_lr_ratio must be in [0, 1), got {self.min_lr_ratio!r}.")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ConfigError(
                f"train.max_time_s must be positive (or None for no limit), "
                f"got {self.max_time_s!r}."
            )


@dataclass(frozen=True)
class DataConfig:
    """Which columns or keys are inputs and outputs, and how the data are split."""

    path: str = ""
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0

    def __post_init__(self):
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"data.{name} must be in [0, 1), got {value!r}.")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("data.val_fraction + data.test_fraction must be below 1.")


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        parts = {}
        for name, kind in (("model", ModelConfig), ("train", TrainConfig), ("data", DataConfig)):
            table = dict(d.get(name, {}))
            known = {f.name for f in dataclasses.fields(kind)}
            unknown = set(table) - known
            if unknown:
                raise ConfigError(
                    f"Unknown setting(s) {sorted(unknown)} in [{name}]; "
                    f"valid ones are {sorted(known)}."
                )
            for key in ("inputs", "outputs"):
                if key in table:
                    table[key] = tuple(table[key])
            parts[name] = kind(**table)
        unknown = set(d) - {"model", "train", "data"}
        if unknown:
            raise ConfigError(
                f"Unknown config table(s) {sorted(unknown)}; valid: model, train, data."
            )
        return cls(**parts)

    def replace(self, **overrides: dict[str, Any]) -> RunConfig:
        """A copy with ``overrides = {"model": {...}, "train": {...}}`` applied (None ignored)."""
        d = self.to_dict()
        for table, values in overrides.items():
            d.setdefault(table, {}).update({k: v for k, v in values.items() if v is not None})
        return RunConfig.from_dict(d)


def load_toml(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist.")
    try:
        d = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {str(path)!r} is not valid TOML: {exc}.") from None
    return RunConfig.from_dict(d)
