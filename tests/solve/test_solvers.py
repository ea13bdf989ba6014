"""Solvers against exact solutions of linear ODEs (``y(t) = expm(A t) y0``) and the RC closed form.

Oracles: ``torch.linalg.matrix_exp`` for ``dy/dt = A y``; the fitted slope of log(error) against
log(dt) for each fixed-step method's order; ``v(t) = d/r (1 - exp(-r t))`` for an RC node.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import F64, fitted_order, rel_err

import eads
from eads.solve import SOLVERS, Tape, make_solver, settle

#: the deterministic ODE solvers (the registry also holds an SDE solver, tested with the hardware)
ODE_SOLVERS = ["euler", "midpoint", "rk4", "dopri5"]


def linear_problem(dtype=F64, batch=3, n=4, seed=0):
    """A stable, non-normal ``A`` (n, n) and a batch of starts ``(batch, n)``."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=F64) / math.sqrt(n) - 0.5 * torch.eye(n, dtype=F64)
    y0 = torch.randn(batch, n, generator=g, dtype=F64)
    return A.to(dtype), y0.to(dtype)


def exact_linear(A, y0, t):
    """Row-vector layout: ``y(t) = y0 expm(A t)^T``."""
    return y0.to(F64) @ torch.linalg.matrix_exp(A.to(F64) * t).T


@pytest.mark.parametrize(
    ("solver", "order", "steps"),
    [
        (eads.Euler, 1, [16, 32, 64, 128, 256]),
        (eads.Midpoint, 2, [8, 16, 32, 64, 128]),
        (eads.RK4, 4, [8, 16, 32, 64, 128]),
        (eads.RK38, 4, [8, 16, 32, 64, 128]),
    ],
)
def test_convergence_order_on_linear_ode(solver, order, steps):
    A, y0 = linear_problem()
    T = 2.0
    exact = exact_linear(A, y0, T)
    errors = []
    for n in steps:
        sol = solver(n).integrate(lambda t, y: y @ A.T, y0, 0.0, T)
        assert sol.t == T
        assert sol.n_evals == n * len(solver.b)
        errors.append(rel_err(sol.y, exact))
    assert solver.order == order
    # measured: Euler 1.00, Midpoint 2.00, RK4 4.0 (errors well above rounding at these steps)
    assert fitted_order(steps, errors) == pytest.approx(order, abs=0.15)


def test_convergence_order_on_time_dependent_ode():
    """``dy/dt = cos(t) y`` has ``y = y0 exp(sin t)``: checks the stage times ``c``."""
    y0 = torch.tensor([[1.0, -2.0]], dtype=F64)
    exact = y0 * math.exp(math.sin(3.0))
    for solver, order, steps in (
        (eads.Euler, 1, [32, 64, 128, 256]),
        (eads.Midpoint, 2, [64, 128, 256, 512]),  # small leading term: asymptotic late
        (eads.RK4, 4, [16, 32, 64, 128]),
        (eads.RK38, 4, [128, 256, 512]),  # small leading term: asymptotic late
    ):
        errors = [
            rel_err(solver(n).integrate(lambda t, y: math.cos(t) * y, y0, 0.0, 3.0).y, exact)
            for n in steps
        ]
        # RK38 measured 4.22: its slope falls to 4 from above (4.75, 4.60, 4.43, 4.28, ...)
        assert fitted_order(steps, errors) == pytest.approx(order, abs=0.25), solver


@pytest.mark.parametrize(("rtol", "atol"), [(1e-5, 1e-7), (1e-8, 1e-10)])
def test_dopri5_meets_its_tolerance(rtol, atol):
    A, y0 = linear_problem(batch=5, n=6, seed=3)
    exact = exact_linear(A, y0, 3.0)
    sol = eads.Dopri5(rtol=rtol, atol=atol).integrate(lambda t, y: y @ A.T, y0, 0.0, 3.0)
    err = float((sol.y - exact).abs().max())
    # the global error of a tolerance-controlled solve stays within a small multiple of it
    assert err < 10 * (rtol * float(exact.abs().max()) + atol)
    assert sol.t == 3.0


