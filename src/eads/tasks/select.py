"""Hyperparameters chosen on the validation split: ``eads fit --select N`` and the pipelines.

Three layers, each usable alone:

* :func:`run_search` -- the search itself: Optuna's TPE sampler proposes ``n_trials`` settings
  from a *space*, a caller's ``objective(params, report)`` trains one and returns its validation
  score (lower is better). A trial whose circuit blows up (:class:`eads.UnstableCircuitError`)
  or whose loss diverges (:class:`eads.DataError` from the loop) is recorded as failed, and the
  search goes on. The chosen setting is the argmin of the complete trials' scores (ties: the
  earlier trial).
* :func:`select_hyperparameters` -- for pipelines holding tensors: each trial builds
  ``build(params)``, fits it with :func:`eads.fit` on ``train`` with the caller's
  :class:`eads.TrainConfig` (its epochs and validation patience; ``lr`` replaced when searched)
  and is scored by its best validation MSE (the early-stopping criterion).
* :func:`select_run` -- for run directories (``eads fit --select N``): reads and splits the data
  as :func:`eads.tasks.fit.fit_run` does, searches on the training and validation splits only
  (the test split is never used), writes ``selection.json`` after every trial, and returns the
  config with the chosen values, which ``fit_run`` then trains.

The default EADS space (:data:`EADS_SPACE`)::

    duration      = {log_uniform = [0.25, 4.0]}   # coupling-stage duration T (node time constants)
    coupling_init = {log_uniform = [0.1, 2.0]}    # std of J's initial entries times sqrt(H)
    n_hidden      = {choice = [32, 64, 128, 256]}
    lr            = {log_uniform = [3e-4, 3e-2]}

A space maps a parameter name to a distribution in the sweep's format (``log_uniform``,
``uniform``, ``int``: ``[low, high]``; ``choice``: a list; see :mod:`eads.tasks.sweep`) or to a
plain value, which fixes it (``eads_space(n_hidden=128)``: the PDE benchmark's 128 hidden nodes,
as the paper). NP-GL has only ``lr`` to choose (:data:`NPGL_SPACE`), the MLP ``n_hidden`` and
``lr`` (:data:`MLP_SPACE`).

Repeatability: trial ``i`` is proposed by a TPE sampler seeded from ``(seed, i)`` over the
finished trials, so a selection repeats exactly for one seed on the CPU, and a search that was
interrupted and continued (the finished trials re-added with ``study.add_trial``) proposes what
the uninterrupted search would have. Trials are drawn at random until :data:`STARTUP_TRIALS`
have finished (failed ones do not count; TPE needs some history); with a smaller budget the
search is a seeded random search. Every trial's model is initialised and its samples ordered
with the training seed, so trials differ only in their hyperparameters.

Pruning (``prune=True``, off by default): Optuna's ``MedianPruner`` stops a trial whose
validation loss at an epoch is worse than the median of the complete trials at that epoch (after
:data:`STARTUP_TRIALS` complete trials and :data:`PRUNE_WARMUP_EPOCHS` epochs). Its decisions
depend only on the recorded validation curves, so they repeat where training does. A pruned
trial is recorded but never chosen (it did not train to patience).

When not to use it: with a validation split of a handful of samples the argmin is noise; and a
trial budget below a few times the number of searched parameters is closer to a random guess
than to a search. Uses Optuna (a core dependency); not Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eads._errors import ConfigError, DataError, MissingExtraError, UnstableCircuitError
from eads._io import atomic_write_json
from eads.tasks.sweep import DISTRIBUTIONS, _check_distribution

log = logging.getLogger(__name__)

#: The default EADS search space (module docstring).
EADS_SPACE: dict[str, Any] = {
    "duration": {"log_uniform": [0.25, 4.0]},
    "coupling_init": {"log_uniform": [0.1, 2.0]},
    "n_hidden": {"choice": [32, 64, 128, 256]},
    "lr": {"log_uniform": [3e-4, 3e-2]},
}
#: NP-GL's: its learning rate only (it has no hidden nodes, duration or coupling init).
NPGL_SPACE: dict[str, Any] = {"lr": EADS_SPACE["lr"]}
#: The MLP's: hidden width and learning rate.
MLP_SPACE: dict[str, Any] = {"n_hidden": EADS_SPACE["n_hidden"], "lr": EADS_SPACE["lr"]}
SPACES: dict[str, dict[str, Any]] = {"eads": EADS_SPACE, "npgl": NPGL_SPACE, "mlp": MLP_SPACE}
#: Where each parameter lives in a :class:`eads.RunConfig`.
TABLE_OF: dict[str, str] = {
    "duration": "model",
    "coupling_init": "model",
    "n_hidden": "model",
    "lr": "train",
}
PARAMETERS = tuple(TABLE_OF)
#: Random trials before TPE models the history (and before the pruner may prune).
STARTUP_TRIALS = 5
#: Epochs a trial always runs before the pruner may stop it.
PRUNE_WARMUP_EPOCHS = 5
SELECTION_FILE = "selection.json"
#: The states of a trial record.
COMPLETE, FAILED, PRUNED = "complete", "failed", "pruned"


def eads_space(**overrides: Any) -> dict[str, Any]:
    """:data:`EADS_SPACE` with some parameters fixed (plain values) or given other ranges.

    ``eads_space(n_hidden=128, lr={"log_uniform": [1e-3, 1e-2]})``.
    """
    return {**EADS_SPACE, **overrides}


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a search, as ``selection.json`` holds it."""

    number: int
    params: dict[str, Any]  #: the searched values (the fixed ones are the selection's)
    state: str  #: "complete", "failed" or "pruned"
    score: float | None = None  #: best validation score (None when failed)
    epochs: float = 0
    best_epoch: int = -1
    stop_reason: str | None = None
    seconds: float = 0.0  #: wall time of the trial, model building included
    error: str | None = None  #: the failure's sentence
    #: validation loss per epoch (None where it was not finite)
    val_curve: list[float | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrialOutcome:
    """What an objective returns for one trained trial."""

    score: float  #: the validation score, lower is better (non-finite: the trial failed)
    epochs: float = 0
    best_epoch: int = -1
    stop_reason: str | None = None
    val_curve: list[float] = field(default_factory=list)
    pruned: bool = False
    payload: Any = None  #: kept for the best trial only (e.g. its trained model)
    #: the trial's training seconds over every call that trained it (a trial resumed from its
    #: checkpoint); None: the wall time of this call
    seconds: float | None = None


@dataclass(frozen=True)
class Selection:
    """The result of a search."""

    params: dict[str, Any]  #: the chosen values, fixed ones included
    score: float  #: the chosen trial's validation score
    best_trial: int
    trials: tuple[TrialRecord, ...]
    space: dict[str, Any]  #: the searched distributions
    fixed: dict[str, Any]
    n_trials: int
    seed: int
    #: the best trial's payload (select_hyperparameters: ``(model, history)``); None when the
    #: best trial was a previous one, re-added rather than trained in this call
    payload: Any = field(default=None, compare=False, repr=False)

    @property
    def n_failed(self) -> int:
        return sum(t.state == FAILED for t in self.trials)

    def table(self) -> list[dict[str, Any]]:
        """The trial records as dicts (a pipeline's result JSON)."""
        return [t.to_dict() for t in self.trials]

    def summary(self, trials: bool = True) -> dict[str, Any]:
        """Chosen values, score, budget, seed and (``trials``) the trial table (JSON-able)."""
        out = {
            "params": dict(self.params),
            "val_score": self.score,
            "best_trial": self.best_trial,
            "n_trials": self.n_trials,
            "n_failed": self.n_failed,
            "seed": self.seed,
            "space": self.space,
            "fixed": self.fixed,
            "sampler": sampler_description(),
        }
        if trials:
            out["trials"] = self.table()
        return out


def sampler_description() -> str:
    return (
        f"Optuna TPE seeded per trial from (seed, trial number); "
        f"{STARTUP_TRIALS} random startup trials"
    )


# ----------------------------------------------------------------------------- the space


def resolve_space(
    space: Mapping[str, Any] | None, allowed: Sequence[str] = PARAMETERS, default=EADS_SPACE
) -> tuple[dict[str, dict], dict[str, Any]]:
    """``(searched distributions, fixed values)`` of a space; bad ones raise ConfigError."""
    space = default if space is None else space
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(f"The search space must name at least one parameter, got {space!r}.")
    unknown = sorted(set(space) - set(allowed))
    if unknown:
        raise ConfigError(
            f"Unknown parameter(s) {unknown} in the search space; valid ones are {list(allowed)}."
        )
    searched, fixed = {}, {}
    for name in sorted(space):
        value = space[name]
        if isinstance(value, Mapping):
            dist = json.loads(json.dumps(dict(value)))  # lists, not tuples
            if len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
                raise ConfigError(
                    f"Search space entry {name!r} must be one of {{kind: args}} with kind in "
                    f"{DISTRIBUTIONS}, or a plain value to fix it, got {value!r}."
                )
            _check_distribution(name, dist)
            kind, args = next(iter(dist.items()))
            for v in args:
                _check_value(name, v)
            searched[name] = dist
        else:
            fixed[name] = _check_value(name, value)
    if not searched:
        raise ConfigError(
            f"The search space fixes every parameter ({sorted(fixed)}); nothing to search."
        )
    return searched, fixed


def _check_value(name: str, value: Any) -> Any:
    """One value of a known parameter: n_hidden a positive integer, the others positive."""
    if name not in TABLE_OF:
        return value
    if name == "n_hidden":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"n_hidden in the search space must be integers >= 1, got {value!r}.")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} in the search space must be positive numbers, got {value!r}.")
    return float(value)


