"""``eads sweep SPEC``: grid, random or Optuna (TPE) search over ``eads fit`` settings and seeds.

A spec (TOML or YAML) holds the ``[model]``, ``[train]`` and ``[data]`` tables of an ``eads fit``
config (the settings every trial shares), the swept settings and the sweep's own options::

    [sweep]
    search = "grid"              # "grid", "random" or "optuna" (TPE)
    metric = "val.relative_mse"  # minimised; only validation metrics (val.*) may choose
    seeds = [0, 1]               # train.seed of each setting's trials (init and sample order)
    trials = 8                   # random / optuna: number of settings drawn
    batch = 4                    # optuna: settings proposed at once (then told their results)
    search_seed = 0              # the random / TPE sampler's seed
    retries = 2                  # re-runs of a trial whose worker process dies
    cpus = 1                     # per trial (also its torch threads)
    gpus = 0                     # per trial, a fraction allowed (e.g. 0.25)

    [data]                       # omit path for the demo task (Burgers map, see [demo])
    path = "measurements.csv"
    [demo]
    n_samples = 1200
    [model]
    n_hidden = 32
    [train]
    epochs = 20

    [grid]                       # each setting a list; trials = product x seeds
    model.n_hidden = [16, 32]
    train.lr = [1e-3, 3e-3]

    [space]                      # random / optuna: one distribution per setting
    train.lr = { log_uniform = [1e-4, 1e-2] }
    model.duration = { uniform = [0.5, 2.0] }
    model.n_steps = { int = [4, 16] }
    model.solver = { choice = ["rk4", "midpoint"] }

With ``search = "random"`` a ``[grid]`` may be given too: every draw is run at every grid point.

Held-out test data: the sweep splits the data once (``data.test_fraction``, ``data.seed``) into
``data/dev.npz`` (train + validation) and ``data/test.npz``. Trials are ordinary ``eads fit``
runs on the development file (``fit_run``, test fraction 0) and never see the test split; the
chosen setting (lowest mean validation metric over its seeds) is evaluated on it once.

The sweep directory holds ``spec.toml``/``spec.yaml`` (the spec as given), ``sweep.json`` (the
resolved spec, code revision, executor, trial ids), ``cells/<trial>.json`` (each trial's status,
metrics or error), ``trials/<trial>/`` (each trial's run directory), ``results.csv`` and
``results.json`` (the table), ``metric.png`` (the metric against each swept setting) and
``best.json`` (the chosen setting and its test metrics).

Re-running a sweep into the same directory starts no trial that already holds a result; a trial
that was interrupted resumes from its checkpoint (``fit_run(resume=True)``). A trial's id is a
digest of its full configuration and data, so a changed spec makes new trials, never stale reuse.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import itertools
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eads._errors import ConfigError
from eads._io import atomic_write_json, atomic_write_text, atomic_write_with
from eads.config import MODEL_KINDS, RunConfig
from eads.tasks.executor import EXECUTORS, Cell, run_cells

log = logging.getLogger(__name__)

SEARCHES = ("grid", "random", "optuna")
DISTRIBUTIONS = ("log_uniform", "uniform", "int", "choice")
METRICS = ("val.relative_mse", "val.mse_standardized", "val.mae", "val.rmse")
TABLES = ("model", "train", "data")
SWEPT_TABLES = ("model", "train")  #: the data and its split stay fixed for a whole sweep
DEV_FILE, TEST_FILE = "data/dev.npz", "data/test.npz"
_SWEEP_KEYS = {
    "search",
    "metric",
    "seeds",
    "trials",
    "batch",
    "search_seed",
    "retries",
    "cpus",
    "gpus",
    "name",
}
_DEMO_KEYS = {"n_samples", "n_points", "seed"}
_TOP_KEYS = {"sweep", "grid", "space", "demo", *TABLES}


@dataclass(frozen=True)
class SweepSpec:
    """A resolved sweep specification (see the module docstring for the file format)."""

    base: RunConfig  #: settings every trial shares (data.path: the user's file, "" = demo)
    grid: dict[str, list] = field(default_factory=dict)  #: dotted setting -> values
    space: dict[str, dict] = field(default_factory=dict)  #: dotted setting -> {kind: args}
    search: str = "grid"
    metric: str = "val.relative_mse"
    seeds: tuple[int, ...] = (0,)
    trials: int = 0
    batch: int = 4
    search_seed: int = 0
    retries: int = 2
    cpus: float = 1.0
    gpus: float = 0.0
    demo: dict[str, int] = field(default_factory=dict)
    name: str = ""
    raw: dict = field(default_factory=dict, compare=False)  #: the spec as read

    @property
    def swept(self) -> list[str]:
        return sorted(set(self.grid) | set(self.space))


# ----------------------------------------------------------------------------- reading a spec


def read_spec(path: str | Path) -> tuple[SweepSpec, str]:
    """Read and check a TOML or YAML spec; returns ``(spec, its text)``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Sweep spec {str(path)!r} does not exist.")
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib

        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Sweep spec {str(path)!r} is not valid TOML: {exc}.") from None
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError("A YAML spec needs PyYAML (`pip install pyyaml`).") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            msg = str(exc).replace("\n", " ")
            raise ConfigError(f"Sweep spec {str(path)!r} is not valid YAML: {msg}.") from None
    else:
        raise ConfigError(f"Sweep spec {str(path)!r} must be .toml, .yaml or .yml.")
    if not isinstance(raw, dict):
        raise ConfigError(f"Sweep spec {str(path)!r} must be a table of settings.")
    return parse_spec(raw), text


