"""Spatio-temporal graph forecasting benchmark (seed paper Table 1 and Figure 4).

``run_benchmark(run_dir, ...)`` trains and evaluates every model on every available data set
and writes (or extends) one run directory:

* ``config.json`` / ``meta.json`` -- the resolved settings (data sets, models, budgets, window
  protocols, widths, seeds, skipped data sets and why; merged with what an earlier call into
  the same directory listed) and the run metadata (seed, revision, device);
* ``cells/<cell id>.json`` -- one per (data set, model, seed), written atomically by
  :func:`eads.bench.cells.run_cells`; a rerun into the same directory skips finished cells, so
  a grid can be run cell by cell (``benchmarks/run_spatiotemporal.sh``);
* ``results.json`` / ``results.csv`` -- the table over *every* cell of the directory: MAE,
  RMSE, MAPE averaged over the horizon and per step, in both zero conventions (zeros observed /
  zeros missing), training wall time, epochs, the stop reason, inference latency, device,
  budget, train stride; ``relative.json`` -- EADS against NP-GL and against the best other
  model in percent MAE; ``table.txt`` -- the text table returned; ``results.md`` -- mean +- std
  over seeds, a value a cap stopped marked (all written by :mod:`eads.report.spatiotemporal`
  from the cells only);
* ``plots/`` -- predictions against truth for a few nodes per data set, validation learning
  curves per data set, and training time and inference latency per model (our Figure 4).

Framings (tensor layout of :mod:`eads.data.spatiotemporal`: windows ``x (B, history, N, F)``,
targets ``y (B, horizon, N)``):

* **EADS** (128 hidden nodes, the reference node on, trained by EC-Train): input nodes = the
  z-scored history window of all nodes and features, flattened, ``N * history * F``; output
  nodes = the horizon of all nodes in the target's z-units, ``N * horizon``. EC-Train minimises
  the clamped-output current error, a squared error; a missing target leaves its output node
  unclamped (no error current), which we realise by clamping it to the circuit's own free
  output. Its coupling duration T, coupling init and learning rate are chosen on the validation
  split (``Budget.select_trials`` TPE trials of :func:`eads.tasks.select.run_search`, each
  trained by :func:`_train` to validation patience and scored by its best masked validation
  MAE, the criterion every model stops on; ``n_hidden`` fixed at 128); the cell records the
  chosen values and every trial.
* **NP-GL** (the reference node on; conditional-likelihood training, MAE of the conditional
  means): one node per (sensor, time step) of the target feature, ``N * history`` clamped
  inputs then ``N * horizon`` outputs. ``J`` is masked to the graph and a temporal
  neighbourhood: nodes ``(n, t)`` and ``(m, s)`` are coupled when ``n == m`` or the data set's
  graph links them, and ``|t - s| <= 3`` or one is an output step and the other one of the last
  3 history steps. Input-input couplings are masked too (inputs are clamped, so they would
  never act). A missing output value is conditioned on as 0 (the training mean) and left out of
  the loss.
* **Graph WaveNet, MTGNN, DDGCRN, MegaCRN** (:mod:`eads.baselines.gnn`): Adam on the masked MAE
  of the z-scored target (plus MegaCRN's memory losses), at the papers' widths
  (:data:`WIDTHS` ``"paper"``: the constructors' defaults; ``"reduced"`` and ``"tiny"`` for CPU
  smoke runs), with each release's learning rate, weight decay, gradient clipping and schedule
  (:data:`FULL_BUDGETS`, :data:`GNN_OPTIMIZER`).
* **Historical average, last value**: no training.

The stopping protocol is the core's (:mod:`eads.bench.budget`): every trained run validates on
the masked validation MAE (data units) after each epoch and stops on **patience**
(``Budget.patience`` epochs in a row without a lower one; the best state is restored); the
epoch cap ``Budget.epochs`` is set high so that it should not end a run, and a run it ends is
marked in the tables (``stop_mark``); full budgets have no wall-time cap (``max_time_s`` None,
which ``--quick`` smoke runs alone may set). With ``WindowProtocol.val_every = k > 0`` a run
also validates every k updates inside an epoch and patience then counts validations, not
epochs (no full budget does this). The learning-rate schedule steps once per epoch on the
epoch-end validation MAE.

Windows (:class:`WindowProtocol`, per data set, identical for every model of it): training uses
every ``train_stride``-th training window (the first, then every k-th after it; a CPU cannot
afford every window at the papers' widths), validation an evenly strided subset of at most
``max_val_windows`` windows, testing every test window (``max_test_windows = 0``). Nothing is
tuned on the test split. MAPE treats ``|y| < mape_tolerance`` (data units, :data:`UNITS`) as
zero (:func:`eads.bench.metrics.forecast_metrics`).

When not to use: for accuracy claims at the papers' scale on PEMS without the flow arrays (the
data sets here differ from the paper's; see ``docs/spatiotemporal.md``), or with a wall-time
budget in mind: a full cell at paper width trains for hours on one CPU core.
"""

