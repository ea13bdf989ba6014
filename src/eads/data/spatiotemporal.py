"""Spatio-temporal (graph) forecasting data: loaders, the standard protocol and masked metrics.

Tensor layout, used everywhere in this module and by :mod:`eads.baselines.gnn`:

* a series is ``(time, nodes, features)``: ``values[t, n, f]``;
* a batch of windows is ``(batch, time, nodes, features)`` for inputs and ``(batch, horizon,
  nodes)`` for targets (the single target feature), their masks and predictions.

Each loader returns a :class:`SpatioTemporalDataset`: the values (float32), a boolean mask of the
observed entries (missing entries hold 0.0 in ``values`` and ``False`` in ``mask``; they are never
filled into targets, only excluded), a weighted adjacency ``(nodes, nodes)`` with zero diagonal,
and notes on how the graph was built.

The protocol (:func:`make_forecast_splits`), per data set in :data:`PROTOCOLS`:

1. a chronological train/validation/test split of the time axis (6:2:2 unless stated);
2. a z-score per feature fitted on the observed entries of the training split only;
3. sliding windows ``history -> horizon`` built *inside* each split, so no time step is seen by
   two splits (the common practice of windowing the whole series first lets validation inputs
   overlap training targets; we do not);
4. masked MAE, RMSE and MAPE in data units (:func:`forecast_metrics`), per horizon step and
   averaged over the horizon (the mean of the per-step values, as Graph WaveNet and MTGNN report).
   Whether a true value of exactly zero counts as missing is an option; published traffic
   results use both conventions, so :func:`forecast_metrics_report` gives both.

Real files are read in place through :func:`eads.data.paths.shared_file` (see
``shared/data/SOURCES.md``). PEMS04/PEMS08 flow arrays are not in the shared folder: pass the
path of ``pems04.npz`` / ``pems08.npz`` (ASTGCN/STSGCN release, key ``data``).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eads._errors import ConfigError, DataError
from eads.bench.metrics import ForecastMetrics, forecast_metrics, forecast_metrics_report
from eads.data.paths import shared_file

log = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "PROTOCOLS",
    "ForecastMetrics",
    "ForecastSplits",
    "ForecastWindows",
    "Protocol",
    "SpatioTemporalDataset",
    "ZScore",
    "chronological_split",
    "fit_zscore",
    "forecast_metrics",
    "forecast_metrics_report",
    "gaussian_kernel_adjacency",
    "load_beijing_air",
    "load_custom",
    "load_nyc_taxi",
    "load_pems",
    "load_spatiotemporal",
    "load_sz_taxi",
    "load_texas_covid",
    "make_forecast_splits",
    "masked_mae_loss",
    "sliding_windows",
]

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------
# The data set container
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SpatioTemporalDataset:
    """One multivariate series on a graph, in the layout ``(time, nodes, features)``."""

    name: str
    """Registry name, e.g. ``"pems04"``."""
    values: np.ndarray
    """``(T, N, F)`` float32 in data units; 0.0 where ``mask`` is False."""
    mask: np.ndarray
    """``(T, N, F)`` bool, True where the entry was observed."""
    adjacency: np.ndarray
    """``(N, N)`` float32 edge weights, zero diagonal (models add self-loops themselves)."""
    step: str
    """The sampling interval in words, e.g. ``"5 min"``."""
    steps_per_day: float
    """Time steps per day (288 for 5-minute data, 24 hourly, 1 daily)."""
    target_feature: int
    """Index into the feature axis of the quantity forecast."""
    feature_names: tuple[str, ...]
    graph_notes: str
    """How ``adjacency`` was built, in a sentence or two."""
    node_names: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    """The files read."""
    notes: str = ""
    """Anything else a reader of the results should know (missing data, known quirks)."""

    def __post_init__(self):
        values, mask, adj = (np.asarray(a) for a in (self.values, self.mask, self.adjacency))
        if values.ndim != 3:
            raise DataError(
                f"Data set {self.name!r}: values have shape {values.shape} (rank {values.ndim}); "
                "the layout is (time, nodes, features), rank 3."
            )
        if mask.shape != values.shape:
            raise DataError(
                f"Data set {self.name!r}: mask shape {mask.shape} must equal the values shape "
                f"{values.shape}."
            )
        n = values.shape[1]
        if adj.shape != (n, n):
            raise DataError(
                f"Data set {self.name!r}: adjacency has shape {adj.shape}, but the values have "
                f"{n} nodes; it must be ({n}, {n})."
            )
        if not 0 <= self.target_feature < values.shape[2]:
            raise DataError(
                f"Data set {self.name!r}: target_feature={self.target_feature} must index the "
                f"{values.shape[2]} features."
            )

    @property
    def n_steps(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.values.shape[1])

    @property
    def n_features(self) -> int:
        return int(self.values.shape[2])

    def summary(self) -> dict:
        """A JSON-ready description (for run directories)."""
        return {
            "name": self.name,
            "shape": list(self.values.shape),
            "step": self.step,
            "target_feature": self.feature_names[self.target_feature],
            "observed_fraction": float(self.mask.mean()),
            "zero_fraction_of_target": float(
                (self.values[..., self.target_feature] == 0)[
                    self.mask[..., self.target_feature]
                ].mean()
            ),
            "graph_edges": int((self.adjacency > 0).sum()),
            "graph_notes": self.graph_notes,
            "notes": self.notes,
            "sources": list(self.sources),
        }


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _finish(
    name: str,
    raw: np.ndarray,
    adjacency: np.ndarray,
    *,
    data_file: PathLike,
    graph_file: PathLike,
    extra_mask: np.ndarray | None = None,
    target_feature: int = 0,
    node_names: Sequence[str] = (),
    **fields,
) -> SpatioTemporalDataset:
    """Mask NaN, reject inf, check the graph against the data, and build the data set."""
    raw = np.asarray(raw, dtype=np.float64)
    if np.isinf(raw).any():
        raise DataError(
            f"Data file {str(data_file)!r} holds {int(np.isinf(raw).sum())} infinite values; "
            "only finite numbers or NaN (read as missing) are allowed."
        )
    mask = ~np.isnan(raw)
    if extra_mask is not None:
        mask &= extra_mask
    n_nodes = raw.shape[1]
    adjacency = np.asarray(adjacency, dtype=np.float64)
    if adjacency.shape != (n_nodes, n_nodes):
        raise DataError(
            f"Graph file {str(graph_file)!r} gives a graph of shape {adjacency.shape}, but the "
            f"data file {str(data_file)!r} has {n_nodes} nodes; the graph must be "
            f"({n_nodes}, {n_nodes})."
        )
    if not np.isfinite(adjacency).all() or (adjacency < 0).any():
        raise DataError(
            f"Graph file {str(graph_file)!r} yields non-finite or negative edge weights; "
            "weights must be finite and >= 0."
        )
    observed_per_node = mask[..., target_feature].sum(axis=0)  # (N,)
    empty = np.flatnonzero(observed_per_node == 0)
    if empty.size:
        label = [node_names[i] for i in empty[:5]] if node_names else empty[:5].tolist()
        raise DataError(
            f"Data file {str(data_file)!r}: the target series of {empty.size} node(s) is entirely "
            f"missing (first: {label}); every node needs at least one observed value."
        )
    np.fill_diagonal(adjacency, 0.0)
    values = np.where(mask, raw, 0.0).astype(np.float32)
    return SpatioTemporalDataset(
        name=name,
        values=values,
        mask=mask,
        adjacency=adjacency.astype(np.float32),
        target_feature=target_feature,
        node_names=tuple(node_names),
        **fields,
    )


def _load_npz_array(
    path: PathLike,
    key: str,
    expected: tuple[int | None, ...],
    labels: tuple[str, ...] | None = None,
) -> np.ndarray:
    """Read ``np.load(path)[key]`` and check its shape (None in ``expected`` = any length).

    ``labels`` names the axes in the error message (default: ``T`` for a free length).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file {str(path)!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                raise DataError(
                    f"Data file {str(path)!r} has keys {archive.files}, but the array must be "
                    f"stored under the key {key!r}."
                )
            array = archive[key]
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"Data file {str(path)!r} is not a readable .npz archive ({exc}).") from exc
    shape_ok = array.ndim == len(expected) and all(
        e is None or s == e for s, e in zip(array.shape, expected, strict=True)
    )
    if not shape_ok:
        names = labels or tuple("T" if e is None else str(e) for e in expected)
        want = "(" + ", ".join(names) + ")"
        raise DataError(
            f"Data file {str(path)!r}: array {key!r} has shape {array.shape}, expected {want}."
        )
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(
            f"Data file {str(path)!r}: array {key!r} has dtype {array.dtype}; a numeric dtype is "
            "required."
        )
    return array


