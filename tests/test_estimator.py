"""The scikit-learn style estimator on simple functions, for EADS and NP-GL."""

from __future__ import annotations

import numpy as np
import pytest

import eads


def smooth_function(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1]


def test_eads_fits_a_smooth_function():
    X, y = smooth_function()
    reg = eads.EADSRegressor(model="eads", n_hidden=16, epochs=30, lr=1e-2, seed=0)
    assert reg.fit(X[:240], y[:240]) is reg
    pred = reg.predict(X[240:])
    assert pred.shape == (60,)
    # measured R^2: ~0.99 train, ~0.99 held out
    assert reg.score(X[:240], y[:240]) > 0.95
    assert reg.score(X[240:], y[240:]) > 0.9


def test_npgl_fits_a_linear_function_with_two_outputs():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    Y = X @ np.array([[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2]]) + 2.0
    reg = eads.EADSRegressor(model="npgl", epochs=40, lr=3e-2, seed=0).fit(X[:240], Y[:240])
    assert reg.predict(X[240:]).shape == (60, 2)
    assert reg.score(X[240:], Y[240:]) > 0.95


def test_get_params_set_params_and_clone():
    sklearn_base = pytest.importorskip("sklearn.base")
    reg = eads.EADSRegressor(model="npgl", n_hidden=8, epochs=3)
    params = reg.get_params()
    assert params["model"] == "npgl" and params["n_hidden"] == 8 and params["epochs"] == 3
    assert set(params) >= {"model", "trainer", "n_hidden", "lr", "seed", "batch_size"}
    assert reg.set_params(n_hidden=4, lr=0.1) is reg
    assert reg.get_params()["n_hidden"] == 4 and reg.lr == 0.1
    clone = sklearn_base.clone(reg)
    assert clone.get_params() == reg.get_params() and clone is not reg


def test_seeded_fits_repeat():
    X, y = smooth_function(n=120)
    a = eads.EADSRegressor(n_hidden=8, epochs=3, seed=4).fit(X, y).predict(X)
    b = eads.EADSRegressor(n_hidden=8, epochs=3, seed=4).fit(X, y).predict(X)
    assert np.array_equal(a, b)


def test_estimator_bad_input():
    reg = eads.EADSRegressor(epochs=1)
    with pytest.raises(eads.DataError, match="not fitted"):
        reg.predict(np.zeros((2, 2)))
    with pytest.raises(eads.DataError, match="NaN"):
        reg.fit(np.array([[0.0, np.nan]] * 10), np.zeros(10))
    with pytest.raises(eads.DataError, match="differ in length"):
        reg.fit(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(eads.DataError, match="empty"):
        reg.fit(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(eads.DataError, match="1-D or 2-D"):
        reg.fit(np.zeros((4, 2, 2)), np.zeros(4))
    with pytest.raises(eads.ConfigError, match="n_hidden"):
        eads.EADSRegressor(n_hidden=0).fit(np.zeros((10, 2)), np.arange(10.0))
