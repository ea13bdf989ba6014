"""Spatio-temporal graph forecasting benchmark (seed paper Table 1 and Figure 4).

``run_benchmark(run_dir, ...)`` trains and evaluates every model on every available data set
and writes one run directory:

* ``config.json`` / ``meta.json`` -- the resolved settings (data sets, models, budgets, seeds,
  skipped data sets and why) and the run metadata (seed, revision, device);
* ``cells/<cell id>.json`` -- one per (data set, model, seed), written atomically by
  :func:`eads.bench.cells.run_cells`; a rerun into the same directory skips finished cells;
* ``results.json`` / ``results.csv`` -- the table: MAE, RMSE, MAPE averaged over the horizon and
  per step, in both zero conventions (zeros observed / zeros missing), training wall time,
  epochs, inference latency, device, budget; ``relative.json`` -- EADS against NP-GL and against
  the best other model in percent MAE; ``table.txt`` -- the text table returned;
  ``results.md`` -- mean +- std over seeds, a cell that a cap stopped marked (all of these
  written by :mod:`eads.report.spatiotemporal` from the cells only);
* ``plots/`` -- predictions against truth for a few nodes per data set, and training time and
  inference latency per model (our Figure 4).

Framings (tensor layout of :mod:`eads.data.spatiotemporal`: windows ``x (B, history, N, F)``,
targets ``y (B, horizon, N)``):

* **EADS** (128 hidden nodes, trained by EC-Train): input nodes = the z-scored history window of
  all nodes and features, flattened, ``N * history * F``; output nodes = the horizon of all nodes
  in the target's z-units, ``N * horizon``. EC-Train minimises the clamped-output current error,
  a squared error; a missing target leaves its output node unclamped (no error current), which
  we realise by clamping it to the circuit's own free output. Its coupling duration T,
  coupling init and learning rate are chosen on the validation split (``Budget.select_trials``
  TPE trials of :func:`eads.tasks.select.run_search`, each trained by :func:`_train` under the
  budget and scored by its best masked validation MAE, the criterion every model stops on;
  ``n_hidden`` fixed at 128); the cell records the chosen values and every trial.
* **NP-GL** (conditional-likelihood training, MAE of the conditional means): one node per
  (sensor, time step) of the target feature, ``N * history`` clamped inputs then
  ``N * horizon`` outputs. ``J`` is masked to the graph and a temporal neighbourhood: nodes
  ``(n, t)`` and ``(m, s)`` are coupled when ``n == m`` or the data set's graph links them, and
  ``|t - s| <= 3`` or one is an output step and the other one of the last 3 history steps.
  Input-input couplings are masked too (inputs are clamped, so they would never act).
  A missing output value is conditioned on as 0 (the training mean) and left out of the loss.
* **Graph WaveNet, MTGNN, DDGCRN, MegaCRN** (:mod:`eads.baselines.gnn`): Adam on the masked MAE
  of the z-scored target (plus MegaCRN's memory losses), at the reduced CPU widths of
  :data:`CPU_WIDTHS` (the papers' widths cost 10-35 s per batch of 64 on one CPU core).
* **Historical average, last value**: no training.

Budgets (:data:`BUDGETS` and :data:`QUICK_BUDGETS`) are fixed per model and identical across
runs: an epoch cap, a training wall-time cap, early stopping on the masked validation MAE
(checked every ``val_every`` updates and at each epoch end; the best state is restored), and caps
on the validation and test windows (an evenly strided subset, the same for every model of a
data set). Nothing is tuned on the test split.

Do not read this benchmark's numbers as the models' converged accuracy: on a 2-core CPU the wall
caps stop the larger GNNs long before they converge (``results.json`` records whether the wall
cap, the epoch cap or early stopping ended each run).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from eads._errors import ConfigError
from eads.bench.budget import stop_reason_of
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
EADS_HIDDEN = 128
NPGL_TEMPORAL_REACH = 3
"""NP-GL couples time steps at most this far apart (plus outputs to the last history steps)."""
PLOT_NODES = 3
PLOT_WINDOWS = 96

CPU_WIDTHS: dict[str, dict] = {
    "graph_wavenet": dict(
        residual_channels=16, dilation_channels=16, skip_channels=32, end_channels=64
    ),
    "mtgnn": dict(conv_channels=16, residual_channels=16, skip_channels=32, end_channels=64),
    "ddgcrn": dict(hidden=16),
    "megacrn": dict(hidden=16, memory_dim=16),
}
"""Reduced widths of the GNN baselines for the CPU (layer counts and depths as in the papers)."""
QUICK_WIDTHS: dict[str, dict] = {
    "graph_wavenet": dict(
        residual_channels=4, dilation_channels=4, skip_channels=8, end_channels=8
    ),
    "mtgnn": dict(
        conv_channels=4, residual_channels=4, skip_channels=8, end_channels=8, node_dim=8
    ),
    "ddgcrn": dict(hidden=4, embed_dim=4),
    "megacrn": dict(hidden=4, memory_dim=4, memory_size=4),
}


@dataclass(frozen=True)
class Budget:
    """The training budget of one model: the same for every run of the benchmark."""

    max_epochs: int = 0
    """Epoch cap (0 for models without training)."""
    max_train_s: float = 0.0
    """Wall-time cap of the training loop in seconds, validation passes included."""
    patience: int = 5
    """Early stopping: validations without a better validation MAE before stopping."""
    batch_size: int = 64
    lr: float = 1e-3
    """Adam's learning rate."""
    val_every: int = 50
    """Validate every this many updates, and at each epoch end."""
    max_val_windows: int = 512
    """Validation uses an evenly strided subset of at most this many windows."""
    max_test_windows: int = 1024
    """Testing uses an evenly strided subset of at most this many windows (same for all models)."""
    select_trials: int = 0
    """EADS: trials of the validation search over T, coupling init and lr (each under this
    budget's caps; ``lr`` above is then unused); 0: no search."""