def _read_square_csv(path: PathLike, *, header: bool) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Graph file {str(path)!r} does not exist.")
    try:
        matrix = np.loadtxt(path, delimiter=",", skiprows=1 if header else 0, ndmin=2)
    except ValueError as exc:
        raise DataError(f"Graph file {str(path)!r} is not a numeric CSV matrix ({exc}).") from exc
    if matrix.shape[0] != matrix.shape[1]:
        raise DataError(
            f"Graph file {str(path)!r} holds a {matrix.shape} matrix; it must be square."
        )
    return matrix


def gaussian_kernel_adjacency(
    distance: np.ndarray, *, sigma: float | None = None, threshold: float = 0.1
) -> np.ndarray:
    """``W_ij = exp(-d_ij^2 / sigma^2)`` on the finite entries of ``distance``, zeroed below
    ``threshold`` (Li et al. 2018, DCRNN, eq. 10 and its released ``gen_adj_mx``).

    ``distance`` is ``(N, N)`` with ``inf`` where no edge is known; ``sigma`` defaults to the
    standard deviation of the finite off-diagonal distances.
    """
    distance = np.asarray(distance, dtype=np.float64)
    if distance.ndim != 2 or distance.shape[0] != distance.shape[1]:
        raise DataError(f"distance has shape {distance.shape}; it must be a square (N, N) matrix.")
    if np.isnan(distance).any() or (distance < 0).any():
        bad = int((np.isnan(distance) | (distance < 0)).sum())
        raise DataError(
            f"distance holds {bad} NaN or negative entries; distances must be >= 0, with inf "
            "where no edge is known."
        )
    if sigma is not None and not (np.isfinite(sigma) and sigma > 0):
        raise ConfigError(f"sigma={sigma!r} must be a positive finite number (or None).")
    finite = np.isfinite(distance)
    off = finite & ~np.eye(distance.shape[0], dtype=bool)
    if sigma is None:
        sigma = float(distance[off].std()) if off.any() else 1.0
        sigma = sigma if sigma > 0 else 1.0
    weights = np.zeros_like(distance, dtype=np.float64)
    weights[finite] = np.exp(-((distance[finite] / sigma) ** 2))
    weights[weights < threshold] = 0.0
    np.fill_diagonal(weights, 0.0)
    return weights


