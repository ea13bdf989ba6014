"""The embedded demo task: the viscous Burgers map u0 -> u(., t) on a coarse periodic grid.

Real physics, computed exactly: by the Cole-Hopf transform ``u = -2 nu phi_x / phi`` where
``phi`` solves the heat equation ``phi_t = nu phi_xx`` with ``phi0 = exp(-int_0^x u0 / (2 nu))``;
the heat equation is solved exactly in Fourier space on a fine grid (``fine`` points) by
:func:`eads.data.pde.solve_burgers_cole_hopf` and the result subsampled. Initial conditions
follow the FNO paper's Burgers set (Li et al. 2020), ``u0 ~ N(0, 625 (-Laplacian + 25 I)^-2)``
on the periodic unit interval; the demo uses ``nu = 0.02`` and ``t = 0.2`` (a best linear map
leaves about 15% of the output variance unexplained, so the task separates nonlinear learners
from linear ones such as NP-GL).

Small enough to train in about a minute on two CPU cores; the full Burgers benchmark (8192
points, split-step solver) lives in :mod:`eads.data.pde`.
"""

from __future__ import annotations

import numpy as np

from eads.data.pde import sample_grf1d, solve_burgers_cole_hopf


def burgers_demo(
    n_samples: int = 1200,
    n_points: int = 32,
    *,
    t: float = 0.2,
    nu: float = 0.02,
    fine: int = 1024,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(u0, u(t))`` pairs, each ``(n_samples, n_points)`` float32."""
    rng = np.random.default_rng(seed)
    u0 = sample_grf1d(fine, rng, n_samples)
    ut = solve_burgers_cole_hopf(u0, viscosity=nu, final_time=t)
    stride = fine // n_points
    return u0[:, ::stride].astype(np.float32), ut[:, ::stride].astype(np.float32)