def test_dopri5_tighter_tolerance_takes_more_steps_and_is_more_accurate():
    A, y0 = linear_problem(seed=4)
    exact = exact_linear(A, y0, 3.0)
    f = lambda t, y: y @ A.T  # noqa: E731
    loose = eads.Dopri5(rtol=1e-4, atol=1e-6).integrate(f, y0, 0.0, 3.0)
    tight = eads.Dopri5(rtol=1e-10, atol=1e-12).integrate(f, y0, 0.0, 3.0)
    assert tight.n_evals > loose.n_evals
    assert rel_err(tight.y, exact) < rel_err(loose.y, exact)
    assert rel_err(tight.y, exact) < 1e-8


@pytest.mark.parametrize("name", ODE_SOLVERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept_and_accuracy_matches_precision(name, dtype):
    kwargs = {"n_steps": 256} if name != "dopri5" else {}
    solver = make_solver(name, **kwargs)
    A, y0 = linear_problem(dtype=dtype)
    sol = solver.integrate(lambda t, y: y @ A.T, y0, 0.0, 1.0)
    assert sol.y.dtype == dtype
    assert sol.y.shape == y0.shape
    exact = exact_linear(A, y0, 1.0)
    # truncation error at 256 steps (Euler ~1e-3, midpoint ~1e-6, RK4 ~1e-12) or Dopri5's
    # default rtol=1e-6, and float32's rounding (~1e-7 per step) where that is larger
    f32 = dtype == torch.float32
    bound = {"euler": 5e-3, "midpoint": 1e-5, "rk4": 1e-5 if f32 else 1e-10, "dopri5": 1e-5}[name]
    assert rel_err(sol.y, exact) < bound


@pytest.mark.parametrize("name", ODE_SOLVERS)
def test_batched_equals_one_by_one(name):
    """Fixed-step solvers treat each row independently; Dopri5 shares its steps over the batch
    (RMS error norm), so its rows agree with separate solves only to the tolerance."""
    kwargs = {"n_steps": 16} if name != "dopri5" else {"rtol": 1e-9, "atol": 1e-11}
    solver = make_solver(name, **kwargs)
    A, y0 = linear_problem(batch=6)
    f = lambda t, y: y @ A.T  # noqa: E731
    batched = solver.integrate(f, y0, 0.0, 1.5).y
    single = torch.cat([solver.integrate(f, y0[i : i + 1], 0.0, 1.5).y for i in range(6)])
    if name == "dopri5":
        assert torch.allclose(batched, single, rtol=1e-7, atol=1e-9)
    else:
        assert torch.allclose(batched, single, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", ["euler", "midpoint", "rk4"])
def test_tape_records_stage_inputs(name):
    solver = make_solver(name, n_steps=5)
    A, y0 = linear_problem()

    def f(t, y):
        return y @ A.T, (y > 0)

    sol = solver.integrate(f, y0, 0.0, 1.0, record=True, aux=True)
    tape = sol.tape
    assert isinstance(tape, Tape)
    assert tape.n_steps == 5
    assert tape.dts == pytest.approx([0.2] * 5)
    assert all(len(stages) == len(solver.b) for stages in tape.inputs)
    # the first stage input of step 0 is the start; aux is what the field returned at each input
    assert torch.equal(tape.inputs[0][0], y0)
    for inputs, auxes in zip(tape.inputs, tape.aux, strict=True):
        for u, s in zip(inputs, auxes, strict=True):
            assert torch.equal(s, u > 0)


def test_dopri5_tape_holds_accepted_steps_only():
    A, y0 = linear_problem()
    sol = eads.Dopri5(rtol=1e-7, atol=1e-9).integrate(
        lambda t, y: (y @ A.T, None), y0, 0.0, 2.0, record=True, aux=True
    )
    assert sum(sol.tape.dts) == pytest.approx(2.0, abs=1e-12)
    assert sol.n_evals >= 7 * sol.tape.n_steps


def test_bad_solver_settings_raise_config_error():
    with pytest.raises(eads.ConfigError, match="n_steps"):
        eads.RK4(0)
    with pytest.raises(eads.ConfigError, match="n_steps"):
        eads.Euler(2.5)
    with pytest.raises(eads.ConfigError, match="rtol"):
        eads.Dopri5(rtol=0.0)
    with pytest.raises(eads.ConfigError, match="valid solvers"):
        make_solver("leapfrog")
    assert set(ODE_SOLVERS) <= set(SOLVERS)


def test_dopri5_gives_up_on_a_blow_up():
    with pytest.raises(eads.ConfigError, match="max_steps"):
        eads.Dopri5(max_steps=50).integrate(lambda t, y: y**2, torch.ones(1, 1, dtype=F64), 0, 5)


# -- settle: the RC charging transient -------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_settle_reaches_rc_equilibrium_and_time(dtype):
    """``dv/dt = d - r v`` from 0: ``v -> d / r``; the current ``|d| exp(-r t)`` falls to ``tol``
    at ``t* = log(|d| / tol) / r`` (settle() measures the node *current*, as documented; the
    voltage error is then ``tol / r``). The reported time is the first step time past ``t*``.
    In float32 the tolerance is floored at ``3 eps |v| / dt`` (see the float32 test below)."""
    r, dt = 2.0, 0.05
    tol = 1e-7 if dtype == F64 else 1e-4
    d = torch.tensor([[3.0, -1.0], [0.5, 0.2], [-40.0, 1e-3]], dtype=dtype)  # (B, nodes)
    v, t_settle = settle(lambda t, v: d - r * v, torch.zeros_like(d), tolerance=tol, dt=dt)
    assert v.dtype == dtype and t_settle.shape == (3,)
    d64 = d.to(F64).abs().amax(dim=1)  # (B,)
    tol_eff = tol + 3 * torch.finfo(dtype).eps / dt * d64 / r  # (B,)
    assert torch.all((v.to(F64) - d.to(F64) / r).abs().amax(dim=1) <= 1.01 * tol_eff / r)
    t_star = torch.log(d64 / tol_eff) / r
    assert torch.all(t_settle.to(F64) >= t_star - 1e-3 * dt)
    assert torch.all(t_settle.to(F64) <= t_star + dt + 1e-6)
    if dtype == F64:  # the floor is negligible: t* = log(|d| / tol) / r within a step
        assert torch.allclose(t_settle, torch.log(d64 / tol) / r, rtol=0, atol=dt)


def test_settle_stops_at_slowest_sample_and_keeps_settled_ones_settled():
    r, tol = 1.0, 1e-8
    d = torch.tensor([[1e-6], [10.0]], dtype=F64)
    v, t_settle = settle(lambda t, v: d - r * v, torch.zeros_like(d), tolerance=tol, dt=0.1)
    assert t_settle[0] < t_settle[1]
    assert torch.allclose(v, d / r, rtol=0, atol=tol)


def test_settle_raises_on_blow_up_and_on_timeout():
    grow = lambda t, v: v  # noqa: E731
    with pytest.raises(eads.UnstableCircuitError, match="rail"):
        settle(grow, torch.ones(2, 3), rail=100.0)
    with pytest.raises(eads.UnstableCircuitError):
        settle(lambda t, v: v * 1e30, torch.ones(1, 1), dt=1.0)  # overflows to inf
    with pytest.raises(eads.ConfigError, match="did not settle"):
        settle(lambda t, v: 1 - 0.01 * v, torch.zeros(1, 1), max_time=1.0)
    with pytest.raises(eads.ConfigError, match="tolerance"):
        settle(grow, torch.ones(1, 1), tolerance=0.0)
    with pytest.raises(eads.ConfigError, match="dt"):
        settle(grow, torch.ones(1, 1), dt=-1.0)


@pytest.mark.parametrize("drive", [0.5, 3.0, 20.0, -150.0])
def test_settle_in_float32_with_a_tolerance_below_its_resolution(drive):
    """float32 cannot resolve a node current of 1e-6 on a 20 V node at dt=0.05 (the update is
    lost in rounding below ~1.2 eps |v| / dt). settle() floors the tolerance at 3 eps |v| / dt
    rather than integrating to max_time and failing (regression: it used to raise ConfigError)."""
    dt = 0.05
    d = torch.tensor([[drive, 0.1]], dtype=torch.float32)
    v, t_settle = settle(lambda t, v: d - v, torch.zeros_like(d), tolerance=1e-6, dt=dt)
    floor = 3 * torch.finfo(torch.float32).eps / dt * abs(drive)
    assert float((d - v).abs().max()) <= 1e-6 + floor
    assert float(t_settle[0]) <= math.log(abs(drive) / 1e-6) + dt
