"""PDE operator-learning data: Burgers (two settings) and Darcy flow, generated as in the FNO work.

Follows Li et al. 2020, "Fourier Neural Operator for Parametric PDEs" (arXiv:2010.08895), Sec. 5,
the setting the seed paper (Liu et al., ICML 2025, Table 2) benchmarks on. Three data sets:

* ``"burgers"`` -- **the paper's text, and near-trivial.** 1-D periodic on [0, 1):
  ``u_t + u u_x = nu u_xx``, ``nu = 0.1``; the operator maps ``u0 -> u(., t=1)`` with
  ``u0 ~ N(0, 625 (-Laplacian + 25 I)^-2)``. Solved pseudo-spectrally on 8192 points with ETDRK4
  (Cox & Matthews 2002, coefficients by Kassam & Trefethen 2005): the heat part is integrated
  exactly in Fourier space, the nonlinear part ``-(u^2/2)_x`` by the explicit fourth-order
  exponential Runge-Kutta stages, dealiased with the 2/3 rule; then subsampled to 256, 1024 and
  4096 points. A Cole-Hopf solver (exact up to spectral truncation) serves as the oracle. At
  ``nu = 0.1`` the ``k = 1`` mode decays by ``exp(-4 pi^2 nu) = 0.02`` by ``t = 1``, so
  ``u(., 1)`` is nearly the conserved spatial mean of ``u0``: the predictor
  ``u(x, 1) = mean(u0)``, which learns nothing, scores test relative L2 0.0345 and MAE 7.76e-3 at
  256, 1024 and 4096 points (seed 0, 200 test instances; ``eads bench pde-references``,
  ``benchmarks/results/pde/run*/references.json``). Use it to reproduce the paper's text, not to
  compare operator learners.
* ``"burgers_released"`` -- **the FNO authors' released script** (below): the same equation with
  ``nu = 1e-3`` and ``u0 ~ N(0, 49^2 (-Laplacian + 49 I)^-2.5)`` without its constant mode (every
  ``u0`` has spatial mean 0, so the mean(u0) predictor is the zero function, relative L2 1).
  Solved by the same ETDRK4 machinery on 8192 points to ``t = 1`` with 2000 steps
  (``dt = 5e-4``), subsampled to 256, 1024 and 4096 points. Shocks form: ``u0`` has standard
  deviation 0.27 (``|u0|`` up to 1.1), ``u(., 1)`` 0.17 (up to 0.43), shock width
  ``~ 4 nu / [u]``, some 40 fine grid spacings. No-learning references on the test split (seed
  0): ``mean(u0) = 0`` relative L2 1.000 (MAE 0.138), the fit-split mean output 1.002,
  ``u(., 1) = u0`` 1.051, at every resolution. Oracle: Hopf's formula (Cole-Hopf with the heat
  kernel as a quadrature in log-space), :func:`solve_burgers_hopf`, exact at any viscosity.
  Generating the 1200 instances took 25 min on the 2 shared cores (~13 min unloaded: 1.3 s per
  instance per core); 52 MB cached.
* ``"darcy"`` (2-D, unit square): ``-div(a grad u) = 1``, ``u = 0`` on the boundary, ``a = 12``
  where a GRF ``N(0, (-Laplacian + 9 I)^-2)`` is ``>= 0`` and ``3`` where it is ``< 0`` (the
  released script uses 12/4). Second-order five-point finite differences with harmonic face
  averaging on a fine node grid, sparse direct solve, subsampled to 16x16, 32x32 and 64x64.

**The released Burgers script, as read** (stored public copies; read for the settings, no code
taken): ``neuraloperator/neuraloperator`` @ ``2421c8f1955999e2854907ff150ca14afad7f1c3``:
``data_generation/burgers/gen_burgers1.m``, ``GRF1.m``, ``burgers1.m``; ``burgers1.m`` also @
``ddfec4e71385a0748bb25a59f4c3b0df5f190770``; the training script
``zongyi-li/fourier_neural_operator`` @ ``4ed7737f6275716d6e29ab02f4652a6d0f4e3461``:
``fourier_1d.py``; chebfun's ``spin`` defaults: ``chebfun/chebfun`` @
``040018cf37ee28c21dc4a4a556625eee338bb45b``: ``@spinpref/spinpref.m``.

Settings, released script (verified in those files) -> ``burgers_released`` here:

- GRF: ``GRF1(s/2, 0, gamma=2.5, tau=7, sigma=7^2, "periodic")`` builds
  ``u0 = m + sum_{k=1..s/2} sqrt2 sigma ((2 pi k)^2 + tau^2)^(-gamma/2) (xi_k cos 2 pi k x +
  eta_k sin 2 pi k x)``, i.e. ``N(m, sigma^2 (-Laplacian + tau^2 I)^-gamma)`` on the modes
  ``k >= 1``: eigenvalues ``2401 ((2 pi k)^2 + 49)^-2.5`` in the orthonormal basis ``sqrt2 cos``,
  ``sqrt2 sin`` (a chebfun ``trig`` function, shifted by half a period, which leaves the law
  unchanged) -> the same law, sampled by FFT on the 8192 grid with modes ``1..4095`` (the Nyquist
  mode, variance ~2e-19, is left out).
- Mean: ``m = 0`` and the constant mode is not drawn -> the same (every ``u0`` has mean 0).
- Grid of the draw: ``s/2`` modes evaluated at ``x_j = j/s`` (``x = linspace(0, 1, s+1)``
  without its last point) -> ``x_j = j / 8192``. Periodic: yes -> yes.
- Viscosity: ``visc = 1/1000`` -> 1e-3.
- Final time: ``tspan = linspace(0, 1, 201)``, 200 snapshots, the data's ``u`` is the last,
  ``t = 1`` -> 1 (only ``t = 1`` is kept).
- Solver: chebfun ``spin`` on ``u_t = visc u_xx - (u^2/2)_x``, Fourier spectral on ``s`` points,
  ETDRK4 (``spinpref``'s default scheme), no dealiasing (its default) -> ETDRK4 pseudo-spectral,
  exact heat part, 2/3-rule dealiasing.
- Resolution and time step: ``s = 1024`` in the file; ``dt = 1e-4`` (@2421c8f) or
  ``dt = tspan(2) - tspan(1) = 1/200`` (@ddfec4e) -> 8192 points, 2000 steps, ``dt = 5e-4``
  (chosen by self-convergence and Hopf's formula, see :class:`ReleasedBurgersConfig`).
- Subsampling: ``fourier_1d.py`` reads 2^13 = 8192 points and takes ``[:, ::2**3]`` (1024) ->
  ``[::32]``, ``[::8]``, ``[::2]`` (256 / 1024 / 4096).
- Instances: the script ``N = 1``; ``fourier_1d.py`` trains on the first 1000 and tests on the
  last 100 -> 1000 train + 200 test (configurable), as for ``"burgers"``.

*Not verified:* how the released data file (``burgers_data_R10.mat``, 8192 points per
``fourier_1d.py``) was made: the published ``gen_burgers1.m`` sets ``s = 1024``, draws one
instance and saves nothing, so the 8192-point solve, its time step (the two ``burgers1.m``
versions say ``1e-4`` and ``1/200``), the chebfun version and the number of instances in the file
are taken from the paper's text and the training script, not from a generating script; the
MATLAB random numbers cannot be reproduced; the data file itself is not available here. The
subsampling to 256 and 4096 is the paper's text (the training script shows ``[::8]`` only).

Layouts: Burgers arrays are ``(n, res)`` on the points ``x_j = j / res`` (``j = 0..res-1``); Darcy
arrays are ``(n, res, res)`` indexed ``[i, j] -> (x_i, y_j)`` on the cell centres
``x_i = (i + 1/2) / res`` of the ``res x res`` grid (see :func:`darcy_fine_grid_size`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.fft
import scipy.sparse
import scipy.sparse.linalg
from tqdm.auto import tqdm

from eads._errors import ConfigError, DataError
from eads._io import atomic_write_json, atomic_write_with
from eads.data.paths import cache_dir

log = logging.getLogger(__name__)

#: Output resolutions the benchmark uses (seed paper, Table 2).
RESOLUTIONS: dict[str, tuple[int, ...]] = {
    "burgers": (256, 1024, 4096),
    "burgers_released": (256, 1024, 4096),
    "darcy": (16, 32, 64),
}
#: Spatial dimension of each data set's functions.
DIMENSION: dict[str, int] = {"burgers": 1, "burgers_released": 1, "darcy": 2}

#: Bump when a change to the generators changes the numbers they produce (it is part of the hash).
GENERATOR_VERSION = 1


# --------------------------------------------------------------------------------------------
# Gaussian random fields
# --------------------------------------------------------------------------------------------


def grf1d_eigenvalues(
    n_points: int, scale: float = 625.0, shift: float = 25.0, power: float = 2.0
) -> np.ndarray:
    """Eigenvalues ``lambda_k = scale (4 pi^2 k^2 + shift)^-power`` for ``k = 0..n_points//2``.

    They are the covariance eigenvalues of ``N(0, scale (-Laplacian + shift I)^-power)`` on the
    periodic unit interval, whose eigenfunctions are ``exp(2 pi i k x)``.
    """
    k = np.arange(n_points // 2 + 1)
    return scale * (4.0 * np.pi**2 * k**2 + shift) ** (-power)


def sample_grf1d(
    n_points: int,
    rng: np.random.Generator,
    n_samples: int = 1,
    scale: float = 625.0,
    shift: float = 25.0,
    power: float = 2.0,
) -> np.ndarray:
    """Sample ``N(0, scale (-Laplacian + shift I)^-power)`` on periodic [0, 1) at ``x_j = j/n``.

    Karhunen-Loeve sampling in Fourier space: ``u = sum_k sqrt(lambda_k) xi_k phi_k`` over the
    real orthonormal basis ``1, sqrt2 cos(2 pi k x), sqrt2 sin(2 pi k x)`` with ``xi ~ N(0, 1)``,
    truncated to the ``|k| < n/2`` modes the grid resolves (the Nyquist mode is left out). The
    constant mode (variance ``lambda_0 = 1`` for the Burgers defaults) is kept: it belongs to
    the measure, although the FNO authors' script drops it. Normalised so that
    ``E |rfft(u)_k / n|^2 = lambda_k`` for every ``k < n/2``.

    Returns a float64 array ``(n_samples, n_points)``.
    """
    _check_grf_points(n_points)
    return _sample_periodic_kl(grf1d_eigenvalues(n_points, scale, shift, power), rng, n_samples)


def released_grf1d_eigenvalues(
    n_points: int, sigma: float = 49.0, tau: float = 7.0, gamma: float = 2.5
) -> np.ndarray:
    """Eigenvalues of the FNO authors' released Burgers GRF for ``k = 0..n_points//2``.

    ``lambda_k = sigma^2 ((2 pi k)^2 + tau^2)^-gamma`` for ``k >= 1`` and ``lambda_0 = 0``: the
    law ``N(0, sigma^2 (-Laplacian + tau^2 I)^-gamma)`` on the periodic unit interval with the
    constant mode left out (their ``GRF1.m`` draws ``k = 1..N`` only), in the orthonormal basis
    ``sqrt2 cos(2 pi k x), sqrt2 sin(2 pi k x)``.
    """
    lam = grf1d_eigenvalues(n_points, sigma**2, tau**2, gamma)
    lam[0] = 0.0
    return lam


def sample_released_grf1d(
    n_points: int,
    rng: np.random.Generator,
    n_samples: int = 1,
    sigma: float = 49.0,
    tau: float = 7.0,
    gamma: float = 2.5,
) -> np.ndarray:
    """Sample the released script's Burgers GRF on periodic [0, 1) at ``x_j = j/n``.

    The Karhunen-Loeve sum of :func:`sample_grf1d` with :func:`released_grf1d_eigenvalues`:
    ``u = sum_{1 <= k < n/2} sqrt(lambda_k) (xi_k sqrt2 cos 2 pi k x + eta_k sqrt2 sin 2 pi k x)``,
    mean exactly 0, ``E |rfft(u)_k / n|^2 = lambda_k``. Defaults: ``gamma = 2.5``, ``tau = 7``,
    ``sigma = 49``. Returns float64 ``(n_samples, n_points)``.
    """
    _check_grf_points(n_points)
    lam = released_grf1d_eigenvalues(n_points, sigma, tau, gamma)
    return _sample_periodic_kl(lam, rng, n_samples)


def _check_grf_points(n_points: int) -> None:
    if n_points < 4 or n_points % 2:
        raise ConfigError(f"n_points={n_points!r} must be an even integer of at least 4.")


def _sample_periodic_kl(lam: np.ndarray, rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """``sum_k sqrt(lambda_k) xi_k phi_k`` on ``2 (K - 1)`` points (real orthonormal basis)."""
    n_points = 2 * (lam.size - 1)
    xi = rng.standard_normal((n_samples, 2, lam.size))  # (B, 2, K)
    coef = np.empty((n_samples, lam.size), dtype=np.complex128)  # (B, K)
    coef.real = xi[:, 0]
    coef.imag = -xi[:, 1]
    coef *= n_points * np.sqrt(lam / 2.0)
    coef[:, 0] = n_points * np.sqrt(lam[0]) * xi[:, 0, 0]
    coef[:, -1] = 0.0  # Nyquist mode: no sine partner on the grid
    return np.fft.irfft(coef, n=n_points, axis=-1)


def grf2d_eigenvalues(n_modes: int, shift: float = 9.0, power: float = 2.0) -> np.ndarray:
    """Eigenvalues ``(pi^2 (k1^2 + k2^2) + shift)^-power`` for ``k1, k2 = 0..n_modes-1``.

    They belong to ``N(0, (-Laplacian + shift I)^-power)`` on the unit square with Neumann
    boundary conditions, whose eigenfunctions are ``c_k1 c_k2 cos(pi k1 x) cos(pi k2 y)``
    (``c_0 = 1``, ``c_k = sqrt 2``), as in the FNO authors' Darcy data.
    """
    k = np.arange(n_modes)
    return (np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + shift) ** (-power)


def sample_grf2d(
    n_nodes: int,
    rng: np.random.Generator,
    n_samples: int = 1,
    shift: float = 9.0,
    power: float = 2.0,
) -> np.ndarray:
    """Sample ``N(0, (-Laplacian + shift I)^-power)`` (Neumann/cosine construction) on nodes.

    The nodes are ``x_i = i / (n_nodes - 1)``, ``i = 0..n_nodes-1``, both boundaries included.
    The field is ``sum_{k1,k2 < n_nodes} sqrt(lambda_k) xi_k c_k1 c_k2 cos(pi k1 x) cos(pi k2 y)``,
    evaluated exactly with a type-I DCT (the modes the node grid resolves). The constant mode is
    kept (the FNO authors' script zeroes it). Returns float64 ``(n_samples, n_nodes, n_nodes)``.
    """
    if n_nodes < 3:
        raise ConfigError(f"n_nodes={n_nodes!r} must be at least 3.")
    lam = grf2d_eigenvalues(n_nodes, shift, power)  # (N, N)
    c = np.full(n_nodes, np.sqrt(2.0))
    c[0] = 1.0
    amp = np.sqrt(lam) * c[:, None] * c[None, :]  # (N, N)
    coef = rng.standard_normal((n_samples, n_nodes, n_nodes)) * amp  # (B, N, N)
    return cosine_series_on_nodes(coef)


def cosine_series_on_nodes(coef: np.ndarray) -> np.ndarray:
    """Evaluate ``sum_k coef[..., k1, k2] cos(pi k1 x_i) cos(pi k2 y_j)`` on ``x_i = i/(N-1)``.

    A type-I DCT computes ``y_i = x_0 + (-1)^i x_{N-1} + 2 sum_{0<k<N-1} x_k cos(pi k i/(N-1))``,
    so halving the interior coefficients turns it into the plain cosine sum.
    """
    w = coef.copy()
    w[..., 1:-1, :] *= 0.5
    w[..., :, 1:-1] *= 0.5
    return scipy.fft.dctn(w, type=1, axes=(-2, -1))


def cosine_coefficients_on_nodes(values: np.ndarray) -> np.ndarray:
    """Inverse of :func:`cosine_series_on_nodes` (DCT-I is its own inverse up to 2(N-1))."""
    n = values.shape[-1]
    w = scipy.fft.dctn(values, type=1, axes=(-2, -1)) / (2.0 * (n - 1)) ** 2
    w[..., 1:-1, :] *= 2.0
    w[..., :, 1:-1] *= 2.0
    return w


# --------------------------------------------------------------------------------------------
# Burgers
# --------------------------------------------------------------------------------------------


def _wavenumbers(n_points: int) -> np.ndarray:
    return 2.0 * np.pi * np.arange(n_points // 2 + 1)  # (K,) for rfft


def _etdrk4_coefficients(lin: np.ndarray, dt: float, n_contour: int = 32):
    """ETDRK4 coefficients for the diagonal linear part ``lin`` (Kassam & Trefethen 2005, eq. 2.5).

    The phi-functions are evaluated by the mean over a contour of radius 1 around each ``lin*dt``,
    which avoids the cancellation of the direct formulas for small ``|lin dt|``.
    """
    r = np.exp(1j * np.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)  # (M,)
    lr = dt * lin[:, None] + r[None, :]  # (K, M)
    e_lr = np.exp(lr)
    q = dt * np.real(np.mean((np.exp(lr / 2) - 1) / lr, axis=1))
    f1 = dt * np.real(np.mean((-4 - lr + e_lr * (4 - 3 * lr + lr**2)) / lr**3, axis=1))
    f2 = dt * np.real(np.mean((2 + lr + e_lr * (-2 + lr)) / lr**3, axis=1))
    f3 = dt * np.real(np.mean((-4 - 3 * lr - lr**2 + e_lr * (4 - lr)) / lr**3, axis=1))
    return np.exp(lin * dt), np.exp(lin * dt / 2), q, f1, f2, f3


def solve_burgers_spectral(
    u0: np.ndarray,
    viscosity: float = 0.1,
    final_time: float = 1.0,
    n_steps: int = 200,
) -> np.ndarray:
    """Solve periodic viscous Burgers ``u_t + u u_x = nu u_xx`` on [0, 1) from ``u0`` to ``T``.

    Pseudo-spectral ETDRK4 (fourth order in time): ``u_hat' = L u_hat + N(u_hat)`` with the heat
    part ``L = -nu k^2`` integrated exactly and ``N = -(i k / 2) FFT(u^2)``, the product taken on
    the grid and dealiased by the 2/3 rule. Exponential integration keeps the heat-dominated high
    modes stable at any step, so the step is set by accuracy in the resolved modes only: on
    8192 points over [0, 1] the relative L2 error against Cole-Hopf for the default GRF data is
    about 7e-6 / 6e-7 / 6e-8 / 7e-9 at 50 / 100 / 200 / 500 steps (order ~3.3 there).

    At ``nu = 1e-3`` (the released setting, shocks ~``4 nu / [u]`` wide) on 8192 points the error
    against Hopf's formula is ~2e-10 at 2000 steps; see :class:`ReleasedBurgersConfig`.

    Do not use it for tiny viscosity with steep shocks: a 2/3-dealiased Fourier method needs the
    grid to resolve the shock width ``~ nu / |u|``, and it will ring (Gibbs) otherwise. The
    nonlinear term is explicit, so too large a step blows up (non-finite output) rather than
    losing accuracy gracefully.

    ``u0``: ``(..., n_points)`` on ``x_j = j / n_points``. Returns float64 of the same shape.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    n = u0.shape[-1]
    if n < 4 or n % 2:
        raise ConfigError(f"u0 has {n} points; it must have an even number of at least 4.")
    if n_steps < 1:
        raise ConfigError(f"n_steps={n_steps!r} must be a positive integer.")
    dt = final_time / n_steps
    k = _wavenumbers(n)  # (K,)
    e, e2, q, f1, f2, f3 = _etdrk4_coefficients(-viscosity * k**2, dt)
    keep = np.arange(k.size) < (n // 3)  # 2/3 rule: zero |m| >= n/3 in the nonlinear term
    g = np.where(keep, -0.5j * k, 0.0)  # (K,)

    def nonlinear(v: np.ndarray) -> np.ndarray:
        u = np.fft.irfft(v, n=n, axis=-1)  # (..., n)
        return g * np.fft.rfft(u * u, axis=-1)  # (..., K)

    v = np.fft.rfft(u0, axis=-1)  # (..., K)
    for _ in range(n_steps):
        nv = nonlinear(v)
        a = e2 * v + q * nv
        na = nonlinear(a)
        b = e2 * v + q * na
        nb = nonlinear(b)
        c = e2 * a + q * (2.0 * nb - nv)
        nc = nonlinear(c)
        v = e * v + nv * f1 + 2.0 * (na + nb) * f2 + nc * f3
    return np.fft.irfft(v, n=n, axis=-1)


def solve_burgers_cole_hopf(
    u0: np.ndarray, viscosity: float = 0.1, final_time: float = 1.0
) -> np.ndarray:
    """Exact viscous Burgers solution by the Cole-Hopf transform, evaluated spectrally.

    With ``c`` the mean of ``u0`` and ``w0 = u0 - c``, Galilean invariance gives
    ``u(x, t) = c + w(x - c t, t)``, and ``w = -2 nu phi_x / phi`` where ``phi`` solves the heat
    equation ``phi_t = nu phi_xx`` from ``phi0 = exp(-(1 / (2 nu)) int_0^x w0)`` (periodic because
    ``w0`` has mean zero). The integral, the heat flow, the derivative and the shift are exact in
    Fourier space, so the only error is the truncation of ``phi0``'s spectrum to the grid: use a
    grid on which ``phi0`` is resolved to round-off (smooth data, moderate ``|u0| / nu``).

    Do not use it for small ``nu``: ``phi0`` spans ``exp(max|int w0| / (2 nu))`` and under- or
    overflows.

    ``u0``: ``(..., n_points)`` on ``x_j = j / n_points``. Returns float64 of the same shape.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    n = u0.shape[-1]
    k = _wavenumbers(n)  # (K,)
    mean = u0.mean(axis=-1, keepdims=True)
    w_hat = np.fft.rfft(u0 - mean, axis=-1)  # (..., K)
    ik = 1j * k
    ik_safe = np.where(k == 0, 1.0, ik)
    integral_hat = np.where(k == 0, 0.0, w_hat / ik_safe)  # antiderivative, up to a constant
    integral = np.fft.irfft(integral_hat, n=n, axis=-1)
    exponent = -integral / (2.0 * viscosity)
    exponent -= exponent.max(axis=-1, keepdims=True)  # phi is defined up to a constant factor
    phi_hat = np.fft.rfft(np.exp(exponent), axis=-1) * np.exp(-viscosity * k**2 * final_time)
    shift = np.exp(-ik * (mean * final_time))  # (..., K): f(x - c t) in Fourier space
    phi_hat = phi_hat * shift
    phi = np.fft.irfft(phi_hat, n=n, axis=-1)
    phi_x = np.fft.irfft(ik * phi_hat, n=n, axis=-1)
    return mean - 2.0 * viscosity * phi_x / phi


def solve_burgers_hopf(
    u0: np.ndarray,
    viscosity: float,
    final_time: float = 1.0,
    x: np.ndarray | None = None,
) -> np.ndarray:
    """Exact viscous Burgers solution by Hopf's formula, for any viscosity (an oracle).

    Cole-Hopf with the heat flow written as a convolution with the heat kernel: with ``c`` the
    mean of ``u0``, ``F`` the periodic antiderivative of ``u0 - c`` and
    ``G(y, z) = F(y) / (2 nu) + z^2 / (4 nu t)``,

    ``u(x, t) = c + [sum_{y, m} (z / t) exp(-G(y, z))] / [sum_{y, m} exp(-G(y, z))]``,
    ``z = x - c t - y + m``,

    over the grid points ``y_j = j / n`` (the trapezoidal rule, spectrally accurate for this
    periodic integrand) and the periodic images ``|m| <= M`` (``M`` chosen so the images left out
    weigh less than ``e^-40`` of the largest term). The sums are taken in log-space (the largest
    exponent subtracted), so unlike :func:`solve_burgers_cole_hopf` nothing overflows at small
    ``nu``. ``F`` is the exact antiderivative of the grid's trigonometric interpolant of ``u0``.

    Do not use it to generate data: it costs ``O(n * len(x) * (2M + 1))`` per instance. It needs
    the integrand resolved on the grid, ``sqrt(2 nu t) >> 1 / n`` and ``n >> max|u0 - c| / nu``
    (the bandwidth of ``exp(-F / (2 nu))``). Measured: at ``nu = 1e-3`` a released-GRF ``u0`` on
    1024 points gives the same solution to ~5e-16 when zero-padded to 8192 points, and at
    ``nu = 0.01 - 0.05`` it agrees with :func:`solve_burgers_cole_hopf` to ~2e-15.

    ``u0``: ``(..., n)`` on ``x_j = j / n``; ``x``: evaluation points (default: the same grid).
    Returns float64 ``(..., len(x))``.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    n = u0.shape[-1]
    if n < 4 or n % 2:
        raise ConfigError(f"u0 has {n} points; it must have an even number of at least 4.")
    if not viscosity > 0 or not final_time > 0:
        raise ConfigError(
            f"viscosity={viscosity!r} and final_time={final_time!r} must both be positive."
        )
    xs = np.arange(n) / n if x is None else np.asarray(x, dtype=np.float64).ravel()
    flat = u0.reshape(-1, n)  # (B, n)
    mean = flat.mean(axis=-1)  # (B,)
    k = _wavenumbers(n)
    w_hat = np.fft.rfft(flat - mean[:, None], axis=-1)
    ik_safe = np.where(k == 0, 1.0, 1j * k)
    antider = np.fft.irfft(np.where(k == 0, 0.0, w_hat / ik_safe), n=n, axis=-1)  # (B, n)
    a = antider / (2.0 * viscosity)  # (B, n)
    spread = float(np.max(a.max(axis=-1) - a.min(axis=-1)))
    n_images = int(np.ceil(np.sqrt(4.0 * viscosity * final_time * (40.0 + spread)))) + 1
    images = np.arange(-n_images, n_images + 1, dtype=np.float64)  # (I,)
    y = np.arange(n) / n
    block = max(1, int(4e6 // (n * images.size)))
    out = np.empty((flat.shape[0], xs.size))
    for b in range(flat.shape[0]):
        for s in range(0, xs.size, block):
            xe = xs[s : s + block] - mean[b] * final_time  # (X,)
            z = xe[:, None, None] - y[None, :, None] + images  # (X, n, I)
            g = a[b][None, :, None] + z**2 / (4.0 * viscosity * final_time)
            wts = np.exp(g.min(axis=(1, 2), keepdims=True) - g)
            out[b, s : s + block] = np.sum(wts * z, axis=(1, 2)) / np.sum(wts, axis=(1, 2))
    out = out / final_time + mean[:, None]
    return out.reshape(*u0.shape[:-1], xs.size)


# --------------------------------------------------------------------------------------------
# Darcy
# --------------------------------------------------------------------------------------------


def darcy_fine_grid_size(resolutions: tuple[int, ...] = RESOLUTIONS["darcy"], k: int = 2) -> int:
    """Number of intervals ``M`` of the fine node grid that contains every coarse grid exactly.

    A coarse ``s x s`` grid is the cell centres ``(i + 1/2) / s``; on the fine nodes ``j / M`` these
    are the nodes ``j = (2 i + 1) M / (2 s)``, integers whenever ``2 s`` divides ``M``. For
    16/32/64 this means ``M = 128 k``. The default ``k = 2`` (``M = 256``, 255^2 unknowns, about
    0.6 s per sparse solve) keeps 1200 instances to about 6 minutes on 2 cores; the FNO paper
    solves on 421x421 nodes (``M = 420``, not a multiple of 128), about 3-4x the cost per
    instance with SuperLU (``M = 384`` took 2.8 s per solve with SuperLU's default COLAMD
    ordering, against 1.0 s for ``M = 256`` with it). The cell-centre
    layout is what makes 16, 32 and 64 all exact subsamples of one fine grid (a node layout would
    need 15, 31 and 63 or 17, 33 and 65 to divide ``M``).
    """
    m = 2 * int(np.lcm.reduce(np.asarray(resolutions, dtype=np.int64))) * k
    return m


def solve_darcy(coefficient: np.ndarray, forcing: float | np.ndarray = 1.0) -> np.ndarray:
    """Solve ``-div(a grad u) = f`` on (0,1)^2 with ``u = 0`` on the boundary, on a node grid.

    ``coefficient`` holds ``a`` on the ``(M+1) x (M+1)`` nodes ``(i/M, j/M)`` (boundary included);
    ``forcing`` is a scalar or an array of the same shape. Five-point finite differences with the
    face coefficient the harmonic mean of its two nodes, ``a_{i+1/2} = 2 a_i a_{i+1} /
    (a_i + a_{i+1})`` (second order for smooth ``a``; for the piecewise-constant Darcy ``a`` it is
    the standard flux-continuous choice, with first-order error near interfaces), then a sparse
    LU solve (SuperLU). Returns ``u`` on all nodes, zero on the boundary, float64.
    """
    a = np.asarray(coefficient, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise DataError(
            f"coefficient has shape {a.shape}; it must be a square (M+1, M+1) array with M >= 2."
        )
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise DataError("coefficient must be finite and positive everywhere.")
    m = a.shape[0] - 1
    h = 1.0 / m
    n = m - 1  # interior nodes per side
    ax = 2.0 * a[1:, :] * a[:-1, :] / (a[1:, :] + a[:-1, :])  # (M, M+1): face (i+1/2, j)
    ay = 2.0 * a[:, 1:] * a[:, :-1] / (a[:, 1:] + a[:, :-1])  # (M+1, M): face (i, j+1/2)
    west = ax[:-1, 1:-1]  # (n, n): face (i-1/2, j) for interior i = 1..M-1
    east = ax[1:, 1:-1]
    south = ay[1:-1, :-1]
    north = ay[1:-1, 1:]
    # Unknown (i, j) -> row i * n + j: y-neighbours sit at offset 1, x-neighbours at offset n.
    off_y = north.copy()  # (n, n): coupling (i, j) -- (i, j+1)
    off_y[:, -1] = 0.0  # no coupling across the end of a row
    mat = (
        scipy.sparse.diags(
            [
                (west + east + south + north).ravel(),
                -off_y.ravel()[:-1],
                -off_y.ravel()[:-1],
                -east[:-1, :].ravel(),
                -east[:-1, :].ravel(),
            ],
            [0, 1, -1, n, -n],
            shape=(n * n, n * n),
            format="csc",
        )
        / h**2
    )
    f = np.broadcast_to(np.asarray(forcing, dtype=np.float64), a.shape)[1:-1, 1:-1]
    u = np.zeros_like(a)
    # Minimum degree on A^T + A suits this symmetric matrix: ~2x faster than the default COLAMD.
    sol = scipy.sparse.linalg.spsolve(mat, f.ravel(), permc_spec="MMD_AT_PLUS_A")
    u[1:-1, 1:-1] = sol.reshape(n, n)
    return u


def darcy_coefficient(field: np.ndarray, high: float = 12.0, low: float = 3.0) -> np.ndarray:
    """Threshold a GRF: ``a = high`` where ``field >= 0`` and ``low`` where ``field < 0``."""
    return np.where(field >= 0.0, high, low)


def subsample_cell_centres(node_values: np.ndarray, resolution: int) -> np.ndarray:
    """Take the ``res x res`` cell centres ``(i + 1/2)/res`` out of ``(..., M+1, M+1)`` nodes."""
    m = node_values.shape[-1] - 1
    if m % (2 * resolution):
        raise ConfigError(
            f"resolution={resolution!r} does not divide the fine grid of {m} intervals as 2*res."
        )
    stride = m // resolution
    return node_values[..., stride // 2 :: stride, stride // 2 :: stride]


# --------------------------------------------------------------------------------------------
# Configurations and generation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BurgersConfig:
    """How ``"burgers"`` instances are generated (defaults: the FNO paper's text, Sec. 5.1).

    Near-trivial at ``nu = 0.1``: ``u(., 1)`` is close to ``mean(u0)`` (module docstring); the
    FNO authors' released setting is :class:`ReleasedBurgersConfig`.
    """

    viscosity: float = 0.1
    """nu in ``u_t + u u_x = nu u_xx``."""
    final_time: float = 1.0
    """The operator maps u0 to u(., final_time)."""
    fine_points: int = 8192
    """Grid the PDE is solved on; every output resolution must divide it."""
    n_steps: int = 200
    """ETDRK4 steps over [0, final_time] (ignored by the Cole-Hopf solver)."""
    grf_scale: float = 625.0
    """u0 ~ N(0, grf_scale (-Laplacian + grf_shift I)^-2)."""
    grf_shift: float = 25.0
    solver: Literal["split_step", "cole_hopf"] = "split_step"
    """'split_step' (ETDRK4, the paper's method) or 'cole_hopf' (exact; fast small sets)."""
    chunk_size: int = 50
    """Instances per worker task."""


@dataclass(frozen=True)
class ReleasedBurgersConfig:
    """How ``"burgers_released"`` instances are generated (defaults: the FNO authors' script).

    ``u_t + u u_x = nu u_xx`` on periodic [0, 1) with ``nu = 1e-3`` to ``t = 1`` from
    ``u0 ~`` :func:`sample_released_grf1d`, solved by :func:`solve_burgers_spectral` (ETDRK4) on
    8192 points. The 2000 steps (``dt = 5e-4``; the script's ``spin`` calls use ``1e-4`` or
    ``5e-3``) were chosen by accuracy with a wide stability margin (100 steps blow up on some
    instances, 250 were stable on all tried). Against Hopf's formula (:func:`solve_burgers_hopf`)
    on the first 12 instances of seed 0, the largest relative L2 error at t = 1 is 5.1e-8 /
    3.6e-9 / 2.3e-10 at 500 / 1000 / 2000 steps (6 of them: 6.7e-7 at 250, 1.5e-11 at 4000;
    fourth order); a draw on a 4096-point grid reached 2.4e-7 at 1000 steps, hence 2000. The
    stored float32 data are 2.7e-8 from Hopf's formula (their rounding). The grid is far finer
    than the solution needs (it is the paper's): 2048 points agree with 16384 to ~1e-14, because
    the shocks are ~``4 nu / [u]`` wide, some 40 fine spacings.
    """

    viscosity: float = 1e-3
    """nu in ``u_t + u u_x = nu u_xx`` (the script's ``visc = 1/1000``)."""
    final_time: float = 1.0
    """The operator maps u0 to u(., final_time) (the script's ``tspan`` ends at 1)."""
    fine_points: int = 8192
    """Grid the PDE is solved on; every output resolution must divide it."""
    n_steps: int = 2000
    """ETDRK4 steps over [0, final_time]."""
    grf_sigma: float = 49.0
    """u0 ~ N(0, grf_sigma^2 (-Laplacian + grf_tau^2 I)^-grf_gamma) on the modes k >= 1."""
    grf_tau: float = 7.0
    grf_gamma: float = 2.5
    chunk_size: int = 25
    """Instances per worker task."""


@dataclass(frozen=True)
class DarcyConfig:
    """How Darcy instances are generated (defaults: the FNO paper's text, Sec. 5.2)."""

    fine_intervals: int = 256
    """Intervals M per side of the fine node grid; 2*res must divide it (darcy_fine_grid_size)."""
    high: float = 12.0
    """Coefficient where the GRF is >= 0."""
    low: float = 3.0
    """Coefficient where the GRF is < 0."""
    grf_shift: float = 9.0
    """The GRF is N(0, (-Laplacian + grf_shift I)^-2), cosine (Neumann) construction."""
    forcing: float = 1.0
    chunk_size: int = 25
    """Instances per worker task."""


#: Any data set's generator configuration.
PDEConfig = BurgersConfig | ReleasedBurgersConfig | DarcyConfig

_CONFIG_TYPES: dict[str, type] = {
    "burgers": BurgersConfig,
    "burgers_released": ReleasedBurgersConfig,
    "darcy": DarcyConfig,
}

QUICK_CONFIGS: dict[str, PDEConfig] = {
    "burgers": BurgersConfig(fine_points=4096, n_steps=50),
    "burgers_released": ReleasedBurgersConfig(fine_points=4096, n_steps=250),
    "darcy": DarcyConfig(fine_intervals=128),
}
"""Coarser fine grids for smoke tests (still contain every benchmark resolution)."""


@dataclass
class PDEDataset:
    """One operator-learning data set at one resolution (float32, normalised by nobody).

    ``x_*`` are the input functions (``u0`` for Burgers, ``a`` for Darcy) and ``y_*`` the outputs,
    shaped ``(n, res)`` for Burgers and ``(n, res, res)`` for Darcy. ``grid`` holds the coordinates:
    ``(res,)`` for Burgers, ``(res, res, 2)`` (``[..., 0] = x``, ``[..., 1] = y``) for Darcy.
    """

    name: str
    resolution: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    grid: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


def _check_name(name: str) -> None:
    if name not in RESOLUTIONS:
        raise ConfigError(
            f"name={name!r} is not a PDE data set; valid names are {sorted(RESOLUTIONS)}."
        )


def _check_name_resolution(name: str, resolution: int) -> None:
    _check_name(name)
    if resolution not in RESOLUTIONS[name]:
        raise ConfigError(
            f"resolution={resolution!r} is not available for {name!r}; "
            f"valid resolutions are {list(RESOLUTIONS[name])}."
        )


def subsample_periodic(values: np.ndarray, resolution: int) -> np.ndarray:
    """The points ``x_j = j / res`` out of ``(..., n)`` values on ``j / n``: every ``n/res``-th."""
    n = values.shape[-1]
    if resolution < 1 or n % resolution:
        raise ConfigError(f"resolution={resolution!r} does not divide the fine grid of {n} points.")
    return values[..., :: n // resolution]


def _burgers_outputs(name: str, u0: np.ndarray, u1: np.ndarray, n_steps: int) -> dict:
    if not np.all(np.isfinite(u1)):
        raise DataError(
            f"The {name} solver returned non-finite values with n_steps={n_steps!r}; the time "
            "step is too large for these initial conditions, so raise n_steps."
        )
    out = {}
    for res in RESOLUTIONS[name]:
        out[f"x_{res}"] = subsample_periodic(u0, res).astype(np.float32)
        out[f"y_{res}"] = subsample_periodic(u1, res).astype(np.float32)
    return out


def _burgers_released_chunk(
    args: tuple[ReleasedBurgersConfig, list[np.random.SeedSequence]],
) -> dict:
    cfg, seeds = args
    u0 = np.concatenate(
        [
            sample_released_grf1d(
                cfg.fine_points,
                np.random.default_rng(s),
                1,
                cfg.grf_sigma,
                cfg.grf_tau,
                cfg.grf_gamma,
            )
            for s in seeds
        ]
    )  # (B, fine)
    u1 = solve_burgers_spectral(u0, cfg.viscosity, cfg.final_time, cfg.n_steps)
    return _burgers_outputs("burgers_released", u0, u1, cfg.n_steps)


def _burgers_chunk(args: tuple[BurgersConfig, list[np.random.SeedSequence]]) -> dict:
    cfg, seeds = args
    u0 = np.concatenate(
        [
            sample_grf1d(cfg.fine_points, np.random.default_rng(s), 1, cfg.grf_scale, cfg.grf_shift)
            for s in seeds
        ]
    )  # (B, fine)
    if cfg.solver == "cole_hopf":
        u1 = solve_burgers_cole_hopf(u0, cfg.viscosity, cfg.final_time)
    else:
        u1 = solve_burgers_spectral(u0, cfg.viscosity, cfg.final_time, cfg.n_steps)
    return _burgers_outputs("burgers", u0, u1, cfg.n_steps)


def _darcy_chunk(args: tuple[DarcyConfig, list[np.random.SeedSequence]]) -> dict:
    cfg, seeds = args
    xs: dict[int, list] = {r: [] for r in RESOLUTIONS["darcy"]}
    ys: dict[int, list] = {r: [] for r in RESOLUTIONS["darcy"]}
    for s in seeds:
        field_ = sample_grf2d(cfg.fine_intervals + 1, np.random.default_rng(s), 1, cfg.grf_shift)[0]
        a = darcy_coefficient(field_, cfg.high, cfg.low)
        u = solve_darcy(a, cfg.forcing)
        for r in RESOLUTIONS["darcy"]:
            xs[r].append(subsample_cell_centres(a, r))
            ys[r].append(subsample_cell_centres(u, r))
    out = {}
    for r in RESOLUTIONS["darcy"]:
        out[f"x_{r}"] = np.stack(xs[r]).astype(np.float32)
        out[f"y_{r}"] = np.stack(ys[r]).astype(np.float32)
    return out


def _default_config(name: str) -> PDEConfig:
    _check_name(name)
    return _CONFIG_TYPES[name]()


def _validate_config(name: str, cfg: PDEConfig) -> None:
    kind = _CONFIG_TYPES[name]
    if not isinstance(cfg, kind):
        raise ConfigError(f"config={cfg!r} must be a {kind.__name__} for {name!r}.")
    if DIMENSION[name] == 1:
        bad = [r for r in RESOLUTIONS[name] if cfg.fine_points % r]
        if bad:
            raise ConfigError(
                f"fine_points={cfg.fine_points!r} must be a multiple of every resolution "
                f"{list(RESOLUTIONS[name])}."
            )
        if cfg.n_steps < 1:
            raise ConfigError(f"n_steps={cfg.n_steps!r} must be a positive integer.")
        if isinstance(cfg, BurgersConfig) and cfg.solver not in ("split_step", "cole_hopf"):
            raise ConfigError(
                f"solver={cfg.solver!r} is not a Burgers solver; use 'split_step' or 'cole_hopf'."
            )
    else:
        if cfg.fine_intervals % (2 * max(RESOLUTIONS["darcy"])):
            raise ConfigError(
                f"fine_intervals={cfg.fine_intervals!r} must be a multiple of "
                f"{2 * max(RESOLUTIONS['darcy'])} so every coarse grid is an exact subsample."
            )


_CHUNK_FUNCTIONS: dict[str, Callable[[Any], dict]] = {
    "burgers": _burgers_chunk,
    "burgers_released": _burgers_released_chunk,
    "darcy": _darcy_chunk,
}


def generate_pde_data(
    name: str,
    n_samples: int,
    seed: int = 0,
    config: PDEConfig | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Generate ``n_samples`` instances at every benchmark resolution of ``name``.

    Instance ``i`` draws from ``SeedSequence(seed).spawn(n)[i]``, so the numbers do not depend on
    the chunking or the number of workers. Chunks run on a process pool of ``workers`` processes
    (default: the CPUs available) with a tqdm bar. Returns ``{"x_<res>": (n, ...) float32,
    "y_<res>": ...}``.
    """
    _check_name(name)
    if n_samples < 1:
        raise ConfigError(f"n_samples={n_samples!r} must be a positive integer.")
    cfg = config if config is not None else _default_config(name)
    _validate_config(name, cfg)
    seeds = np.random.SeedSequence(seed).spawn(n_samples)
    chunks = [(cfg, seeds[i : i + cfg.chunk_size]) for i in range(0, n_samples, cfg.chunk_size)]
    fn: Callable[[Any], dict] = _CHUNK_FUNCTIONS[name]
    n_workers = workers if workers is not None else max(1, len(os.sched_getaffinity(0)))
    n_workers = min(n_workers, len(chunks))
    bar = tqdm(total=n_samples, desc=f"generating {name}", unit="inst", disable=not progress)
    results: list[dict] = []
    try:
        if n_workers <= 1:
            for ch in chunks:
                results.append(fn(ch))
                bar.update(len(ch[1]))
        else:
            with ProcessPoolExecutor(max_workers=n_workers) as pool:
                for ch, res in zip(chunks, pool.map(fn, chunks), strict=True):
                    results.append(res)
                    bar.update(len(ch[1]))
    finally:
        bar.close()
    return {key: np.concatenate([r[key] for r in results]) for key in results[0]}


def _params(name: str, cfg: PDEConfig, n_train: int, n_test: int, seed: int) -> dict:
    params = dataclasses.asdict(cfg)
    params.pop("chunk_size")  # does not change the numbers
    return {
        "generator": f"eads.data.pde.{name}",
        "generator_version": GENERATOR_VERSION,
        "name": name,
        "config": params,
        "n_train": n_train,
        "n_test": n_test,
        "seed": seed,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_paths(
    name: str,
    n_train: int = 1000,
    n_test: int = 200,
    seed: int = 0,
    config: PDEConfig | None = None,
) -> tuple[Path, Path]:
    """The ``(npz, manifest)`` paths of a cached data set: ``cache_dir()/pde/<name>_<hash>``."""
    if config is None:
        config = _default_config(name)
    params = _params(name, config, n_train, n_test, seed)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    base = cache_dir() / "pde" / f"{name}_{digest}"
    return base.with_suffix(".npz"), base.with_suffix(".json")


def load_pde_dataset(
    name: str,
    resolution: int,
    n_train: int = 1000,
    n_test: int = 200,
    seed: int = 0,
    cache: bool = True,
    quick: bool = False,
    config: PDEConfig | None = None,
    progress: bool = True,
) -> PDEDataset:
    """Load (generating and caching on first use) one PDE data set at one resolution.

    ``name`` is ``'burgers'`` (the paper's text, nu = 0.1, near-trivial; resolutions 256, 1024,
    4096), ``'burgers_released'`` (the FNO authors' released script, nu = 1e-3; 256, 1024, 4096)
    or ``'darcy'`` (16, 32, 64). One generation serves every resolution of a data set: the cache
    file holds all of them. The first ``n_train`` instances are the training split, the next
    ``n_test`` the test split.
    ``quick=True`` uses :data:`QUICK_CONFIGS` (coarser fine grids, for smoke tests); ``config``
    overrides both.

    Cache: ``cache_dir()/pde/<name>_<hash>.npz`` plus a ``.json`` manifest (generator, all
    parameters, seed, sha256 of the npz), the hash taken over the parameters. Both files are
    written atomically, the npz first, so a data set counts as cached only once its manifest
    exists; an npz without a manifest (an interrupted run) is regenerated. A manifest whose
    checksum or parameters do not match is **refused** with a :class:`DataError` (delete the two
    files to regenerate): a changed file is never used silently, nor overwritten behind the
    user's back.
    """
    _check_name_resolution(name, resolution)
    if n_train < 1 or n_test < 1:
        raise ConfigError(
            f"n_train={n_train!r} and n_test={n_test!r} must both be positive integers."
        )
    cfg = config if config is not None else (QUICK_CONFIGS[name] if quick else None)
    cfg = cfg if cfg is not None else _default_config(name)
    _validate_config(name, cfg)
    params = _params(name, cfg, n_train, n_test, seed)
    n_total = n_train + n_test

    arrays: dict[str, np.ndarray] | None = None
    npz_path, manifest_path = cache_paths(name, n_train, n_test, seed, cfg)
    if cache and manifest_path.exists():
        arrays = _read_cached(npz_path, manifest_path, params)
    if arrays is None:
        arrays = generate_pde_data(name, n_total, seed, cfg, progress=progress)
        if cache:
            atomic_write_with(npz_path, lambda p: np.savez(p, **arrays))
            manifest = dict(params, sha256=_sha256(npz_path), file=npz_path.name)
            atomic_write_json(manifest_path, manifest)
            log.info("cached %s data at %s", name, npz_path)

    x = arrays[f"x_{resolution}"]
    y = arrays[f"y_{resolution}"]
    if DIMENSION[name] == 1:
        grid = np.arange(resolution, dtype=np.float32) / resolution
    else:
        c = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution
        grid = np.stack(np.meshgrid(c, c, indexing="ij"), axis=-1)  # (res, res, 2)
    meta = dict(params, resolution=resolution, cache_file=str(npz_path) if cache else None)
    return PDEDataset(
        name=name,
        resolution=resolution,
        x_train=np.ascontiguousarray(x[:n_train]),
        y_train=np.ascontiguousarray(y[:n_train]),
        x_test=np.ascontiguousarray(x[n_train:n_total]),
        y_test=np.ascontiguousarray(y[n_train:n_total]),
        grid=grid,
        metadata=meta,
    )


def _read_cached(npz_path: Path, manifest_path: Path, params: dict) -> dict[str, np.ndarray] | None:
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(
            f"The manifest {str(manifest_path)!r} cannot be read ({exc}); delete it and its .npz "
            "to regenerate the data set."
        ) from exc
    if not npz_path.exists():
        log.warning("manifest %s has no data file; regenerating", manifest_path)
        return None
    stored = {k: manifest.get(k) for k in params}
    if stored != json.loads(json.dumps(params)):
        raise DataError(
            f"The manifest {str(manifest_path)!r} records parameters {stored} that differ from "
            f"the requested {params}; delete it and its .npz to regenerate the data set."
        )
    digest = _sha256(npz_path)
    if digest != manifest.get("sha256"):
        raise DataError(
            f"The cached data file {str(npz_path)!r} has sha256 {digest}, but its manifest records "
            f"{manifest.get('sha256')!r}; it was changed or corrupted, so it is refused. Delete it "
            "and its manifest to regenerate the data set."
        )
    with np.load(npz_path) as data:
        return {k: data[k] for k in data.files}