_NO_TRAIN = Budget()
_GNN = Budget(
    max_epochs=20,
    max_train_s=45.0,
    patience=5,
    batch_size=32,
    lr=1e-3,
    val_every=20,
    max_val_windows=128,
    max_test_windows=256,
)
BUDGETS: dict[str, Budget] = {
    # 6 selection trials of at most 60 s each: an EADS cell may train for up to 6 minutes
    "eads": Budget(
        max_epochs=30,
        max_train_s=60.0,
        patience=5,
        batch_size=64,
        lr=1e-3,
        val_every=100,
        max_val_windows=1024,
        max_test_windows=256,
        select_trials=6,
    ),
    "npgl": Budget(
        max_epochs=30,
        max_train_s=60.0,
        patience=5,
        batch_size=64,
        lr=1e-3,
        val_every=100,
        max_val_windows=512,
        max_test_windows=256,
    ),
    "graph_wavenet": _GNN,
    "mtgnn": _GNN,
    "ddgcrn": _GNN,
    "megacrn": _GNN,
    "historical_average": replace(_NO_TRAIN, max_test_windows=256),
    "last_value": replace(_NO_TRAIN, max_test_windows=256),
}
"""CPU budgets of the full benchmark (2 shared cores, one torch thread per cell)."""
_QUICK = Budget(
    max_epochs=2,
    max_train_s=5.0,
    patience=2,
    batch_size=32,
    lr=1e-3,
    val_every=10,
    max_val_windows=64,
    max_test_windows=64,
)
QUICK_BUDGETS: dict[str, Budget] = {
    name: (
        _QUICK
        if name not in ("historical_average", "last_value")
        else replace(_NO_TRAIN, max_test_windows=64)
    )
    for name in MODEL_NAMES
}
QUICK_BUDGETS["eads"] = replace(_QUICK, select_trials=2)


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


# --------------------------------------------------------------------------------------------
# Models as forecasters: predict (B, horizon, N) in data units; one training update
# --------------------------------------------------------------------------------------------


