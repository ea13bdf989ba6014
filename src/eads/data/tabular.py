"""A user's tabular data: CSV or NPZ, checked, split, and standardised on the training split.

Layout: ``x (samples, inputs)``, ``y (samples, outputs)``, float32.

* CSV: a header row of column names; ``inputs``/``outputs`` name columns (default: the last
  column is the output, all others inputs).
* NPZ: ``inputs``/``outputs`` name arrays (default ``x`` and ``y``); each array is
  ``(samples,)`` or ``(samples, features...)`` and is flattened per sample; several names are
  concatenated along the feature axis.
"""

from __future__ import annotations

import csv
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eads._errors import DataError


@dataclass(frozen=True)
class Standardizer:
    """Per-column z-score, fitted on the training split only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, a: np.ndarray) -> Standardizer:
        std = a.std(axis=0)
        return cls(a.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, a: np.ndarray) -> np.ndarray:
        return ((a - self.mean) / self.std).astype(np.float32)

    def inverse(self, a: np.ndarray) -> np.ndarray:
        return (a * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Standardizer:
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))


@dataclass
class Table:
    x: np.ndarray
    y: np.ndarray
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _check_finite(path: Path, name: str, a: np.ndarray) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(
            f"{str(path)!r}: {name} holds {int(bad.sum())} NaN or infinite value(s) "
            f"(first in row {row}); clean or drop them first."
        )


def read_table(
    path: str | Path,
    inputs: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
    *,
    require_outputs: bool = True,
) -> Table:
    """Read inputs and outputs from a CSV or NPZ file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        x, y, inputs, outputs = _read_npz(path, inputs, outputs, require_outputs)
    elif suffix in (".csv", ".txt"):
        x, y, inputs, outputs = _read_csv(path, inputs, outputs, require_outputs)
    else:
        raise DataError(f"Data file {str(path)!r} must be .csv or .npz, got {suffix!r}.")
    if x.shape[0] == 0:
        raise DataError(f"Data file {str(path)!r} holds no samples.")
    _check_finite(path, "the inputs", x)
    if y is not None:
        _check_finite(path, "the outputs", y)
    return Table(x, y, tuple(inputs), tuple(outputs))


def _read_csv(path, inputs, outputs, require_outputs):
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read {str(path)!r} as CSV ({exc}).") from None
    rows = [r for r in rows if r]
    if not rows:
        raise DataError(f"Data file {str(path)!r} is empty.")
    header = [h.strip() for h in rows[0]]
    if not outputs and require_outputs:
        outputs = (header[-1],)
    if not inputs:
        inputs = tuple(h for h in header if h not in outputs)
    for name in (*inputs, *outputs):
        if name not in header:
            raise DataError(f"Column {name!r} is not in {str(path)!r}; its columns are {header}.")
    for i, r in enumerate(rows[1:]):
        if len(r) != len(header):
            raise DataError(
                f"{str(path)!r}: every row must have {len(header)} values; row {i} has {len(r)}."
            )
    try:
        body = np.array([[float(v) if v.strip() else np.nan for v in r] for r in rows[1:]])
    except ValueError as exc:
        raise DataError(f"{str(path)!r} holds a non-numeric value ({exc}).") from None
    if body.size == 0:
        raise DataError(f"Data file {str(path)!r} holds no samples.")
    if body.ndim != 2 or body.shape[1] != len(header):
        raise DataError(f"{str(path)!r}: every row must have {len(header)} values.")
    col = {h: i for i, h in enumerate(header)}
    x = body[:, [col[h] for h in inputs]]
    y = body[:, [col[h] for h in outputs]] if outputs else None
    return x, y, inputs, outputs