from __future__ import annotations

import functools
import logging
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from eads._errors import ConfigError, DataError
from eads.bench.budget import Budget
from eads.bench.cells import Cell, run_cells
from eads.bench.metrics import masked_mae
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

log = logging.getLogger(__name__)

TASK = "spatiotemporal"
PEMS = ("pems04", "pems08")
DATASET_NAMES = (
    "pems04",
    "pems08",
    "sz_taxi",
    "beijing_pm25",
    "beijing_pm10",
    "nyc_taxi",
    "texas_covid",
)
DEFAULT_DATASETS = DATASET_NAMES
QUICK_DATASETS = ("beijing_pm25",)
QUICK_STEPS = 600
"""Time steps kept by ``--quick`` (the first ones of each series)."""
FULL_SEEDS = (0, 1, 2)
"""Model seeds of a full run (tables show mean +- std over them); ``--quick`` uses seed 0."""
EADS_HIDDEN = 128
NPGL_TEMPORAL_REACH = 3
"""NP-GL couples time steps at most this far apart (plus outputs to the last history steps)."""
PLOT_NODES = 3
PLOT_WINDOWS = 96
TRAINED = ("eads", "npgl", "graph_wavenet", "mtgnn", "ddgcrn", "megacrn")
"""The models that train (the others, historical average and last value, have no budget)."""
GNNS = ("graph_wavenet", "mtgnn", "ddgcrn", "megacrn")

# --------------------------------------------------------------------------------------------
# Widths, budgets and window protocols
# --------------------------------------------------------------------------------------------

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
CPU_WIDTHS = WIDTHS["reduced"]
QUICK_WIDTHS = WIDTHS["tiny"]

GNN_OPTIMIZER: dict[str, dict[str, float]] = {
    # Adam's weight decay and the gradient-norm clip of each release (0: none)
    "graph_wavenet": {"weight_decay": 1e-4, "grad_clip": 5.0},  # nnzhan/Graph-WaveNet train.py
    "mtgnn": {"weight_decay": 1e-4, "grad_clip": 5.0},  # nnzhan/MTGNN train_multi_step.py
    "ddgcrn": {"weight_decay": 0.0, "grad_clip": 0.0},  # PEMSD4_DDGCRN.conf: grad_norm False
    "megacrn": {"weight_decay": 0.0, "grad_clip": 5.0},  # traintest_MegaCRN.py max_grad_norm 5
}
"""Optimiser settings of the GNN baselines beside their :data:`FULL_BUDGETS` (recorded per cell)."""

_CAP = 300
_PATIENCE = 20
FULL_BUDGETS: dict[str, Budget] = {
    # T, coupling init and lr chosen by 8 selection trials, each trained to patience (as the PDE
    # suite); the plateau schedule halves the lr after 6 epochs without a better validation MAE
    "eads": Budget(epochs=_CAP, batch_size=64, patience=_PATIENCE, select_trials=8),
    "npgl": Budget(epochs=_CAP, lr_grid=(1e-3,), batch_size=64, patience=_PATIENCE),
    # the releases: batch 64; lr 1e-3 (GWN, MTGNN), 3e-3 (DDGCRN), 1e-2 with x0.1 steps (MegaCRN's
    # milestones 50 and 100, here every 50 epochs of the strided set); constant otherwise
    "graph_wavenet": Budget(
        epochs=_CAP, lr_grid=(1e-3,), batch_size=64, patience=_PATIENCE, schedule="none"
    ),
    "mtgnn": Budget(
        epochs=_CAP, lr_grid=(1e-3,), batch_size=64, patience=_PATIENCE, schedule="none"
    ),
    "ddgcrn": Budget(
        epochs=_CAP, lr_grid=(3e-3,), batch_size=64, patience=_PATIENCE, schedule="none"
    ),
    "megacrn": Budget(
        epochs=_CAP,
        lr_grid=(1e-2,),
        batch_size=64,
        patience=_PATIENCE,
        schedule="step",
        schedule_step=50,
        schedule_factor=0.1,
    ),
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


@dataclass(frozen=True)
class WindowProtocol:
    """How the cells of one data set use its windows: the same for every model of it."""

    train_stride: int = 1
    """Train on every k-th training window (windows 0, k, 2k, ...); 1: all of them."""
    max_val_windows: int = 1024
    """Validate on an evenly strided subset of at most this many windows (0: all)."""
    max_test_windows: int = 0
    """Test on an evenly strided subset of at most this many windows (0: all)."""
    val_every: int = 0
    """Also validate every this many updates inside an epoch, patience then counting
    validations (0: once per epoch, patience in epochs)."""
    mape_tolerance: float = 1e-4
    """MAPE (and the zeros-missing convention) treat ``|y|`` below this as zero (data units)."""

    def __post_init__(self):
        for name in ("train_stride", "max_val_windows", "max_test_windows", "val_every"):
            value = getattr(self, name)
            low = 1 if name == "train_stride" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name}={value!r} must be an integer >= {low}.")
        tol = self.mape_tolerance
        if not (isinstance(tol, int | float) and math.isfinite(tol) and tol >= 0):
            raise ConfigError(f"mape_tolerance={tol!r} must be a finite number >= 0.")


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
    "texas_covid": "new cases per county-day",
    "custom": "the data's units",
}
"""The unit of each data set's target (MAE, RMSE and the MAPE tolerance are in it)."""