class _Forecaster:
    """Wraps a model: input framing, z-units <-> data units, and one training update."""

    trainable = True

    def __init__(self, model: torch.nn.Module, splits, budget: Budget):
        self.model, self.splits, self.budget = model, splits, budget
        self.feature = splits.target_feature
        self.horizon, self.n_nodes = splits.horizon, splits.train.y.shape[2]

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
    def __init__(self, model, splits, budget):
        super().__init__(model, splits, budget)
        self.trainable = bool(getattr(model, "trainable", True))
        if self.trainable:
            self.opt = torch.optim.Adam(model.parameters(), lr=budget.lr)

    def step(self, x, y, m):
        from eads.data.spatiotemporal import masked_mae_loss

        self.model.train()
        pred = self.model(x)  # (B, horizon, N)
        loss = masked_mae_loss(pred, y, m) + self.model.auxiliary_loss()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        return float(loss.detach())


class _EADSForecaster(_Forecaster):
    """EADS on the flattened window; EC-Train with unclamped outputs where a target is missing."""

    def __init__(self, model, splits, budget):
        from eads.config import TrainConfig
        from eads.learn import ECTrain
        from eads.learn.loop import make_optimizer

        super().__init__(model, splits, budget)
        self.trainer = ECTrain()
        self.opt = make_optimizer(model, TrainConfig(lr=budget.lr, optimizer="adam"))

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

    def __init__(self, model, splits, budget):
        from eads.config import TrainConfig
        from eads.learn.loop import make_optimizer

        super().__init__(model, splits, budget)
        self.opt = make_optimizer(model, TrainConfig(lr=budget.lr, optimizer="adam"))

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
    model_name: str, data, splits, budget: Budget, seed: int, quick: bool, params=None
) -> _Forecaster:
    """The forecaster of a model; ``params``: an EADS selection trial's T and coupling init."""
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
            **chosen,
        )
        return _EADSForecaster(model, splits, budget)
    if model_name == "npgl":
        mask = npgl_mask(data.adjacency, hist, horizon)
        model = NPGL(
            hist * n, horizon * n, mask=torch.from_numpy(mask.astype(np.float32)), seed=seed
        )
        return _NPGLForecaster(model, splits, budget)
    widths = (QUICK_WIDTHS if quick else CPU_WIDTHS).get(model_name, {})
    model = build_gnn(
        model_name,
        n_nodes=n,
        in_features=f,
        history=hist,
        horizon=horizon,
        adjacency=data.adjacency,
        target_feature=splits.target_feature,
        **widths,
    )
    return _GNNForecaster(model, splits, budget)


# --------------------------------------------------------------------------------------------
# Training loop (shared by every trainable model)
# --------------------------------------------------------------------------------------------


def _train(fc: _Forecaster, splits, budget: Budget, seed: int, progress: bool) -> dict:
    """Minibatch training with the budget's caps and early stopping on validation MAE.

    Why not :func:`eads.fit`: its validation loss is the unmasked MSE of z-scored outputs and it
    has no wall-time cap; here every model stops on the same criterion (masked validation MAE in
    data units) under the same kind of budget.
    """
    from tqdm.auto import tqdm

    tr, va = splits.train, splits.val
    vi = _subset(len(va), budget.max_val_windows)
    vx, vy, vm = va.x[vi], va.y[vi], va.y_mask[vi]
    n = len(tr)
    best_state = {k: v.detach().clone() for k, v in fc.model.state_dict().items()}
    best_val, best_step, since_best = math.inf, 0, 0
    steps, epochs, stop = 0, 0, "epochs"
    val_curve, train_loss = [], []
    t0 = time.perf_counter()

    def validate() -> bool:
        nonlocal best_val, best_state, best_step, since_best
        v = masked_mae(fc.predict(vx), vy, vm)
        val_curve.append([steps, round(time.perf_counter() - t0, 3), v])
        if v < best_val:
            best_val, best_step, since_best = v, steps, 0
            best_state = {k: t.detach().clone() for k, t in fc.model.state_dict().items()}
        else:
            since_best += 1
        return since_best >= budget.patience

    bar = tqdm(total=budget.max_epochs, desc="epochs", disable=not progress, leave=False)
    done = False
    for epoch in range(budget.max_epochs):
        order = np.random.default_rng(seed + epoch).permutation(n)
        total, count = 0.0, 0
        for i in range(0, n, budget.batch_size):
            idx = np.sort(order[i : i + budget.batch_size])
            x = torch.from_numpy(np.ascontiguousarray(tr.x[idx]))
            y, m = fc.targets_z(tr.y[idx], tr.y_mask[idx])
            loss = fc.step(x, y, m)
            if not math.isfinite(loss):
                stop, done = "non-finite loss", True
                break
            total, count, steps = total + loss * len(idx), count + len(idx), steps + 1
            if time.perf_counter() - t0 > budget.max_train_s:
                stop, done = "wall time", True
                break
            if steps % budget.val_every == 0 and validate():
                stop, done = "early stopping", True
                break
        epochs = epoch + (1 if not done else count / n)
        train_loss.append(total / max(count, 1))
        bar.update(1)
        if done:
            break
        if validate():
            stop = "early stopping"
            break
    bar.close()
    if stop in ("wall time", "non-finite loss") or not val_curve:
        validate()  # score the last state too before choosing the best
    fc.model.load_state_dict(best_state)
    return {
        "train_time_s": time.perf_counter() - t0,
        "epochs": round(float(epochs), 3),
        "updates": steps,
        "best_update": best_step,
        "best_val_mae": best_val,
        "stopped_by": stop,
        "stop_reason": stop_reason_of(stop),  # the core's words ("" for a non-finite loss)
        "val_curve": val_curve,
        "train_loss": train_loss,
    }


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