def _flatten(d: dict, prefix: str, leaf) -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not leaf(value):
            out.update(_flatten(value, name + ".", leaf))
        else:
            out[name] = value
    return out


def _is_distribution(v: dict) -> bool:
    return len(v) == 1 and next(iter(v)) in DISTRIBUTIONS


def _check_setting(name: str, where: str) -> None:
    table, _, key = name.partition(".")
    known = {f"{t}.{k}" for t in SWEPT_TABLES for k in RunConfig().to_dict()[t]} - {"train.seed"}
    if name not in known:
        hint = (
            " (seeds go in [sweep] seeds; the data and its split are fixed for a sweep)"
            if table in TABLES
            else ""
        )
        raise ConfigError(
            f"Unknown setting {name!r} in [{where}]{hint}; valid ones are {sorted(known)}."
        )


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"[sweep] {name} must be an integer >= {minimum}, got {value!r}.")
    return value


def parse_spec(raw: dict) -> SweepSpec:
    """Check a spec read from TOML/YAML and resolve it (raises :class:`ConfigError`)."""
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(
            f"Unknown table(s) {sorted(unknown)} in the sweep spec; valid: {sorted(_TOP_KEYS)}."
        )
    opts = dict(raw.get("sweep") or {})
    bad = set(opts) - _SWEEP_KEYS
    if bad:
        raise ConfigError(f"Unknown [sweep] option(s) {sorted(bad)}; valid: {sorted(_SWEEP_KEYS)}.")
    demo = dict(raw.get("demo") or {})
    bad = set(demo) - _DEMO_KEYS
    if bad:
        raise ConfigError(f"Unknown [demo] option(s) {sorted(bad)}; valid: {sorted(_DEMO_KEYS)}.")
    for k, v in demo.items():
        _positive_int(f"demo.{k}", v, 0 if k == "seed" else 1)
    base = RunConfig.from_dict({t: raw.get(t) or {} for t in TABLES})  # unknown settings raise
    if not base.data.val_fraction > 0:
        raise ConfigError("A sweep chooses on the validation split; data.val_fraction must be > 0.")
    search = opts.get("search", "grid")
    if search not in SEARCHES:
        raise ConfigError(f"[sweep] search must be one of {SEARCHES}, got {search!r}.")
    metric = opts.get("metric", "val.relative_mse")
    if metric not in METRICS:
        raise ConfigError(
            f"[sweep] metric must be a validation metric, one of {METRICS}, got {metric!r}."
        )
    seeds = opts.get("seeds", [base.train.seed])
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"[sweep] seeds must be a non-empty list of integers, got {seeds!r}.")
    for s in seeds:
        _positive_int("seeds entry", s, 0)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"[sweep] seeds must not repeat, got {seeds!r}.")

    grid_raw = raw.get("grid")
    grid = _flatten(grid_raw or {}, "", lambda v: False)
    for name, values in grid.items():
        _check_setting(name, "grid")
        if not isinstance(values, list):
            raise ConfigError(f"[grid] {name} must be a list of values, got {values!r}.")
        if not values:
            raise ConfigError(f"[grid] {name} is an empty list; give at least one value.")
    space = _flatten(raw.get("space") or {}, "", _is_distribution)
    for name, dist in space.items():
        _check_setting(name, "space")
        if not isinstance(dist, dict) or not _is_distribution(dist):
            raise ConfigError(
                f"[space] {name} must be one of {{kind = args}} with kind in {DISTRIBUTIONS}, "
                f"got {dist!r}."
            )
        _check_distribution(name, dist)
    overlap = set(grid) & set(space)
    if overlap:
        raise ConfigError(f"Setting(s) {sorted(overlap)} are in both [grid] and [space].")

    if search == "grid":
        if grid_raw is not None and not grid:
            raise ConfigError("The spec's [grid] is empty; give at least one setting with values.")
        if not grid and len(seeds) < 2:
            raise ConfigError(
                "Nothing to sweep: give a [grid] with at least one setting, or several seeds."
            )
        if space:
            raise ConfigError("[space] needs search = 'random' or 'optuna', not 'grid'.")
        trials = 0
    else:
        if not space:
            raise ConfigError(f"search = {search!r} needs a non-empty [space] of distributions.")
        trials = _positive_int("trials", opts.get("trials", 0))
        if search == "optuna" and grid:
            raise ConfigError("search = 'optuna' takes no [grid]; put choices in [space].")
    cpus, gpus = opts.get("cpus", 1), opts.get("gpus", 0)
    if not isinstance(cpus, int | float) or isinstance(cpus, bool) or not cpus > 0:
        raise ConfigError(f"[sweep] cpus must be a positive number, got {cpus!r}.")
    if not isinstance(gpus, int | float) or isinstance(gpus, bool) or not gpus >= 0:
        raise ConfigError(f"[sweep] gpus must be a number >= 0, got {gpus!r}.")
    spec = SweepSpec(
        base=base,
        grid=grid,
        space=space,
        search=search,
        metric=metric,
        seeds=tuple(seeds),
        trials=trials,
        batch=_positive_int("batch", opts.get("batch", 4)),
        search_seed=_positive_int("search_seed", opts.get("search_seed", 0), 0),
        retries=_positive_int("retries", opts.get("retries", 2), 0),
        cpus=float(cpus),
        gpus=float(gpus),
        demo=demo,
        name=str(opts.get("name", "")),
        raw=raw,
    )
    for setting in _initial_settings(spec):  # every grid point must make a valid config
        _trial_config(spec, setting, spec.seeds[0])
    for name, dist in space.items():  # and every end of every range / every choice
        kind, args = next(iter(dist.items()))
        for value in args:
            _trial_config(spec, {name: value}, spec.seeds[0])
    return spec