# --------------------------------------------------------------------------------------------
# Names and arguments
# --------------------------------------------------------------------------------------------


def _parse_names(value, allowed: Sequence[str], what: str, default: Sequence[str]) -> list[str]:
    if value is None:
        return list(default)
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise ConfigError(
            f"{what}={value!r} names unknown {what} {unknown}; valid names are {list(allowed)}."
        )
    return list(dict.fromkeys(names))


def _select_datasets(datasets, quick: bool, pems: dict[str, Path | None]):
    default = QUICK_DATASETS if quick else DEFAULT_DATASETS
    asked = _parse_names(datasets, DATASET_NAMES, "datasets", default)
    run, skipped = [], {}
    for name in asked:
        if name in PEMS and pems.get(name) is None:
            skipped[name] = (
                f"no --{name} path given: the PEMS flow arrays are not in the shared data folder "
                f"(pass {name}.npz, key 'data')."
            )
        else:
            run.append(name)
    return run, skipped


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


CUSTOM = "custom"
"""The data set name of a user's own data (:class:`CustomData`)."""


@dataclass(frozen=True)
class CustomData:
    """A user's own data set, run under the name ``custom`` (see ``docs/spatiotemporal.md``).

    Read by :func:`eads.data.spatiotemporal.load_custom`: ``path[key]`` is the ``(time, nodes,
    features)`` series, ``target_feature`` the forecast feature, and exactly one of
    ``adjacency`` (an ``N x N`` weight CSV, no header) or ``distances`` (a ``from,to,cost`` edge
    list) the graph. ``in_steps -> out_steps`` are the window lengths in steps of
    ``step_minutes``; the split is the standard chronological 6:2:2. The whole spec travels in
    each cell's params, so the cell ids depend on it (and on the absolute file paths).
    """

    path: str
    key: str
    step_minutes: float
    target_feature: int = 0
    adjacency: str | None = None
    distances: str | None = None
    in_steps: int = 12
    out_steps: int = 12

    def resolved(self) -> CustomData:
        """The same spec with absolute file paths (cells may run in another directory)."""

        def absolute(p):
            return None if p is None else str(Path(p).expanduser().resolve())

        return replace(
            self,
            path=absolute(self.path),
            adjacency=absolute(self.adjacency),
            distances=absolute(self.distances),
        )


def _custom_key(custom: CustomData | dict | None) -> tuple | None:
    """A hashable form of a custom spec (for the :func:`_splits` cache)."""
    if custom is None:
        return None
    spec = asdict(custom) if isinstance(custom, CustomData) else dict(custom)
    return tuple(sorted(spec.items()))


@functools.lru_cache(maxsize=2)
def _splits(dataset: str, path: str | None, steps: int | None, custom: tuple | None = None):
    """The dataset and its protocol splits (cached: cells of one data set share them).

    ``custom``: the sorted items of a :class:`CustomData` spec, for ``dataset == "custom"``.
    """
    from eads.data.spatiotemporal import load_custom, load_spatiotemporal, make_forecast_splits

    windows = {}
    if dataset == CUSTOM:
        spec = CustomData(**dict(custom or ()))
        data = load_custom(
            spec.path,
            key=spec.key,
            target_feature=spec.target_feature,
            adjacency_path=spec.adjacency,
            distance_path=spec.distances,
            step_minutes=spec.step_minutes,
        )
        windows = {"history": spec.in_steps, "horizon": spec.out_steps}
    else:
        data = load_spatiotemporal(dataset, path)
    if steps is not None and steps < data.n_steps:
        data = replace(data, values=data.values[:steps], mask=data.mask[:steps])
    return data, make_forecast_splits(data, **windows)


def _subset(n: int, cap: int) -> np.ndarray:
    """Indices of an evenly strided subset of at most ``cap`` of ``n`` windows."""
    if cap <= 0 or n <= cap:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, cap).round().astype(int))


def _train_indices(n: int, stride: int) -> np.ndarray:
    """The training windows a stride keeps: ``0, k, 2k, ...`` below ``n``."""
    return np.arange(0, n, stride)