def _select_eads(data, splits, budget: Budget, seed: int, quick: bool, progress: bool):
    """EADS's T, coupling init and lr chosen on validation: ``budget.select_trials`` trials of
    :func:`_train`, each scored by its best masked validation MAE; returns the chosen trial's
    forecaster and training record, and the selection's summary with the trial table."""
    from eads.tasks.select import TrialOutcome, eads_space, run_search

    def objective(params, report):
        b = replace(budget, lr=float(params["lr"]))
        fc = _build("eads", data, splits, b, seed, quick, params=params)
        tr = _train(fc, splits, b, seed, progress)
        curve = [v for _, _, v in tr["val_curve"]]
        return TrialOutcome(
            score=tr["best_val_mae"],
            epochs=tr["epochs"],
            stop_reason=tr["stopped_by"],
            val_curve=curve,
            payload=(fc, tr),
        )

    sel = run_search(objective, eads_space(n_hidden=EADS_HIDDEN), budget.select_trials, seed)
    fc, training = sel.payload
    return fc, training, {**sel.summary(), "metric": "best masked validation MAE (data units)"}


def _nan_to_none(a: np.ndarray) -> list:
    """Nested lists with ``None`` for missing values (strict JSON has no NaN)."""
    return [[None if not math.isfinite(v) else float(v) for v in row] for row in a.tolist()]


