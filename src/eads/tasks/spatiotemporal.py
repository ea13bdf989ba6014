"""Spatio-temporal graph forecasting benchmark (seed paper Table 1 and Figure 4), declared on the
benchmark core :mod:`eads.bench`: its data sets, models, budgets, window protocols and cells.

``run_benchmark(run_dir, ...)`` runs (or extends) one run directory: ``config.json`` /
``meta.json`` (the resolved settings merged with an earlier call's, skipped data sets and why);
``cells/<cell id>.json``, one per (data set, model, seed), by :func:`eads.bench.cells.run_cells`
(finished cells are skipped, so a grid runs cell by cell: ``benchmarks/run_spatiotemporal.sh``);
and what :mod:`eads.report.spatiotemporal` builds from every cell of the directory alone:
``results.{json,csv,md}`` (MAE, RMSE, MAPE per step and averaged, in both zero conventions;
time, epochs, stop reason, latency; mean +- std over seeds, a capped value marked),
``relative.json`` (EADS against NP-GL and the best other model), ``table.txt`` (returned) and
``plots/`` (predictions against truth, learning curves, training time and latency: Figure 4).

Models (:data:`MODEL_NAMES`, framed in :mod:`eads.tasks._forecasters`): EADS
(:data:`EADS_HIDDEN` hidden nodes, the reference node on, EC-Train; T, coupling init, lr and
weight decay chosen on validation by ``Budget.select_trials`` TPE trials over
:data:`EADS_SPACE`), NP-GL (the reference node on,
:func:`npgl_mask`), Graph WaveNet, MTGNN, DDGCRN, MegaCRN (:mod:`eads.baselines.gnn` at the
papers' widths, :data:`WIDTHS`, with each release's optimiser and schedule,
:data:`FULL_BUDGETS`, :data:`GNN_OPTIMIZER`), historical average and last value (untrained).
Every trained run stops on **patience** on the masked validation MAE in data units
(:func:`eads.bench.forecasting.train_forecaster`); the epoch cap is meant never to end a run and
is marked when it does; full budgets have no wall cap (``--quick`` smoke runs alone may). The
windows (:class:`WindowProtocol`) are per data set and the same for every model; nothing is
tuned on the test split; MAPE treats ``|y| < mape_tolerance`` (units: :data:`UNITS`) as zero.

When not to use: for accuracy claims at the papers' scale on PEMS without the flow arrays (the
data sets here differ from the paper's; see ``docs/spatiotemporal.md``), or with a wall-time
budget in mind: a full cell at paper width trains for hours on one CPU core.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch

from eads._errors import ConfigError
from eads.bench.budget import Budget
from eads.bench.cells import Cell, run_cells
from eads.bench.forecasting import WindowProtocol, evaluate_forecaster, probe_updates
from eads.bench.suite import parse_names, parse_seeds
from eads.bench.training import discard_partial, partial_dir
from eads.data.custom_st import CUSTOM, CustomData, spec_key
from eads.report.spatiotemporal import (
    CSV_FIELDS,
    MODEL_LABELS,
    MODEL_NAMES,
    format_markdown,
    format_table,
    plot_results,
    relative_claims,
    results_in_order,
    rows_of,
    write_report,
)
from eads.tasks._forecasters import (
    EADS_HIDDEN,
    EADS_SPACE,
    NPGL_TEMPORAL_REACH,
    build_forecaster,
    fit_forecaster,
    npgl_mask,
)

TASK = "spatiotemporal"
PEMS = ("pems04", "pems08")
DATASET_NAMES = (
    *PEMS,
    "sz_taxi",
    "beijing_pm25",
    "beijing_pm10",
    "nyc_taxi",
    "texas_covid",
    "nyc_taxi_2019",
)
DEFAULT_DATASETS = DATASET_NAMES
QUICK_DATASETS = ("beijing_pm25",)
QUICK_STEPS = 600
"""Time steps kept by ``--quick`` (the first ones of each series)."""
FULL_SEEDS = (0, 1, 2)
"""Model seeds of a full run (tables show mean +- std over them); ``--quick`` uses seed 0."""
PLOT_NODES = 3
PLOT_WINDOWS = 96
TRAINED = ("eads", "npgl", "graph_wavenet", "mtgnn", "ddgcrn", "megacrn")
"""The models that train (the others, historical average and last value, have no budget)."""
GNNS = ("graph_wavenet", "mtgnn", "ddgcrn", "megacrn")


WIDTHS: dict[str, dict[str, dict]] = {
    # the constructors' defaults are the papers' widths (eads.baselines.gnn; their parameter
    # counts are checked against the releases in tests/baselines/test_gnn.py)
    "paper": {name: {} for name in GNNS},
    # the committed CPU-minute run's reduced widths (layer counts and depths as in the papers)
    "reduced": {
        "graph_wavenet": dict(
            residual_channels=16, dilation_channels=16, skip_channels=32, end_channels=64
        ),
        "mtgnn": dict(conv_channels=16, residual_channels=16, skip_channels=32, end_channels=64),
        "ddgcrn": dict(hidden=16),
        "megacrn": dict(hidden=16, memory_dim=16),
    },
    # --quick smoke runs and the tests
    "tiny": {
        "graph_wavenet": dict(
            residual_channels=4, dilation_channels=4, skip_channels=8, end_channels=8
        ),
        "mtgnn": dict(
            conv_channels=4, residual_channels=4, skip_channels=8, end_channels=8, node_dim=8
        ),
        "ddgcrn": dict(hidden=4, embed_dim=4),
        "megacrn": dict(hidden=4, memory_dim=4, memory_size=4),
    },
}
"""GNN widths by name: ``"paper"`` (full runs), ``"reduced"``, ``"tiny"`` (``--quick``)."""

GNN_OPTIMIZER: dict[str, dict[str, float]] = {
    # Adam's weight decay, the gradient-norm clip (0: none) and, where a release changes it from
    # torch's 1e-8, Adam's epsilon
    "graph_wavenet": {"weight_decay": 1e-4, "grad_clip": 5.0},  # nnzhan/Graph-WaveNet train.py
    "mtgnn": {"weight_decay": 1e-4, "grad_clip": 5.0},  # nnzhan/MTGNN train_multi_step.py
    "ddgcrn": {"weight_decay": 0.0, "grad_clip": 0.0},  # PEMSD4_DDGCRN.conf: grad_norm False
    # deepkashiwa20/MegaCRN model_revised/.../traintest_MegaCRNA.py (the paper's runs):
    # max_grad_norm 5, Adam(lr=0.01, eps=1e-3)
    "megacrn": {"weight_decay": 0.0, "grad_clip": 5.0, "eps": 1e-3},
}
"""Optimiser settings of the GNN baselines beside their :data:`FULL_BUDGETS` (recorded per cell)."""

_CAP = 300
_PATIENCE = 20


def _release(lr: float, **schedule) -> Budget:
    """A GNN release's budget: batch 64, Adam at ``lr``, constant unless ``schedule`` says."""
    kw = {"schedule": "none", **schedule}
    return Budget(epochs=_CAP, lr_grid=(lr,), batch_size=64, patience=_PATIENCE, **kw)


