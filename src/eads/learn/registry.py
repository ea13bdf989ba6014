"""Build models and trainers from configuration (the names the CLI and configs use).

``hw-ectrain`` (:class:`eads.hardware.training.HardwareAwareECTrain`) lives on the same floor
(``hardware/``) and is imported when asked for; every other trainer is in
:mod:`eads.learn.trainers`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from eads._errors import ConfigError
from eads.baselines.mlp import MLP
from eads.circuit.eads import EADS
from eads.circuit.nonideal import NonIdealEADS, NonIdealities
from eads.circuit.npgl import NPGL
from eads.config import ModelConfig
from eads.learn import trainers
from eads.solve import SOLVERS, AbstractFixedStep, make_solver

#: The hardware-aware trainer's name (see the module docstring).
HW_TRAINER = "hw-ectrain"


def build_model(
    cfg: ModelConfig, n_inputs: int, n_outputs: int, *, seed: int = 0, dtype=torch.float32
) -> nn.Module:
    """The model a :class:`ModelConfig` describes, initialised from ``seed``."""
    if cfg.kind == "eads":
        if cfg.solver not in SOLVERS:
            raise ConfigError(
                f"Unknown solver {cfg.solver!r}; valid solvers are {sorted(SOLVERS)}."
            )
        kwargs = (
            {"n_steps": cfg.n_steps} if issubclass(SOLVERS[cfg.solver], AbstractFixedStep) else {}
        )
        circuit = NonIdealEADS if cfg.nonideal else EADS
        extra = {"nonideal": _nonidealities(cfg.nonideal)} if cfg.nonideal else {}
        return circuit(
            n_inputs,
            cfg.n_hidden,
            n_outputs,
            duration=cfg.duration,
            solver=make_solver(cfg.solver, **kwargs),
            stages=cfg.stages,
            coupling_init=cfg.coupling_init,
            reference=cfg.reference,
            reference_voltage=cfg.reference_voltage,
            seed=seed,
            dtype=dtype,
            **extra,
        )
    if cfg.kind == "npgl":
        return NPGL(
            n_inputs,
            n_outputs,
            stages=cfg.stages,
            reference=cfg.reference,
            reference_voltage=cfg.reference_voltage,
            seed=seed,
            dtype=dtype,
        )
    return MLP(n_inputs, cfg.n_hidden, n_outputs, seed=seed, dtype=dtype)


def _nonidealities(table: dict) -> NonIdealities:
    known = {f.name for f in dataclasses.fields(NonIdealities)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"Unknown non-ideality setting(s) {unknown} in [model.nonideal]; "
            f"valid ones are {sorted(known)}."
        )
    return NonIdealities(**table)


def default_trainer_for(kind: str, nonideal: bool = False) -> str:
    """The trainer a model kind gets unless one is named (``hw-ectrain`` for a non-ideal EADS)."""
    defaults = {"eads": "ectrain", "npgl": "likelihood", "mlp": "backprop"}
    if kind not in defaults:
        raise ConfigError(f"model kind must be one of {tuple(defaults)}, got {kind!r}.")
    return HW_TRAINER if nonideal and kind == "eads" else defaults[kind]


def make_trainer(name: str) -> trainers.AbstractTrainer:
    """The trainer called ``name``: any of :data:`eads.learn.trainers.TRAINERS`, or
    ``hw-ectrain``."""
    if name == HW_TRAINER:
        from eads.hardware.training import HardwareAwareECTrain  # same floor; see the docstring

        return HardwareAwareECTrain()
    if name not in trainers.TRAINERS:
        valid = sorted([*trainers.TRAINERS, HW_TRAINER])
        raise ConfigError(f"Unknown trainer {name!r}; valid trainers are {valid}.")
    return trainers.make_trainer(name)
