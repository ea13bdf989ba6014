"""``eads fit`` / ``eads predict``: function learning on a user's CSV or NPZ, in a run directory.

A fitted run directory holds, besides what :mod:`eads.runs` lists, ``model.safetensors`` (the
final parameters), ``standardizer.json`` (training-split statistics), ``history.json`` and
``metrics.json`` (errors on each split, in standardised and original units, and times).

``fit_run(..., nproc=N)`` (``eads fit --nproc N``) trains the same run data-parallel: EC-Train's
minibatch is sharded over ``N`` spawned processes (:mod:`eads.learn.distributed`, gloo), or,
inside a ``torchrun`` launch, over the launcher's ranks. Rank 0 alone writes the run directory,
which then also records the group in ``meta.json`` (``data_parallel``) and ``metrics.json``
(``world_size``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from eads._errors import CheckpointError, ConfigError, EADSError
from eads._io import atomic_write_text
from eads.config import RunConfig
from eads.data.tabular import Standardizer, read_table, split_and_standardize
from eads.learn.distributed import (
    default_backend,
    fit_data_parallel,
    init_process_group,
    launch,
    launched_by_torchrun,
)
from eads.learn.loop import evaluate_mse, fit, fit_online
from eads.learn.registry import build_model, make_trainer
from eads.runs import RunDir, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)
MODEL_FILE = "model.safetensors"


def _metrics(model, x, y, scaler: Standardizer) -> dict:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():
        t0 = time.perf_counter()
        pred = model(xt).numpy()
        latency = (time.perf_counter() - t0) / max(len(x), 1)
    p, t = scaler.inverse(pred), scaler.inverse(y)
    var = t.var(axis=0).mean()
    return {
        "mse_standardized": evaluate_mse(model, xt, yt),
        "mae": float(np.abs(p - t).mean()),
        "rmse": float(np.sqrt(((p - t) ** 2).mean())),
        "relative_mse": float(((p - t) ** 2).mean() / var) if var > 0 else float("nan"),
        "inference_s_per_sample": latency,
        "n": len(x),
    }


def fit_run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    online: bool = False,
    progress: bool = True,
    nproc: int = 1,
    backend: str | None = None,
) -> dict:
    """Fit ``config`` on its data into ``run_dir``; returns the metrics written there.

    ``nproc`` > 1 (``eads fit --nproc N``) spawns ``nproc`` processes on this machine and trains
    data-parallel; inside a ``torchrun`` launch every rank calls this and it joins the
    launcher's group whatever ``nproc``. ``backend``: the torch.distributed backend of a group
    it starts (default ``gloo`` when spawning, ``nccl`` under ``torchrun`` when CUDA is there).
    Data-parallel, rank 0 writes the run directory and ranks other than 0 return ``{}``.
    ``online`` training runs on one process only.
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"nproc must be a positive integer, got {nproc!r}.")
    if nproc > 1 or launched_by_torchrun():
        if online:
            raise ConfigError("--online trains on one process; drop --nproc.")
        return _fit_run_data_parallel(
            config, Path(run_dir), nproc=nproc, resume=resume, progress=progress, backend=backend
        )
    run_dir = Path(run_dir)
    config = _prepare(config, run_dir, resume)
    config, table, s = _read_and_split(config)
    run = RunDir(run_dir) if resume else RunDir.create(run_dir, config.to_dict(), config.train.seed)
    run.write_json("standardizer.json", {"x": s.x_scaler.to_dict(), "y": s.y_scaler.to_dict()})
    model = build_model(config.model, table.x.shape[1], table.y.shape[1], seed=config.train.seed)
    trainer = make_trainer(config.train.trainer)
    trainer.check_model(model)
    t0 = time.perf_counter()
    metrics: dict = {}
    if online:
        stream_x = np.concatenate([s.x_train, s.x_val])
        stream_y = np.concatenate([s.y_train, s.y_val])
        res = fit_online(
            model,
            trainer,
            torch.from_numpy(stream_x),
            torch.from_numpy(stream_y),
            config.train,
            progress=progress,
        )
        run.write_json("online.json", {"errors": res.errors, "running": res.running})
        metrics["online_final_running_mse"] = float(res.running[-1])
        metrics["online_mean_mse"] = float(res.errors.mean())
    else:
        history = fit(
            model,
            trainer,
            (torch.from_numpy(s.x_train), torch.from_numpy(s.y_train)),
            (torch.from_numpy(s.x_val), torch.from_numpy(s.y_val)) if len(s.x_val) else None,
            config.train,
            checkpoint=run.checkpoint,
            resume=resume,
            progress=progress,
        )
        run.write_json("history.json", asdict(history))
        metrics["epochs_run"] = history.epochs_run
        metrics["best_epoch"] = history.best_epoch
    metrics["train_time_s"] = time.perf_counter() - t0
    return finish_run(run, model, s, config, metrics)


# ----------------------------------------------------------------------------- data parallel


def _fit_run_data_parallel(
    config: RunConfig,
    run_dir: Path,
    *,
    nproc: int,
    resume: bool,
    progress: bool,
    backend: str | None,
) -> dict:
    """``fit_run`` trained data-parallel: spawn ``nproc`` ranks, or be this ``torchrun`` rank."""
    if not isinstance(config, RunConfig):
        raise ConfigError(f"config must be a RunConfig, got {type(config).__name__}.")
    if launched_by_torchrun():
        if not dist.is_initialized():
            init_process_group(backend or default_backend())
        return _fit_run_rank(config.to_dict(), str(run_dir), resume, progress)
    # user errors surface here, before any process starts
    _prepare(config, run_dir, resume)
    launch(
        _fit_run_rank,
        nproc,
        config.to_dict(),
        str(run_dir),
        resume,
        progress,
        backend=backend or "gloo",
    )
    return json.loads((run_dir / "metrics.json").read_text())


