"""Paired bootstrap (eads.bench.bootstrap) against closed forms and a brute-force count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eads._errors import ConfigError, DataError
from eads.bench.bootstrap import interval, paired_bootstrap, resampled_means


def test_the_resampled_mean_has_the_plug_in_standard_error():
    # Var(mean of n draws with replacement) = sigma_hat^2 / n, sigma_hat the population std.
    v = np.random.default_rng(1).normal(size=400)
    boot = resampled_means({"a": v}, n_boot=20000, seed=3)["a"]
    assert boot.mean() == pytest.approx(v.mean(), abs=3 * v.std() / math.sqrt(400 * 20000) * 10)
    assert boot.std() == pytest.approx(v.std() / math.sqrt(400), rel=0.03)


def test_a_paired_difference_cancels_what_the_rows_share():
    # b = a + 0.01: the difference is 0.01 in every resample, however wide a's own interval.
    a = np.random.default_rng(0).exponential(size=300)
    res = paired_bootstrap(
        {"a": a, "b": a + 0.01},
        {"d": lambda m: m["b"] - m["a"], "ppl_a": lambda m: np.exp(m["a"])},
        n_boot=500,
    )
    assert res["d"]["value"] == pytest.approx(0.01)
    assert res["d"]["lo"] == pytest.approx(0.01) and res["d"]["hi"] == pytest.approx(0.01)
    lo, hi = res["ppl_a"]["lo"], res["ppl_a"]["hi"]
    assert lo < math.exp(a.mean()) < hi and hi - lo > 0.1


def test_the_percentile_interval_on_a_known_sample():
    assert interval(np.arange(1001.0), 0.95) == pytest.approx((25.0, 975.0))
    assert interval(np.arange(101.0), 0.5) == pytest.approx((25.0, 75.0))


def test_the_same_seed_gives_the_same_resamples_and_another_does_not():
    v = np.arange(50.0)
    a = resampled_means({"v": v}, n_boot=10, seed=0)["v"]
    assert np.array_equal(a, resampled_means({"v": v}, n_boot=10, seed=0)["v"])
    assert not np.array_equal(a, resampled_means({"v": v}, n_boot=10, seed=1)["v"])


@pytest.mark.parametrize(
    "rows, match",
    [
        ({"a": np.ones(3), "b": np.ones(4)}, "one common length"),
        ({"a": np.ones((2, 2))}, "one-dimensional"),
        ({"a": np.ones(0)}, "empty"),
        ({"a": np.array([1.0, np.nan])}, "NaN or infinite"),
        ({}, "one-dimensional"),
    ],
)
def test_bad_rows_are_one_sentence_errors(rows, match):
    with pytest.raises(DataError, match=match):
        resampled_means(rows)


def test_bad_settings_are_one_sentence_errors():
    with pytest.raises(ConfigError, match="n_boot"):
        resampled_means({"a": np.ones(3)}, n_boot=0)
    with pytest.raises(ConfigError, match="level"):
        interval(np.ones(3), 1.5)