def _read_npz(path, inputs, outputs, require_outputs):
    try:
        arrays = np.load(path, allow_pickle=False)
        keys = list(arrays.keys())
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"Cannot read {str(path)!r} as NPZ ({exc}).") from None
    inputs = inputs or ("x",)
    outputs = outputs or (("y",) if require_outputs else ())

    def stack(names):
        parts = []
        for name in names:
            if name not in keys:
                raise DataError(f"Key {name!r} is not in {str(path)!r}; its keys are {keys}.")
            a = np.asarray(arrays[name], dtype=np.float64)
            width = int(np.prod(a.shape[1:]))  # explicit: reshape(n, -1) fails for n = 0
            parts.append(a.reshape(a.shape[0], width) if a.ndim > 1 else a[:, None])
        n = {p.shape[0] for p in parts}
        if len(n) > 1:
            raise DataError(f"Arrays {list(names)} in {str(path)!r} differ in length: {sorted(n)}.")
        return np.concatenate(parts, axis=1)

    x = stack(inputs)
    y = stack(outputs) if outputs else None
    if y is not None and y.shape[0] != x.shape[0]:
        raise DataError(
            f"{str(path)!r}: inputs have {x.shape[0]} samples but outputs have {y.shape[0]}."
        )
    return x, y, inputs, outputs


@dataclass
class Splits:
    """Standardised train/validation/test arrays and the standardisers fitted on train."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_scaler: Standardizer
    y_scaler: Standardizer


MIN_TRAIN_SAMPLES = 2  #: the fewest training samples a split may leave (one has no spread)


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """``(n_train, n_val, n_test)`` of ``n`` samples: each fraction of ``n``, rounded."""
    n_val, n_test = int(round(val_fraction * n)), int(round(test_fraction * n))
    return n - n_val - n_test, n_val, n_test


def _splits(n: int, val_fraction: float, test_fraction: float) -> bool:
    n_train, n_val, n_test = split_sizes(n, val_fraction, test_fraction)
    return (
        n_train >= MIN_TRAIN_SAMPLES
        and (n_val >= 1 or val_fraction == 0)
        and (n_test >= 1 or test_fraction == 0)
    )


def min_samples(val_fraction: float, test_fraction: float) -> int:
    """The fewest samples from which on every data set splits with these fractions.

    From ``m`` on, rounding moves each split by at most 1/2, so ``n_train >= m (1 - v - t) - 1``
    and ``n_val >= 1`` once ``v m > 1/2``: ``m`` is at most the bound below, and the search walks
    down from it while the sizes still split (the rounding makes "splits" not monotone in ``m``).
    """
    bound = math.ceil((MIN_TRAIN_SAMPLES + 1) / (1 - val_fraction - test_fraction))
    for fraction in (val_fraction, test_fraction):
        if fraction > 0:
            bound = max(bound, math.floor(0.5 / fraction) + 1)
    m = bound
    while m > 1 and _splits(m - 1, val_fraction, test_fraction):
        m -= 1
    return m


def split_and_standardize(
    x: np.ndarray, y: np.ndarray, *, val_fraction: float, test_fraction: float, seed: int
) -> Splits:
    """Shuffle with ``seed``, split, and z-score with statistics of the training split only.

    Each split gets its fraction of the ``n`` samples, rounded; the training split the rest,
    which must be at least 2 samples, and a split with a fraction above 0 at least 1 sample
    (else a :class:`~eads.DataError` names the number of samples and the fewest that split).
    """
    n = x.shape[0]
    n_train, n_val, n_test = split_sizes(n, val_fraction, test_fraction)
    if not _splits(n, val_fraction, test_fraction):
        raise DataError(
            f"Too few samples to split: {n} give {n_train} training, {n_val} validation and "
            f"{n_test} test samples with val_fraction={val_fraction:g} and "
            f"test_fraction={test_fraction:g}, but training needs at least "
            f"{MIN_TRAIN_SAMPLES} and each split with a fraction above 0 at least 1; "
            f"give at least {min_samples(val_fraction, test_fraction)} samples or lower the "
            "fractions."
        )
    order = np.random.default_rng(seed).permutation(n)
    tr, va, te = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    xs, ys = Standardizer.fit(x[tr]), Standardizer.fit(y[tr])
    return Splits(
        xs.transform(x[tr]),
        ys.transform(y[tr]),
        xs.transform(x[va]),
        ys.transform(y[va]),
        xs.transform(x[te]),
        ys.transform(y[te]),
        xs,
        ys,
    )
