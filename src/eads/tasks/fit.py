"""``eads fit`` / ``eads predict``: function learning on a user's CSV or NPZ, in a run directory.

A fitted run directory holds, besides what :mod:`eads.runs` lists, ``model.safetensors`` (the
final parameters), ``standardizer.json`` (training-split statistics), ``history.json`` and
``metrics.json`` (errors on each split, in standardised and original units, and times).

``fit_run(..., nproc=N)`` (``eads fit --nproc N``) trains the same run data-parallel: EC-Train's
minibatch is sharded over ``N`` spawned processes (:mod:`eads.learn.distributed`, gloo), or,
inside a ``torchrun`` launch, over the launcher's ranks. Rank 0 alone writes the run directory,
which then also records the group in ``meta.json`` (``data_parallel``) and ``metrics.json``
(``world_size``).

Resume (``fit_run(..., resume=True)``, ``eads fit ... --resume``) finishes a run interrupted at any
moment, killed outright included, with the parameters the uninterrupted run would have had:

* the settings given must be the run directory's (``config.json``, the data file's path aside)
  and the data file the one it was created with (its size and sha256 in ``meta.json``); else it
  refuses, in one sentence naming each difference. Only the stopping limits
  (:data:`RESUMABLE_LIMITS`: the epoch cap, the wall-time limit) may change: the run then
  continues under the new ones and ``config.json`` records them;
* a run directory that does not exist, holds no usable ``config.json`` (killed before or while
  it was written) or no checkpoint yet (killed in the first epoch) starts from scratch, and a
  warning says so in one line;
* a run already complete (``model.safetensors`` and ``metrics.json`` there) is not trained
  again: a warning says so and its ``metrics.json`` is returned;
* the ``.tmp-*`` files that writes cut short by a kill leave are deleted first.

Library callers give the whole config (e.g. ``RunConfig.from_dict(RunDir(d).config())``);
``eads fit --resume`` gives the run directory's own settings with the options named on its
command line applied (:func:`resume_base`), so that ``eads fit data.csv --run-dir r --resume``
needs none of the original options. Bit for bit only on the same machine with the same torch
thread count (the order of a float sum); the warnings go to the ``eads.tasks.fit`` logger, which
the CLI leaves to logging's last-resort handler: one line on stderr each.
"""

from __future__ import annotations

import json
import logging
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from eads import _faults
from eads._errors import CheckpointError, ConfigError, DataError, EADSError
from eads._io import atomic_write_text
from eads.config import RunConfig, load_toml
from eads.data.tabular import Standardizer, read_table, split_and_standardize
from eads.learn.distributed import (
    default_backend,
    fit_data_parallel,
    init_process_group,
    launch,
    launched_by_torchrun,
)
from eads.learn.loop import evaluate_mse, fit, fit_online
from eads.learn.registry import MODEL_FILE, build_model, load_trained, make_trainer
from eads.runs import RunDir, data_fingerprint, save_checkpoint

log = logging.getLogger(__name__)
#: the settings a resume may change: limits on how long a run trains, not what an epoch does
RESUMABLE_LIMITS = ("train.epochs", "train.max_time_s")


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
    ``online`` training runs on one process only. ``resume``: see the module docstring.
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
    plan = _prepare(config, run_dir, resume)
    if plan.complete is not None:
        return plan.complete
    resume = plan.resume
    config, table, s = _read_and_split(plan.config)
    # the model and trainer first: a setting they refuse leaves no run directory behind
    model = build_model(config.model, table.x.shape[1], table.y.shape[1], seed=config.train.seed)
    trainer = make_trainer(config.train.trainer)
    trainer.check_model(model)
    run = RunDir(run_dir) if resume else _create(run_dir, config)
    run.write_json("standardizer.json", {"x": s.x_scaler.to_dict(), "y": s.y_scaler.to_dict()})
    trainer = _faults.after_each_call(trainer, "loss_and_gradients", "minibatch")
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
        metrics["stop_reason"] = history.stop_reason
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
        owned = not dist.is_initialized()  # a caller's group is the caller's to end
        if owned:
            init_process_group(backend or default_backend())
        try:
            return _fit_run_rank(config.to_dict(), str(run_dir), resume, progress)
        finally:  # a group left to the interpreter's exit can abort the rank (SIGABRT)
            if owned:
                dist.destroy_process_group()
    # user errors surface here, before any process starts; the ranks take the plan as it is
    plan = _prepare(config, run_dir, resume)
    if plan.complete is not None:
        return plan.complete
    launch(
        _fit_run_rank,
        nproc,
        plan.config.to_dict(),
        str(run_dir),
        plan.resume,
        progress,
        True,
        backend=backend or "gloo",
    )
    return json.loads((run_dir / "metrics.json").read_text())


