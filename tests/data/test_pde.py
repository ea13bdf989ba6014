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
    ReleasedBurgersConfig,
    load_pde_dataset,
    sample_grf1d,
    sample_grf2d,
    sample_released_grf1d,
    solve_burgers_cole_hopf,
    solve_burgers_hopf,
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
    with pytest.raises(ConfigError, match=r"\['burgers', 'burgers_released', 'darcy'\]"):
        load_pde_dataset("heat", 256)
    with pytest.raises(ConfigError, match="not a PDE data set"):
        pde.generate_pde_data("heat", 2)
    with pytest.raises(ConfigError, match="not a PDE data set"):
        pde.cache_paths("heat")
    with pytest.raises(ConfigError, match=r"\[256, 1024, 4096\]"):
        load_pde_dataset("burgers_released", 2048)
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


# ------------------------------------------------------------------------------------ Burgers,
# the FNO authors' released setting (nu = 1e-3, GRF gamma = 2.5, tau = 7, sigma = 49)

NU_RELEASED = 1e-3


def released_lambda(k: np.ndarray) -> np.ndarray:
    """Variance of each coefficient on ``sqrt2 cos / sqrt2 sin``, written from ``GRF1.m``: the
    script's amplitude ``sqrt2 sigma ((2 pi k)^2 + tau^2)^(-gamma/2)`` multiplies the unnormalised
    ``cos``, so the orthonormal-basis variance is half its square."""
    amplitude = np.sqrt(2.0) * 49.0 * ((2 * np.pi * k) ** 2 + 7.0**2) ** (-2.5 / 2)
    return amplitude**2 / 2.0