# --------------------------------------------------------------------------------------------
# Models as forecasters: predict (B, horizon, N) in data units; one training update
# --------------------------------------------------------------------------------------------


class _Forecaster:
    """Wraps a model: input framing, z-units <-> data units, its optimiser, one update."""

    trainable = True

    def __init__(self, model: torch.nn.Module, splits, lr: float):
        self.model, self.splits, self.lr = model, splits, float(lr)
        self.feature = splits.target_feature
        self.horizon, self.n_nodes = splits.horizon, splits.train.y.shape[2]
        self.opt: torch.optim.Optimizer | None = None

    def forward_z(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, history, N, F)`` z-scored -> ``(B, horizon, N)`` in target z-units."""
        return self.model(x)

    @torch.no_grad()
    def predict(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        self.model.eval()
        out = []
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))
            out.append(self.forward_z(xb).float().numpy())
        z = np.concatenate(out)  # (B, horizon, N)
        return self.splits.scaler.target_inverse(z, self.feature)

    def targets_z(self, y: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.splits.scaler.target_transform(y, self.feature)
        z = np.where(mask, z, 0.0).astype(np.float32)
        return torch.from_numpy(z), torch.from_numpy(np.ascontiguousarray(mask))

    def step(self, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> float:
        raise NotImplementedError


class _GNNForecaster(_Forecaster):
    """A GNN baseline: Adam (with its release's weight decay) on the masked MAE, norm clipped."""

    def __init__(self, model, splits, lr, weight_decay: float = 0.0, grad_clip: float = 0.0):
        super().__init__(model, splits, lr)
        self.trainable = bool(getattr(model, "trainable", True))
        self.grad_clip = float(grad_clip)
        if self.trainable:
            self.opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=weight_decay)

    def step(self, x, y, m):
        from eads.data.spatiotemporal import masked_mae_loss

        self.model.train()
        pred = self.model(x)  # (B, horizon, N)
        loss = masked_mae_loss(pred, y, m) + self.model.auxiliary_loss()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.opt.step()
        return float(loss.detach())


class _EADSForecaster(_Forecaster):
    """EADS on the flattened window; EC-Train with unclamped outputs where a target is missing."""

    def __init__(self, model, splits, lr):
        from eads.config import TrainConfig
        from eads.learn import ECTrain
        from eads.learn.loop import make_optimizer

        super().__init__(model, splits, lr)
        self.trainer = ECTrain()
        self.opt = make_optimizer(model, TrainConfig(lr=self.lr, optimizer="adam"))

    def forward_z(self, x):
        out = self.model(x.reshape(x.shape[0], -1))  # (B, horizon * N)
        return out.reshape(x.shape[0], self.horizon, self.n_nodes)

    def step(self, x, y, m):
        from eads.learn.loop import apply_gradients

        flat_x = x.reshape(x.shape[0], -1)  # (B, history * N * F)
        flat_y, flat_m = y.reshape(y.shape[0], -1), m.reshape(m.shape[0], -1)  # (B, horizon*N)
        if not bool(flat_m.all()):
            with torch.no_grad():
                free = self.model(flat_x)  # the unclamped outputs: no error current
            flat_y = torch.where(flat_m, flat_y, free)
        loss, grads = self.trainer.loss_and_gradients(self.model, flat_x, flat_y)
        apply_gradients(self.model, grads, self.opt)
        return float(loss)


class _NPGLForecaster(_Forecaster):
    """NP-GL on (node, time) nodes of the target feature; masked conditional-likelihood MAE."""

    def __init__(self, model, splits, lr):
        from eads.config import TrainConfig
        from eads.learn.loop import make_optimizer

        super().__init__(model, splits, lr)
        self.opt = make_optimizer(model, TrainConfig(lr=self.lr, optimizer="adam"))

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.feature].reshape(x.shape[0], -1)  # (B, history * N)

    def forward_z(self, x):
        out = self.model(self.inputs(x))  # (B, horizon * N)
        return out.reshape(x.shape[0], self.horizon, self.n_nodes)

    def step(self, x, y, m):
        self.model.train()
        flat_y, flat_m = y.reshape(y.shape[0], -1), m.reshape(m.shape[0], -1)
        nodes = self.model.nodes(self.inputs(x), torch.where(flat_m, flat_y, 0.0))  # (B, D)
        mu = self.model.conditional_mean(nodes)[:, self.model.n_inputs :]  # (B, horizon * N)
        w = flat_m.to(mu.dtype)
        loss = ((mu - flat_y).abs() * w).sum() / w.sum().clamp_min(1.0)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def npgl_mask(
    adjacency: np.ndarray, history: int, horizon: int, reach: int = NPGL_TEMPORAL_REACH
) -> np.ndarray:
    """NP-GL's coupling mask over ``(time, node)`` nodes, inputs (history) then outputs.

    Node index ``t * N + n`` for time step ``t`` in ``0 .. history + horizon - 1``. Coupled when
    spatially linked (same node or a graph edge) and temporally near (``|t - s| <= reach``, or an
    output step with one of the last ``reach`` history steps); input-input pairs are not coupled
    (clamped inputs never act on each other). Returns ``(D, D)`` bool, symmetric.
    """
    n = adjacency.shape[0]
    spatial = (adjacency > 0) | (adjacency.T > 0) | np.eye(n, dtype=bool)  # (N, N)
    steps = np.arange(history + horizon)
    is_out = steps >= history
    near = np.abs(steps[:, None] - steps[None, :]) <= reach
    recent = steps >= history - reach
    near |= (is_out[:, None] & recent[None, :]) | (recent[:, None] & is_out[None, :])
    near &= is_out[:, None] | is_out[None, :]  # no input-input couplings
    return np.kron(near, spatial)  # (T*N, T*N)