FULL_BUDGETS: dict[str, Budget] = {
    # T, coupling init, lr and weight decay chosen by 12 selection trials (5 of them random), each
    # trained to patience; the plateau schedule halves the lr after 6 epochs without a better
    # validation MAE
    "eads": Budget(epochs=_CAP, batch_size=64, patience=_PATIENCE, select_trials=12),
    "npgl": Budget(epochs=_CAP, lr_grid=(1e-3,), batch_size=64, patience=_PATIENCE),
    # the releases: batch 64; lr 1e-3 (GWN, MTGNN), 3e-3 (DDGCRN), 1e-2 with x0.1 steps (MegaCRN's
    # milestones 50 and 100, here every 50 epochs of the strided set); constant otherwise
    "graph_wavenet": _release(1e-3),
    "mtgnn": _release(1e-3),
    "ddgcrn": _release(3e-3),
    "megacrn": _release(1e-2, schedule="step", schedule_step=50, schedule_factor=0.1),
}
"""The full run's budgets (:class:`eads.bench.budget.Budget`): patience on validation, no wall
cap, an epoch cap meant not to be reached. Historical average and last value have none."""
BUDGETS = FULL_BUDGETS
_QUICK = Budget(
    epochs=2, lr_grid=(1e-3,), batch_size=32, patience=2, schedule="none", max_time_s=5.0
)
QUICK_BUDGETS: dict[str, Budget] = {name: _QUICK for name in TRAINED}
QUICK_BUDGETS["eads"] = replace(_QUICK, select_trials=2)
"""``--quick`` smoke budgets: 2 epochs and a 5 s wall cap, so their cells are marked capped."""


