"""Paired percentile-bootstrap intervals for statistics of per-item scores.

The attention suite scores every kernel on the same evaluation passages and keeps each
passage's score (its last-word NLL), so two kernels can be compared passage by passage.
:func:`paired_bootstrap` draws ``n_boot`` resamples of the item indices *once* and applies
every statistic to the same resamples, so an interval of a difference between two rows is the
interval of the paired difference, not a combination of two independent intervals.

For a row ``v (n,)`` and a resample ``I (n,)`` of ``0..n-1`` with replacement, the resampled
mean is ``m* = mean(v[I])``; a statistic is any elementwise function of the rows' resampled
means (e.g. perplexity ``exp(m*)``, or ``exp(m*_a) - exp(m*_b)``). The 95 % interval is the
2.5 / 97.5 percentiles of the statistic over the resamples (Efron and Tibshirani, *An
Introduction to the Bootstrap*, 1993, ch. 13).

When not to use: items that are not exchangeable (e.g. passages grouped by source with strong
within-group correlation) need a block or cluster bootstrap; the percentile interval is also
only first-order accurate, so for small ``n`` (below ~50) prefer BCa or an exact method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from eads._errors import ConfigError, DataError

LEVEL = 0.95
N_BOOT = 2000


def resampled_means(
    rows: Mapping[str, np.ndarray], *, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, np.ndarray]:
    """``{name: (n_boot,) resampled means}``, every row resampled with the same indices.

    Raises:
        DataError: a row is empty, not one-dimensional, of another length, or not finite.
        ConfigError: ``n_boot`` is not a positive integer.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ConfigError(f"n_boot={n_boot!r} must be a positive integer.")
    arrays = {k: np.asarray(v, dtype=float) for k, v in rows.items()}
    shapes = {k: a.shape for k, a in arrays.items()}
    if not arrays or len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
        raise DataError(
            f"paired bootstrap needs one-dimensional rows of one common length; got {shapes}."
        )
    n = next(iter(arrays.values())).shape[0]
    if n == 0:
        raise DataError("paired bootstrap rows are empty; there is nothing to resample.")
    bad = [k for k, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        raise DataError(f"paired bootstrap rows {bad} hold NaN or infinite scores.")
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))  # (n_boot, n)
    return {k: a[idx].mean(axis=1) for k, a in arrays.items()}


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval ``(lo, hi)`` of bootstrap ``samples`` at ``level``."""
    if not 0 < level < 1:
        raise ConfigError(f"level={level!r} must lie strictly between 0 and 1.")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(np.asarray(samples, dtype=float), [tail, 100 - tail])
    return float(lo), float(hi)


def paired_bootstrap(
    rows: Mapping[str, np.ndarray],
    statistics: Mapping[str, Callable[[dict[str, np.ndarray]], np.ndarray | float]],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, dict[str, float]]:
    """Point value and interval of each statistic of the rows' means.

    ``statistics[name](means)`` receives ``{row: mean}`` and returns the statistic; it is
    called once with the full-sample means (scalars, the point value) and once with the
    resampled means (``(n_boot,)`` arrays, the interval). Returns
    ``{name: {"value", "lo", "hi"}}``.
    """
    boot = resampled_means(rows, n_boot=n_boot, seed=seed)
    full = {k: float(np.mean(np.asarray(v, dtype=float))) for k, v in rows.items()}
    out = {}
    for name, stat in statistics.items():
        lo, hi = interval(np.asarray(stat(boot), dtype=float), level)
        out[name] = {"value": float(stat(full)), "lo": lo, "hi": hi}
    return out


__all__ = ["LEVEL", "N_BOOT", "interval", "paired_bootstrap", "resampled_means"]