def band_limited_refinement(u: np.ndarray, n: int) -> np.ndarray:
    """The same trigonometric polynomial (Nyquist mode dropped) on ``n`` points."""
    c = np.fft.rfft(u, axis=-1) / u.shape[-1]
    fine = np.zeros((*u.shape[:-1], n // 2 + 1), dtype=complex)
    fine[..., : c.shape[-1] - 1] = c[..., :-1]
    return np.fft.irfft(fine * n, n=n, axis=-1)


def test_released_grf_spectrum_matches_the_scripts_covariance():
    n, n_samples = 256, 400
    u = sample_released_grf1d(n, np.random.default_rng(4), n_samples)  # (S, n)
    coef = np.fft.rfft(u, axis=-1) / n  # (S, K)
    k = np.arange(1, n // 2)
    lam = released_lambda(k)
    np.testing.assert_allclose(pde.released_grf1d_eigenvalues(n)[1:-1], lam, rtol=1e-12)
    ratio = np.mean(np.abs(coef[:, 1:-1]) ** 2, axis=0) / lam  # (n/2 - 1,)
    # |coef_k|^2 / lambda_k ~ Exp(1) for k >= 1: the mean of 400 has sd 0.05; 5 sd per mode.
    np.testing.assert_allclose(ratio, 1.0, atol=0.25)
    assert abs(ratio.mean() - 1.0) < 0.015  # sd 0.0044 over the 127 modes
    # cos and sin parts separately (independent, each half the variance)
    half = np.mean(coef[:, 1:-1].real ** 2, axis=0) / lam
    assert abs(half.mean() - 0.5) < 0.01
    # no constant mode (the script's m = 0 mean) and no Nyquist mode
    np.testing.assert_allclose(u.mean(axis=-1), 0.0, atol=1e-15)
    np.testing.assert_allclose(np.abs(coef[:, -1]), 0.0, atol=1e-15)


@pytest.mark.parametrize("mean", [0.0, 0.5])
def test_hopf_formula_matches_closed_form_sine(mean):
    x = np.arange(1024) / 1024
    u = solve_burgers_hopf(mean + np.sin(2 * np.pi * x), 0.01, 1.0)
    assert rel_l2(u, burgers_sine_exact(x, 1.0, nu=0.01, mean=mean)) < 1e-12


@pytest.mark.parametrize("nu", [0.05, 0.02])
def test_hopf_formula_matches_spectral_cole_hopf(nu):
    u0 = sample_released_grf1d(512, np.random.default_rng(5), 2) + np.array([[0.0], [0.3]])
    ref = solve_burgers_cole_hopf(u0, nu, 1.0)
    assert rel_l2(solve_burgers_hopf(u0, nu, 1.0), ref) < 1e-12
    x = np.array([0.1, 0.37, 0.9])  # off-grid evaluation, against ref's trigonometric interpolant
    k = np.arange(257)
    ref_hat = np.fft.rfft(ref, axis=-1) / 512  # (2, 257)
    w = np.where((k == 0) | (k == 256), 1.0, 2.0)
    ref_x = np.real((w * ref_hat) @ np.exp(2j * np.pi * np.outer(k, x)))  # (2, 3)
    np.testing.assert_allclose(solve_burgers_hopf(u0, nu, 1.0, x=x), ref_x, atol=1e-9)


def test_hopf_quadrature_is_converged_on_the_grid_at_released_viscosity():
    """Refining the grid of one band-limited u0 from 512 to 2048 points leaves it unchanged."""
    u0 = sample_released_grf1d(512, np.random.default_rng(6), 1)
    x = np.arange(0, 512, 4) / 512
    coarse = solve_burgers_hopf(u0, NU_RELEASED, 1.0, x=x)
    fine = solve_burgers_hopf(band_limited_refinement(u0, 2048), NU_RELEASED, 1.0, x=x)
    assert rel_l2(coarse, fine) < 1e-12


def test_split_step_matches_cole_hopf_for_released_grf_at_moderate_viscosity():
    u0 = sample_released_grf1d(1024, np.random.default_rng(7), 2) + np.array([[0.0], [-0.2]])
    ref = solve_burgers_cole_hopf(u0, 0.02, 1.0)
    assert rel_l2(solve_burgers_spectral(u0, 0.02, 1.0, n_steps=200), ref) < 1e-7


def test_split_step_matches_hopf_at_released_viscosity():
    """nu = 1e-3, shocks: ETDRK4 against the exact solution (measured ~1.6e-8 at 800 steps)."""
    u0 = sample_released_grf1d(1024, np.random.default_rng(21), 2)
    u = solve_burgers_spectral(u0, NU_RELEASED, 1.0, n_steps=800)
    assert np.abs(u).max() > 0.2  # a nonlinear regime, not a decayed state
    assert rel_l2(u, solve_burgers_hopf(u0, NU_RELEASED, 1.0)) < 1e-7


def test_split_step_self_converges_at_fourth_order_at_released_viscosity():
    u0 = sample_released_grf1d(1024, np.random.default_rng(21), 2)
    u = {s: solve_burgers_spectral(u0, NU_RELEASED, 1.0, n_steps=s) for s in (100, 200, 400, 800)}
    diffs = [rel_l2(u[s], u[2 * s]) for s in (100, 200, 400)]
    ratios = [diffs[i] / diffs[i + 1] for i in range(2)]
    # halving dt divides the difference by 2^4 = 16 for a fourth-order method (measured 11.6, 13)
    assert min(ratios) > 10, (diffs, ratios)

    # doubling the grid: the difference collapses once the shocks are resolved (1.1e-5 -> 7.7e-9)
    v0 = sample_released_grf1d(512, np.random.default_rng(21), 2)
    sol = {
        n: solve_burgers_spectral(band_limited_refinement(v0, n), NU_RELEASED, 1.0, n_steps=400)
        for n in (512, 1024, 2048)
    }
    d_coarse = rel_l2(sol[512], sol[1024][:, ::2])
    d_fine = rel_l2(sol[1024], sol[2048][:, ::2])
    assert d_fine < d_coarse / 100, (d_coarse, d_fine)


def test_mass_is_conserved():
    u0 = sample_released_grf1d(1024, np.random.default_rng(8), 2) + np.array([[0.0], [0.3]])
    u = solve_burgers_spectral(u0, NU_RELEASED, 1.0, n_steps=400)
    np.testing.assert_allclose(u.mean(axis=-1), [0.0, 0.3], atol=1e-13)
    h = solve_burgers_hopf(u0, NU_RELEASED, 1.0)
    np.testing.assert_allclose(h.mean(axis=-1), [0.0, 0.3], atol=1e-12)


FAST_RELEASED = ReleasedBurgersConfig(fine_points=4096, n_steps=250, chunk_size=2)


def test_released_generation_subsamples_the_fine_solve():
    seed, n = 3, 3
    out = pde.generate_pde_data(
        "burgers_released", n, seed, FAST_RELEASED, workers=1, progress=False
    )
    seeds = np.random.SeedSequence(seed).spawn(n)
    u0 = np.concatenate([sample_released_grf1d(4096, np.random.default_rng(s)) for s in seeds])
    u1 = solve_burgers_spectral(u0, NU_RELEASED, 1.0, n_steps=250)
    for res in (256, 1024, 4096):
        stride = 4096 // res
        assert out[f"x_{res}"].shape == (n, res) and out[f"x_{res}"].dtype == np.float32
        # point j of resolution res is the fine point j * stride, i.e. x = j / res
        np.testing.assert_array_equal(out[f"x_{res}"], u0[:, ::stride].astype(np.float32))
        np.testing.assert_array_equal(out[f"y_{res}"], u1[:, ::stride].astype(np.float32))
    np.testing.assert_array_equal(out["y_256"], out["y_4096"][:, ::16])
    assert np.abs(out["x_4096"].astype(np.float64).mean(axis=1)).max() < 1e-7


def test_subsampling_rejects_a_resolution_that_does_not_divide_the_fine_grid():
    with pytest.raises(ConfigError, match="does not divide"):
        pde.subsample_periodic(np.zeros((2, 4096)), 300)
    with pytest.raises(ConfigError, match="fine_points"):
        load_pde_dataset("burgers_released", 256, config=ReleasedBurgersConfig(fine_points=6000))


def test_released_dataset_loads_and_caches_with_its_own_manifest(cache):
    d = load_pde_dataset(
        "burgers_released", 1024, n_train=4, n_test=2, config=FAST_RELEASED, progress=False
    )
    assert d.x_train.shape == (4, 1024) and d.y_test.shape == (2, 1024) and d.grid.shape == (1024,)
    npz, manifest = pde.cache_paths("burgers_released", 4, 2, 0, FAST_RELEASED)
    meta = json.loads(manifest.read_text())
    assert meta["generator"] == "eads.data.pde.burgers_released"
    assert meta["config"]["viscosity"] == 1e-3 and meta["config"]["grf_gamma"] == 2.5
    assert npz.name.startswith("burgers_released_")
    quick = load_pde_dataset("burgers_released", 256, n_train=2, n_test=1, quick=True)
    assert quick.metadata["config"]["fine_points"] == 4096


def test_released_config_is_the_scripts_and_bad_ones_are_refused():
    cfg = ReleasedBurgersConfig()
    assert (cfg.viscosity, cfg.final_time, cfg.fine_points) == (1e-3, 1.0, 8192)
    assert (cfg.grf_gamma, cfg.grf_tau, cfg.grf_sigma) == (2.5, 7.0, 49.0)
    with pytest.raises(ConfigError, match="ReleasedBurgersConfig"):
        load_pde_dataset("burgers_released", 256, config=BurgersConfig())
    with pytest.raises(ConfigError, match="BurgersConfig"):
        load_pde_dataset("burgers", 256, config=ReleasedBurgersConfig())
    with pytest.raises(ConfigError, match="n_steps"):
        load_pde_dataset("burgers_released", 256, config=ReleasedBurgersConfig(n_steps=0))
    with pytest.raises(ConfigError, match="viscosity"):
        solve_burgers_hopf(np.zeros(16), 0.0)


def test_too_large_a_time_step_is_an_error_not_silent_garbage():
    cfg = ReleasedBurgersConfig(fine_points=4096, n_steps=5, chunk_size=2)
    with np.errstate(all="ignore"), pytest.raises(DataError, match="n_steps=5"):
        pde.generate_pde_data("burgers_released", 2, 0, cfg, workers=1, progress=False)


def test_benchmark_runs_the_released_set_when_asked(tmp_path, monkeypatch):
    import dataclasses

    from eads.tasks import pde as bench

    monkeypatch.setenv("EADS_CACHE_DIR", str(tmp_path / "cache"))
    default = {c.dataset for c in bench.build_cells()}
    assert default == {"burgers", "darcy"}  # the released set is opt-in
    cells = bench.build_cells(datasets="burgers_released", models="nn", seeds=1)
    assert sorted(c.params["resolution"] for c in cells) == [256, 1024, 4096]
    data = bench.PDEBenchmarkConfig(n_train=12, n_test=4, quick_data=True)
    budgets = {"nn": dataclasses.replace(bench.QUICK_BUDGETS["nn"], epochs=1)}
    run_dir = tmp_path / "run"
    bench.run_benchmark(
        run_dir,
        quick=True,
        datasets="burgers_released",
        models="nn",
        data=data,
        budgets=budgets,
        progress=False,
    )
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert [(r["dataset"], r["resolution"], r["status"]) for r in rows] == [
        ("burgers_released", 256, "ok")
    ]
    assert (run_dir / "plots" / "predictions_burgers_released.png").is_file()
    refs = {r["predictor"]: r for r in bench.reference_scores(run_dir)}
    # u0 has mean 0 in the released setting, so "mean(u0)" predicts zero: relative L2 exactly 1
    assert refs["mean(u0)"]["test_rel_l2"] == pytest.approx(1.0, abs=1e-6)