PROTOCOLS: dict[str, WindowProtocol] = {
    # strides from the probe on docs/spatiotemporal.md (s per update of each model at paper
    # width): a strided epoch of the slowest GNN (MegaCRN) costs at most ~2.5 min of one core,
    # a data set 7-19 CPU hours for every model x 3 seeds at 60 epochs. Every stride is below
    # history + horizon, so every training step is still in some window.
    "pems04": WindowProtocol(train_stride=16, max_val_windows=512),
    "pems08": WindowProtocol(train_stride=8, max_val_windows=512),
    "sz_taxi": WindowProtocol(train_stride=2),
    "beijing_pm25": WindowProtocol(train_stride=2),
    "beijing_pm10": WindowProtocol(train_stride=2),
    "nyc_taxi": WindowProtocol(train_stride=4),
    # the pre-pandemic year: 5,233 training windows; stride 2 keeps 2,617 (nyc_taxi: 2,626)
    "nyc_taxi_2019": WindowProtocol(train_stride=2),
    "texas_covid": WindowProtocol(train_stride=1),
}
"""The full run's window protocol per data set (a user's own set: ``WindowProtocol()``)."""
QUICK_PROTOCOL = WindowProtocol(max_val_windows=64, max_test_windows=64)
UNITS = {
    "pems04": "vehicles per 5 min",
    "pems08": "vehicles per 5 min",
    "sz_taxi": "km/h",
    "beijing_pm25": "ug/m3",
    "beijing_pm10": "ug/m3",
    "nyc_taxi": "trips per zone-hour",
    "nyc_taxi_2019": "trips per zone-hour",
    "texas_covid": "new cases per county-day",
    "custom": "the data's units",
}
"""The unit of each data set's target (MAE, RMSE and the MAPE tolerance are in it)."""


def _select_datasets(datasets, quick: bool, pems: dict[str, Path | None]):
    """The data sets to run and the skipped ones with why (a PEMS set without its path)."""
    default = QUICK_DATASETS if quick else DEFAULT_DATASETS
    asked = list(default) if datasets is None else parse_names(datasets, DATASET_NAMES, "datasets")
    skipped = {
        n: f"no --{n} path given: the PEMS flow arrays are not in the shared data folder "
        f"(pass {n}.npz, key 'data')."
        for n in asked
        if n in PEMS and pems.get(n) is None
    }
    return [n for n in asked if n not in skipped], skipped


@functools.lru_cache(maxsize=2)
def _splits(dataset: str, path: str | None, steps: int | None, custom: tuple | None = None):
    """The dataset and its protocol splits (cached: cells of one data set share them).

    ``custom``: the sorted items of a :class:`CustomData` spec, for ``dataset == "custom"``.
    """
    from eads.data.spatiotemporal import load_spatiotemporal, make_forecast_splits

    windows = {}
    if dataset == CUSTOM:
        spec = CustomData(**dict(custom or ()))
        data, windows = spec.load(), spec.windows()
    else:
        data = load_spatiotemporal(dataset, path)
    if steps is not None and steps < data.n_steps:
        data = replace(data, values=data.values[:steps], mask=data.mask[:steps])
    return data, make_forecast_splits(data, **windows)