def _check_distribution(name: str, dist: dict) -> None:
    kind, args = next(iter(dist.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"[space] {name} choice must be a non-empty list, got {args!r}.")
        return
    ok = (
        isinstance(args, list)
        and len(args) == 2
        and all(isinstance(a, int | float) and not isinstance(a, bool) for a in args)
    )
    if not ok or not args[0] < args[1] or (kind == "log_uniform" and args[0] <= 0):
        raise ConfigError(
            f"[space] {name} {kind} needs [low, high] with low < high"
            f"{' and low > 0' if kind == 'log_uniform' else ''}, got {args!r}."
        )
    if kind == "int" and not all(isinstance(a, int) for a in args):
        raise ConfigError(f"[space] {name} int bounds must be integers, got {args!r}.")


# ----------------------------------------------------------------------------- trials


def _as_tables(setting: dict[str, Any]) -> dict[str, dict]:
    tables: dict[str, dict] = {}
    for name, value in setting.items():
        table, _, key = name.partition(".")
        tables.setdefault(table, {})[key] = value
    return tables


def _trial_config(spec: SweepSpec, setting: dict[str, Any], seed: int) -> RunConfig:
    """The ``eads fit`` config of one trial; the data is the sweep's development file."""
    from eads.learn.registry import build_model, default_trainer_for, make_trainer

    d = spec.base.to_dict()
    for table, values in _as_tables(setting).items():
        d[table].update(values)
    if (
        d["model"]["kind"] in MODEL_KINDS
        and "trainer" not in (spec.raw.get("train") or {})
        and "train.trainer" not in setting
    ):
        kind, nonideal = d["model"]["kind"], bool(d["model"].get("nonideal"))
        d["train"]["trainer"] = default_trainer_for(kind, nonideal)  # as `eads fit` does
    d["train"]["seed"] = seed
    # the validation share of all data, as a share of the development data the trial sees
    d["data"]["val_fraction"] /= 1.0 - spec.base.data.test_fraction
    d["data"].update(path=DEV_FILE, test_fraction=0.0, inputs=[], outputs=[])
    config = RunConfig.from_dict(d)
    trainer = make_trainer(config.train.trainer)  # unknown trainer / solver / model raise here
    trainer.check_model(build_model(config.model, 1, 1, seed=0))
    return config


def _sample(dist: dict, rng: np.random.Generator):
    kind, args = next(iter(dist.items()))
    if kind == "choice":
        return args[int(rng.integers(len(args)))]
    if kind == "int":
        return int(rng.integers(args[0], args[1] + 1))
    if kind == "uniform":
        return float(rng.uniform(args[0], args[1]))
    return float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))