def _build(
    model_name: str,
    data,
    splits,
    lr: float,
    seed: int,
    widths: dict | None = None,
    optimizer: dict | None = None,
    params=None,
) -> _Forecaster:
    """The forecaster of a model; ``widths`` / ``optimizer``: a GNN's constructor keywords and
    Adam settings; ``params``: an EADS selection trial's T and coupling init."""
    from eads.baselines.gnn import build_gnn
    from eads.circuit import EADS, NPGL

    torch.manual_seed(seed)
    _, hist, n, f = splits.train.x.shape
    horizon = splits.horizon
    if model_name == "eads":
        chosen = {k: v for k, v in (params or {}).items() if k in ("duration", "coupling_init")}
        model = EADS(
            n_inputs=hist * n * f,
            n_hidden=EADS_HIDDEN,
            n_outputs=horizon * n,
            seed=seed,
            reference=True,
            **chosen,
        )
        return _EADSForecaster(model, splits, lr)
    if model_name == "npgl":
        mask = npgl_mask(data.adjacency, hist, horizon)
        model = NPGL(
            hist * n,
            horizon * n,
            mask=torch.from_numpy(mask.astype(np.float32)),
            seed=seed,
            reference=True,
        )
        return _NPGLForecaster(model, splits, lr)
    model = build_gnn(
        model_name,
        n_nodes=n,
        in_features=f,
        history=hist,
        horizon=horizon,
        adjacency=data.adjacency,
        target_feature=splits.target_feature,
        **(widths or {}),
    )
    return _GNNForecaster(model, splits, lr, **(optimizer or {}))


# --------------------------------------------------------------------------------------------
# Training loop (shared by every trainable model)
# --------------------------------------------------------------------------------------------