def _run_cell(cell: Cell, run_dir: Path) -> dict:
    """One (data set, model, seed): built, trained to its budget, evaluated on the test split."""
    from eads.runs import device_description

    p = cell.params
    torch.set_num_threads(int(p.get("threads", 1)))
    budget = None if p.get("budget") is None else Budget.from_params(p["budget"])
    protocol = WindowProtocol(**p["protocol"])
    data, splits = _splits(cell.dataset, p.get("path"), p.get("steps"), spec_key(p.get("custom")))
    widths, optimizer, progress = p.get("widths"), p.get("optimizer"), bool(p.get("progress"))
    partial = partial_dir(run_dir, cell)
    fc, training, selection = fit_forecaster(
        cell.model,
        data,
        splits,
        budget,
        protocol,
        cell.seed,
        widths,
        optimizer,
        progress,
        partial,
        space=p.get("space"),
    )
    units = UNITS.get(cell.dataset, UNITS[CUSTOM])
    record = {
        **evaluate_forecaster(
            fc, splits, protocol, units=units, plot_nodes=PLOT_NODES, plot_windows=PLOT_WINDOWS
        ),
        "training": training,
        "device": device_description("cpu"),
        "torch_threads": torch.get_num_threads(),
        "budget": None if budget is None else budget.to_params(),
        "widths": widths,
        "optimizer": optimizer,
        "reference_node": getattr(fc.model, "reference", None),
        "selection": selection,
    }
    discard_partial(run_dir, cell)  # the cell is done: its result replaces its checkpoints
    return record


def probe_epoch_cost(
    dataset: str,
    model: str,
    *,
    batches: int = 3,
    path: str | Path | None = None,
    protocol: WindowProtocol | None = None,
    widths: str = "paper",
    threads: int = 1,
    seed: int = 0,
) -> dict:
    """Measure what one epoch of ``model`` on ``dataset`` costs at the full run's settings
    (:func:`eads.bench.forecasting.probe_updates` at the budget's batch size and the data set's
    protocol). EADS is probed at its default T and coupling init (its selection trains
    ``select_trials`` such runs). Returns the measured and scaled seconds, the window counts
    and the settings. Nothing is written.

    When not to use: as a benchmark of the models' speed (a median of a few batches on a shared
    machine; ``benchmarks/bench_gnn.py`` times them properly); it sizes the converged run only.
    """
    if model not in TRAINED:
        raise ConfigError(f"model={model!r} does not train; the probe needs one of {TRAINED}.")
    if dataset not in DATASET_NAMES:
        raise ConfigError(f"dataset={dataset!r} is unknown; valid names are {DATASET_NAMES}.")
    if widths not in WIDTHS:
        raise ConfigError(f"widths={widths!r} is unknown; valid names are {sorted(WIDTHS)}.")
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ConfigError(f"batches={batches!r} must be a positive integer.")
    torch.set_num_threads(int(threads))
    budget = FULL_BUDGETS[model]
    data, splits = _splits(dataset, None if path is None else str(path), None)
    gnn = (WIDTHS[widths].get(model), GNN_OPTIMIZER.get(model))
    fc = build_forecaster(model, data, splits, budget.lr_grid[0], seed, *gnn)
    measured = probe_updates(
        fc, splits, protocol or PROTOCOLS[dataset], budget.batch_size, batches, seed
    )
    return {
        "dataset": dataset,
        "model": model,
        "widths": widths,
        "threads": torch.get_num_threads(),
        **measured,
        "select_trials": budget.select_trials,
        "lr_grid_size": len(budget.lr_grid),
    }