def _edge_list_adjacency(
    graph_file: PathLike, n_nodes: int, *, data_file: PathLike, kernel_threshold: float
) -> tuple[np.ndarray, int, float]:
    """Gaussian-kernel weights from a ``from,to,cost`` distance edge list (0-based node ids).

    ``W_ij = exp(-(d_ij/sigma)^2)`` with sigma = std of the listed costs, weights below
    ``kernel_threshold`` dropped, made symmetric (each pair is assumed listed once, as in the
    PEMS files). Returns the ``(N, N)`` weights, the number of listed edges and sigma.
    """
    import pandas as pd

    graph_file = Path(graph_file)
    if not graph_file.is_file():
        raise DataError(f"Graph file {str(graph_file)!r} does not exist.")
    edges = pd.read_csv(graph_file)
    if not {"from", "to", "cost"} <= set(edges.columns):
        raise DataError(
            f"Graph file {str(graph_file)!r} has columns {list(edges.columns)}; expected "
            "'from,to,cost'."
        )
    ids = edges[["from", "to"]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    if not (np.isfinite(ids).all() and (ids == np.round(ids)).all()):
        raise DataError(
            f"Graph file {str(graph_file)!r} has missing or non-integer node ids in 'from'/'to'; "
            "ids must be integers 0..N-1."
        )
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_nodes):
        raise DataError(
            f"Graph file {str(graph_file)!r} names sensor ids from {ids.min()} to {ids.max()}, "
            f"but the data file {str(data_file)!r} has {n_nodes} nodes (ids 0..{n_nodes - 1})."
        )
    cost = pd.to_numeric(edges["cost"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~(cost >= 0))  # NaN, negative or non-numeric
    if bad.size:
        raise DataError(
            f"Graph file {str(graph_file)!r} has {bad.size} NaN, negative or non-numeric costs "
            f"(first on data row {bad[0] + 1}: {edges['cost'].iloc[bad[0]]}); road distances "
            "must be >= 0."
        )
    distance = np.full((n_nodes, n_nodes), np.inf)
    np.fill_diagonal(distance, 0.0)
    distance[ids[:, 0], ids[:, 1]] = cost
    distance[ids[:, 1], ids[:, 0]] = np.minimum(distance[ids[:, 1], ids[:, 0]], cost)
    sigma = float(cost.std()) or 1.0
    adjacency = gaussian_kernel_adjacency(distance, sigma=sigma, threshold=kernel_threshold)
    return adjacency, len(cost), sigma


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------

_PEMS_SHAPES = {"pems04": (16992, 307, 3), "pems08": (17856, 170, 3)}


def load_pems(
    name: str,
    path: PathLike | None = None,
    *,
    distance_path: PathLike | None = None,
    kernel_threshold: float = 0.1,
) -> SpatioTemporalDataset:
    """PEMS04 / PEMS08 traffic (Guo et al. 2019 ASTGCN release): 5-minute flow, occupancy, speed.

    ``path`` is the user-supplied ``pems04.npz`` / ``pems08.npz`` (key ``data``, shape
    (16992, 307, 3) / (17856, 170, 3)); the target is flow (channel 0). The road graph is read
    from the shared ``pems0X_distance.csv`` (``from,to,cost``, cost = road distance) and turned
    into weights with :func:`gaussian_kernel_adjacency` (sigma = std of the listed distances,
    weights below ``kernel_threshold`` dropped), made symmetric because the file lists each
    sensor pair once.
    """
    if name not in _PEMS_SHAPES:
        raise ConfigError(f"PEMS name {name!r} is unknown; use one of {sorted(_PEMS_SHAPES)}.")
    if path is None:
        raise DataError(
            f"The {name} flow array is not in the shared data folder; pass the path of "
            f"{name}.npz (key 'data', shape {_PEMS_SHAPES[name]}) as path=..."
        )
    raw = _load_npz_array(path, "data", _PEMS_SHAPES[name])
    graph_file = (
        Path(distance_path)
        if distance_path
        else shared_file(f"spatiotemporal/pems/{name}_distance.csv")
    )
    adjacency, n_edges, sigma = _edge_list_adjacency(
        graph_file, raw.shape[1], data_file=path, kernel_threshold=kernel_threshold
    )
    return _finish(
        name,
        raw,
        adjacency,
        data_file=path,
        graph_file=graph_file,
        step="5 min",
        steps_per_day=288.0,
        feature_names=("flow", "occupancy", "speed"),
        graph_notes=(
            f"Road graph from {graph_file.name}: W_ij = exp(-(d_ij/sigma)^2), sigma = std of the "
            f"{n_edges} listed distances ({sigma:.1f}), weights < {kernel_threshold} dropped, "
            "symmetric, zero diagonal (DCRNN's Gaussian kernel)."
        ),
        sources=(str(path), str(graph_file)),
    )


def load_sz_taxi(
    path: PathLike | None = None, *, adjacency_path: PathLike | None = None
) -> SpatioTemporalDataset:
    """Shenzhen taxi road speeds (T-GCN release): 2976 x 15-min steps, 156 roads, 1 feature.

    The adjacency is the released 0/1 road matrix (no header), used as given: it is not
    symmetric (532 directed entries). No entry is NaN; about 25 % of speeds are exactly 0, which
    the metrics can treat as missing (``zeros_as_missing``).
    """
    data_file = Path(path) if path else shared_file("spatiotemporal/sz_taxi/sz_taxi_speed.npz")
    graph_file = (
        Path(adjacency_path)
        if adjacency_path
        else shared_file("spatiotemporal/sz_taxi/sz_taxi_adj.csv")
    )
    raw = _load_npz_array(data_file, "data", (None, 156, 1))
    adjacency = _read_square_csv(graph_file, header=False)
    return _finish(
        "sz_taxi",
        raw,
        adjacency,
        data_file=data_file,
        graph_file=graph_file,
        step="15 min",
        steps_per_day=96.0,
        feature_names=("speed",),
        graph_notes=f"0/1 road adjacency from {graph_file.name}, as released (directed).",
        sources=(str(data_file), str(graph_file)),
        notes="About a quarter of the speeds are exactly 0 (no probe taxi); see zeros_as_missing.",
    )


_NYC_YEARS = {2019: slice(0, 8760), 2020: slice(8760, 17544)}  # hours; 2020 is a leap year


def load_nyc_taxi(
    path: PathLike | None = None,
    *,
    adjacency_path: PathLike | None = None,
    year: int | None = None,
) -> SpatioTemporalDataset:
    """NYC yellow-taxi hourly in/out flow of 69 Manhattan zones, 2019-01-01 .. 2020-12-31.

    Key ``arr_0``, shape (17544, 69, 2); channel 0 is read as inflow and channel 1 as outflow
    (the order of the release's file name "inoutflow"); the target is inflow. The graph is the
    released 0/1 zone adjacency (one header row). Note the 2020 COVID-19 drop sits in the
    validation and test splits of a chronological 6:2:2 split: inflow averages about 121 trips
    per zone-hour in the training split, 8.8 in validation and 24.6 in test.

    ``year`` (2019 or 2020) keeps that calendar year only (8760 or 8784 hours, from its
    1 January 00:00); registry name ``nyc_taxi_2019`` is the pre-pandemic year, whose 6:2:2
    split has no such shift.
    """
    if year is not None and year not in _NYC_YEARS:
        raise ConfigError(
            f"NYC taxi year {year!r} is not in the file; use one of {sorted(_NYC_YEARS)}."
        )
    data_file = (
        Path(path)
        if path
        else shared_file("spatiotemporal/nyc_taxi/nyc_taxi_inoutflow_60min_2019_2020.npz")
    )
    graph_file = (
        Path(adjacency_path)
        if adjacency_path
        else shared_file("spatiotemporal/nyc_taxi/nyc_zones_adj.csv")
    )
    raw = _load_npz_array(data_file, "arr_0", (None, 69, 2))
    if year is not None:
        hours = _NYC_YEARS[year]
        if raw.shape[0] < hours.stop:
            raise DataError(
                f"Data file {str(data_file)!r} has {raw.shape[0]} hours; the year {year} needs "
                f"hours {hours.start}..{hours.stop - 1} of the 2019-2020 release."
            )
        raw = raw[hours]
    adjacency = _read_square_csv(graph_file, header=True)
    return _finish(
        "nyc_taxi" if year is None else f"nyc_taxi_{year}",
        raw,
        adjacency,
        data_file=data_file,
        graph_file=graph_file,
        step="1 h",
        steps_per_day=24.0,
        feature_names=("inflow", "outflow"),
        graph_notes=f"0/1 zone adjacency from {graph_file.name} (symmetric), as released.",
        sources=(str(data_file), str(graph_file)),
        notes=(
            "The 2020 pandemic collapse of demand falls in the validation/test splits."
            if year is None
            else f"Calendar year {year} of the 2019-2020 release only."
        ),
    )


BEIJING_STATIONS = (
    "Aotizhongxin",
    "Changping",
    "Dingling",
    "Dongsi",
    "Guanyuan",
    "Gucheng",
    "Huairou",
    "Nongzhanguan",
    "Shunyi",
    "Tiantan",
    "Wanliu",
    "Wanshouxigong",
)
_BEIJING_STEPS = 35064


def load_beijing_air(
    pollutant: str = "PM2.5",
    path: PathLike | None = None,
    *,
    covariates: Sequence[str] = (),
    train_fraction: float = 0.6,
) -> SpatioTemporalDataset:
    """Beijing multi-site air quality (UCI), 12 stations, hourly 2013-03-01 .. 2017-02-28.

    ``pollutant`` is ``"PM2.5"`` or ``"PM10"`` (feature 0, the target); ``covariates`` adds
    other columns (e.g. ``("TEMP", "PRES", "DEWP", "WSPM")``) as further features. ``path`` is
    the folder of ``PRSA_Data_<station>_20130301-20170228.csv[.gz]`` files (default: shared).
    Missing values stay missing (masked), never interpolated.

    Graph: the files carry no station coordinates, so the graph is the Pearson correlation of
    the pollutant between stations over the first ``train_fraction`` of the time axis (the
    training split of a chronological split, pairwise-complete hours), negative values clipped
    to 0, zero diagonal. All stations lie within ~60 km, so the graph is dense with weights
    ~0.6-0.95.
    """
    import pandas as pd

    if pollutant not in ("PM2.5", "PM10"):
        raise ConfigError(f"pollutant={pollutant!r} is not allowed; use 'PM2.5' or 'PM10'.")
    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"train_fraction={train_fraction} must lie strictly between 0 and 1.")
    folder = Path(path) if path else shared_file("spatiotemporal/beijing_air")
    columns = [pollutant, *covariates]
    series, files = [], []
    expected_time = None
    for station in BEIJING_STATIONS:
        candidates = [folder / f"PRSA_Data_{station}_20130301-20170228.csv{s}" for s in (".gz", "")]
        file = next((c for c in candidates if c.is_file()), None)
        if file is None:
            raise DataError(f"Data file {str(candidates[0])!r} (station {station}) does not exist.")
        frame = pd.read_csv(file)
        missing_cols = [c for c in ["year", "month", "day", "hour", *columns] if c not in frame]
        if missing_cols:
            raise DataError(
                f"Data file {str(file)!r} lacks the columns {missing_cols}; it has "
                f"{list(frame.columns)}."
            )
        time = pd.to_datetime(frame[["year", "month", "day", "hour"]]).to_numpy()
        if expected_time is None:
            expected_time = time
            if len(time) != _BEIJING_STEPS or (np.diff(time) != np.timedelta64(1, "h")).any():
                raise DataError(
                    f"Data file {str(file)!r} has {len(time)} rows; expected {_BEIJING_STEPS} "
                    "consecutive hours (2013-03-01 00:00 .. 2017-02-28 23:00)."
                )
        elif len(time) != len(expected_time) or (time != expected_time).any():
            raise DataError(
                f"Data file {str(file)!r}: its hours do not match those of the first station; "
                "all 12 stations must cover the same consecutive hours."
            )
        series.append(frame[columns].to_numpy(dtype=np.float64))  # (T, F)
        files.append(str(file))
    raw = np.stack(series, axis=1)  # (T, N, F)
    target = raw[..., 0]
    n_train = int(round(train_fraction * raw.shape[0]))
    corr = pd.DataFrame(target[:n_train]).corr(min_periods=24).to_numpy()
    corr = np.nan_to_num(corr, nan=0.0).clip(min=0.0)
    name = "beijing_pm25" if pollutant == "PM2.5" else "beijing_pm10"
    n_missing = int(np.isnan(target).sum())
    return _finish(
        name,
        raw,
        corr,
        data_file=folder,
        graph_file=folder,
        step="1 h",
        steps_per_day=24.0,
        feature_names=tuple(columns),
        node_names=BEIJING_STATIONS,
        graph_notes=(
            f"No coordinates in the files: Pearson correlation of {pollutant} between stations "
            f"over the first {train_fraction:.0%} of hours (training split), negatives clipped "
            "to 0, zero diagonal; dense."
        ),
        sources=tuple(files),
        notes=(
            f"{n_missing} missing {pollutant} values ({n_missing / target.size:.2%}) are masked, "
            "not filled. Stand-in for the seed paper's China reanalysis PM data (not public)."
        ),
    )