def _distribution(optuna, dist: dict):
    kind, args = next(iter(dist.items()))
    if kind == "choice":
        return optuna.distributions.CategoricalDistribution(args)
    if kind == "int":
        return optuna.distributions.IntDistribution(args[0], args[1])
    return optuna.distributions.FloatDistribution(args[0], args[1], log=kind == "log_uniform")


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise MissingExtraError(
            "Hyperparameter search needs Optuna, a dependency of eads; install it with "
            "`pip install optuna`."
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


# ----------------------------------------------------------------------------- the search

Objective = Callable[[dict[str, Any], Callable[[int, float], bool]], TrialOutcome]


def run_search(
    objective: Objective,
    space: Mapping[str, Any] | None,
    n_trials: int,
    seed: int = 0,
    *,
    prune: bool = False,
    previous: Sequence[TrialRecord | Mapping] = (),
    on_trial: Callable[[TrialRecord], None] | None = None,
    allowed: Sequence[str] = PARAMETERS,
    progress: bool = False,
) -> Selection:
    """Search ``space`` with ``n_trials`` trials of ``objective``; returns the :class:`Selection`.

    ``objective(params, report)`` trains one setting (``params``: searched and fixed values) and
    returns a :class:`TrialOutcome`; ``report(epoch, val_loss)`` returns True when the pruner
    asks it to stop (always False without ``prune``). ``previous``: records of finished trials
    of the same search (kept, not retrained; the search continues from them to ``n_trials``).
    ``on_trial(record)`` is called after every trial (e.g. to write it down).
    """
    from tqdm.auto import tqdm

    optuna = _import_optuna()
    n_trials = _positive_int("n_trials", n_trials)
    seed = _positive_int("The selection seed", seed, 0)
    searched, fixed = resolve_space(space, allowed)
    dists = {k: _distribution(optuna, d) for k, d in searched.items()}
    records = [r if isinstance(r, TrialRecord) else TrialRecord.from_dict(r) for r in previous]
    if len(records) > n_trials:
        raise ConfigError(
            f"The search already holds {len(records)} trials, more than n_trials={n_trials}."
        )
    pruner = (
        optuna.pruners.MedianPruner(
            n_startup_trials=STARTUP_TRIALS, n_warmup_steps=PRUNE_WARMUP_EPOCHS
        )
        if prune
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(direction="minimize", pruner=pruner)
    for i, rec in enumerate(records):
        if rec.number != i or set(rec.params) != set(dists):
            raise ConfigError(
                f"Previous trial {rec.number} does not belong to this search (its parameters are "
                f"{sorted(rec.params)}, the space searches {sorted(dists)})."
            )
        study.add_trial(_frozen(optuna, rec, dists))

    best_payload: Any = None
    bar = tqdm(total=n_trials, initial=len(records), desc="selection", disable=not progress)
    for number in range(len(records), n_trials):
        # a sampler seeded from (seed, trial number): the same proposal resumed or not
        trial_seed = int(np.random.SeedSequence([seed, number]).generate_state(1)[0])
        study.sampler = optuna.samplers.TPESampler(seed=trial_seed, n_startup_trials=STARTUP_TRIALS)
        trial = study.ask(fixed_distributions=dists)
        params = {k: trial.params[k] for k in sorted(dists)}

        def report(epoch: int, value: float, trial=trial) -> bool:
            if not prune or not math.isfinite(value):
                return False
            trial.report(float(value), int(epoch))
            return trial.should_prune()

        t0 = time.perf_counter()
        try:
            out = objective({**params, **fixed}, report)
        except (UnstableCircuitError, DataError) as exc:
            rec = TrialRecord(
                number, params, FAILED, seconds=time.perf_counter() - t0, error=str(exc)
            )
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            seconds = time.perf_counter() - t0 if out.seconds is None else float(out.seconds)
            curve = [float(v) if math.isfinite(v) else None for v in out.val_curve]  # strict JSON
            ok = math.isfinite(out.score)
            state = PRUNED if out.pruned and ok else COMPLETE if ok else FAILED
            rec = TrialRecord(
                number,
                params,
                state,
                score=float(out.score) if ok else None,
                epochs=out.epochs,
                best_epoch=out.best_epoch,
                stop_reason=out.stop_reason,
                seconds=seconds,
                error=None if ok else f"The validation score was {out.score}.",
                val_curve=curve,
            )
            if state == COMPLETE:
                study.tell(trial, rec.score)
                if _is_best(rec, records):
                    best_payload = out.payload
            elif state == PRUNED:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.info(
            "trial %d %s: %s -> %s (%.1f s)", number, rec.state, params, rec.score, rec.seconds
        )
        records.append(rec)
        bar.update(1)
        if on_trial is not None:
            on_trial(rec)
    bar.close()
    best = _argmin(records)
    if best is None:
        first = next((r.error for r in records if r.error), "none completed.")
        raise ConfigError(
            f"Every one of the {len(records)} selection trials failed or was pruned (narrow "
            f"the search space); the first failure: {first}"
        )
    if not any(r.number == best.number for r in records[len(previous) :]):
        best_payload = None
    return Selection(
        params={**best.params, **fixed},
        score=float(best.score),
        best_trial=best.number,
        trials=tuple(records),
        space=searched,
        fixed=fixed,
        n_trials=n_trials,
        seed=seed,
        payload=best_payload,
    )


def _argmin(records: Sequence[TrialRecord]) -> TrialRecord | None:
    done = [r for r in records if r.state == COMPLETE]
    return min(done, key=lambda r: (r.score, r.number)) if done else None


def _is_best(rec: TrialRecord, earlier: Sequence[TrialRecord]) -> bool:
    best = _argmin(earlier)
    return best is None or rec.score < best.score


def _frozen(optuna, rec: TrialRecord, dists: dict):
    states = {
        COMPLETE: optuna.trial.TrialState.COMPLETE,
        PRUNED: optuna.trial.TrialState.PRUNED,
        FAILED: optuna.trial.TrialState.FAIL,
    }
    if rec.state not in states:
        raise ConfigError(f"Previous trial {rec.number} has an unknown state {rec.state!r}.")
    try:
        return optuna.trial.create_trial(
            state=states[rec.state],
            value=rec.score if rec.state == COMPLETE else None,
            params=dict(rec.params),
            distributions=dists,
            intermediate_values={i: v for i, v in enumerate(rec.val_curve) if v is not None},
        )
    except ValueError as exc:
        raise ConfigError(
            f"Previous trial {rec.number} does not fit this search space ({exc})."
        ) from None


# ----------------------------------------------------------------------------- tensors


def select_hyperparameters(
    build: Callable[[dict[str, Any]], Any],
    trainer,
    train: tuple,
    val: tuple,
    train_config,
    space: Mapping[str, Any] | None = None,
    n_trials: int = 10,
    seed: int = 0,
    *,
    prune: bool = False,
    previous: Sequence[TrialRecord | Mapping] = (),
    on_trial: Callable[[TrialRecord], None] | None = None,
    allowed: Sequence[str] = PARAMETERS,
    progress: bool = False,
    checkpoint_dir: str | Path | None = None,
) -> Selection:
    """Choose hyperparameters on ``val``: each trial fits ``build(params)`` on ``train``.

    ``train_config`` (an :class:`eads.TrainConfig`) sets every trial's training: the epoch cap,
    batch, optimiser, schedule, validation patience, wall-time limit (``max_time_s``, per trial)
    and seed; a searched or fixed ``lr`` replaces its (initial) learning rate. A trial's score
    is its best validation MSE (the loss :func:`eads.fit`'s patience watches; the parameters of
    that epoch are restored) and its stop reason the loop's (``History.stop_reason``), or
    "pruned". The returned :class:`Selection`'s ``payload`` is ``(model, history)`` of the
    chosen trial. ``space=None``: :data:`EADS_SPACE`. See the module docstring for the search.

    ``checkpoint_dir``: where each trial writes its per-epoch checkpoint
    (``trial<number>-<digest of its values>.pt``, with a ``.log`` of one line per epoch). A
    search killed and called again proposes the same trials (the sampler is seeded per trial
    over the finished ones): a finished trial returns from its checkpoint at once, the one that
    was training continues from its last epoch, and the result is that of an unbroken search
    (the trials' ``seconds`` count the training of every call). With ``prune``, a trial resumed
    mid-way reports to the pruner only the epochs after its checkpoint. The caller removes the
    folder when the result is kept.
    """
    import torch

    from eads.bench.training import epoch_log
    from eads.learn.loop import fit

    for name, pair in (("train", train), ("val", val)):
        if pair is None or len(pair) != 2:
            raise DataError(f"{name} must be a pair (x, y) of tensors, got {type(pair).__name__}.")
        x, y = pair
        if not (torch.is_tensor(x) and torch.is_tensor(y)) or x.shape[0] != y.shape[0]:
            raise DataError(f"{name} must be tensors x, y with the same number of samples.")
        if x.shape[0] == 0:
            raise DataError(f"The {name} split is empty; selection needs both splits.")

    numbers = iter(range(len(previous), n_trials))  # the trials this call trains, in order

    def objective(params: dict[str, Any], report) -> TrialOutcome:
        t0 = time.perf_counter()
        config = train_config
        if "lr" in params:
            config = dataclasses.replace(train_config, lr=float(params["lr"]))
        model = build(dict(params))
        build_s = time.perf_counter() - t0
        stopped: list[str] = []
        ckpt = _trial_checkpoint(checkpoint_dir, next(numbers), params)
        write_log = epoch_log(ckpt, config.epochs)

        def on_epoch(epoch, history):
            if write_log is not None:
                write_log(epoch, history)
            if history.stopped_early:
                return
            if report(epoch, history.val_loss[-1] if history.val_loss else math.nan):
                history.stopped_early = True  # fit's way to end a run after this epoch
                stopped.append("pruned")

        history = fit(
            model,
            trainer,
            train,
            val,
            config,
            progress=False,
            on_epoch=on_epoch,
            checkpoint=ckpt,
            resume=ckpt is not None and ckpt.is_file(),
        )
        reason = stopped[0] if stopped else str(history.stop_reason)
        return TrialOutcome(
            score=float(history.best_val),
            epochs=history.epochs_run,
            best_epoch=history.best_epoch,
            stop_reason=reason,
            val_curve=list(history.val_loss),
            pruned=bool(stopped),
            payload=(model, history),
            seconds=build_s + history.train_time_s,
        )

    return run_search(
        objective,
        space,
        n_trials,
        seed,
        prune=prune,
        previous=previous,
        on_trial=on_trial,
        allowed=allowed,
        progress=progress,
    )


def _trial_checkpoint(folder: str | Path | None, number: int, params: Mapping) -> Path | None:
    """``<folder>/trial<number>-<digest>.pt``: keyed by the trial's values as well as its number,
    so a proposal that differs from the killed search's never resumes the other's training."""
    if folder is None:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    text = json.dumps({k: params[k] for k in sorted(params)}, default=repr)
    return Path(folder) / f"trial{number}-{hashlib.sha1(text.encode()).hexdigest()[:10]}.pt"


# ----------------------------------------------------------------------------- run directories


def select_run(
    config,
    run_dir: str | Path,
    n_trials: int,
    *,
    space: Mapping[str, Any] | None = None,
    fix: Sequence[str] = (),
    seed: int | None = None,
    prune: bool = False,
    resume: bool = False,
    progress: bool = True,
):
    """Choose hyperparameters of ``config`` on its validation split; returns the chosen config.

    The data are read and split as :func:`eads.tasks.fit.fit_run` does; trials fit on the
    training split and are scored on the validation split (best validation MSE, standardised
    units); the test split is never used. ``space``: default :data:`SPACES` of the model kind
    (EADS: T, coupling_init, n_hidden, lr; NP-GL: lr; MLP: n_hidden, lr). ``fix``: names of the
    space whose value is taken from ``config`` instead (``eads fit --hidden 64 --select 8``).
    ``seed``: the sampler's seed (default ``config.train.seed``).

    ``run_dir/selection.json`` is written atomically after every trial. Called again on the
    same run directory: a complete selection is reused without training; an interrupted one
    keeps its finished trials and continues to ``n_trials``; one made with another config,
    space, seed or data, or with more trials than ``n_trials``, is refused. ``resume=True``
    (``eads fit --resume --select N``): the space, fixed values, seed and pruning are the
    existing ``selection.json``'s own, whatever ``space``, ``fix``, ``seed`` and ``prune`` say.
    """
    from eads.config import RunConfig
    from eads.learn.distributed import launched_by_torchrun
    from eads.learn.registry import build_model, make_trainer
    from eads.tasks.fit import MODEL_FILE, _read_and_split

    if not isinstance(config, RunConfig):
        raise ConfigError(f"config must be a RunConfig, got {type(config).__name__}.")
    n_trials = _positive_int("--select (the number of trials)", n_trials)
    if launched_by_torchrun():
        raise ConfigError(
            "Run the selection (--select) once, outside torchrun; then launch the training."
        )
    kind = config.model.kind
    allowed = tuple(SPACES[kind])
    own = Path(run_dir) / SELECTION_FILE
    if resume and own.is_file():  # the selection's own settings
        try:
            old = json.loads(own.read_text())
            space, fix, seed, prune = (
                {**old["space"], **old["fixed"]},
                (),
                old["seed"],
                old["prune"],
            )
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{str(own)!r} is corrupt (not a selection's JSON).") from None
    if space is None:
        space = dict(SPACES[kind])
    for name in fix:
        if name not in allowed:
            raise ConfigError(
                f"Cannot fix {name!r} for a {kind!r} model; its parameters are {list(allowed)}."
            )
    current = {"model": config.model, "train": config.train}
    space = {**space, **{n: getattr(current[TABLE_OF[n]], n) for n in fix}}
    searched, fixed = resolve_space(space, allowed, default=SPACES[kind])
    _with_params(config, fixed)
    for name, dist in searched.items():  # every end of a range must make a valid config
        for value in next(iter(dist.values())):
            _with_params(config, {name: value})
    if not config.data.val_fraction > 0:
        raise ConfigError(
            "Selection chooses on the validation split; data.val_fraction must be > 0."
        )
    if not config.data.path:
        raise ConfigError("No data file given.")
    if not Path(config.data.path).is_file():
        raise ConfigError(f"Data file {config.data.path!r} does not exist.")
    seed = config.train.seed if seed is None else seed
    seed = _positive_int("The selection seed", seed, 0)

    run_dir = Path(run_dir)
    path = run_dir / SELECTION_FILE
    config, table, s = _read_and_split(config)  # the test split s.x_test is never touched
    base = config.to_dict()
    for name in [*searched, *fixed]:
        base[TABLE_OF[name]].pop(name)
    base["data"].pop("path")  # the data are identified by their digest, wherever they lie
    digest = hashlib.sha1()
    for a in (s.x_train, s.y_train, s.x_val, s.y_val):
        digest.update(np.ascontiguousarray(a).tobytes())
    identity = {
        "config": base,
        "space": searched,
        "fixed": fixed,
        "seed": seed,
        "prune": bool(prune),
        "data": {"n_train": len(s.x_train), "n_val": len(s.x_val), "sha1": digest.hexdigest()},
    }
    identity = json.loads(json.dumps(identity))
    previous: list[dict] = []
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise ConfigError(f"{str(path)!r} is corrupt (not valid JSON).") from None
        differs = _first_difference(old, identity)
        if differs is not None:
            raise ConfigError(
                f"{str(path)!r} was made with another {differs} than this selection's; "
                "choose another --run-dir or remove it."
            )
        previous = list(old.get("trials", []))
        if old.get("complete") and old.get("n_trials") == n_trials:
            log.info("reusing the complete selection in %s", path)
            return _with_params(config, old["chosen"])
        if len(previous) > n_trials:
            raise ConfigError(
                f"{str(path)!r} already holds {len(previous)} trials, more than --select "
                f"{n_trials}; pass --select {len(previous)} or choose another --run-dir."
            )
    elif (run_dir / "config.json").exists() or (run_dir / MODEL_FILE).exists():
        raise ConfigError(
            f"Run directory {str(run_dir)!r} already holds a run whose settings no selection "
            "chose; choose another --run-dir."
        )

    trainer = make_trainer(config.train.trainer)
    n_in, n_out = table.x.shape[1], table.y.shape[1]
    trainer.check_model(build_model(config.model, n_in, n_out, seed=config.train.seed))
    t_start = time.perf_counter() - sum(float(t.get("seconds", 0.0)) for t in previous)
    document = {
        **identity,
        "metric": "best validation MSE (standardised units)",
        "sampler": sampler_description(),
        "n_trials": n_trials,
        "complete": False,
        "trials": list(previous),
    }

    def write(rec: TrialRecord) -> None:
        document["trials"].append(rec.to_dict())
        document["seconds"] = time.perf_counter() - t_start
        document["written"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_json(path, document)

    def build(params: dict[str, Any]):
        cfg = _with_params(config, params)
        return build_model(cfg.model, n_in, n_out, seed=config.train.seed)

    import torch

    run_dir.mkdir(parents=True, exist_ok=True)
    selection = select_hyperparameters(
        build,
        trainer,
        (torch.from_numpy(s.x_train), torch.from_numpy(s.y_train)),
        (torch.from_numpy(s.x_val), torch.from_numpy(s.y_val)),
        config.train,
        {**searched, **fixed},
        n_trials,
        seed,
        prune=prune,
        previous=previous,
        on_trial=write,
        allowed=allowed,
        progress=progress,
    )
    document.update(
        complete=True,
        chosen=selection.params,
        best_trial=selection.best_trial,
        val_score=selection.score,
        n_failed=selection.n_failed,
        seconds=time.perf_counter() - t_start,
        written=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    atomic_write_json(path, document)
    return _with_params(config, selection.params)


def _first_difference(old: Mapping, new: Mapping, prefix: str = "") -> str | None:
    """The dotted name of the first entry of ``new`` that ``old`` holds otherwise."""
    for key in new:
        a, b = old.get(key), new[key]
        if isinstance(a, Mapping) and isinstance(b, Mapping) and set(a) == set(b):
            inner = _first_difference(a, b, f"{prefix}{key}.")
            if inner is not None:
                return inner
        elif a != b:
            return f"{prefix}{key}" if prefix else key
    return None


def _with_params(config, params: Mapping[str, Any]):
    """``config`` with each parameter put into its table (model or train)."""
    tables: dict[str, dict] = {}
    for name, value in params.items():
        tables.setdefault(TABLE_OF[name], {})[name] = value
    return config.replace(**tables)


def read_selection(run_dir: str | Path) -> dict[str, Any]:
    """The ``selection.json`` of a run directory."""
    from eads._errors import CheckpointError

    path = Path(run_dir) / SELECTION_FILE
    if not path.is_file():
        raise CheckpointError(f"Run directory {str(run_dir)!r} holds no {SELECTION_FILE}.")
    return json.loads(path.read_text())


def format_selection(run_dir: str | Path) -> str:
    """One line for the CLI: the chosen values, the validation score and the trial budget."""
    d = read_selection(run_dir)
    values = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in d["chosen"].items()
    )
    fixed = f"; fixed: {', '.join(sorted(d['fixed']))}" if d.get("fixed") else ""
    return (
        f"selected on validation: {values} (val MSE {d['val_score']:.4g}, trial "
        f"{d['best_trial']} of a budget of {d['n_trials']}, {d.get('n_failed', 0)} failed{fixed})"
    )


__all__ = [
    "EADS_SPACE",
    "MLP_SPACE",
    "NPGL_SPACE",
    "SELECTION_FILE",
    "Selection",
    "TrialOutcome",
    "TrialRecord",
    "eads_space",
    "format_selection",
    "read_selection",
    "resolve_space",
    "run_search",
    "select_hyperparameters",
    "select_run",
]