def _extend(run_dir: Path, config: dict, skipped: dict) -> dict:
    """``config`` extending the run already in ``run_dir`` (if any): every name, seed, budget,
    protocol and unit of both, the names in the suite's order (whatever order the cells were
    run in); a run of other ``quick`` or ``widths`` is refused."""
    from eads.runs import RunDir

    if not (run_dir / "config.json").is_file():
        return config
    previous, config = RunDir(run_dir).config(), dict(config)
    for key in ("quick", "widths"):
        if previous.get(key, config[key]) != config[key]:
            raise ConfigError(
                f"run_dir {str(run_dir)!r} holds a run with {key}={previous[key]!r}, not "
                f"{config[key]!r}; use another directory."
            )
    for key in ("datasets", "models", "seeds"):
        config[key] = list(dict.fromkeys([*previous.get(key, []), *config[key]]))
    rank = {n: i for i, n in enumerate((*DATASET_NAMES, CUSTOM, *MODEL_NAMES))}
    for key in ("datasets", "models"):
        config[key] = sorted(config[key], key=lambda n: rank.get(n, len(rank)))
    config["seeds"] = sorted(config["seeds"])
    for key in ("budgets", "protocols", "units"):
        config[key] = {**previous.get(key, {}), **config[key]}
    merged = {**previous.get("skipped", {}), **skipped}
    config["skipped"] = {k: v for k, v in merged.items() if k not in config["datasets"]}
    return config