def _haversine_km(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    lat, lon = np.radians(lat), np.radians(lon)
    dlat = lat[:, None] - lat[None, :]
    dlon = lon[:, None] - lon[None, :]
    a = np.sin(dlat / 2) ** 2 + np.cos(lat[:, None]) * np.cos(lat[None, :]) * np.sin(dlon / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _county_key(name: str) -> str:
    return re.sub(r"[^a-z]", "", str(name).lower())


def load_texas_covid(
    path: PathLike | None = None,
    *,
    centroids_path: PathLike | None = None,
    n_neighbours: int = 8,
) -> SpatioTemporalDataset:
    """Texas DSHS COVID-19 daily new cases for 254 counties, 2020-03-05 .. 2021-11-21 (627 days).

    The workbook holds cumulative counts: the header is on row 3, a ``Total`` row follows the
    counties and notes follow that; both are dropped. Daily new cases are the first difference,
    negatives (corrections) clipped to 0, so the first day (2020-03-04) is lost.

    Graph: haversine distances between county centroids (the centroid file's columns are
    labelled ``X (Lat)`` / ``Y (Long)`` but hold longitude / latitude, and are read as such),
    Gaussian kernel ``exp(-(d/sigma)^2)`` with sigma = std of all pairwise distances, kept for
    each county's ``n_neighbours`` nearest counties and symmetrised (an edge kept if either end
    keeps it).
    """
    import pandas as pd

    data_file = (
        Path(path)
        if path
        else shared_file("spatiotemporal/texas_covid/texas_covid_cumulative_cases_by_county.xlsx")
    )
    graph_file = (
        Path(centroids_path)
        if centroids_path
        else shared_file("spatiotemporal/texas_covid/texas_county_centroids.csv")
    )
    if not data_file.is_file():
        raise DataError(f"Data file {str(data_file)!r} does not exist.")
    try:
        sheet = pd.read_excel(data_file, header=2)
    except Exception as exc:  # openpyxl raises many kinds
        raise DataError(
            f"Data file {str(data_file)!r} is not a readable .xlsx workbook ({exc})."
        ) from exc
    name_col = sheet.columns[0]
    names = sheet[name_col].astype(str).str.strip()
    total_rows = np.flatnonzero(names.str.lower() == "total")
    if total_rows.size == 0:
        raise DataError(
            f"Data file {str(data_file)!r} has no 'Total' row after the counties; expected the "
            "DSHS layout (header on row 3, counties, Total, notes)."
        )
    counties = sheet.iloc[: total_rows[0]]
    date_cols = [c for c in sheet.columns[1:] if re.fullmatch(r"Cases \d\d-\d\d-\d{4}", str(c))]
    if len(date_cols) < 3:
        raise DataError(
            f"Data file {str(data_file)!r} has no 'Cases MM-DD-YYYY' columns on its header row 3."
        )
    dates = pd.to_datetime([c[6:] for c in date_cols], format="%m-%d-%Y")
    if (np.diff(dates.values) != np.timedelta64(1, "D")).any():
        raise DataError(f"Data file {str(data_file)!r}: the date columns are not consecutive days.")
    cumulative = counties[date_cols].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    new_cases = np.clip(np.diff(cumulative, axis=1), 0.0, None).T[:, :, None]  # (T, N, 1)
    county_names = counties[name_col].astype(str).str.strip().tolist()

    if not graph_file.is_file():
        raise DataError(f"Graph file {str(graph_file)!r} does not exist.")
    cent = pd.read_csv(graph_file)
    if not {"X (Lat)", "Y (Long)", "CNTY_NM"} <= set(cent.columns):
        raise DataError(
            f"Graph file {str(graph_file)!r} has columns {list(cent.columns)}; expected "
            "'X (Lat)', 'Y (Long)' and 'CNTY_NM'."
        )
    lookup = {_county_key(n): i for i, n in enumerate(cent["CNTY_NM"])}
    missing = [n for n in county_names if _county_key(n) not in lookup]
    if missing or len(cent) != len(county_names):
        raise DataError(
            f"Graph file {str(graph_file)!r} lists {len(cent)} counties but the data file "
            f"{str(data_file)!r} has {len(county_names)}; unmatched: {missing[:5]}."
        )
    order = [lookup[_county_key(n)] for n in county_names]
    lon = cent["X (Lat)"].to_numpy(np.float64)[order]  # mislabelled in the source: longitude
    lat = cent["Y (Long)"].to_numpy(np.float64)[order]
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise DataError(
            f"Graph file {str(graph_file)!r} has missing or non-finite centroid coordinates; "
            "every county needs a finite latitude and longitude."
        )
    distance = _haversine_km(lat, lon)
    weights = gaussian_kernel_adjacency(distance, threshold=0.0)
    k = min(n_neighbours, len(order) - 1)
    near = np.argsort(distance + np.diag(np.full(len(order), np.inf)), axis=1)[:, :k]
    keep = np.zeros_like(weights, dtype=bool)
    keep[np.arange(len(order))[:, None], near] = True
    keep |= keep.T
    adjacency = np.where(keep, weights, 0.0)
    return _finish(
        "texas_covid",
        new_cases,
        adjacency,
        data_file=data_file,
        graph_file=graph_file,
        step="1 day",
        steps_per_day=1.0,
        feature_names=("new_cases",),
        node_names=county_names,
        graph_notes=(
            "Haversine distance between county centroids, W = exp(-(d/sigma)^2) with sigma = std "
            f"of all pairwise distances, kept for each county's {k} nearest neighbours, symmetric."
        ),
        sources=(str(data_file), str(graph_file)),
        notes=(
            f"Daily new cases = first difference of cumulative counts from {dates[0].date()}, "
            "negatives clipped to 0 (first day dropped). Many small counties report 0 most days."
        ),
    )


def load_custom(
    path: PathLike,
    *,
    key: str,
    target_feature: int = 0,
    adjacency_path: PathLike | None = None,
    distance_path: PathLike | None = None,
    step_minutes: float,
    kernel_threshold: float = 0.1,
    name: str = "custom",
) -> SpatioTemporalDataset:
    """A user's own data set: an ``.npz`` array ``(time, nodes, features)`` and one graph file.

    ``path[key]`` holds the series (NaN = missing, read as unobserved); ``target_feature``
    indexes its feature axis. The graph is exactly one of

    * ``adjacency_path``: a plain numeric ``N x N`` CSV (no header) of edge weights >= 0, used
      as given (directed if not symmetric; the diagonal is zeroed);
    * ``distance_path``: a ``from,to,cost`` edge list with a header (0-based node ids, cost a
      distance >= 0), turned into ``W_ij = exp(-(d_ij/sigma)^2)``, sigma = std of the listed
      costs, weights below ``kernel_threshold`` dropped, symmetric -- as :func:`load_pems`.

    ``step_minutes`` is the sampling interval (``steps_per_day = 1440 / step_minutes``). Every
    check of the built-in loaders applies (missing key, rank, graph size, negative or NaN
    weights and distances, a node whose target is never observed). Not for irregularly sampled
    series (one fixed step is assumed) or a graph that changes over time (one static graph).
    """
    data_file = Path(path)
    if not (isinstance(step_minutes, int | float) and math.isfinite(step_minutes)):
        raise ConfigError(f"step_minutes={step_minutes!r} must be a positive number of minutes.")
    if step_minutes <= 0:
        raise ConfigError(f"step_minutes={step_minutes!r} must be a positive number of minutes.")
    if (adjacency_path is None) == (distance_path is None):
        raise ConfigError(
            f"Data set {name!r} needs exactly one graph: an adjacency CSV or a distance edge list "
            f"(got adjacency_path={adjacency_path!r}, distance_path={distance_path!r})."
        )
    raw = _load_npz_array(data_file, key, (None, None, None), labels=("time", "nodes", "features"))
    n_features = raw.shape[2]
    if isinstance(target_feature, bool) or not isinstance(target_feature, int | np.integer):
        raise ConfigError(f"target_feature={target_feature!r} must be an integer feature index.")
    if not 0 <= target_feature < n_features:
        raise ConfigError(
            f"target_feature={target_feature} is out of range: {str(data_file)!r} array {key!r} "
            f"has {n_features} feature(s) (indices 0..{n_features - 1})."
        )
    if adjacency_path is not None:
        graph_file = Path(adjacency_path)
        adjacency = _read_square_csv(graph_file, header=False)
        graph_notes = f"Edge weights from {graph_file.name}, as given (zero diagonal)."
    else:
        graph_file = Path(distance_path)
        adjacency, n_edges, sigma = _edge_list_adjacency(
            graph_file, raw.shape[1], data_file=data_file, kernel_threshold=kernel_threshold
        )
        graph_notes = (
            f"Distance graph from {graph_file.name}: W_ij = exp(-(d_ij/sigma)^2), sigma = std of "
            f"the {n_edges} listed distances ({sigma:.3g}), weights < {kernel_threshold} "
            "dropped, symmetric, zero diagonal."
        )
    return _finish(
        name,
        raw,
        adjacency,
        data_file=data_file,
        graph_file=graph_file,
        target_feature=int(target_feature),
        step=f"{step_minutes:g} min",
        steps_per_day=1440.0 / float(step_minutes),
        feature_names=tuple(f"{key}[{i}]" for i in range(n_features)),
        graph_notes=graph_notes,
        sources=(str(data_file), str(graph_file)),
        notes="A user-supplied data set (load_custom).",
    )


# name -> loader(path, **kwargs)
DATASETS: dict[str, Callable[..., SpatioTemporalDataset]] = {
    "pems04": lambda path=None, **kw: load_pems("pems04", path, **kw),
    "pems08": lambda path=None, **kw: load_pems("pems08", path, **kw),
    "sz_taxi": load_sz_taxi,
    "beijing_pm25": lambda path=None, **kw: load_beijing_air("PM2.5", path, **kw),
    "beijing_pm10": lambda path=None, **kw: load_beijing_air("PM10", path, **kw),
    "nyc_taxi": load_nyc_taxi,
    "nyc_taxi_2019": lambda path=None, **kw: load_nyc_taxi(path, year=2019, **kw),
    "texas_covid": load_texas_covid,
}


def load_spatiotemporal(name: str, path: PathLike | None = None, **kwargs) -> SpatioTemporalDataset:
    """Load a data set by registry name (see :data:`DATASETS`).

    ``path`` overrides the main data file (required for ``pems04`` / ``pems08``; a folder for
    the Beijing sets); other keyword arguments go to the loader (e.g. ``adjacency_path``).
    """
    if name not in DATASETS:
        raise ConfigError(
            f"Spatio-temporal data set {name!r} is unknown; valid names are {sorted(DATASETS)}."
        )
    return DATASETS[name](path, **kwargs)


# --------------------------------------------------------------------------------------------
# Protocol: split, z-score, windows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """The evaluation protocol of one data set: split fractions and window lengths (in steps)."""

    history: int = 12
    horizon: int = 12
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    reason: str = "12 -> 12 steps, 6:2:2 chronological split (the standard traffic protocol)."


PROTOCOLS: dict[str, Protocol] = {
    name: Protocol() for name in ("pems04", "pems08", "sz_taxi", "nyc_taxi", "nyc_taxi_2019")
} | {
    "beijing_pm25": Protocol(reason="12 h -> 12 h, 6:2:2 chronological split."),
    "beijing_pm10": Protocol(reason="12 h -> 12 h, 6:2:2 chronological split."),
    # 627 days: 14 days of history (two weekly reporting cycles) -> the next 7 days.
    "texas_covid": Protocol(
        history=14,
        horizon=7,
        reason="14 days -> 7 days (two weekly reporting cycles in, one week out), 6:2:2 split.",
    ),
}


def chronological_split(
    n_steps: int, fractions: Sequence[float] = (0.6, 0.2, 0.2)
) -> dict[str, tuple[int, int]]:
    """Half-open index ranges ``[start, stop)`` of the train, val and test splits, in time order."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or fractions[0] <= 0:
        raise ConfigError(
            f"fractions={fractions} must be three non-negative numbers (train, val, test) with "
            "train > 0."
        )
    total = sum(fractions)
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"fractions={fractions} must sum to 1 (they sum to {total}).")
    n_train = int(round(fractions[0] * n_steps))
    n_val = int(round(fractions[1] * n_steps))
    return {
        "train": (0, n_train),
        "val": (n_train, n_train + n_val),
        "test": (n_train + n_val, n_steps),
    }


@dataclass(frozen=True, eq=False)
class ZScore:
    """``z = (v - mean) / std`` per feature (or per node and feature), fitted on training data.

    ``mean`` and ``std`` have shape ``(1, F)`` (pooled over nodes) or ``(N, F)`` (per node), so
    they broadcast against ``(..., N, F)``.
    """

    mean: np.ndarray
    std: np.ndarray

    def transform(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean) / self.std).astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return (values * self.std + self.mean).astype(np.float32)

    def target_inverse(self, target: np.ndarray, feature: int):
        """Map a ``(..., N)`` prediction of ``feature`` from z-units back to data units.

        Works on numpy arrays and torch tensors alike.
        """
        mean, std = self.mean[:, feature], self.std[:, feature]  # (1,) or (N,)
        if hasattr(target, "new_tensor"):
            mean, std = target.new_tensor(mean), target.new_tensor(std)
        return target * std + mean

    def target_transform(self, target, feature: int):
        """Map a ``(..., N)`` array of ``feature`` from data units to z-units."""
        mean, std = self.mean[:, feature], self.std[:, feature]
        if hasattr(target, "new_tensor"):
            mean, std = target.new_tensor(mean), target.new_tensor(std)
        return (target - mean) / std


def fit_zscore(values: np.ndarray, mask: np.ndarray, *, per_node: bool = False) -> ZScore:
    """Fit a :class:`ZScore` on the observed entries of ``values`` ``(T, N, F)`` only.

    With ``per_node``, a node with fewer than two observations of a feature (or zero spread)
    falls back to the pooled statistics of that feature.
    """
    v = np.asarray(values, np.float64)
    m = np.asarray(mask, bool)
    count = m.sum(axis=(0, 1))  # (F,)
    if (count < 2).any():
        raise DataError(
            f"Cannot fit a z-score: feature(s) {np.flatnonzero(count < 2).tolist()} have fewer "
            "than 2 observed training values."
        )
    vm = np.where(m, v, 0.0)
    mean = vm.sum(axis=(0, 1)) / count  # (F,)
    var = (np.where(m, v - mean, 0.0) ** 2).sum(axis=(0, 1)) / count
    std = np.sqrt(var)
    std = np.where(std > 0, std, 1.0)
    mean, std = mean[None, :], std[None, :]  # (1, F)
    if per_node:
        n = m.sum(axis=0)  # (N, F)
        node_mean = vm.sum(axis=0) / np.maximum(n, 1)
        node_var = (np.where(m, v - node_mean, 0.0) ** 2).sum(axis=0) / np.maximum(n, 1)
        node_std = np.sqrt(node_var)
        ok = (n >= 2) & (node_std > 0)
        mean = np.where(ok, node_mean, mean)
        std = np.where(ok, node_std, std)
    return ZScore(mean=mean.astype(np.float32), std=std.astype(np.float32))


def sliding_windows(
    values: np.ndarray, mask: np.ndarray, history: int, horizon: int, target_feature: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All stride-1 windows of one contiguous segment ``(T, N, F)``.

    Returns read-only views (no copy) ``x (B, history, N, F)``, ``y (B, horizon, N)`` and
    ``y_mask (B, horizon, N)`` with ``B = T - history - horizon + 1``: window ``b`` takes steps
    ``b .. b+history-1`` as input and ``b+history .. b+history+horizon-1`` as target. Index a
    batch (``x[idx]``) to get a contiguous copy.
    """
    if np.ndim(values) != 3 or np.ndim(mask) != 3 or np.shape(mask)[:2] != np.shape(values)[:2]:
        raise ConfigError(
            f"values {np.shape(values)} and mask {np.shape(mask)} must both be (time, nodes, "
            "features) arrays over the same time steps and nodes."
        )
    n_windows = values.shape[0] - history - horizon + 1
    if n_windows < 1:
        raise ConfigError(
            f"A segment of {values.shape[0]} steps is too short for history={history} + "
            f"horizon={horizon}; shorten the windows or enlarge the split."
        )
    view = np.lib.stride_tricks.sliding_window_view
    x = view(values[: n_windows + history - 1], history, axis=0)  # (B, N, F, history)
    x = np.moveaxis(x, -1, 1)  # (B, history, N, F)
    tgt = values[history:, :, target_feature]
    tmask = mask[history:, :, target_feature]
    y = np.moveaxis(view(tgt, horizon, axis=0), -1, 1)  # (B, horizon, N)
    y_mask = np.moveaxis(view(tmask, horizon, axis=0), -1, 1)  # (B, horizon, N)
    return x, y, y_mask


@dataclass(frozen=True, eq=False)
class ForecastWindows:
    """The windows of one split (views into the split's arrays; see :func:`sliding_windows`)."""

    x: np.ndarray
    """``(B, history, N, F')`` z-scored inputs; missing entries are 0 (the training mean)."""
    y: np.ndarray
    """``(B, horizon, N)`` target feature in data units (0 where ``y_mask`` is False)."""
    y_mask: np.ndarray
    """``(B, horizon, N)`` True where the target was observed."""
    start: np.ndarray
    """``(B,)`` series index of each window's first input step."""

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True, eq=False)
class ForecastSplits:
    """Train/val/test windows of one data set under one protocol."""

    train: ForecastWindows
    val: ForecastWindows
    test: ForecastWindows
    scaler: ZScore
    ranges: dict[str, tuple[int, int]]
    """Half-open series index ranges of each split."""
    history: int
    horizon: int
    target_feature: int
    """Index of the target in ``x``'s feature axis (the data set's target feature)."""
    feature_names: tuple[str, ...] = field(default=())

    def splits(self) -> dict[str, ForecastWindows]:
        return {"train": self.train, "val": self.val, "test": self.test}


def make_forecast_splits(
    dataset: SpatioTemporalDataset,
    *,
    history: int | None = None,
    horizon: int | None = None,
    fractions: Sequence[float] | None = None,
    per_node_scaling: bool = False,
    time_of_day: bool = False,
) -> ForecastSplits:
    """Apply the standard protocol (module docstring): split, z-score on train, window per split.

    Unset ``history``, ``horizon`` and ``fractions`` come from :data:`PROTOCOLS` (12, 12,
    6:2:2 for an unknown name). ``time_of_day`` appends a feature in [0, 1) (the fraction of the
    day at each step, taking step 0 as midnight, true for every loader here) to the inputs; it
    is not z-scored.
    """
    protocol = PROTOCOLS.get(dataset.name, Protocol())
    history = protocol.history if history is None else int(history)
    horizon = protocol.horizon if horizon is None else int(horizon)
    fractions = protocol.fractions if fractions is None else tuple(fractions)
    if history < 1 or horizon < 1:
        raise ConfigError(f"history={history} and horizon={horizon} must both be >= 1.")
    if history + horizon > dataset.n_steps:
        raise ConfigError(
            f"history + horizon = {history + horizon} steps is longer than the {dataset.n_steps} "
            f"steps of the {dataset.name} series."
        )
    ranges = chronological_split(dataset.n_steps, fractions)
    t0, t1 = ranges["train"]
    scaler = fit_zscore(dataset.values[t0:t1], dataset.mask[t0:t1], per_node=per_node_scaling)
    inputs = np.where(dataset.mask, scaler.transform(dataset.values), 0.0).astype(np.float32)
    feature_names = dataset.feature_names
    if time_of_day:
        tod = (np.arange(dataset.n_steps) % dataset.steps_per_day) / dataset.steps_per_day
        tod = np.broadcast_to(tod[:, None, None], (dataset.n_steps, dataset.n_nodes, 1))
        inputs = np.concatenate([inputs, tod.astype(np.float32)], axis=-1)
        feature_names = (*feature_names, "time_of_day")
    out = {}
    for split, (a, b) in ranges.items():
        if b - a < history + horizon:
            raise ConfigError(
                f"The {split} split of {dataset.name} has {b - a} steps, fewer than history + "
                f"horizon = {history + horizon}; change fractions={fractions} or the windows."
            )
        x, _, _ = sliding_windows(inputs[a:b], dataset.mask[a:b], history, horizon, 0)
        _, y, y_mask = sliding_windows(
            dataset.values[a:b], dataset.mask[a:b], history, horizon, dataset.target_feature
        )
        out[split] = ForecastWindows(x=x, y=y, y_mask=y_mask, start=np.arange(a, a + len(x)))
    return ForecastSplits(
        **out,
        scaler=scaler,
        ranges=ranges,
        history=history,
        horizon=horizon,
        target_feature=dataset.target_feature,
        feature_names=feature_names,
    )


# --------------------------------------------------------------------------------------------
# Masked metrics
# --------------------------------------------------------------------------------------------


# ForecastMetrics, forecast_metrics and forecast_metrics_report live in eads.bench.metrics (one
# definition of each benchmark metric); imported at the top of this module and re-exported.


def masked_mae_loss(prediction, target, mask):
    """Differentiable masked MAE for training (torch tensors, any matching shape).

    Mean of ``|prediction - target|`` over the entries where ``mask`` is True; 0 when none is.
    """
    mask = mask.to(prediction.dtype)
    return ((prediction - target).abs() * mask).sum() / mask.sum().clamp_min(1.0)
