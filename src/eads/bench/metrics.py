"""Error metrics of the benchmarks and their conventions (one definition each).

* Operator learning (the PDE suite), on de-normalised outputs ``(n, *grid)``: ``MAE`` =
  ``mean |pred - y|`` over every point of every sample (the seed paper's metric) and relative
  L2 = ``mean_i ||pred_i - y_i||_2 / ||y_i||_2`` (the FNO papers' metric), :func:`error_metrics`.
* Forecasting (the spatio-temporal suite), on ``(batch, horizon, nodes)``: masked MAE, RMSE and
  MAPE per horizon step, averaged over steps (:func:`forecast_metrics`); a target with
  ``|y| <`` ``mape_floor`` (data units) is a zero: MAPE leaves it out, and so does the
  zeros-as-missing convention; both conventions for true zeros (observed, or missing) side by
  side with :func:`forecast_metrics_report`, which says whether they differ by more than
  ``rtol``; :func:`masked_mae` is the validation criterion.

Numpy only (tensors are converted), so reports can use these without torch on the path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from eads._errors import ConfigError


def error_metrics(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """``(MAE over all points, mean over samples of ||pred - y||_2 / ||y||_2)``; ``(n, *grid)``."""
    err = (pred - truth).reshape(len(truth), -1)
    norms = np.linalg.norm(truth.reshape(len(truth), -1), axis=1)
    return float(np.abs(err).mean()), float(np.mean(np.linalg.norm(err, axis=1) / norms))


def masked_mae(pred: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    """``mean |pred - y|`` over the entries where ``mask`` is True; ``inf`` when none is."""
    m = mask.astype(bool)
    return float(np.abs(pred - y)[m].mean()) if m.any() else math.inf


@dataclass(frozen=True)
class ForecastMetrics:
    """MAE, RMSE (data units) and MAPE (percent): horizon averages and per-step values."""

    mae: float
    rmse: float
    mape: float
    mae_per_step: tuple[float, ...]
    rmse_per_step: tuple[float, ...]
    mape_per_step: tuple[float, ...]
    zeros_as_missing: bool
    n_valid: int

    def as_dict(self) -> dict:
        return {
            "mae": self.mae,
            "rmse": self.rmse,
            "mape": self.mape,
            "mae_per_step": list(self.mae_per_step),
            "rmse_per_step": list(self.rmse_per_step),
            "mape_per_step": list(self.mape_per_step),
            "zeros_as_missing": self.zeros_as_missing,
            "n_valid": self.n_valid,
        }


def _to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def forecast_metrics(
    prediction, target, mask=None, *, zeros_as_missing: bool = False, mape_floor: float = 1e-4
) -> ForecastMetrics:
    """Masked MAE, RMSE and MAPE of ``prediction`` against ``target``, both ``(B, horizon, N)``.

    A target with ``|y| < mape_floor`` (in the data's units; 0 itself included) is a zero: sz_taxi
    holds speeds of 1e-17 km/h that are zero up to rounding and would dominate MAPE. An entry
    counts when ``mask`` is True (all entries when ``mask`` is None) and, with
    ``zeros_as_missing``, its target is not a zero. For each horizon step ``h`` over its valid
    entries: ``MAE_h = mean|p - y|``, ``RMSE_h = sqrt(mean (p - y)^2)``,
    ``MAPE_h = 100 mean |p - y| / |y|`` where MAPE always leaves out the zeros (it is undefined
    or unbounded there). The reported averages are the means of the per-step values over the
    steps that have valid entries (Graph WaveNet's and MTGNN's convention). Accumulation is
    float64.
    """
    try:
        floor = float(mape_floor)
    except (TypeError, ValueError):
        floor = math.nan
    if not (math.isfinite(floor) and floor >= 0):
        raise ConfigError(f"mape_floor={mape_floor!r} must be a finite number >= 0 (data units).")
    p = _to_numpy(prediction).astype(np.float64)
    y = _to_numpy(target).astype(np.float64)
    if p.shape != y.shape or p.ndim != 3:
        raise ConfigError(
            f"prediction {p.shape} and target {y.shape} must share one (batch, horizon, nodes) "
            "shape."
        )
    valid = np.ones(y.shape, bool) if mask is None else _to_numpy(mask).astype(bool)
    if valid.shape != y.shape:
        raise ConfigError(f"mask shape {valid.shape} must equal the target shape {y.shape}.")
    valid = valid & np.isfinite(y)
    nonzero = (y != 0) & (np.abs(y) >= floor)
    if zeros_as_missing:
        valid = valid & nonzero
    nonzero = valid & nonzero
    err = np.where(valid, p - y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = valid.sum(axis=(0, 2)).astype(np.float64)  # (horizon,)
        mae = np.abs(err).sum(axis=(0, 2)) / n
        rmse = np.sqrt((err**2).sum(axis=(0, 2)) / n)
        ape = np.where(nonzero, np.abs(p - y) / np.where(nonzero, np.abs(y), 1.0), 0.0)
        mape = 100.0 * ape.sum(axis=(0, 2)) / nonzero.sum(axis=(0, 2))

    def avg(a: np.ndarray) -> float:
        return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")

    return ForecastMetrics(
        mae=avg(mae),
        rmse=avg(rmse),
        mape=avg(mape),
        mae_per_step=tuple(float(v) for v in mae),
        rmse_per_step=tuple(float(v) for v in rmse),
        mape_per_step=tuple(float(v) for v in mape),
        zeros_as_missing=zeros_as_missing,
        n_valid=int(valid.sum()),
    )


def forecast_metrics_report(
    prediction, target, mask=None, *, rtol: float = 1e-3, mape_floor: float = 1e-4
) -> dict:
    """Both conventions side by side: ``{"observed": ..., "zeros_as_missing": ...,
    "conventions_differ": bool}`` (differ = any average MAE/RMSE/MAPE differs by > ``rtol``);
    ``mape_floor``: the zero tolerance of :func:`forecast_metrics`, in data units."""
    a = forecast_metrics(prediction, target, mask, zeros_as_missing=False, mape_floor=mape_floor)
    b = forecast_metrics(prediction, target, mask, zeros_as_missing=True, mape_floor=mape_floor)
    differ = any(
        not np.isclose(getattr(a, k), getattr(b, k), rtol=rtol, equal_nan=True)
        for k in ("mae", "rmse", "mape")
    )
    return {"observed": a.as_dict(), "zeros_as_missing": b.as_dict(), "conventions_differ": differ}
