"""A user's tabular data: CSV and NPZ reading, the errors that name the problem, and the split
whose standardisation statistics come from the training part only."""

from __future__ import annotations

import numpy as np
import pytest

import eads
from eads.data.tabular import Standardizer, read_table, split_and_standardize


def write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


@pytest.fixture
def csv(tmp_path):
    rows = [[i, 2 * i, 3 * i + 1, -i] for i in range(10)]
    return write_csv(tmp_path / "d.csv", ["a", "b", "c", "d"], rows)


def test_csv_default_columns(csv):
    t = read_table(csv)
    assert t.inputs == ("a", "b", "c") and t.outputs == ("d",)
    assert t.x.shape == (10, 3) and t.y.shape == (10, 1)
    assert np.array_equal(t.y[:, 0], -np.arange(10))


def test_csv_named_columns_in_given_order(csv):
    t = read_table(csv, inputs=("c", "a"), outputs=("b", "d"))
    assert np.array_equal(t.x, np.stack([3 * np.arange(10) + 1, np.arange(10)], axis=1))
    assert np.array_equal(t.y, np.stack([2 * np.arange(10), -np.arange(10)], axis=1))


def test_csv_inputs_only_for_prediction(csv):
    t = read_table(csv, inputs=("a", "b"), require_outputs=False)
    assert t.y is None and t.x.shape == (10, 2)


def test_unknown_column_names_the_valid_ones(csv):
    with pytest.raises(eads.DataError, match=r"'e'.*\['a', 'b', 'c', 'd'\]"):
        read_table(csv, inputs=("a", "e"))
    with pytest.raises(eads.DataError, match="'zz'"):
        read_table(csv, outputs=("zz",))


@pytest.mark.parametrize(("value", "row"), [("nan", 3), ("inf", 7), ("-inf", 0), ("", 5)])
def test_nan_or_inf_names_the_row(tmp_path, value, row):
    rows = [[i, 2 * i, 1.0] for i in range(9)]
    rows[row][1] = value
    path = write_csv(tmp_path / "d.csv", ["a", "b", "y"], rows)
    with pytest.raises(eads.DataError, match=rf"NaN or infinite.*row {row}\b"):
        read_table(path)


def test_nan_in_outputs(tmp_path):
    rows = [[i, 1.0] for i in range(4)]
    rows[2][1] = "nan"
    with pytest.raises(eads.DataError, match="outputs.*row 2"):
        read_table(write_csv(tmp_path / "d.csv", ["a", "y"], rows))