def _grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    keys = sorted(grid)
    combos = itertools.product(*(grid[k] for k in keys))
    return [dict(zip(keys, values, strict=True)) for values in combos]


def _initial_settings(spec: SweepSpec) -> list[dict[str, Any]]:
    """All settings of a grid or random search (optuna: none, it proposes them as it goes)."""
    if spec.search == "grid":
        return _grid_points(spec.grid)
    if spec.search == "optuna":
        return []
    rng = np.random.default_rng(spec.search_seed)
    keys = sorted(spec.space)
    draws = [{k: _sample(spec.space[k], rng) for k in keys} for _ in range(spec.trials)]
    return [{**g, **r} for r in draws for g in _grid_points(spec.grid)]


def _cells(spec: SweepSpec, setting: dict[str, Any], data_tag: dict) -> list[Cell]:
    out = []
    for seed in spec.seeds:
        config = _trial_config(spec, setting, seed).replace(
            data={"inputs": data_tag["inputs"], "outputs": data_tag["outputs"]}
        )
        out.append(
            Cell(
                task="sweep",
                dataset=data_tag["name"],
                model=config.model.kind,
                params={**setting, "config": config.to_dict(), "data": data_tag},
                seed=seed,
            )
        )
    return out


def run_trial(cell: Cell, sweep_dir: str | Path, *, threads: int = 1) -> dict:
    """One trial: an ``eads fit`` run in ``trials/<id>``, resumed from its checkpoint if present.

    Returns the validation and training metrics (flattened ``split.metric``) and the run dir.
    """
    import torch

    from eads.runs import CHECKPOINT
    from eads.tasks.fit import fit_run

    torch.set_num_threads(max(1, threads))
    sweep_dir = Path(sweep_dir)
    run_dir = sweep_dir / "trials" / cell.id
    metrics_file = run_dir / "metrics.json"
    d = json.loads(json.dumps(cell.params["config"]))
    d["data"]["path"] = str(sweep_dir / d["data"]["path"])
    config = RunConfig.from_dict(d)
    if metrics_file.is_file():  # finished, but its result was not recorded
        metrics = json.loads(metrics_file.read_text())
    elif (run_dir / CHECKPOINT).is_file():
        log.info("trial %s resumes from its checkpoint", cell.id)
        metrics = fit_run(config, run_dir, resume=True, progress=False)
    else:
        metrics = fit_run(config, run_dir, progress=False)
    flat: dict[str, Any] = {"run_dir": str(run_dir.relative_to(sweep_dir))}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


# ----------------------------------------------------------------------------- the sweep