def _prepare(config: RunConfig, run_dir: Path, resume: bool) -> RunConfig:
    """The checks before a fit, and the resolved config (the run directory's own on resume)."""
    if resume:
        run = RunDir(run_dir)
        saved = RunConfig.from_dict(run.config())
        if saved != config:
            log.info("resuming with the run directory's own configuration")
        config = saved
        if not run.checkpoint.is_file():
            raise CheckpointError(f"Cannot resume: {str(run.checkpoint)!r} does not exist.")
    elif (run_dir / MODEL_FILE).exists():
        raise ConfigError(
            f"Run directory {str(run_dir)!r} already holds a trained model; "
            "choose another --run-dir or pass --resume."
        )
    if not config.data.path:
        raise ConfigError("No data file given.")
    if not Path(config.data.path).is_file():
        raise ConfigError(f"Data file {config.data.path!r} does not exist.")
    return config


def _read_and_split(config: RunConfig):
    """``(config with the columns resolved, table, standardised splits)``."""
    table = read_table(config.data.path, config.data.inputs, config.data.outputs)
    config = config.replace(data={"inputs": list(table.inputs), "outputs": list(table.outputs)})
    s = split_and_standardize(
        table.x,
        table.y,
        val_fraction=config.data.val_fraction,
        test_fraction=config.data.test_fraction,
        seed=config.data.seed,
    )
    return config, table, s


def _fit_run_rank(config_dict: dict, run_dir: str, resume: bool, progress: bool) -> dict:
    """One rank of a data-parallel ``fit_run``; rank 0 owns the run directory.

    Module level so that :func:`eads.learn.distributed.launch` can pickle it.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    run_dir = Path(run_dir)
    box: list[Any] = [None]
    if rank == 0:
        try:
            box = [("ok", _prepare(RunConfig.from_dict(config_dict), run_dir, resume).to_dict())]
        except EADSError as exc:
            box = [("error", type(exc).__name__, str(exc))]
    dist.broadcast_object_list(box, src=0)
    if box[0][0] == "error":
        import eads._errors as errs

        raise getattr(errs, box[0][1])(box[0][2])
    config, table, s = _read_and_split(RunConfig.from_dict(box[0][1]))
    run = RunDir(run_dir)
    if rank == 0:
        if not resume:
            run = RunDir.create(run_dir, config.to_dict(), config.train.seed)
            meta = run.read_json("meta.json")
            run.write_json(
                "meta.json",
                {**meta, "data_parallel": {"world_size": world, "backend": dist.get_backend()}},
            )
        run.write_json("standardizer.json", {"x": s.x_scaler.to_dict(), "y": s.y_scaler.to_dict()})
    model = build_model(config.model, table.x.shape[1], table.y.shape[1], seed=config.train.seed)
    trainer = make_trainer(config.train.trainer)
    trainer.check_model(model)
    t0 = time.perf_counter()
    history = fit_data_parallel(
        model,
        trainer,
        (torch.from_numpy(s.x_train), torch.from_numpy(s.y_train)),
        (torch.from_numpy(s.x_val), torch.from_numpy(s.y_val)) if len(s.x_val) else None,
        config.train,
        checkpoint=run.checkpoint,
        resume=resume,
        progress=progress,
    )
    if rank != 0:
        return {}
    metrics: dict[str, Any] = {
        "epochs_run": history.epochs_run,
        "best_epoch": history.best_epoch,
        "train_time_s": time.perf_counter() - t0,
        "world_size": world,
    }
    run.write_json("history.json", asdict(history))
    return finish_run(run, model, s, config, metrics)


def finish_run(run: RunDir, model, s, config: RunConfig, metrics: dict) -> dict:
    """Evaluate every split, write the model, metrics and plots: the end of any fit."""
    for name, (x, y) in {
        "train": (s.x_train, s.y_train),
        "val": (s.x_val, s.y_val),
        "test": (s.x_test, s.y_test),
    }.items():
        if len(x):
            metrics[name] = _metrics(model, x, y, s.y_scaler)
    save_checkpoint(run.path / MODEL_FILE, dict(model.state_dict()), {"kind": config.model.kind})
    run.write_json("metrics.json", metrics)
    try:
        from eads.report.plots import plot_run

        plot_run(run.path)
    except Exception as exc:  # a plot must never lose a finished run
        log.warning("could not draw plots: %s", exc)
    return metrics


def load_trained(run_dir: str | Path):
    """``(model, config, x_scaler, y_scaler)`` of a fitted run directory."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise CheckpointError(f"Run directory {str(run.path)!r} does not exist.")
    if not (run.path / MODEL_FILE).is_file():
        raise CheckpointError(
            f"Run directory {str(run.path)!r} holds no trained model ({MODEL_FILE} is missing)."
        )
    config = RunConfig.from_dict(run.config())
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


def predict_run(run_dir: str | Path, data: str | Path, out: str | Path | None = None) -> np.ndarray:
    """Predict the outputs for the inputs in ``data``; write a CSV to ``out`` if given."""
    model, config, xs, ys = load_trained(run_dir)
    table = read_table(data, config.data.inputs, (), require_outputs=False)
    with torch.no_grad():
        pred = ys.inverse(model(torch.from_numpy(xs.transform(table.x))).numpy())
    if out is not None:
        header = ",".join(config.data.outputs)
        lines = [header] + [",".join(f"{v:.9g}" for v in row) for row in pred]
        atomic_write_text(out, "\n".join(lines) + "\n")
    return pred