def _train(
    fc: _Forecaster,
    splits,
    budget: Budget,
    protocol: WindowProtocol,
    seed: int,
    progress: bool = False,
) -> dict:
    """Minibatch training to validation patience (the core's protocol, module docstring).

    Each epoch visits the strided training windows in the order ``permutation(seed + epoch)``;
    after it the masked validation MAE (data units) is measured, the best state kept, the
    schedule stepped; the run ends on the first of patience (``budget.patience`` epochs, or
    validations with ``protocol.val_every``, in a row without a lower MAE; 0: never), the epoch
    cap, and ``budget.max_time_s`` of training (checked after each epoch, as the core loop
    does). The best state is restored. A non-finite training loss raises
    :class:`eads.DataError` (the core loop's rule; a selection trial that does so is recorded
    failed).

    Why not :func:`eads.fit`: its validation loss is the unmasked MSE of z-scored outputs;
    here every model stops on the same criterion (masked validation MAE in data units).
    """
    from tqdm.auto import tqdm

    from eads.learn.loop import make_scheduler

    tr, va = splits.train, splits.val
    ti = _train_indices(len(tr), protocol.train_stride)
    vi = _subset(len(va), protocol.max_val_windows)
    vx, vy, vm = va.x[vi], va.y[vi], va.y_mask[vi]
    n = len(ti)
    scheduler = make_scheduler(fc.opt, budget.train_config("backprop", lr=fc.lr, seed=seed))
    best_state = {k: v.detach().clone() for k, v in fc.model.state_dict().items()}
    best_val, best_update, best_epoch, since_best = math.inf, 0, 0.0, 0
    steps, stop = 0, ""
    val_curve, train_loss, lrs = [], [], []
    t0 = time.perf_counter()

    def validate(epoch: float) -> float:
        nonlocal best_val, best_state, best_update, best_epoch, since_best
        v = masked_mae(fc.predict(vx), vy, vm)
        val_curve.append([steps, round(time.perf_counter() - t0, 3), v, round(epoch, 4)])
        if v < best_val:
            best_val, best_update, best_epoch, since_best = v, steps, epoch, 0
            best_state = {k: t.detach().clone() for k, t in fc.model.state_dict().items()}
        else:
            since_best += 1
        return v

    def out_of_patience() -> bool:
        return budget.patience > 0 and since_best >= budget.patience

    bar = tqdm(total=budget.epochs, desc="epochs", disable=not progress, leave=False)
    epoch, epochs_done = 0, 0.0
    while not stop:
        lrs.append(float(fc.opt.param_groups[0]["lr"]))
        order = ti[np.random.default_rng(seed + epoch).permutation(n)]
        total, count = 0.0, 0
        for i in range(0, n, budget.batch_size):
            idx = np.sort(order[i : i + budget.batch_size])
            x = torch.from_numpy(np.ascontiguousarray(tr.x[idx]))
            y, m = fc.targets_z(tr.y[idx], tr.y_mask[idx])
            loss = fc.step(x, y, m)
            if not math.isfinite(loss):
                raise DataError(
                    f"The training loss became {loss} at epoch {epoch}; lower the learning "
                    f"rate (lr={fc.lr:g})."
                )
            total, count, steps = total + loss * len(idx), count + len(idx), steps + 1
            if protocol.val_every and steps % protocol.val_every == 0 and count < n:
                validate(epoch + count / n)
                if out_of_patience():
                    stop, epochs_done = "patience", epoch + count / n
                    break
        train_loss.append(total / max(count, 1))
        if stop:
            break
        epoch += 1
        epochs_done = float(epoch)
        current = validate(float(epoch))
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(current)
        elif scheduler is not None:
            scheduler.step()
        bar.update(1)
        if out_of_patience():
            stop = "patience"
        elif epoch >= budget.epochs:
            stop = "epoch_cap"
        elif budget.max_time_s is not None and time.perf_counter() - t0 > budget.max_time_s:
            stop = "wall_time"
    bar.close()
    fc.model.load_state_dict(best_state)
    return {
        "train_time_s": time.perf_counter() - t0,
        "epochs": round(epochs_done, 3),
        "updates": steps,
        "lr": fc.lr,
        "best_update": best_update,
        "best_epoch": best_epoch,
        "best_val_mae": best_val,
        "stopped_by": stop,
        "stop_reason": stop,  # the core's words (eads.bench.budget.STOP_REASONS)
        "n_train_windows": n,
        "val_curve": val_curve,
        "val_curve_columns": ["update", "seconds", "val_mae", "epoch"],
        "train_loss": train_loss,
        "lr_per_epoch": lrs,
    }


def _fit(model_name, data, splits, budget, protocol, seed, widths, optimizer, progress):
    """Train one model on every lr of ``budget.lr_grid`` (a fresh model each, same seed) and
    keep the run with the lowest best validation MAE; returns the forecaster, its training
    record, and one summary per lr."""
    best = None
    candidates = []
    for lr in budget.lr_grid:
        fc = _build(model_name, data, splits, lr, seed, widths, optimizer)
        training = _train(fc, splits, budget, protocol, seed, progress)
        candidates.append({k: training[k] for k in ("lr", "best_val_mae", "epochs", "stopped_by")})
        if best is None or training["best_val_mae"] < best[1]["best_val_mae"]:
            best = (fc, training)
    fc, training = best
    return fc, {**training, "candidates": candidates}


def _latency(fc: _Forecaster, x: np.ndarray, repeats: int = 3) -> dict:
    """Inference wall time per sample: one window alone, and within a batch of up to 64."""

    def best(xs):
        xt = torch.from_numpy(np.ascontiguousarray(xs))
        times = []
        with torch.no_grad():
            fc.forward_z(xt)
            for _ in range(repeats):
                t = time.perf_counter()
                fc.forward_z(xt)
                times.append(time.perf_counter() - t)
        return min(times) / len(xs)

    fc.model.eval()
    return {
        "latency_s_per_sample_batch1": best(x[:1]),
        "latency_s_per_sample_batch64": best(x[:64]),
    }


# --------------------------------------------------------------------------------------------
# One cell
# --------------------------------------------------------------------------------------------


def _select_eads(data, splits, budget: Budget, protocol, seed: int, progress: bool):
    """EADS's T, coupling init and lr chosen on validation: ``budget.select_trials`` trials of
    :func:`_train`, each trained to patience and scored by its best masked validation MAE;
    returns the chosen trial's forecaster and training record, and the selection's summary
    with the trial table."""
    from eads.tasks.select import TrialOutcome, eads_space, run_search

    def objective(params, report):
        fc = _build("eads", data, splits, float(params["lr"]), seed, params=params)
        tr = _train(fc, splits, budget, protocol, seed, progress)
        return TrialOutcome(
            score=tr["best_val_mae"],
            epochs=tr["epochs"],
            stop_reason=tr["stopped_by"],
            val_curve=[v[2] for v in tr["val_curve"]],
            payload=(fc, tr),
        )

    sel = run_search(objective, eads_space(n_hidden=EADS_HIDDEN), budget.select_trials, seed)
    fc, training = sel.payload
    return fc, training, {**sel.summary(), "metric": "best masked validation MAE (data units)"}


