"""Build models and trainers from configuration (the names the CLI and configs use)."""

from __future__ import annotations

import torch
from torch import nn

from eads._errors import ConfigError
from eads.baselines.mlp import MLP
from eads.circuit.eads import EADS
from eads.circuit.npgl import NPGL
from eads.config import ModelConfig
from eads.learn.trainers import make_trainer  # noqa: F401  (re-exported)
from eads.solve import SOLVERS, AbstractFixedStep, make_solver


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
        return EADS(
            n_inputs,
            cfg.n_hidden,
            n_outputs,
            duration=cfg.duration,
            solver=make_solver(cfg.solver, **kwargs),
            stages=cfg.stages,
            coupling_init=cfg.coupling_init,
            seed=seed,
            dtype=dtype,
        )
    if cfg.kind == "npgl":
        return NPGL(n_inputs, n_outputs, stages=cfg.stages, seed=seed, dtype=dtype)
    return MLP(n_inputs, cfg.n_hidden, n_outputs, seed=seed, dtype=dtype)


def default_trainer_for(kind: str) -> str:
    defaults = {"eads": "ectrain", "npgl": "likelihood", "mlp": "backprop"}
    if kind not in defaults:
        raise ConfigError(f"model kind must be one of {tuple(defaults)}, got {kind!r}.")
    return defaults[kind]
