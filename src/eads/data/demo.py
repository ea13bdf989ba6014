"""The embedded demo task: the viscous Burgers map u0 -> u(., t) on a coarse periodic grid.

Real physics, computed exactly: by the Cole-Hopf transform ``u = -2 nu phi_x / phi`` where
``phi`` solves the heat equation ``phi_t = nu phi_xx`` with ``phi0 = exp(-int_0^x u0 / (2 nu))``;
the heat equation is solved exactly in Fourier space on a fine grid (``fine`` points) and the
result subsampled. Initial conditions follow the FNO paper's Burgers set (Li et al. 2020),
``u0 ~ N(0, 625 (-Laplacian + 25 I)^-2)`` on the periodic unit interval; the demo uses
``nu = 0.02`` and ``t = 0.2`` (a best linear map leaves 18% of the output variance unexplained,
so the task separates nonlinear learners from linear ones such as NP-GL).

Small enough to train in about a minute on two CPU cores; the full Burgers benchmark (8192
points, split-step solver) lives in :mod:`eads.data.pde`.
"""

from __future__ import annotations

import numpy as np


def periodic_grf(n_samples: int, n_points: int, rng: np.random.Generator) -> np.ndarray:
    """Samples of ``N(0, 625 (-Laplacian + 25 I)^-2)`` on ``n_points`` periodic grid points."""
    k = np.fft.rfftfreq(n_points, d=1.0 / n_points)  # integer wavenumbers
    sqrt_eig = 25.0 / (4 * np.pi**2 * k**2 + 25.0)  # sqrt of the covariance eigenvalues
    coef = rng.standard_normal((n_samples, k.size)) + 1j * rng.standard_normal((n_samples, k.size))
    coef *= sqrt_eig / np.sqrt(2)
    coef[:, 0] = 0.0  # zero mean: keeps the Cole-Hopf potential periodic
    return np.fft.irfft(coef, n=n_points) * n_points


def burgers_cole_hopf(u0: np.ndarray, t: float, nu: float) -> np.ndarray:
    """Exact periodic viscous Burgers solution at time ``t`` for zero-mean ``u0 (batch, n)``."""
    n = u0.shape[-1]
    k = 2 * np.pi * np.fft.rfftfreq(n, d=1.0 / n)
    u_hat = np.fft.rfft(u0, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        integral_hat = np.where(k > 0, u_hat / (1j * k), 0.0)  # antiderivative, zero mean
    potential = np.fft.irfft(integral_hat, n=n, axis=-1)
    potential -= potential.max(axis=-1, keepdims=True)  # scale phi to avoid overflow
    phi_hat = np.fft.rfft(np.exp(-potential / (2 * nu)), axis=-1) * np.exp(-nu * k**2 * t)
    phi = np.fft.irfft(phi_hat, n=n, axis=-1)
    phi_x = np.fft.irfft(1j * k * phi_hat, n=n, axis=-1)
    return -2 * nu * phi_x / phi


def burgers_demo(
    n_samples: int = 1200, n_points: int = 32, *, t: float = 0.2, nu: float = 0.02,
    fine: int = 1024, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(u0, u(t))`` pairs, each ``(n_samples, n_points)`` float32."""
    rng = np.random.default_rng(seed)
    u0 = periodic_grf(n_samples, fine, rng)
    ut = burgers_cole_hopf(u0, t, nu)
    stride = fine // n_points
    return u0[:, ::stride].astype(np.float32), ut[:, ::stride].astype(np.float32)