def _nan_to_none(a: np.ndarray) -> list:
    """Nested lists with ``None`` for missing values (strict JSON has no NaN)."""
    return [[None if not math.isfinite(v) else float(v) for v in row] for row in a.tolist()]


_NO_TRAINING = {
    "train_time_s": 0.0,
    "epochs": 0,
    "updates": 0,
    "stopped_by": "none",
    "stop_reason": "none",
}


def _run_cell(cell: Cell, run_dir: Path) -> dict:
    from eads.baselines.gnn import count_parameters
    from eads.data.spatiotemporal import forecast_metrics_report
    from eads.runs import device_description

    p = cell.params
    torch.set_num_threads(int(p.get("threads", 1)))
    budget = None if p.get("budget") is None else Budget.from_params(p["budget"])
    protocol = WindowProtocol(**p["protocol"])
    data, splits = _splits(
        cell.dataset, p.get("path"), p.get("steps"), _custom_key(p.get("custom"))
    )
    progress = bool(p.get("progress", False))
    widths, optimizer = p.get("widths"), p.get("optimizer")
    selection = None
    if budget is None:
        fc = _build(cell.model, data, splits, 0.0, cell.seed)
        va = splits.val
        vi = _subset(len(va), protocol.max_val_windows)
        # the same validation score the trained models stop on, for their learning curves
        training = {
            **_NO_TRAINING,
            "best_val_mae": masked_mae(fc.predict(va.x[vi]), va.y[vi], va.y_mask[vi]),
        }
    elif cell.model == "eads" and budget.select_trials > 0:
        fc, training, selection = _select_eads(data, splits, budget, protocol, cell.seed, progress)
    else:
        fc, training = _fit(
            cell.model, data, splits, budget, protocol, cell.seed, widths, optimizer, progress
        )
    te = splits.test
    ti = _subset(len(te), protocol.max_test_windows)
    pred = fc.predict(te.x[ti])
    report = forecast_metrics_report(
        pred, te.y[ti], te.y_mask[ti], mape_floor=protocol.mape_tolerance
    )
    report.update(
        mape_tolerance=protocol.mape_tolerance, units=UNITS.get(cell.dataset, UNITS[CUSTOM])
    )
    k = min(PLOT_WINDOWS, len(te))
    nodes = np.linspace(0, splits.train.y.shape[2] - 1, PLOT_NODES).round().astype(int)
    plot_pred = fc.predict(te.x[:k])[:, :, nodes]  # (k, horizon, nodes)
    plot = {
        "nodes": nodes.tolist(),
        "start": te.start[:k].tolist(),
        "history": splits.history,
        "pred_first": plot_pred[:, 0].tolist(),
        "pred_last": plot_pred[:, -1].tolist(),
        "truth_first": _nan_to_none(np.where(te.y_mask[:k, 0], te.y[:k, 0], np.nan)[:, nodes]),
        "truth_last": _nan_to_none(np.where(te.y_mask[:k, -1], te.y[:k, -1], np.nan)[:, nodes]),
    }
    return {
        "metrics": report,
        "training": training,
        **_latency(fc, te.x[ti]),
        "n_parameters": count_parameters(fc.model),
        "n_test_windows": len(ti),
        "n_test_windows_total": len(te),
        "n_train_windows": len(_train_indices(len(splits.train), protocol.train_stride)),
        "n_train_windows_total": len(splits.train),
        "device": device_description("cpu"),
        "torch_threads": torch.get_num_threads(),
        "budget": None if budget is None else budget.to_params(),
        "protocol": asdict(protocol),
        "widths": widths,
        "optimizer": optimizer,
        "reference_node": getattr(fc.model, "reference", None),
        "selection": selection,
        "plot": plot,
    }


