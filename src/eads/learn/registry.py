"""Build models and trainers from configuration (the names the CLI and configs use), and load
a trained run directory back (:func:`load_trained`), for every consumer above this floor.

Trainers are looked up in :data:`eads.learn.trainers.TRAINERS`, which trainers defined
elsewhere join with :func:`eads.learn.trainers.register_trainer`: ``hw-ectrain``
(:class:`eads.hardware.training.HardwareAwareECTrain`) registers itself when ``eads.hardware``
is imported, which ``import eads`` does; this module imports nothing from ``hardware/``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from eads._errors import CheckpointError, ConfigError
from eads.baselines.mlp import MLP
from eads.circuit.eads import EADS
from eads.circuit.nonideal import NonIdealEADS, NonIdealities
from eads.circuit.npgl import NPGL
from eads.config import ModelConfig, RunConfig
from eads.data.tabular import Standardizer
from eads.learn import trainers
from eads.runs import RunDir, load_checkpoint
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
    """The trainer called ``name``: any of :data:`eads.learn.trainers.TRAINERS`."""
    return trainers.make_trainer(name)


MODEL_FILE = "model.safetensors"


def load_trained(run_dir: str | Path):
    """``(model, config, x_scaler, y_scaler)`` of a fitted run directory.

    A run written before the reference node existed has no ``reference`` in its config.json's
    model table; it is loaded as the circuit it was, without one.
    """
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise CheckpointError(f"Run directory {str(run.path)!r} does not exist.")
    if not (run.path / MODEL_FILE).is_file():
        raise CheckpointError(
            f"Run directory {str(run.path)!r} holds no trained model ({MODEL_FILE} is missing)."
        )
    raw = run.config()
    if isinstance(raw.get("model"), dict) and "reference" not in raw["model"]:
        raw["model"] = {**raw["model"], "reference": False}
    config = RunConfig.from_dict(raw)
    scalers = run.read_json("standardizer.json")
    xs, ys = Standardizer.from_dict(scalers["x"]), Standardizer.from_dict(scalers["y"])
    tensors, _ = load_checkpoint(run.path / MODEL_FILE)
    model = build_model(config.model, len(xs.mean), len(ys.mean), seed=config.train.seed)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{MODEL_FILE} in {str(run.path)!r} does not fit its config ({exc})."
        ) from None
    model.eval()
    return model, config, xs, ys