def run_benchmark(
    run_dir: str | Path,
    *,
    quick: bool = False,
    executor: str = "local",
    address: str | None = None,
    datasets: str | Sequence[str] | None = None,
    models: str | Sequence[str] | None = None,
    pems04: str | Path | None = None,
    pems08: str | Path | None = None,
    custom: CustomData | None = None,
    seeds: Sequence[int] | None = None,
    max_epochs: int | None = None,
    max_train_s: float | None = None,
    train_stride: int | None = None,
    widths: str | None = None,
    quick_steps: int = QUICK_STEPS,
    threads: int = 1,
    progress: bool = True,
    plots: bool = True,
) -> str:
    """Run (or extend) the spatio-temporal table in ``run_dir``; returns the whole directory's
    table as text (module docstring).

    ``datasets`` / ``models``: comma-separated names or sequences (default: every data set, the
    PEMS ones only when their ``pems04`` / ``pems08`` path is given, and every model).
    ``seeds``: the model seeds (default :data:`FULL_SEEDS`; ``(0,)`` with ``quick``).
    ``quick``: the first ``quick_steps`` steps of each series (default data set: beijing_pm25),
    the ``"tiny"`` GNN widths, :data:`QUICK_BUDGETS` and :data:`QUICK_PROTOCOL`.
    ``max_epochs`` overrides every trained model's epoch cap; ``max_train_s`` sets a wall-time
    cap, for ``quick`` smoke runs only (a full run stops on patience). ``train_stride``
    overrides every data set's training stride; ``widths``: a key of :data:`WIDTHS`.
    ``threads``: torch threads per cell. Rerunning into the same directory skips the finished
    cells; the settings and the table then cover every cell listed so far. ``custom``: a user's
    own data set (:class:`CustomData`), run as ``custom`` after the named ones (alone when
    ``datasets`` is not given); it is loaded and windowed before anything is written, so a bad
    file or window fails first.
    """
    from eads.runs import RunDir

    pems = {"pems04": Path(pems04) if pems04 else None, "pems08": Path(pems08) if pems08 else None}
    if custom is not None and datasets is None:
        names, skipped = [], {}
    else:
        names, skipped = _select_datasets(datasets, quick, pems)
    model_names = parse_names(models, MODEL_NAMES, "models")
    seeds = parse_seeds(seeds, 1 if quick else len(FULL_SEEDS))
    if quick_steps < 100:
        raise ConfigError(f"quick_steps={quick_steps} must be at least 100.")
    if max_train_s is not None and not quick:
        raise ConfigError(
            f"max_train_s={max_train_s!r} sets a wall-time cap, which only quick smoke runs may "
            "have: a full run stops on validation patience (lower max_epochs instead)."
        )
    widths = widths or ("tiny" if quick else "paper")
    if widths not in WIDTHS:
        raise ConfigError(f"widths={widths!r} is unknown; valid names are {sorted(WIDTHS)}.")
    custom_params = None
    if custom is not None:
        if not isinstance(custom, CustomData):
            raise ConfigError(f"custom={custom!r} must be a CustomData spec.")
        custom_params = asdict(custom.resolved())
        # load and window it now: every bad input fails before the run directory exists
        _splits(CUSTOM, None, quick_steps if quick else None, spec_key(custom_params))
        names.append(CUSTOM)
    budgets = QUICK_BUDGETS if quick else FULL_BUDGETS
    caps = {} if max_epochs is None else {"epochs": int(max_epochs)}
    caps |= {} if max_train_s is None else {"max_time_s": float(max_train_s)}
    resolved = {m: budgets.get(m) for m in model_names}  # None: the model does not train
    resolved = {m: None if b is None else replace(b, **caps) for m, b in resolved.items()}
    protocols = {}
    for d in names:
        pr = QUICK_PROTOCOL if quick else PROTOCOLS.get(d, WindowProtocol())
        protocols[d] = pr if train_stride is None else replace(pr, train_stride=train_stride)

    def params(d: str, m: str) -> dict:
        out = {
            "quick": quick,
            "steps": quick_steps if quick else None,
            "path": str(pems[d]) if d in PEMS else None,
            "budget": None if resolved[m] is None else resolved[m].to_params(),
            "protocol": asdict(protocols[d]),
            "threads": threads,
        }
        if m in GNNS:
            out.update(widths=WIDTHS[widths][m], optimizer=GNN_OPTIMIZER[m])
        if m == "eads":
            out["space"] = EADS_SPACE
        if d == CUSTOM:
            out["custom"] = custom_params
        return out

    grid = itertools.product(names, model_names, seeds)
    cells = [Cell(TASK, d, m, seed=s, params=params(d, m)) for d, m, s in grid]
    run_dir = Path(run_dir)
    config = {
        "task": TASK,
        "quick": quick,
        "widths": widths,
        "datasets": names,
        "skipped": skipped,
        "models": model_names,
        "seeds": seeds,
        "budgets": {m: (None if b is None else b.to_params()) for m, b in resolved.items()},
        "protocols": {d: asdict(pr) for d, pr in protocols.items()},
        "units": {d: UNITS.get(d, UNITS[CUSTOM]) for d in names},
        "gnn_widths": WIDTHS[widths],
        "gnn_optimizer": GNN_OPTIMIZER,
        "eads_hidden": EADS_HIDDEN,
        "eads_space": EADS_SPACE,
        "npgl_temporal_reach": NPGL_TEMPORAL_REACH,
        "quick_steps": quick_steps if quick else None,
        "threads_per_cell": threads,
        "executor": executor,
        **({"custom": custom_params} if custom_params else {}),
    }
    config = _extend(run_dir, config, skipped)  # extending a run: keep what it listed
    RunDir.create(run_dir, config, seed=seeds[0])
    t0 = time.perf_counter()
    run_cells(cells, _run_cell, run_dir, executor=executor, address=address, progress=progress)
    results = results_in_order(run_dir)  # the table covers every cell of the directory
    return write_report(
        run_dir, results, config["skipped"], wall_s=time.perf_counter() - t0, plots=plots
    )


__all__ = [
    "BUDGETS",
    "CSV_FIELDS",
    "CUSTOM",
    "DATASET_NAMES",
    "EADS_HIDDEN",
    "FULL_BUDGETS",
    "FULL_SEEDS",
    "GNN_OPTIMIZER",
    "MODEL_LABELS",
    "MODEL_NAMES",
    "NPGL_TEMPORAL_REACH",
    "PROTOCOLS",
    "QUICK_BUDGETS",
    "QUICK_PROTOCOL",
    "UNITS",
    "WIDTHS",
    "Budget",
    "CustomData",
    "WindowProtocol",
    "format_markdown",
    "format_table",
    "npgl_mask",
    "plot_results",
    "probe_epoch_cost",
    "relative_claims",
    "rows_of",
    "run_benchmark",
    "write_report",
]