def test_empty_and_header_only_and_ragged_and_text(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(eads.DataError, match="empty"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "head.csv").write_text("a,b\n")
    with pytest.raises(eads.DataError, match="no samples"):
        read_table(tmp_path / "head.csv")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(eads.DataError, match="2 values; row 1 has 1"):
        read_table(tmp_path / "ragged.csv")
    (tmp_path / "text.csv").write_text("a,b\n1,two\n")
    with pytest.raises(eads.DataError, match="non-numeric"):
        read_table(tmp_path / "text.csv")


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(eads.DataError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(eads.DataError, match=r"\.csv or \.npz"):
        read_table(tmp_path / "d.xlsx")


# -- NPZ -------------------------------------------------------------------------------------------
def test_npz_default_and_named_keys_flattened(tmp_path):
    path = tmp_path / "d.npz"
    x = np.arange(24.0).reshape(4, 2, 3)
    np.savez(path, x=x, y=np.arange(4.0), extra=np.ones((4, 2)))
    t = read_table(path)
    assert t.x.shape == (4, 6) and np.array_equal(t.x[1], x[1].ravel())
    assert t.y.shape == (4, 1)
    t = read_table(path, inputs=("x", "extra"), outputs=("y",))
    assert t.x.shape == (4, 8) and np.array_equal(t.x[:, 6:], np.ones((4, 2)))


def test_npz_errors(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((4, 2)), y=np.ones(3), z=np.ones(5))
    with pytest.raises(eads.DataError, match=r"'w'.*\['x', 'y', 'z'\]"):
        read_table(path, inputs=("w",))
    with pytest.raises(eads.DataError, match="4 samples but outputs have 3"):
        read_table(path)
    with pytest.raises(eads.DataError, match="differ in length"):
        read_table(path, inputs=("x", "z"), outputs=("y",))
    bad = tmp_path / "nan.npz"
    x = np.ones((6, 2))
    x[4, 1] = np.inf
    np.savez(bad, x=x, y=np.ones(6))
    with pytest.raises(eads.DataError, match="row 4"):
        read_table(bad)
    # regression: reshape(0, -1) raised a bare ValueError here
    np.savez(tmp_path / "empty.npz", x=np.ones((0, 2)), y=np.ones(0))
    with pytest.raises(eads.DataError, match="no samples"):
        read_table(tmp_path / "empty.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(eads.DataError, match="Cannot read"):
        read_table(tmp_path / "junk.npz")


# -- split and standardisation ---------------------------------------------------------------------
def test_standardization_statistics_come_from_training_split_only():
    """Rows are identifiable (x = row index), so the training rows can be recovered from the
    standardised split and the statistics checked against them, not against all rows."""
    n = 100
    x = np.stack([np.arange(n), np.arange(n) ** 2], axis=1).astype(np.float64)
    y = (np.arange(n) * 3.0 + 7)[:, None]
    s = split_and_standardize(x, y, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (70, 20, 10)
    train_rows = np.rint(s.x_scaler.inverse(s.x_train)[:, 0]).astype(int)
    assert len(set(train_rows)) == 70
    val_rows = np.rint(s.x_scaler.inverse(s.x_val)[:, 0]).astype(int)
    test_rows = np.rint(s.x_scaler.inverse(s.x_test)[:, 0]).astype(int)
    assert not set(train_rows) & (set(val_rows) | set(test_rows))
    assert np.allclose(s.x_scaler.mean, x[train_rows].mean(axis=0))
    assert np.allclose(s.x_scaler.std, x[train_rows].std(axis=0))
    assert np.allclose(s.y_scaler.mean, y[train_rows].mean(axis=0))
    assert not np.allclose(s.x_scaler.mean, x.mean(axis=0))  # not the full data's statistics
    assert np.allclose(s.x_train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(s.x_train.std(axis=0), 1, atol=1e-5)
    assert s.x_train.dtype == np.float32


def test_split_is_seeded_and_constant_columns_are_safe():
    x = np.stack([np.arange(50.0), np.full(50, 3.0)], axis=1)
    y = np.arange(50.0)[:, None]
    a = split_and_standardize(x, y, val_fraction=0.2, test_fraction=0.2, seed=1)
    b = split_and_standardize(x, y, val_fraction=0.2, test_fraction=0.2, seed=1)
    c = split_and_standardize(x, y, val_fraction=0.2, test_fraction=0.2, seed=2)
    assert np.array_equal(a.x_train, b.x_train) and not np.array_equal(a.x_train, c.x_train)
    assert np.all(np.isfinite(a.x_train)) and np.all(a.x_train[:, 1] == 0)
    with pytest.raises(eads.DataError, match="Too few samples"):
        split_and_standardize(x[:2], y[:2], val_fraction=0.5, test_fraction=0.4, seed=0)


@pytest.mark.parametrize("n", [1, 3])
def test_too_few_rows_name_the_count_and_the_minimum(n):
    """Regression: one row trained a model. Fractions 0.15: 1 and 3 rows give no validation
    sample (round(0.15) = round(0.45) = 0), 4 rows give 2 / 1 / 1 (by hand)."""
    x, y = np.arange(2.0 * n).reshape(n, 2), np.arange(float(n))[:, None]
    with pytest.raises(eads.DataError) as info:
        split_and_standardize(x, y, val_fraction=0.15, test_fraction=0.15, seed=0)
    msg = str(info.value)
    assert f"Too few samples to split: {n} give {n} training, 0 validation" in msg
    assert "at least 4 samples" in msg and len(msg.splitlines()) == 1
    s = split_and_standardize(
        np.arange(8.0).reshape(4, 2), np.arange(4.0)[:, None], val_fraction=0.15,
        test_fraction=0.15, seed=0,
    )  # fmt: skip
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (2, 1, 1)


@pytest.mark.parametrize(
    ("val", "test", "fewest"), [(0.15, 0.15, 4), (0.0, 0.0, 2), (0.2, 0.0, 3), (0.4, 0.4, 10)]
)
def test_split_refuses_exactly_the_sizes_that_leave_a_split_short(val, test, fewest):
    """The rule (docstring): each split its fraction of n, rounded; training the rest, >= 2;
    a split with a fraction above 0, >= 1. ``fewest`` by hand: from it on every n splits (0.4,
    0.4: 6 rows split as 2 / 2 / 2 but 7 give 1 / 3 / 3, and 9 give 1 / 4 / 4)."""
    short_sizes = []
    for n in range(1, 120):
        x, y = np.arange(2.0 * n).reshape(n, 2), np.arange(float(n))[:, None]
        n_val, n_test = round(val * n), round(test * n)
        n_train = n - n_val - n_test
        if n_train < 2 or (val > 0 and n_val == 0) or (test > 0 and n_test == 0):
            short_sizes.append(n)
            with pytest.raises(eads.DataError, match=f"at least {fewest} samples"):
                split_and_standardize(x, y, val_fraction=val, test_fraction=test, seed=0)
        else:
            s = split_and_standardize(x, y, val_fraction=val, test_fraction=test, seed=0)
            assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (n_train, n_val, n_test)
    assert max(short_sizes) == fewest - 1


def test_standardizer_round_trip():
    a = np.random.default_rng(0).normal(3, 2, size=(20, 3))
    s = Standardizer.fit(a)
    assert np.allclose(s.inverse(s.transform(a)), a, atol=1e-5)
    s2 = Standardizer.from_dict(s.to_dict())
    assert np.array_equal(s2.mean, s.mean) and np.array_equal(s2.std, s.std)