# --------------------------------------------------------------------------------------------
# The cost probe: seconds per epoch at the full settings, from a few batches
# --------------------------------------------------------------------------------------------


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
    """Measure what one epoch of ``model`` on ``dataset`` costs at the full run's settings.

    Times ``batches`` training updates at the budget's batch size (after one untimed warm-up
    update) and one validation pass over at most ``2 * batch`` of the protocol's validation
    windows, then scales them: ``s_per_epoch = updates_per_epoch * median(s_per_update) +
    n_val / n_timed * s_val``. EADS is probed at its default T and coupling init (its
    selection trains ``select_trials`` such runs). Returns the measured and scaled seconds, the
    window counts and the settings. Nothing is written.

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
    protocol = protocol or PROTOCOLS[dataset]
    budget = FULL_BUDGETS[model]
    data, splits = _splits(dataset, None if path is None else str(path), None)
    lr = budget.lr_grid[0]
    fc = _build(model, data, splits, lr, seed, WIDTHS[widths].get(model), GNN_OPTIMIZER.get(model))
    tr, va = splits.train, splits.val
    ti = _train_indices(len(tr), protocol.train_stride)
    order = ti[np.random.default_rng(seed).permutation(len(ti))]
    times = []
    for b in range(batches + 1):
        idx = np.sort(order[(b * budget.batch_size) % len(ti) :][: budget.batch_size])
        x = torch.from_numpy(np.ascontiguousarray(tr.x[idx]))
        y, m = fc.targets_z(tr.y[idx], tr.y_mask[idx])
        t = time.perf_counter()
        fc.step(x, y, m)
        if b:  # the first update warms up
            times.append(time.perf_counter() - t)
    vi = _subset(len(va), protocol.max_val_windows)
    timed = vi[: 2 * budget.batch_size]
    t = time.perf_counter()
    fc.predict(va.x[timed])
    s_val = (time.perf_counter() - t) * len(vi) / len(timed)
    updates = math.ceil(len(ti) / budget.batch_size)
    s_update = statistics.median(times)
    return {
        "dataset": dataset,
        "model": model,
        "widths": widths,
        "threads": torch.get_num_threads(),
        "batch_size": budget.batch_size,
        "train_stride": protocol.train_stride,
        "n_train_windows": len(ti),
        "n_train_windows_total": len(tr),
        "n_val_windows": len(vi),
        "updates_per_epoch": updates,
        "s_per_update": s_update,
        "s_per_update_all": times,
        "s_validation": s_val,
        "s_per_epoch": updates * s_update + s_val,
        "select_trials": budget.select_trials,
        "lr_grid_size": len(budget.lr_grid),
    }


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _merge(previous: list, current: list) -> list:
    """``previous`` then the new names of ``current`` (first-seen order)."""
    return list(dict.fromkeys([*previous, *current]))


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
    model_names = _parse_names(models, MODEL_NAMES, "models", MODEL_NAMES)
    seeds = list(FULL_SEEDS if not quick else (0,)) if seeds is None else [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("seeds=() must name at least one seed.")
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
        _splits(CUSTOM, None, quick_steps if quick else None, _custom_key(custom_params))
        names.append(CUSTOM)
    budgets = QUICK_BUDGETS if quick else FULL_BUDGETS
    resolved: dict[str, Budget | None] = {}
    for m in model_names:
        b = budgets.get(m)
        if b is not None and max_epochs is not None:
            b = replace(b, epochs=int(max_epochs))
        if b is not None and max_train_s is not None:
            b = replace(b, max_time_s=float(max_train_s))
        resolved[m] = b
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
        if d == CUSTOM:
            out["custom"] = custom_params
        return out

    cells = [
        Cell(TASK, d, m, seed=s, params=params(d, m))
        for d in names
        for m in model_names
        for s in seeds
    ]
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
        "npgl_temporal_reach": NPGL_TEMPORAL_REACH,
        "quick_steps": quick_steps if quick else None,
        "threads_per_cell": threads,
        "executor": executor,
        **({"custom": custom_params} if custom_params else {}),
    }
    if (run_dir / "config.json").is_file():  # extending a run: keep what it listed
        previous = RunDir(run_dir).config()
        for key, value in (("quick", quick), ("widths", widths)):
            if previous.get(key, value) != value:
                raise ConfigError(
                    f"run_dir {str(run_dir)!r} holds a run with {key}={previous[key]!r}, not "
                    f"{value!r}; use another directory."
                )
        for key in ("datasets", "models", "seeds"):
            config[key] = _merge(previous.get(key, []), config[key])
        # the table's order is the suite's, whatever order the cells were run in
        rank = {n: i for i, n in enumerate((*DATASET_NAMES, CUSTOM, *MODEL_NAMES))}
        for key in ("datasets", "models"):
            config[key] = sorted(config[key], key=lambda n: rank.get(n, len(rank)))
        config["seeds"] = sorted(config["seeds"])
        for key in ("budgets", "protocols", "units"):
            config[key] = {**previous.get(key, {}), **config[key]}
        config["skipped"] = {
            k: v
            for k, v in {**previous.get("skipped", {}), **skipped}.items()
            if k not in config["datasets"]
        }
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
    "DATASET_NAMES",
    "FULL_BUDGETS",
    "FULL_SEEDS",
    "GNN_OPTIMIZER",
    "MODEL_LABELS",
    "MODEL_NAMES",
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
