"""PDE operator learning benchmark: EADS against NP-GL, NN, FCN, GNO and FNO (seed paper Table 2,
Figure 5).

One *cell* is ``dataset x resolution x model``. Every cell of a dataset and resolution sees the
same data: the first ``n_train`` generated instances, of which the last ``val_fraction`` are held
out as the validation split (early stopping and the choice of hyperparameters), and the next
``n_test`` instances as the test split, which is only used once, after training, for the metrics.
Inputs and outputs are standardised point by point (``(v - mean(x)) / std(x)`` at each grid
point, the FNO authors' ``UnitGaussianNormalizer``) with statistics of the training part only;
predictions are mapped back before any metric is taken.

Models (``MODELS``):

* ``eads`` -- EADS with 128 hidden nodes trained on device by EC-Train; it reads the flattened
  input function (``n = res`` or ``res**2`` inputs) and writes the flattened output function.
  Its coupling duration T, coupling init and learning rate are chosen on the validation split
  by :func:`eads.tasks.select.select_hyperparameters` (TPE, ``ModelBudget.select_trials``
  trials, each trained to patience; the default EADS ranges with ``n_hidden`` fixed at 128);
  the cell records the chosen values and every trial.
* ``eads_backprop`` -- the same circuit trained by autograd through the simulation (reference),
  chosen the same way.
* ``npgl`` -- NP-GL trained by its conditional likelihood. Dense couplings while the function
  has at most ``NPGL_DENSE_MAX`` points (``D = 2n <= 2048`` nodes, ``D**2`` couplings); above
  that a *local* mask: output node ``i`` is wired to the inputs and outputs within
  ``NPGL_RADIUS`` grid spacings of it (periodic in 1-D, Chebyshev distance in 2-D).
* ``nn``, ``fcn``, ``gno``, ``fno`` -- the digital baselines of :mod:`eads.baselines.operators`,
  trained by Adam on the mean squared error (FNO from the ``neuraloperator`` package; the GNO
  on 256 random points per instance and evaluated on interleaved sub-grids, as the GKN paper
  does, see :class:`eads.baselines.operators.GNO`).

Metrics per cell, on the de-normalised test outputs: ``test_mae`` (mean absolute error over all
test points: the seed paper's metric) and ``test_rel_l2`` (mean over samples of
``||pred - y||_2 / ||y||_2``: the FNO papers' metric); training wall time (the chosen learning
rate's run, and the whole selection); inference latency per sample (batch of one, median) and
per-sample time in one batch of the whole test set; epochs run and why training stopped; the
device. Budgets are per model (``ModelBudget``): at most ``epochs`` epochs and ``max_time_s``
seconds of training per learning-rate candidate, early stopping after ``patience`` epochs
without a better validation loss.

The run directory holds ``cells/<id>.json`` (one per cell, resumable), ``predictions/<id>.npz``
(a few test samples for the plots), ``results.csv`` and ``results.json`` (the table),
``config.json``/``meta.json`` and ``plots/*.png``. The table and the plots are built only from
what the cells wrote (:func:`write_report`), never by training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eads._errors import ConfigError
from eads._io import atomic_write_csv, atomic_write_json, atomic_write_with
from eads.tasks.executor import Cell, run_cells

log = logging.getLogger(__name__)

TASK = "pde"
#: The data sets a run covers by default.
DATASETS: tuple[str, ...] = ("burgers", "darcy")
#: Every data set ``datasets=`` may name: the defaults, plus ``burgers_released`` (the FNO
#: authors' released setting, nu = 1e-3; opt-in: its 8192-point solve took 25 min for 1200
#: instances on 2 shared cores). ``burgers`` is the paper's text (nu = 0.1), near-trivial at t = 1.
ALL_DATASETS: tuple[str, ...] = ("burgers", "burgers_released", "darcy")
MODELS: tuple[str, ...] = ("eads", "eads_backprop", "npgl", "nn", "fcn", "gno", "fno")
#: Quick mode keeps one resolution per data set.
QUICK_RESOLUTIONS: dict[str, int] = {"burgers": 256, "darcy": 16}
#: NP-GL keeps dense couplings up to this many grid points per function, a local mask above.
NPGL_DENSE_MAX = 1024
#: Radius of NP-GL's local mask, in grid spacings.
NPGL_RADIUS = 4
#: Hidden nodes of EADS in this benchmark (seed paper, Sec. 4.2).
EADS_HIDDEN = 128
#: Test samples whose predictions are kept for the plots.
N_PLOT_SAMPLES = 3


@dataclass(frozen=True)
class ModelBudget:
    """How one model is trained: the training budget and the learning rates tried on validation."""

    epochs: int
    """Most epochs per learning-rate candidate."""
    max_time_s: float
    """Most seconds of training per learning-rate candidate (checked after each epoch)."""
    lr_grid: tuple[float, ...]
    """Learning rates tried; the one with the lowest validation MSE is kept (unless
    ``select_trials`` > 0)."""
    batch_size: int = 32
    patience: int = 20
    """Early stopping: epochs without a better validation loss."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    """Passed to the model's constructor (baselines) -- fixed, not searched."""
    select_trials: int = 0
    """EADS models: trials of the validation search over T, coupling init and lr (each at most
    ``epochs`` epochs and ``max_time_s`` seconds); 0: the ``lr_grid`` instead."""


