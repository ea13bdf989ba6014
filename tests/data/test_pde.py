"""PDE data generators against oracles: Cole-Hopf, a manufactured Darcy solution, GRF spectra."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import ive

from eads._errors import ConfigError, DataError
from eads.data import pde
from eads.data.pde import (
    BurgersConfig,
    DarcyConfig,
    load_pde_dataset,
    sample_grf1d,
    sample_grf2d,
    solve_burgers_cole_hopf,
    solve_burgers_spectral,
    solve_darcy,
)

NU = 0.1


def burgers_sine_exact(x: np.ndarray, t: float, nu: float = NU, mean: float = 0.0) -> np.ndarray:
    """Closed-form Cole-Hopf solution for ``u0 = mean + sin(2 pi x)``.

    ``phi0 = exp(-(1 - cos 2 pi x) / (4 pi nu))`` and ``exp(z cos th) = I0(z) + 2 sum I_n(z)
    cos(n th)``, so ``phi(x, t) = I0(z) + 2 sum_n I_n(z) exp(-nu (2 pi n)^2 t) cos(2 pi n x)``
    (up to a constant factor) with ``z = 1 / (4 pi nu)``; ``u = mean - 2 nu phi_x / phi`` at
    ``x - mean t`` (Galilean shift). Scaled Bessel functions ``ive`` share the factor ``e^-z``.
    """
    z = 1.0 / (4.0 * np.pi * nu)
    xs = x - mean * t
    n = np.arange(1, 80)[:, None]  # terms beyond ~20 are below round-off at t = 1
    decay = ive(n, z) * np.exp(-nu * (2 * np.pi * n) ** 2 * t)
    phi = ive(0, z) + 2.0 * np.sum(decay * np.cos(2 * np.pi * n * xs), axis=0)
    phi_x = 2.0 * np.sum(decay * (-2 * np.pi * n) * np.sin(2 * np.pi * n * xs), axis=0)
    return mean - 2.0 * nu * phi_x / phi


def rel_l2(u: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.linalg.norm(u - ref, axis=-1) / np.linalg.norm(ref, axis=-1)))


# ------------------------------------------------------------------------------------ Burgers


@pytest.mark.parametrize("mean", [0.0, 0.5])
def test_cole_hopf_solver_matches_closed_form(mean):
    x = np.arange(8192) / 8192
    u = solve_burgers_cole_hopf(mean + np.sin(2 * np.pi * x), NU, 1.0)
    assert rel_l2(u, burgers_sine_exact(x, 1.0, mean=mean)) < 1e-12


@pytest.mark.parametrize("mean", [0.0, 0.5])
def test_split_step_matches_closed_form_cole_hopf_on_fine_grid(mean):
    x = np.arange(8192) / 8192
    u = solve_burgers_spectral(mean + np.sin(2 * np.pi * x), NU, 1.0, n_steps=200)
    assert rel_l2(u, burgers_sine_exact(x, 1.0, mean=mean)) < 1e-6


def test_split_step_matches_cole_hopf_for_grf_data():
    u0 = sample_grf1d(8192, np.random.default_rng(3), n_samples=2)  # (2, 8192)
    ref = solve_burgers_cole_hopf(u0, NU, 1.0)
    assert rel_l2(solve_burgers_spectral(u0, NU, 1.0, n_steps=200), ref) < 1e-6


def test_split_step_is_fourth_order_in_time():
    x = np.arange(256) / 256
    u0 = np.sin(2 * np.pi * x) + 0.5 * np.cos(4 * np.pi * x)
    ref = solve_burgers_cole_hopf(u0, NU, 0.5)
    steps = np.array([8, 16, 32])
    errs = [rel_l2(solve_burgers_spectral(u0, NU, 0.5, n_steps=int(s)), ref) for s in steps]
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert slope > 3.5, (errs, slope)


# ------------------------------------------------------------------------------------ Darcy


def manufactured(m: int):
    """Manufactured Darcy problem with ``f = -div(a grad u)``.

    ``a = 1 + sin(2 pi x) cos(pi y) / 2`` and ``u = e^x sin(pi x) sin(pi y)``; the solution
    vanishes on the boundary; ``f`` is differentiated by hand.
    """
    x = np.arange(m + 1) / m
    X, Y = np.meshgrid(x, x, indexing="ij")
    sx, cx, sy, cy = np.sin(np.pi * X), np.cos(np.pi * X), np.sin(np.pi * Y), np.cos(np.pi * Y)
    e = np.exp(X)
    a = 1 + 0.5 * np.sin(2 * np.pi * X) * cy
    a_x = np.pi * np.cos(2 * np.pi * X) * cy
    a_y = -0.5 * np.pi * np.sin(2 * np.pi * X) * sy
    u = e * sx * sy
    u_x = e * sy * (sx + np.pi * cx)
    u_xx = e * sy * (sx + 2 * np.pi * cx - np.pi**2 * sx)
    u_y = np.pi * e * sx * cy
    u_yy = -(np.pi**2) * u
    f = -(a_x * u_x + a * u_xx + a_y * u_y + a * u_yy)
    return a, f, u


def test_darcy_solver_converges_at_second_order():
    sizes = np.array([16, 32, 64, 128])
    errs = []
    for m in sizes:
        a, f, u = manufactured(int(m))
        errs.append(np.abs(solve_darcy(a, f) - u).max())
    slope = np.polyfit(np.log(1.0 / sizes), np.log(errs), 1)[0]  # error ~ h^slope
    assert abs(slope - 2.0) < 0.1, (errs, slope)
    assert errs[-1] < 2e-4


def test_darcy_solution_scales_inversely_with_coefficient_and_is_symmetric():
    rng = np.random.default_rng(0)
    a = pde.darcy_coefficient(sample_grf2d(33, rng)[0])
    u = solve_darcy(a)
    np.testing.assert_allclose(solve_darcy(4.0 * a), u / 4.0, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(solve_darcy(a.T), u.T, rtol=1e-10, atol=1e-14)
    assert np.all(u[1:-1, 1:-1] > 0) and np.all(u[0] == 0) and np.all(u[:, -1] == 0)


def test_darcy_rejects_bad_coefficient():
    with pytest.raises(DataError, match="positive"):
        solve_darcy(np.zeros((9, 9)))
    with pytest.raises(DataError, match="square"):
        solve_darcy(np.ones((9, 8)))


def test_cell_centres_are_exact_subsamples():
    m = pde.darcy_fine_grid_size(k=1)
    assert m == 128
    nodes = np.arange(m + 1) / m
    X = np.broadcast_to(nodes[:, None], (m + 1, m + 1))
    for s in (16, 32, 64):
        sub = pde.subsample_cell_centres(X, s)
        np.testing.assert_allclose(sub[:, 0], (np.arange(s) + 0.5) / s, atol=1e-15)


# ------------------------------------------------------------------------------------ GRFs


def test_grf1d_spectrum_matches_covariance():
    n, n_samples = 64, 4000
    u = sample_grf1d(n, np.random.default_rng(1), n_samples)  # (S, n)
    power = np.mean(np.abs(np.fft.rfft(u, axis=-1) / n) ** 2, axis=0)[: n // 2]  # (n/2,)
    lam = pde.grf1d_eigenvalues(n)[: n // 2]
    # |coef|^2 / lambda ~ chi^2 with 1 (k = 0) or 2 (k > 0) dof: 4000 samples -> ~2-3% spread
    np.testing.assert_allclose(power / lam, 1.0, atol=0.12)
    assert abs(np.mean(power / lam) - 1.0) < 0.02
    np.testing.assert_allclose(u.var(), lam[0] + 2 * lam[1:].sum(), rtol=0.05)


def test_grf2d_spectrum_matches_covariance():
    n, n_samples = 9, 3000
    u = sample_grf2d(n, np.random.default_rng(2), n_samples)  # (S, n, n)
    coef = pde.cosine_coefficients_on_nodes(u)  # (S, n, n)
    c2 = np.where(np.arange(n) == 0, 1.0, 2.0)
    expected = pde.grf2d_eigenvalues(n) * c2[:, None] * c2[None, :]
    ratio = coef.var(axis=0) / expected
    np.testing.assert_allclose(ratio, 1.0, atol=0.15)
    assert abs(ratio.mean() - 1.0) < 0.02


def test_cosine_series_round_trip():
    coef = np.random.default_rng(0).standard_normal((2, 7, 7))
    vals = pde.cosine_series_on_nodes(coef)
    x = np.arange(7) / 6
    direct = np.einsum(
        "kl,ik,jl->ij",
        coef[0],
        np.cos(np.pi * x[:, None] * np.arange(7)),
        np.cos(np.pi * x[:, None] * np.arange(7)),
    )
    np.testing.assert_allclose(vals[0], direct, atol=1e-12)
    np.testing.assert_allclose(pde.cosine_coefficients_on_nodes(vals), coef, atol=1e-12)


# ------------------------------------------------------------------------------------ loading

FAST_BURGERS = BurgersConfig(fine_points=4096, solver="cole_hopf", chunk_size=4)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EADS_CACHE_DIR", str(tmp_path))
    return tmp_path / "pde"


def _load(**kw):
    resolution = kw.pop("resolution", 256)
    args = dict(n_train=6, n_test=3, seed=0, config=FAST_BURGERS, progress=False)
    args.update(kw)
    return load_pde_dataset("burgers", resolution, **args)


def test_unknown_name_and_resolution_list_valid_ones():
    with pytest.raises(ConfigError, match=r"\['burgers', 'darcy'\]"):
        load_pde_dataset("heat", 256)
    with pytest.raises(ConfigError, match=r"\[16, 32, 64\]"):
        load_pde_dataset("darcy", 128)
    with pytest.raises(ConfigError, match=r"\[256, 1024, 4096\]"):
        load_pde_dataset("burgers", 512)


def test_burgers_dataset_shapes_resolutions_and_cache_round_trip(cache, monkeypatch):
    d = _load()
    assert d.x_train.shape == (6, 256) and d.y_test.shape == (3, 256)
    assert d.x_train.dtype == np.float32 and d.grid.shape == (256,)
    npz, manifest = pde.cache_paths("burgers", 6, 3, 0, FAST_BURGERS)
    assert npz.exists() and manifest.exists()
    meta = json.loads(manifest.read_text())
    assert meta["seed"] == 0 and meta["generator"] == "eads.data.pde.burgers"
    assert meta["config"]["viscosity"] == 0.1 and len(meta["sha256"]) == 64

    def boom(*a, **k):
        raise AssertionError("a cached data set must not be regenerated")

    monkeypatch.setattr(pde, "generate_pde_data", boom)
    again = _load()
    np.testing.assert_array_equal(again.x_train, d.x_train)
    fine = _load(resolution=4096)  # same cache file, finer subsample
    np.testing.assert_array_equal(fine.x_train[:, ::16], d.x_train)
    np.testing.assert_array_equal(fine.y_test[:, ::16], d.y_test)


def test_generation_is_seeded_and_independent_of_chunking():
    a = pde.generate_pde_data("burgers", 5, 7, FAST_BURGERS, workers=1, progress=False)
    cfg = BurgersConfig(fine_points=4096, solver="cole_hopf", chunk_size=2)
    b = pde.generate_pde_data("burgers", 5, 7, cfg, workers=2, progress=False)
    np.testing.assert_array_equal(a["y_1024"], b["y_1024"])
    c = pde.generate_pde_data("burgers", 5, 8, FAST_BURGERS, workers=1, progress=False)
    assert not np.allclose(a["x_256"], c["x_256"])


def test_checksum_mismatch_is_refused(cache):
    _load()
    npz, _ = pde.cache_paths("burgers", 6, 3, 0, FAST_BURGERS)
    data = bytearray(npz.read_bytes())
    data[-100] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(DataError, match="sha256"):
        _load()


def test_interrupted_write_leaves_no_complete_looking_file(cache, monkeypatch):
    real_savez = np.savez

    def interrupted(path, **arrays):
        with open(path, "wb") as fh:
            fh.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(pde.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _load()
    assert not cache.exists() or list(cache.iterdir()) == []
    monkeypatch.setattr(pde.np, "savez", real_savez)
    d = _load()  # a later call regenerates cleanly
    assert d.x_train.shape == (6, 256)


def test_data_file_without_manifest_is_regenerated(cache):
    d = _load()
    npz, manifest = pde.cache_paths("burgers", 6, 3, 0, FAST_BURGERS)
    manifest.unlink()  # as if the run died between writing the npz and its manifest
    npz.write_bytes(b"garbage")
    again = _load()
    np.testing.assert_array_equal(again.y_train, d.y_train)
    assert manifest.exists()


def test_darcy_quick_dataset(cache):
    d = load_pde_dataset("darcy", 16, n_train=3, n_test=1, quick=True, progress=False)
    assert d.x_train.shape == (3, 16, 16) and d.y_test.shape == (1, 16, 16)
    assert d.grid.shape == (16, 16, 2)
    assert set(np.unique(d.x_train)) <= {3.0, 12.0}
    assert np.all(d.y_train > 0)
    assert d.metadata["config"]["fine_intervals"] == 128


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="fine_intervals"):
        load_pde_dataset("darcy", 16, config=DarcyConfig(fine_intervals=100))
    with pytest.raises(ConfigError, match="fine_points"):
        load_pde_dataset("burgers", 256, config=BurgersConfig(fine_points=1000))


def test_burgers_split_step_generation_matches_cole_hopf_generation():
    cfg_ss = BurgersConfig(fine_points=4096, n_steps=100, chunk_size=2)
    cfg_ch = BurgersConfig(fine_points=4096, solver="cole_hopf", chunk_size=2)
    a = pde.generate_pde_data("burgers", 2, 0, cfg_ss, workers=1, progress=False)
    b = pde.generate_pde_data("burgers", 2, 0, cfg_ch, workers=1, progress=False)
    np.testing.assert_array_equal(a["x_4096"], b["x_4096"])
    assert rel_l2(a["y_4096"].astype(np.float64), b["y_4096"].astype(np.float64)) < 1e-6