@dataclass(frozen=True)
class _Plan:
    """What a fit does: train ``config`` from scratch or, ``resume``, from the checkpoint; or,
    ``complete`` (the metrics of a run already complete), nothing."""

    config: RunConfig
    resume: bool = False
    complete: dict | None = None


def _create(run_dir: Path, config: RunConfig) -> RunDir:
    """A new run directory for ``config``, recording its data file's fingerprint."""
    return RunDir.create(
        run_dir, config.to_dict(), config.train.seed, data=data_fingerprint(config.data.path)
    )


def _prepare(config: RunConfig, run_dir: Path, resume: bool) -> _Plan:
    """The checks before a fit, and what it does (see the module docstring on resume)."""
    if not isinstance(config, RunConfig):
        raise ConfigError(f"config must be a RunConfig, got {type(config).__name__}.")
    if not resume and (run_dir / MODEL_FILE).exists():
        raise ConfigError(
            f"Run directory {str(run_dir)!r} already holds a trained model; "
            "choose another --run-dir or pass --resume."
        )
    if not config.data.path:
        raise ConfigError("No data file given.")
    if not Path(config.data.path).is_file():
        raise ConfigError(f"Data file {config.data.path!r} does not exist.")
    return _resume_plan(config, RunDir(run_dir)) if resume else _Plan(config)


def _saved_config(run: RunDir) -> RunConfig | None:
    """The run directory's ``config.json``, or None where there is none that reads as one."""
    try:
        return RunConfig.from_dict(run.config())
    except (CheckpointError, ConfigError, AttributeError, TypeError, ValueError):
        return None


def _from_scratch(config: RunConfig, why: str) -> _Plan:
    log.warning("%s; starting the run from scratch.", why)
    return _Plan(config)


def _resume_plan(config: RunConfig, run: RunDir) -> _Plan:
    """Resume ``run`` given ``config``: from its checkpoint, from scratch, or not at all."""
    where = str(run.path)
    if not run.path.is_dir():
        return _from_scratch(config, f"{where} does not exist yet")
    for path in run.remove_temporaries():
        log.info("removed %s, left by a write that was cut short", path.name)
    saved = _saved_config(run)
    if saved is None:
        if run.checkpoint.is_file():
            raise CheckpointError(
                f"Cannot resume {where!r}: it holds a checkpoint but no readable config.json "
                "to say which run it belongs to."
            )
        return _from_scratch(config, f"{where} holds no config.json yet")
    config = _resolve_columns(config, saved)
    changed = _differences(saved, config)
    fixed = [c for c in changed if c[0] not in RESUMABLE_LIMITS]
    if fixed:
        listed = ", ".join(f"{name} {old!r} -> {new!r}" for name, old, new in fixed)
        raise ConfigError(
            f"Cannot resume {where!r} with settings that differ from its config.json "
            f"({listed}); give the run's own settings, or another --run-dir for a new run."
        )
    _check_same_data(run, config)
    if changed:
        listed = ", ".join(f"{name} {old!r} -> {new!r}" for name, old, new in changed)
        log.warning("%s resumes with new limits: %s.", where, listed)
        recorded = saved.to_dict()  # the saved path stays: the data are the same
        recorded["train"].update({name.split(".", 1)[1]: new for name, _, new in changed})
        run.write_json("config.json", RunConfig.from_dict(recorded).to_dict())
    elif (run.path / "metrics.json").is_file() and (run.path / MODEL_FILE).is_file():
        log.warning("%s is already complete; reporting its metrics without training.", where)
        return _Plan(config, complete=run.read_json("metrics.json"))
    if not run.checkpoint.is_file():
        return _from_scratch(config, f"{where} holds no checkpoint yet")
    return _Plan(config, resume=True)