#: The full benchmark's budgets. Chosen so that the four cheapest data sets of the table fit in
#: about 40 minutes on 2 shared CPU cores; the GNO is shrunk (width 16, kernel width 64) because
#: its per-edge kernel costs ``batch x edges x width**2`` memory and time.
FULL_BUDGETS: dict[str, ModelBudget] = {
    # EADS: 8 selection trials of at most 50 s each (T, coupling init, lr; see run_cell), so an
    # EADS cell may now take up to 400 s of training instead of the 100 s of its two lrs.
    "eads": ModelBudget(epochs=200, max_time_s=50.0, lr_grid=(3e-3, 1e-3), select_trials=8),
    "eads_backprop": ModelBudget(epochs=200, max_time_s=50.0, lr_grid=(3e-3,), select_trials=8),
    # NP-GL: D**2 couplings, so a larger batch (fewer optimiser steps per epoch).
    "npgl": ModelBudget(epochs=200, max_time_s=30.0, lr_grid=(1e-2, 3e-3), batch_size=128),
    "nn": ModelBudget(epochs=200, max_time_s=20.0, lr_grid=(1e-3, 3e-4)),
    "fcn": ModelBudget(epochs=100, max_time_s=75.0, lr_grid=(1e-3,), patience=10),
    # GNO: trained on random point subsets (the GKN paper's Nystrom sampling), so a training
    # epoch costs the same at every resolution; with the whole-grid validation pass, 300 s bought
    # 4-11 epochs in the committed run (one thread).
    "gno": ModelBudget(
        epochs=100,
        max_time_s=300.0,
        lr_grid=(1e-3,),
        patience=10,
        hyperparameters={"width": 16, "kernel_width": 64, "depth": 4},
    ),
    "fno": ModelBudget(epochs=100, max_time_s=75.0, lr_grid=(1e-3,), patience=10),
}

#: Hyperparameters that differ by data set, merged into a model's budget (``(model, dataset)``).
#: Burgers' ``u(., 1)`` is close to the spatial mean of ``u0`` (docs/pde.md), a global quantity
#: that a GNO with the default local ball (radius 1/64, 4 layers: 1/16 of the interval) cannot
#: see; its first run stalled at a validation MSE of 0.27 (standardised). A radius of 0.25 lets
#: 4 layers reach the whole interval, and 64 points per graph keep about 32 neighbours per ball
#: (the cost of Darcy's graphs). Darcy keeps the GKN paper's radius (about 0.1) and 256 points.
DATASET_HYPERPARAMETERS: dict[tuple[str, str], dict[str, Any]] = {
    ("gno", "burgers"): {"n_sampled": 64, "radius": 0.25},
}

#: ``--quick``: the same pipeline, a few epochs, one learning rate per model (EADS: two trials).
QUICK_BUDGETS: dict[str, ModelBudget] = {
    name: dataclasses.replace(
        b,
        epochs=5,
        max_time_s=15.0,
        lr_grid=b.lr_grid[:1],
        patience=0,
        select_trials=min(b.select_trials, 2),
    )
    for name, b in FULL_BUDGETS.items()
}
QUICK_BUDGETS["gno"] = dataclasses.replace(
    QUICK_BUDGETS["gno"], hyperparameters={"width": 8, "kernel_width": 32, "depth": 2}
)
QUICK_BUDGETS["fcn"] = dataclasses.replace(
    QUICK_BUDGETS["fcn"],
    hyperparameters={"blocks": (1, 2, 1), "growth_rate": 8, "init_features": 16},
)


@dataclass(frozen=True)
class PDEBenchmarkConfig:
    """The data side of a benchmark run."""

    n_train: int = 1000
    """Training instances generated (the validation split is carved from them)."""
    n_test: int = 200
    val_fraction: float = 0.1
    seed: int = 0
    quick_data: bool = False
    """Use :data:`eads.data.pde.QUICK_CONFIGS` (coarser fine grids)."""
    burgers_solver: str = "split_step"
    """'split_step' (ETDRK4, the FNO paper's method) or 'cole_hopf' (exact, much faster); the
    'burgers' set only ('burgers_released' is always ETDRK4: Cole-Hopf overflows at nu = 1e-3)."""
    darcy_fine_intervals: int | None = None
    """Fine grid of the Darcy solver (default: the data config's, 256; 128 is ~5x cheaper)."""


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