def _run_cell(cell: Cell, run_dir: Path) -> dict:
    from eads.baselines.gnn import count_parameters
    from eads.data.spatiotemporal import forecast_metrics_report
    from eads.runs import device_description

    p = cell.params
    torch.set_num_threads(int(p.get("threads", 1)))
    budget = Budget(**p["budget"])
    data, splits = _splits(
        cell.dataset, p.get("path"), p.get("steps"), _custom_key(p.get("custom"))
    )
    quick, progress = bool(p.get("quick")), bool(p.get("progress", False))
    selection = None
    if cell.model == "eads" and budget.select_trials > 0 and budget.max_epochs > 0:
        fc, training, selection = _select_eads(data, splits, budget, cell.seed, quick, progress)
    else:
        fc = _build(cell.model, data, splits, budget, cell.seed, quick)
        if fc.trainable and budget.max_epochs > 0:
            training = _train(fc, splits, budget, cell.seed, progress)
        else:
            training = {
                "train_time_s": 0.0,
                "epochs": 0,
                "updates": 0,
                "stopped_by": "no training",
                "stop_reason": "none",
            }
    te = splits.test
    ti = _subset(len(te), budget.max_test_windows)
    pred = fc.predict(te.x[ti])
    report = forecast_metrics_report(pred, te.y[ti], te.y_mask[ti])
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
        "device": device_description("cpu"),
        "torch_threads": torch.get_num_threads(),
        "budget": asdict(budget),
        "selection": selection,
        "plot": plot,
    }


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


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
    seeds: Sequence[int] = (0,),
    max_epochs: int | None = None,
    max_train_s: float | None = None,
    quick_steps: int = QUICK_STEPS,
    threads: int = 1,
    progress: bool = True,
) -> str:
    """Run the spatio-temporal table into ``run_dir`` and return it as text (module docstring).

    ``datasets`` / ``models``: comma-separated names or sequences (default: every data set, the
    PEMS ones only when their ``pems04`` / ``pems08`` path is given, and every model).
    ``quick``: the first ``quick_steps`` steps of each series (default data set: beijing_pm25),
    tiny GNN widths and :data:`QUICK_BUDGETS`. ``max_epochs`` / ``max_train_s`` override every
    model's caps (for tests). ``threads``: torch threads per cell. Rerunning into the same
    directory skips the finished cells. ``custom``: a user's own data set (:class:`CustomData`),
    run as ``custom`` after the named ones (alone when ``datasets`` is not given); it is loaded
    and windowed before anything is written, so a bad file or window fails first.
    """
    from eads.runs import RunDir

    pems = {"pems04": Path(pems04) if pems04 else None, "pems08": Path(pems08) if pems08 else None}
    if custom is not None and datasets is None:
        names, skipped = [], {}
    else:
        names, skipped = _select_datasets(datasets, quick, pems)
    model_names = _parse_names(models, MODEL_NAMES, "models", MODEL_NAMES)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("seeds=() must name at least one seed.")
    if quick_steps < 100:
        raise ConfigError(f"quick_steps={quick_steps} must be at least 100.")
    custom_params = None
    if custom is not None:
        if not isinstance(custom, CustomData):
            raise ConfigError(f"custom={custom!r} must be a CustomData spec.")
        custom_params = asdict(custom.resolved())
        # load and window it now: every bad input fails before the run directory exists
        _splits(CUSTOM, None, quick_steps if quick else None, _custom_key(custom_params))
        names.append(CUSTOM)
    budgets = QUICK_BUDGETS if quick else BUDGETS
    resolved = {}
    for m in model_names:
        b = budgets[m]
        if max_epochs is not None and b.max_epochs > 0:
            b = replace(b, max_epochs=int(max_epochs))
        if max_train_s is not None and b.max_epochs > 0:
            b = replace(b, max_train_s=float(max_train_s))
        resolved[m] = b
    cells = [
        Cell(
            TASK,
            d,
            m,
            seed=s,
            params={
                "quick": quick,
                "steps": quick_steps if quick else None,
                "path": str(pems[d]) if d in PEMS else None,
                "budget": asdict(resolved[m]),
                "threads": threads,
                **({"custom": custom_params} if d == CUSTOM else {}),
            },
        )
        for d in names
        for m in model_names
        for s in seeds
    ]
    run_dir = Path(run_dir)
    config = {
        "task": TASK,
        "quick": quick,
        "datasets": names,
        "skipped": skipped,
        "models": model_names,
        "seeds": seeds,
        "budgets": {m: asdict(b) for m, b in resolved.items()},
        "gnn_widths": QUICK_WIDTHS if quick else CPU_WIDTHS,
        "eads_hidden": EADS_HIDDEN,
        "npgl_temporal_reach": NPGL_TEMPORAL_REACH,
        "quick_steps": quick_steps if quick else None,
        "threads_per_cell": threads,
        "executor": executor,
        **({"custom": custom_params} if custom_params else {}),
    }
    RunDir.create(run_dir, config, seed=seeds[0])
    t0 = time.perf_counter()
    results = run_cells(
        cells, _run_cell, run_dir, executor=executor, address=address, progress=progress
    )
    return write_report(run_dir, results, skipped, wall_s=time.perf_counter() - t0)


__all__ = [
    "BUDGETS",
    "CSV_FIELDS",
    "DATASET_NAMES",
    "MODEL_LABELS",
    "MODEL_NAMES",
    "QUICK_BUDGETS",
    "Budget",
    "CustomData",
    "format_markdown",
    "format_table",
    "npgl_mask",
    "plot_results",
    "relative_claims",
    "rows_of",
    "run_benchmark",
    "write_report",
]