def _prepare_data(spec: SweepSpec, sweep_dir: Path) -> dict:
    """Write ``data/dev.npz`` and ``data/test.npz``; return a tag naming and hashing the data."""
    from eads.data.tabular import read_table

    inputs, outputs = ["x"], ["y"]
    if spec.base.data.path:
        table = read_table(spec.base.data.path, spec.base.data.inputs, spec.base.data.outputs)
        x, y, name = table.x, table.y, Path(spec.base.data.path).stem
        if len(table.inputs) == x.shape[1] and len(table.outputs) == y.shape[1]:
            inputs, outputs = list(table.inputs), list(table.outputs)  # keep the column names
    else:
        from eads.data.demo import burgers_demo

        x, y = burgers_demo(
            spec.demo.get("n_samples", 1200),
            spec.demo.get("n_points", 32),
            seed=spec.demo.get("seed", 0),
        )
        name = "demo"
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = x.shape[0]
    n_test = int(round(spec.base.data.test_fraction * n))
    order = np.random.default_rng(spec.base.data.seed).permutation(n)
    test, dev = order[:n_test], order[n_test:]
    if len(dev) < 3:
        raise ConfigError(f"Too few samples ({n}) for a sweep with data.test_fraction set.")
    digest = hashlib.sha1(x.tobytes() + y.tobytes() + order.tobytes()).hexdigest()[:12]
    for rel, idx in ((DEV_FILE, dev), (TEST_FILE, test)):
        arrays = _columns(inputs, x[idx]) | _columns(outputs, y[idx])
        atomic_write_with(sweep_dir / rel, lambda tmp, a=arrays: np.savez(tmp, **a))
    return {
        "name": name,
        "sha1": digest,
        "n_dev": int(len(dev)),
        "n_test": int(len(test)),
        "inputs": inputs,
        "outputs": outputs,
    }


def _columns(names: list[str], a: np.ndarray) -> dict[str, np.ndarray]:
    return {names[0]: a} if len(names) == 1 else {n: a[:, i] for i, n in enumerate(names)}


def _setting_of(result: dict, swept: list[str]) -> dict[str, Any]:
    params = result["cell"]["params"]
    return {k: params[k] for k in swept if k in params}


def _key(setting: dict) -> str:
    return json.dumps(setting, sort_keys=True)


def _choose(spec: SweepSpec, results: list[dict]) -> dict | None:
    """The setting with the lowest mean validation metric over its seeds (all seeds ok)."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(_key(_setting_of(r, spec.swept)), []).append(r)
    best = None
    for rows in groups.values():
        if any(r["status"] != "ok" or spec.metric not in r for r in rows):
            continue
        value = float(np.mean([r[spec.metric] for r in rows]))
        if math.isfinite(value) and (best is None or value < best["val_mean"]):
            best = {
                "setting": _setting_of(rows[0], spec.swept),
                "val_mean": value,
                "val_per_seed": {str(r["cell"]["seed"]): r[spec.metric] for r in rows},
                "trials": [r["id"] for r in rows],
            }
    return best


def _evaluate_test(sweep_dir: Path, best: dict) -> dict:
    """Test metrics of each of the chosen setting's trials (the one look at the test split)."""
    from eads.data.tabular import read_table
    from eads.tasks.fit import _metrics, load_trained

    with np.load(sweep_dir / TEST_FILE) as data:
        if not len(data[data.files[0]]):
            return {}
    per_trial = {}
    for trial in best["trials"]:
        model, config, xs, ys = load_trained(sweep_dir / "trials" / trial)
        table = read_table(sweep_dir / TEST_FILE, config.data.inputs, config.data.outputs)
        per_trial[trial] = _metrics(model, xs.transform(table.x), ys.transform(table.y), ys)
    keys = ("mse_standardized", "mae", "rmse", "relative_mse")
    mean = {k: float(np.mean([m[k] for m in per_trial.values()])) for k in keys}
    std = {k: float(np.std([m[k] for m in per_trial.values()])) for k in keys}
    return {"per_trial": per_trial, "mean": mean, "std_over_seeds": std, "n": table.x.shape[0]}


def _write_table(sweep_dir: Path, spec: SweepSpec, results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        row = {
            "trial": r["id"],
            "status": r["status"],
            "seed": r["cell"]["seed"],
            **_setting_of(r, spec.swept),
        }
        row.update({k: v for k, v in r.items() if k not in ("cell", "id", "status", "traceback")})
        rows.append(row)
    atomic_write_json(sweep_dir / "results.json", {"metric": spec.metric, "rows": rows})
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns)
            w.writeheader()
            w.writerows(rows)

    atomic_write_with(sweep_dir / "results.csv", write)
    return rows