def _names(value: str | Sequence | None, valid: Sequence, what: str, cast=str) -> list:
    if value is None:
        return list(valid)
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        items = [cast(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raise ConfigError(
            f"{what}={value!r} must be a comma-separated list of {list(valid)}."
        ) from None
    bad = [v for v in items if v not in valid]
    if bad or not items:
        raise ConfigError(
            f"{what}={value!r} names unknown {what} {bad}; valid {what} are {list(valid)}."
        )
    return list(dict.fromkeys(items))


def _grid(datasets, resolutions, quick: bool) -> list[tuple[str, int]]:
    from eads.data.pde import RESOLUTIONS

    valid_res = sorted({r for d in datasets for r in RESOLUTIONS[d]})
    if resolutions is None:
        if quick:  # the opt-in data sets: their coarsest resolution
            return [(d, QUICK_RESOLUTIONS.get(d, min(RESOLUTIONS[d]))) for d in datasets]
        return [(d, r) for d in datasets for r in RESOLUTIONS[d]]
    res = _names(resolutions, valid_res, "resolutions", cast=int)
    return [(d, r) for d in datasets for r in RESOLUTIONS[d] if r in res]


def build_cells(
    datasets=None,
    models=None,
    resolutions=None,
    *,
    quick: bool = False,
    data: PDEBenchmarkConfig | None = None,
    budgets: dict[str, ModelBudget] | None = None,
) -> list[Cell]:
    """The cells of a run; unknown names raise :class:`ConfigError` listing the valid ones."""
    datasets = list(DATASETS) if datasets is None else _names(datasets, ALL_DATASETS, "datasets")
    models = _names(models, MODELS, "models")
    data = data or PDEBenchmarkConfig()
    budgets = budgets or (QUICK_BUDGETS if quick else FULL_BUDGETS)
    cells = []
    for dataset, res in _grid(datasets, resolutions, quick):
        for model in models:
            budget = json.loads(json.dumps(dataclasses.asdict(budgets[model])))
            budget["hyperparameters"].update(DATASET_HYPERPARAMETERS.get((model, dataset), {}))
            params = {"resolution": res, "data": dataclasses.asdict(data), "budget": budget}
            cells.append(Cell(TASK, dataset, model, params, seed=data.seed))
    return cells


# --------------------------------------------------------------------------------------------
# One cell
# --------------------------------------------------------------------------------------------


class _Standardizer:
    """Point-wise ``(v - mean) / std`` with training statistics; ``std`` floored at 1e-6."""

    def __init__(self, v: np.ndarray):
        self.mean = v.mean(axis=0)
        self.std = np.maximum(v.std(axis=0), 1e-6)

    def encode(self, v: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((v - self.mean) / self.std).astype(np.float32))

    def decode(self, v: torch.Tensor) -> np.ndarray:
        return v.detach().cpu().numpy().astype(np.float64) * self.std + self.mean


class _Flat(nn.Module):
    """Feeds a circuit the flattened function: ``(B, *grid) -> (B, n) -> model -> (B, *grid)``."""

    def __init__(self, inner: nn.Module, grid_shape: tuple[int, ...]):
        super().__init__()
        self.inner = inner
        self.grid_shape = grid_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.reshape(x.shape[0], -1)).reshape(x.shape[0], *self.grid_shape)


class _ModeByGrad(nn.Module):
    """Train mode when gradients are on, eval mode otherwise.

    :func:`eads.fit` calls the same module to train (under ``enable_grad``) and to validate
    (under ``no_grad``); this switch gives BatchNorm (FCN) its batch statistics for training and
    its running statistics for validation and testing.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inner.train(torch.is_grad_enabled())
        return self.inner(x)


class _TensorState(nn.Module):
    """Drops non-tensor entries from ``state_dict`` (neuraloperator's FNO adds a ``_metadata``
    dict that :func:`eads.fit`, which clones every entry, cannot hold)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def state_dict(self, *args, **kwargs):
        sd = super().state_dict(*args, **kwargs)
        for key in [k for k, v in sd.items() if not torch.is_tensor(v)]:
            del sd[key]
        return sd


def npgl_local_mask(dim: int, resolution: int, radius: int = NPGL_RADIUS) -> torch.Tensor:
    """NP-GL mask ``(2n, 2n)``: node pairs within ``radius`` grid spacings (inputs then outputs).

    Distance is periodic in 1-D (Burgers is periodic) and the Chebyshev distance in 2-D. Every
    input-output, output-output and input-input pair within the radius is wired.
    """
    idx = torch.arange(resolution)
    d1 = (idx[:, None] - idx[None, :]).abs()  # (res, res)
    if dim == 1:
        near = torch.minimum(d1, resolution - d1) <= radius  # (n, n)
    else:
        close = d1 <= radius
        near = (close[:, None, :, None] & close[None, :, None, :]).reshape(
            resolution**2, resolution**2
        )  # (n, n): both coordinates within the radius
    return near.repeat(2, 2).float()  # (2n, 2n)


def _build(model: str, dim: int, res: int, n: int, budget: ModelBudget, seed: int, params=None):
    """``(module, trained module, trainer, info)``; ``params``: an EADS selection trial's T and
    coupling init (default: the circuit's)."""
    import eads
    from eads.baselines.operators import build_operator
    from eads.learn import SampledNodesBackprop

    grid_shape = (res,) * dim
    if model in ("eads", "eads_backprop"):
        chosen = {k: v for k, v in (params or {}).items() if k in ("duration", "coupling_init")}
        circuit = eads.EADS(n, EADS_HIDDEN, n, seed=seed, **chosen)
        trainer = eads.ECTrain() if model == "eads" else eads.Backprop()
        return _Flat(circuit, grid_shape), circuit, trainer, {"n_hidden": EADS_HIDDEN, **chosen}
    if model == "npgl":
        mask = None if n <= NPGL_DENSE_MAX else npgl_local_mask(dim, res)
        circuit = eads.NPGL(n, n, mask=mask, seed=seed)
        framing = "dense" if mask is None else f"local mask, radius {NPGL_RADIUS} grid spacings"
        return (
            _Flat(circuit, grid_shape),
            circuit,
            eads.ConditionalLikelihood(),
            {"couplings": framing},
        )
    torch.manual_seed(seed)
    op = build_operator(model, dim, res, **budget.hyperparameters)
    wrapped = _ModeByGrad(op) if model == "fcn" else _TensorState(op) if model == "fno" else op
    trainer = SampledNodesBackprop() if model == "gno" else eads.Backprop()
    info = dict(budget.hyperparameters)
    if model == "gno":
        info.update(n_sampled=op.n_sampled, radius=op.radius, eval_subgrids=op.n_parts)
    return wrapped, wrapped, trainer, info


def _train_one(model, dim, res, n, budget, lr, seed, data_t):
    """Train one learning-rate candidate; returns (module, history, stopped_by)."""
    import eads

    module, trained, trainer, info = _build(model, dim, res, n, budget, seed)
    x_tr, y_tr, x_va, y_va = data_t
    if trained is not module:  # circuits train on flattened functions
        x_tr, y_tr = x_tr.reshape(len(x_tr), -1), y_tr.reshape(len(y_tr), -1)
        x_va, y_va = x_va.reshape(len(x_va), -1), y_va.reshape(len(y_va), -1)
    cfg = eads.TrainConfig(
        trainer=trainer.name,
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        lr=lr,
        optimizer="adam",
        patience=budget.patience,
        seed=seed,
    )
    timed_out = []

    def on_epoch(epoch, history):
        if history.train_time_s >= budget.max_time_s and not history.stopped_early:
            history.stopped_early = True
            timed_out.append(epoch)

    history = eads.fit(
        trained, trainer, (x_tr, y_tr), (x_va, y_va), cfg, progress=False, on_epoch=on_epoch
    )
    if timed_out:
        stopped_by = "time budget"
    elif history.stopped_early:
        stopped_by = "early stopping"
    else:
        stopped_by = "epoch budget"
    return module, history, stopped_by, info


#: The loop's stop reasons in this table's words (those of :func:`_train_one`).
_STOPPED_BY = {
    "patience": "early stopping",
    "epoch_cap": "epoch budget",
    "wall_time": "time budget",
}


def _select_circuit(model, dim, res, n, budget, seed, data_t):
    """An EADS model's T, coupling init and lr chosen on validation (``budget.select_trials``
    TPE trials, n_hidden fixed at :data:`EADS_HIDDEN`); returns what the lr grid returns plus
    the trial table and the selection's summary."""
    import eads
    from eads.tasks.select import eads_space, select_hyperparameters

    x_tr, y_tr, x_va, y_va = (t.reshape(len(t), -1) for t in data_t)  # circuits: flat functions
    trainer = eads.ECTrain() if model == "eads" else eads.Backprop()
    cfg = eads.TrainConfig(
        trainer=trainer.name,
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        lr=budget.lr_grid[0],  # replaced by each trial's
        optimizer="adam",
        patience=budget.patience,
        max_time_s=budget.max_time_s,
        seed=seed,
    )

    def build(params):
        return _build(model, dim, res, n, budget, seed, params=params)[1]

    sel = select_hyperparameters(
        build,
        trainer,
        (x_tr, y_tr),
        (x_va, y_va),
        cfg,
        eads_space(n_hidden=EADS_HIDDEN),
        budget.select_trials,
        seed,
    )
    circuit, history = sel.payload
    trials = [
        {**t, "stopped_by": _STOPPED_BY.get(t["stop_reason"], t["stop_reason"])}
        for t in sel.table()
    ]
    info = {"n_hidden": EADS_HIDDEN, **{k: sel.params[k] for k in ("duration", "coupling_init")}}
    stopped_by = trials[sel.best_trial]["stopped_by"]
    module = _Flat(circuit, (res,) * dim)
    return module, history, stopped_by, info, sel.params["lr"], trials, sel.summary(trials=False)


def error_metrics(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """``(MAE over all points, mean over samples of ||pred - y||_2 / ||y||_2)``; ``(n, *grid)``."""
    err = (pred - truth).reshape(len(truth), -1)
    norms = np.linalg.norm(truth.reshape(len(truth), -1), axis=1)
    return float(np.abs(err).mean()), float(np.mean(np.linalg.norm(err, axis=1) / norms))


def reference_scores(run_dir: str | Path) -> list[dict]:
    """Test scores of two predictors that learn nothing, on the data of a run's cells: the mean
    output of the fitting split (point-wise), and for Burgers ``u(x, 1) = mean(u0)`` (the
    conserved spatial mean). Written to ``run_dir/references.json``; ``eads bench pde-references``.
    """

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a PDE benchmark run (no config.json in it).")
    config = json.loads((run_dir / "config.json").read_text())
    data = PDEBenchmarkConfig(**config["data"])
    grids = dict.fromkeys((c["dataset"], c["params"]["resolution"]) for c in config["cells"])
    rows = []
    for dataset, res in grids:
        ds = _load_data(dataset, res, data, progress=False)
        n_val = max(1, int(round(data.val_fraction * data.n_train)))
        truth = ds.y_test.astype(np.float64)
        preds = {"fit-split mean": np.broadcast_to(ds.y_train[:-n_val].mean(0), truth.shape)}
        if dataset in ("burgers", "burgers_released"):  # released: u0 has mean 0, so this is 0
            means = ds.x_test.astype(np.float64).mean(axis=1, keepdims=True)
            preds["mean(u0)"] = np.broadcast_to(means, truth.shape)
        for name, pred in preds.items():
            mae, rel_l2 = error_metrics(pred, truth)
            rows.append(
                {
                    "dataset": dataset,
                    "resolution": res,
                    "predictor": name,
                    "test_mae": mae,
                    "test_rel_l2": rel_l2,
                }
            )
    atomic_write_json(run_dir / "references.json", {"rows": rows})
    return rows


def _latency(module: nn.Module, x: torch.Tensor, n_single: int = 20) -> float:
    """Median seconds per sample at batch size 1 over the first ``n_single`` samples of ``x``."""
    with torch.no_grad():
        times = []
        for i in range(min(n_single, len(x))):
            t0 = time.perf_counter()
            module(x[i : i + 1])
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_cell(cell: Cell, run_dir: Path) -> dict:
    """Train and evaluate one ``dataset x resolution x model`` cell; returns its metrics."""
    from eads.runs import device_description

    res = int(cell.params["resolution"])
    data = PDEBenchmarkConfig(**cell.params["data"])
    b = dict(cell.params["budget"])
    b["lr_grid"] = tuple(b["lr_grid"])
    budget = ModelBudget(**b)
    ds = _load_data(cell.dataset, res, data, progress=False)
    dim = 1 if cell.dataset in ("burgers", "burgers_released") else 2
    n = res**dim
    n_val = max(1, int(round(data.val_fraction * data.n_train)))
    x_fit, y_fit = ds.x_train[:-n_val], ds.y_train[:-n_val]  # (n_fit, *grid)
    x_val, y_val = ds.x_train[-n_val:], ds.y_train[-n_val:]
    sx, sy = _Standardizer(x_fit), _Standardizer(y_fit)
    data_t = (sx.encode(x_fit), sy.encode(y_fit), sx.encode(x_val), sy.encode(y_val))

    candidates = []
    best = None
    selection = None
    t_select = time.perf_counter()
    if cell.model in ("eads", "eads_backprop") and budget.select_trials > 0:
        module, history, stopped_by, info, lr, candidates, selection = _select_circuit(
            cell.model, dim, res, n, budget, cell.seed, data_t
        )
        best = (module, history, stopped_by, info, lr)
    for lr in budget.lr_grid if best is None else ():
        module, history, stopped_by, info = _train_one(
            cell.model, dim, res, n, budget, lr, cell.seed, data_t
        )
        candidates.append(
            {
                "lr": lr,
                "val_mse": history.best_val,
                "epochs": history.epochs_run,
                "train_time_s": history.train_time_s,
                "stopped_by": stopped_by,
            }
        )
        log.info(
            "%s lr=%g: val %.4g after %d epochs", cell.id, lr, history.best_val, history.epochs_run
        )
        if best is None or history.best_val < best[1].best_val:
            best = (module, history, stopped_by, info, lr)
    selection_time = time.perf_counter() - t_select
    module, history, stopped_by, info, lr = best

    x_test = sx.encode(ds.x_test)
    with torch.no_grad():
        module(x_test[:1])  # warm-up (lazy initialisation, caches)
        t0 = time.perf_counter()
        out = module(x_test)  # the whole test set in one batch, timed
        lat_batch = (time.perf_counter() - t0) / len(x_test)
    pred = sy.decode(out)  # (n_test, *grid)
    truth = ds.y_test.astype(np.float64)
    mae, rel_l2 = error_metrics(pred, truth)
    lat1 = _latency(module, x_test)
    n_params = sum(p.numel() for p in module.parameters() if p.requires_grad)

    k = min(N_PLOT_SAMPLES, len(truth))
    pred_path = run_dir / "predictions" / f"{cell.id}.npz"
    pred_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(
        pred_path,
        lambda p: np.savez(p, x=ds.x_test[:k], y=ds.y_test[:k], pred=pred[:k].astype(np.float32)),
    )
    return {
        "dataset": cell.dataset,
        "resolution": res,
        "model": cell.model,
        "test_mae": mae,
        "test_rel_l2": rel_l2,
        "train_time_s": history.train_time_s,
        "selection_time_s": selection_time,
        "latency_s_per_sample": lat1,
        "batch_time_s_per_sample": lat_batch,
        "epochs": history.epochs_run,
        "best_epoch": history.best_epoch,
        "stopped_by": stopped_by,
        "lr": lr,
        "val_mse": history.best_val,
        "candidates": candidates,
        "selection": selection,
        "n_parameters": n_params,
        "n_fit": len(x_fit),
        "n_val": n_val,
        "n_test": len(truth),
        "budget": cell.params["budget"],
        "model_info": info,
        "device": device_description("cpu"),
        "predictions": str(pred_path.relative_to(run_dir)),
    }


# --------------------------------------------------------------------------------------------
# The run, the table, the plots
# --------------------------------------------------------------------------------------------

COLUMNS = (
    "dataset",
    "resolution",
    "model",
    "status",
    "test_mae",
    "test_rel_l2",
    "train_time_s",
    "selection_time_s",
    "latency_s_per_sample",
    "batch_time_s_per_sample",
    "epochs",
    "stopped_by",
    "lr",
    "n_parameters",
    "device",
)


def run_benchmark(
    run_dir: str | Path,
    quick: bool = False,
    executor: str = "local",
    address: str | None = None,
    datasets: str | Sequence[str] | None = None,
    models: str | Sequence[str] | None = None,
    resolutions: str | Sequence[int] | None = None,
    *,
    data: PDEBenchmarkConfig | None = None,
    budgets: dict[str, ModelBudget] | None = None,
    progress: bool = True,
    plots: bool = True,
) -> str:
    """Run (or resume) the PDE table into ``run_dir``; returns the table as text.

    ``datasets``, ``models`` and ``resolutions`` restrict the grid (comma-separated strings or
    sequences; default: everything, or one resolution per data set with ``quick``). ``quick``
    also uses the quick data configurations, 200 training and 50 test instances, and
    :data:`QUICK_BUDGETS`, unless ``data`` or ``budgets`` say otherwise. Cells already finished
    in ``run_dir`` are skipped.
    """
    from eads.runs import RunDir

    if data is None:
        data = (
            PDEBenchmarkConfig(n_train=200, n_test=50, quick_data=True)
            if quick
            else (PDEBenchmarkConfig())
        )
    if budgets is not None:
        unknown = sorted(set(budgets) - set(MODELS))
        if unknown:
            raise ConfigError(
                f"budgets name unknown models {unknown}; valid models are {list(MODELS)}."
            )
        budgets = {**(QUICK_BUDGETS if quick else FULL_BUDGETS), **budgets}
    cells = build_cells(datasets, models, resolutions, quick=quick, data=data, budgets=budgets)
    run_dir = Path(run_dir)
    config = {
        "task": TASK,
        "quick": quick,
        "data": dataclasses.asdict(data),
        "cells": [dataclasses.asdict(c) for c in cells],
    }
    if (run_dir / "config.json").is_file():  # resuming or extending: keep every cell listed
        previous = RunDir(run_dir).config()
        ids = {Cell(**c).id for c in config["cells"]}
        config["cells"] = [c for c in previous.get("cells", []) if Cell(**c).id not in ids] + (
            config["cells"]
        )
    RunDir.create(run_dir, config, seed=data.seed)
    _prepare_data(cells, data, progress)
    run_cells(cells, run_cell, run_dir, executor=executor, address=address, progress=progress)
    every_cell = [Cell(**c) for c in config["cells"]]  # the report covers the whole run
    rows = write_report(run_dir, every_cell, plots=plots)
    return format_table(rows)


def _prepare_data(cells: list[Cell], data: PDEBenchmarkConfig, progress: bool) -> None:
    """Generate (or check) each data set once, before the cells, so cells only read the cache."""
    for dataset in dict.fromkeys(c.dataset for c in cells):
        res = next(int(c.params["resolution"]) for c in cells if c.dataset == dataset)
        _load_data(dataset, res, data, progress=progress)


def _load_data(dataset: str, res: int, data: PDEBenchmarkConfig, progress: bool):
    """One data set at one resolution as a :class:`PDEBenchmarkConfig` asks (cached)."""
    from eads.data.pde import load_pde_dataset

    return load_pde_dataset(
        dataset,
        res,
        data.n_train,
        data.n_test,
        seed=data.seed,
        quick=data.quick_data,
        config=_data_config(dataset, data),
        progress=progress,
    )


def _data_config(dataset: str, data: PDEBenchmarkConfig):
    """The generator configuration a :class:`PDEBenchmarkConfig` asks for (None: the default)."""
    from eads.data.pde import QUICK_CONFIGS, BurgersConfig, DarcyConfig

    if dataset == "burgers" and data.burgers_solver != "split_step":
        base = QUICK_CONFIGS["burgers"] if data.quick_data else BurgersConfig()
        return dataclasses.replace(base, solver=data.burgers_solver)
    if dataset == "darcy" and data.darcy_fine_intervals is not None:
        base = QUICK_CONFIGS["darcy"] if data.quick_data else DarcyConfig()
        return dataclasses.replace(base, fine_intervals=data.darcy_fine_intervals)
    return None


def _read_cells(run_dir: Path, cells: list[Cell] | None) -> list[dict]:
    if cells is not None:
        paths = [run_dir / "cells" / f"{c.id}.json" for c in cells]
    else:
        paths = sorted((run_dir / "cells").glob("*.json"))
    return [json.loads(p.read_text()) for p in paths if p.is_file()]


def _row(r: dict) -> dict:
    """A table row from a cell's result."""
    row = {k: r.get(k) for k in COLUMNS}
    row.update(
        dataset=r["cell"]["dataset"],
        model=r["cell"]["model"],
        resolution=r["cell"]["params"]["resolution"],
        status=r["status"],
    )
    if r["status"] != "ok":
        row["error"] = r.get("error")
    return row


def _sort_rows(rows: list[dict]) -> list[dict]:
    order = {m: i for i, m in enumerate(MODELS)}
    return sorted(rows, key=lambda r: (r["dataset"], r["resolution"], order.get(r["model"], 99)))


def write_report(run_dir: str | Path, cells: list[Cell] | None = None, plots: bool = True):
    """Write ``results.csv``/``results.json`` (and ``plots/``) from the cells of ``run_dir``."""
    run_dir = Path(run_dir)
    rows = _sort_rows([_row(r) for r in _read_cells(run_dir, cells)])
    atomic_write_json(run_dir / "results.json", {"columns": list(COLUMNS), "rows": rows})
    atomic_write_csv(run_dir / "results.csv", rows, list(COLUMNS))
    if plots:
        plot_results(run_dir)
    return rows


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the results."""
    head = (
        f"{'dataset':8} {'res':>5} {'model':14} {'MAE':>10} {'rel L2':>9} {'train s':>8} "
        f"{'latency ms':>10} {'epochs':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(
                f"{r['dataset']:8} {r['resolution']:>5} {r['model']:14} FAILED: {r.get('error')}"
            )
            continue
        lines.append(
            f"{r['dataset']:8} {r['resolution']:>5} {r['model']:14} {r['test_mae']:10.3e} "
            f"{r['test_rel_l2']:9.4f} {r['train_time_s']:8.1f} "
            f"{1e3 * r['latency_s_per_sample']:10.3f} {r['epochs']:6d}"
        )
    return "\n".join(lines)


def plot_results(run_dir: str | Path) -> list[Path]:
    """The plots of one run, into ``run_dir/plots``: see :func:`plot_runs`."""
    return plot_runs([run_dir], Path(run_dir) / "plots")


def plot_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Predictions against truth (at each data set's highest resolution), error against
    resolution per model (with the runs' ``references.json``, if written), and training time
    and latency per model (the seed paper's Figure 5), drawn from the finished cells of one or
    more runs (e.g. one run per resolution pass; where two runs hold the same cell, the later
    one counts). ``eads bench pde-plots``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, where = {}, {}
    for run_dir in map(Path, run_dirs):
        if not (run_dir / "cells").is_dir():
            raise ConfigError(f"{str(run_dir)!r} is not a PDE benchmark run (no cells/ in it).")
        listed = None
        if (run_dir / "config.json").is_file():
            listed = [Cell(**c) for c in json.loads((run_dir / "config.json").read_text())["cells"]]
        for r in _read_cells(run_dir, listed):
            if r["status"] == "ok":
                key = (r["cell"]["dataset"], r["cell"]["params"]["resolution"], r["cell"]["model"])
                results[key], where[key] = r, run_dir
    ok = _sort_rows([_row(r) for r in results.values()])
    references = [  # eads bench pde-references, where it was run
        r
        for run_dir in map(Path, run_dirs)
        if (run_dir / "references.json").is_file()
        for r in json.loads((run_dir / "references.json").read_text())["rows"]
    ]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    colors = {m: f"C{i}" for i, m in enumerate(MODELS)}

    for dataset in sorted({r["dataset"] for r in ok}):
        res = max(r["resolution"] for r in ok if r["dataset"] == dataset)
        models = [m for m in MODELS if (dataset, res, m) in results]
        preds = {
            m: np.load(where[(dataset, res, m)] / results[(dataset, res, m)]["predictions"])
            for m in models
        }
        first = preds[models[0]]
        k = len(first["y"])
        if dataset in ("burgers", "burgers_released"):
            fig, axes = plt.subplots(1, k, figsize=(4 * k, 3), squeeze=False)
            xs = np.arange(res) / res
            for j in range(k):
                ax = axes[0, j]
                ax.plot(xs, first["y"][j], "k-", lw=2.5, label="truth")
                for m in models:
                    ax.plot(xs, preds[m]["pred"][j], lw=1, color=colors[m], label=m)
                ax.set_title(f"test sample {j}")
                ax.set_xlabel("x")
            axes[0, 0].set_ylabel("u(x, 1)")
            axes[0, -1].legend(fontsize=7)
        else:
            cols = len(models) + 2
            fig, axes = plt.subplots(1, cols, figsize=(2.2 * cols, 2.6), squeeze=False)
            y0 = first["y"][0]
            panels = [("input a", first["x"][0]), ("truth u", y0)]
            panels += [(m, preds[m]["pred"][0]) for m in models]
            for ax, (title, img) in zip(axes[0], panels, strict=True):
                vmin, vmax = (None, None) if title == "input a" else (y0.min(), y0.max())
                ax.imshow(img, vmin=vmin, vmax=vmax, origin="lower", cmap="viridis")
                ax.set_title(title, fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
        fig.suptitle(f"{dataset}, resolution {res}: test predictions")
        fig.tight_layout()
        path = out / f"predictions_{dataset}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)

    dsets = sorted({r["dataset"] for r in ok})
    if dsets:
        fig, axes = plt.subplots(1, len(dsets), figsize=(5 * len(dsets), 3.5), squeeze=False)
        for ax, dataset in zip(axes[0], dsets, strict=True):
            for m in MODELS:
                pts = sorted(
                    (r["resolution"], r["test_rel_l2"])
                    for r in ok
                    if r["dataset"] == dataset and r["model"] == m
                )
                if pts:
                    ax.plot(*zip(*pts, strict=True), "o-", color=colors[m], label=m)
            for style, name in zip(("k--", "k:"), ("mean(u0)", "fit-split mean"), strict=True):
                pts = sorted(
                    (r["resolution"], r["test_rel_l2"])
                    for r in references
                    if r["dataset"] == dataset and r["predictor"] == name
                )
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, lw=1, label=f"{name} (no learning)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("resolution")
            ax.set_ylabel("test relative L2 error")
            ax.set_title(dataset)
            ax.legend(fontsize=6)
        fig.tight_layout()
        path = out / "error_vs_resolution.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)

        groups = [(d, max(r["resolution"] for r in ok if r["dataset"] == d)) for d in dsets]
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
        width = 0.8 / len(groups)
        for g, (dataset, res) in enumerate(groups):
            sel = {r["model"]: r for r in ok if r["dataset"] == dataset and r["resolution"] == res}
            ms = [m for m in MODELS if m in sel]
            pos = np.array([MODELS.index(m) for m in ms]) + g * width
            for ax, key in zip(axes, ("train_time_s", "latency_s_per_sample"), strict=True):
                ax.bar(pos, [sel[m][key] for m in ms], width, label=f"{dataset} {res}")
        for ax, label in zip(
            axes,
            ("training wall time (s)", "inference latency per sample (s, batch 1)"),
            strict=True,
        ):
            ax.set_xticks(np.arange(len(MODELS)) + 0.4 - width / 2)
            ax.set_xticklabels(MODELS, rotation=30, fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel(label)
            ax.legend(fontsize=7)
        fig.suptitle("cost per model (digital simulation on CPU, not analog hardware)")
        fig.tight_layout()
        path = out / "cost.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written
