"""Euler-Maruyama inside the EADS coupling stage: the noise is drawn (it was once silently
dropped by the fused fixed-step path). Oracles: with J = 0 the field is relu(0) = 0, so
h(T) - h(0) = sigma sqrt(dt) sum of n_steps standard normals, variance sigma^2 T exactly; with
sigma = 0 the result is Euler's bit for bit."""

from __future__ import annotations

import torch

import eads
from eads.solve import Euler, EulerMaruyama


def _model(solver, duration=2.0):
    m = eads.EADS(3, 64, 2, duration=duration, solver=solver, seed=0, dtype=torch.float64)
    return m


def test_the_coupling_stage_draws_the_noise_with_variance_sigma_squared_t():
    sigma, T = 0.3, 2.0
    m = _model(EulerMaruyama(n_steps=16, noise_std=sigma, seed=1), duration=T)
    with torch.no_grad():
        m.J.zero_()
        h0 = torch.randn(4000, 64, dtype=torch.float64)
        d = m.couple(h0).y - h0  # (B, H)
    var = float(d.var())
    # 256,000 draws: the sample variance's relative std is sqrt(2 / n) ~ 0.3 %
    assert abs(var / (sigma**2 * T) - 1) < 0.02, var
    assert abs(float(d.mean())) < 0.01


def test_two_forward_passes_see_different_noise_and_sigma_zero_is_euler():
    x = torch.randn(8, 3, dtype=torch.float64)
    noisy = _model(EulerMaruyama(n_steps=8, noise_std=0.1, seed=2))
    with torch.no_grad():
        a, b = noisy(x), noisy(x)
    assert not torch.equal(a, b)
    quiet, euler = _model(EulerMaruyama(n_steps=8, noise_std=0.0)), _model(Euler(n_steps=8))
    with torch.no_grad():
        assert torch.equal(quiet(x), euler(x))