def plot_sweep(sweep_dir: str | Path) -> Path | None:
    """Draw ``metric.png``: the metric of each trial against each swept setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep_dir = Path(sweep_dir)
    table = json.loads((sweep_dir / "results.json").read_text())
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    metric, swept = table["metric"], meta["swept"] or ["seed"]
    rows = [r for r in table["rows"] if r["status"] == "ok" and metric in r]
    if not rows:
        return None
    best = set()
    if (sweep_dir / "best.json").is_file():
        best = set(json.loads((sweep_dir / "best.json").read_text())["trials"])
    fig, axes = plt.subplots(1, len(swept), figsize=(3.4 * len(swept), 3.0), squeeze=False)
    for ax, name in zip(axes[0], swept, strict=True):
        values = [r.get(name) for r in rows]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric:
            xs = np.asarray(values, dtype=float)
            if xs.min() > 0 and xs.max() / xs.min() >= 10:
                ax.set_xscale("log")
        else:
            labels = sorted({str(v) for v in values})
            xs = np.asarray([labels.index(str(v)) for v in values], dtype=float)
            ax.set_xticks(range(len(labels)), labels)
        ys = np.asarray([r[metric] for r in rows])
        chosen = np.asarray([r["trial"] in best for r in rows])
        ax.scatter(xs[~chosen], ys[~chosen], s=18, alpha=0.7, label="trial")
        if chosen.any():
            ax.scatter(xs[chosen], ys[chosen], s=40, marker="*", color="C3", label="chosen")
        ax.set_xlabel(name)
        ax.set_yscale("log" if ys.min() > 0 else "linear")
    axes[0][0].set_ylabel(metric)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    out = sweep_dir / "metric.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def run_sweep(
    spec: SweepSpec | str | Path,
    sweep_dir: str | Path,
    *,
    executor: str = "ray",
    address: str | None = None,
    progress: bool = True,
    trial_fn=None,
) -> dict:
    """Run (or finish) a sweep into ``sweep_dir``; returns the summary written to ``best.json``.

    ``spec`` is a :class:`SweepSpec` or the path of a TOML/YAML spec. ``executor="ray"`` runs
    the trials as Ray tasks (``ray.init()`` here, or ``address`` to join a cluster),
    ``"local"`` one after another in this process. ``trial_fn(cell, sweep_dir)`` replaces
    :func:`run_trial` (tests use it to kill a worker). Bad specs and an unreachable address
    raise :class:`ConfigError` before anything is written or started.
    """
    from eads.runs import git_revision

    text, suffix = None, ".toml"
    if not isinstance(spec, SweepSpec):
        suffix = Path(spec).suffix
        spec, text = read_spec(spec)
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {EXECUTORS}, got {executor!r}.")
    if address and executor != "ray":
        raise ConfigError(f"--address {address!r} needs --executor ray, got {executor!r}.")
    if spec.base.data.path and not Path(spec.base.data.path).is_file():
        raise ConfigError(f"Data file {spec.base.data.path!r} does not exist.")
    if spec.search == "optuna":
        _import_optuna()
    if executor == "ray":
        from eads.tasks.executor import connect_ray

        connect_ray(address)  # fails before anything is written

    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if text is not None:
        atomic_write_text(sweep_dir / f"spec{suffix if suffix != '.yml' else '.yaml'}", text)
    data_tag = _prepare_data(spec, sweep_dir)
    fn = trial_fn or functools.partial(run_trial, threads=int(max(1, spec.cpus)))
    run = functools.partial(
        run_cells,
        fn=fn,
        run_dir=sweep_dir,
        executor=executor,
        address=address,
        cpus_per_cell=spec.cpus,
        gpus_per_cell=spec.gpus,
        max_retries=spec.retries,
        progress=progress,
    )
    meta = {
        "name": spec.name,
        "spec": spec.raw,
        "search": spec.search,
        "metric": spec.metric,
        "swept": spec.swept,
        "seeds": list(spec.seeds),
        "retries": spec.retries,
        "revision": git_revision(),
        "executor": executor,
        "address": address,
        "data": data_tag,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "trials": [],
    }
    t0 = time.perf_counter()
    if spec.search == "optuna":
        results = _run_optuna(spec, data_tag, run, meta, sweep_dir)
    else:
        cells = [c for s in _initial_settings(spec) for c in _cells(spec, s, data_tag)]
        meta["trials"] = [c.id for c in cells]
        atomic_write_json(sweep_dir / "sweep.json", meta)
        results = run(cells)
    meta["wall_s"] = time.perf_counter() - t0
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_json(sweep_dir / "sweep.json", meta)

    rows = _write_table(sweep_dir, spec, results)
    n_ok = sum(r["status"] == "ok" for r in rows)
    summary: dict[str, Any] = {
        "metric": spec.metric,
        "n_trials": len(rows),
        "ok": n_ok,
        "failed": len(rows) - n_ok,
    }
    best = _choose(spec, results)
    if best is not None:
        summary.update(best)
        old = sweep_dir / "best.json"
        previous = json.loads(old.read_text()) if old.is_file() else {}
        if previous.get("trials") == best["trials"] and "test" in previous:
            summary["test"] = previous["test"]  # the test split is looked at once
        else:
            summary["test"] = _evaluate_test(sweep_dir, best)
    atomic_write_json(sweep_dir / "best.json", summary)
    try:
        plot_sweep(sweep_dir)
    except Exception as exc:  # a plot must never lose a finished sweep
        log.warning("could not draw the sweep plot: %s", exc)
    return summary


def _import_optuna():
    from eads.tasks.select import _import_optuna as import_optuna  # one guard for both searches

    return import_optuna()


def _suggest(trial, name: str, dist: dict):
    kind, args = next(iter(dist.items()))
    if kind == "choice":
        return trial.suggest_categorical(name, args)
    if kind == "int":
        return trial.suggest_int(name, args[0], args[1])
    return trial.suggest_float(name, args[0], args[1], log=kind == "log_uniform")


def _run_optuna(spec: SweepSpec, data_tag: dict, run, meta: dict, sweep_dir: Path) -> list[dict]:
    """Optuna's TPE proposes ``batch`` settings at a time; Ray (or this process) runs them.

    The sampler is seeded and told results in a fixed order, so a rerun proposes the same
    settings and finds their trials done: an interrupted TPE search resumes where it stopped.
    """
    optuna = _import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=spec.search_seed)
    )
    results: list[dict] = []
    done = 0
    while done < spec.trials:
        asked = [study.ask() for _ in range(min(spec.batch, spec.trials - done))]
        settings = [{k: _suggest(t, k, spec.space[k]) for k in sorted(spec.space)} for t in asked]
        batches = [_cells(spec, s, data_tag) for s in settings]
        meta["trials"] += [c.id for cells in batches for c in cells]
        atomic_write_json(sweep_dir / "sweep.json", meta)
        out = run([c for cells in batches for c in cells])
        results += out
        by_id = {r["id"]: r for r in out}
        for t, cells in zip(asked, batches, strict=True):
            rows = [by_id[c.id] for c in cells]
            if all(
                r["status"] == "ok" and math.isfinite(r.get(spec.metric, math.nan)) for r in rows
            ):
                study.tell(t, float(np.mean([r[spec.metric] for r in rows])))
            else:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
        done += len(asked)
    return results


def clean_trial(sweep_dir: str | Path, trial: str) -> None:
    """Forget one trial's result and run directory (it runs again on the next rerun)."""
    sweep_dir = Path(sweep_dir)
    (sweep_dir / "cells" / f"{trial}.json").unlink(missing_ok=True)
    shutil.rmtree(sweep_dir / "trials" / trial, ignore_errors=True)


def format_summary(summary: dict) -> str:
    """A few lines for the CLI: trial counts, the chosen setting, its validation/test metric."""
    lines = [f"{summary['n_trials']} trials: {summary['ok']} ok, {summary['failed']} failed"]
    if "setting" in summary:
        metric = summary["metric"]
        lines.append(
            f"chosen on {metric}: {summary['setting']} (mean over seeds {summary['val_mean']:.4g})"
        )
        test = summary.get("test") or {}
        if test:
            name = metric.split(".", 1)[1]
            lines.append(
                f"test {name} of the chosen setting: {test['mean'][name]:.4g} "
                f"(+- {test['std_over_seeds'][name]:.2g} over seeds, n={test['n']})"
            )
    else:
        lines.append("no setting finished on all its seeds; nothing chosen")
    return "\n".join(lines)


__all__ = [
    "SweepSpec",
    "format_summary",
    "parse_spec",
    "plot_sweep",
    "read_spec",
    "run_sweep",
    "run_trial",
]