def _resolve_columns(config: RunConfig, saved: RunConfig) -> RunConfig:
    """``config`` with default (empty) inputs/outputs resolved as the data file's header does."""
    if config.data.inputs and config.data.outputs:
        return config
    if not saved.data.inputs or not saved.data.outputs:
        return config  # nothing resolved to compare with
    table = read_table(config.data.path, config.data.inputs, config.data.outputs)
    return config.replace(data={"inputs": list(table.inputs), "outputs": list(table.outputs)})


def _differences(saved: RunConfig, given: RunConfig) -> list[tuple[str, object, object]]:
    """``(table.setting, saved value, given value)`` of each setting that differs (the data
    file's path aside: the data are compared by content)."""
    a, b = saved.to_dict(), given.to_dict()
    out = []
    for table in a:
        for key in a[table]:
            if (table, key) != ("data", "path") and a[table][key] != b[table][key]:
                out.append((f"{table}.{key}", _shown(a[table][key]), _shown(b[table][key])))
    return out


def _shown(value):
    return list(value) if isinstance(value, tuple) else value


def _check_same_data(run: RunDir, config: RunConfig) -> None:
    """Refuse a data file other than the one the run was created with (if it recorded one)."""
    try:
        recorded = run.read_json("meta.json").get("data")
    except CheckpointError:  # killed before meta.json was written: nothing trained yet
        return
    if not recorded:
        return  # a run directory from before fingerprints were recorded
    now = data_fingerprint(config.data.path)
    if (now["bytes"], now["sha256"]) != (recorded.get("bytes"), recorded.get("sha256")):
        raise DataError(
            f"Cannot resume {str(run.path)!r} on {config.data.path!r}: it is not the data file "
            f"the run was created with ({recorded.get('path')!r}: {recorded.get('bytes')} "
            f"bytes, sha256 {str(recorded.get('sha256'))[:12]}..., against {now['bytes']} "
            f"bytes, sha256 {now['sha256'][:12]}... now)."
        )


def resume_base(run_dir: str | Path, config_file: str | Path | None = None) -> RunConfig | None:
    """The settings ``eads fit --resume`` starts from, before its command-line options.

    The run directory's ``config.json`` with the settings written in the TOML ``config_file``
    (only those it names) applied over it; None where ``run_dir`` holds no readable
    ``config.json`` (the run then starts from scratch, from the defaults).
    """
    saved = _saved_config(RunDir(run_dir))
    if saved is None:
        return None
    if config_file is None:
        return saved
    load_toml(config_file)  # its errors, in its words
    tables = tomllib.loads(Path(config_file).read_text())
    return saved.replace(**{name: dict(values) for name, values in tables.items()})


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


def _fit_run_rank(
    config_dict: dict, run_dir: str, resume: bool, progress: bool, prepared: bool = False
) -> dict:
    """One rank of a data-parallel ``fit_run``; rank 0 owns the run directory.

    ``prepared``: the spawning process has made the plan (``config_dict``, ``resume``);
    otherwise (a ``torchrun`` rank) rank 0 makes it. Module level so that
    :func:`eads.learn.distributed.launch` can pickle it.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    run_dir = Path(run_dir)
    box: list[Any] = [None]
    if rank == 0:
        try:
            plan = (
                _Plan(RunConfig.from_dict(config_dict), resume)
                if prepared
                else _prepare(RunConfig.from_dict(config_dict), run_dir, resume)
            )
            box = [("ok", plan.config.to_dict(), plan.resume, plan.complete)]
        except EADSError as exc:
            box = [("error", type(exc).__name__, str(exc))]
    dist.broadcast_object_list(box, src=0)
    if box[0][0] == "error":
        import eads._errors as errs

        raise getattr(errs, box[0][1])(box[0][2])
    _, config_dict, resume, complete = box[0]
    if complete is not None:
        return complete if rank == 0 else {}
    config, table, s = _read_and_split(RunConfig.from_dict(config_dict))
    model = build_model(config.model, table.x.shape[1], table.y.shape[1], seed=config.train.seed)
    trainer = make_trainer(config.train.trainer)
    trainer.check_model(model)
    run = RunDir(run_dir)
    if rank == 0:
        if not resume:
            run = _create(run_dir, config)
            meta = run.read_json("meta.json")
            run.write_json(
                "meta.json",
                {**meta, "data_parallel": {"world_size": world, "backend": dist.get_backend()}},
            )
        run.write_json("standardizer.json", {"x": s.x_scaler.to_dict(), "y": s.y_scaler.to_dict()})
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
        "stop_reason": history.stop_reason,
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
