"""EC-Train's gradients (the adjoint circuit) against five oracles, in float64:

1. autograd through the same solver (the digital baseline): equal to rounding;
2. central finite differences of the simulated loss;
3. ``torch.autograd.gradcheck`` of EC-Train wrapped as the backward of a Function;
4. the exact gradient of the continuous-time circuit where no diode switches
   (``h(T) = expm(J T) h0``, differentiated by autograd through ``matrix_exp``), approached at
   the integrator's order as the step shrinks;
5. torchdiffeq's ``odeint_adjoint`` on the identical model (a peer continuous adjoint).
"""

from __future__ import annotations

import pytest
import torch
from conftest import F64, fitted_order, max_rel_err, rel_err
from torchdiffeq import odeint_adjoint

import eads
from eads.circuit import adjoint_gradients

KEYS = ("P", "J", "Q", "P_ref")  # the default circuit has a reference node
SOLVERS = {
    "euler": lambda: eads.Euler(16),
    "rk4": lambda: eads.RK4(8),
    "dopri5": lambda: eads.Dopri5(rtol=1e-7, atol=1e-9),
}


def data(B=6, N=3, M=2, seed=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, generator=g, dtype=F64), torch.randn(B, M, generator=g, dtype=F64)


def model(solver, seed=0, **kw):
    kw = {"coupling_init": 1.0} | kw
    return eads.EADS(3, 8, 2, solver=solver, seed=seed, dtype=F64, **kw)


def autograd_gradients(m, x, y):
    """EC-Train's loss ``mean (Q^T h(T) - r_y y)^2`` by autograd through the solver."""
    loss, grads = eads.Backprop().loss_and_gradients(m, x, y)
    return loss, grads


def simulated_loss(m, x, y):
    with torch.no_grad():
        return float(((m(x) * m.r_output - m.r_output * y) ** 2).mean())


def test_diodes_switch_in_the_default_case():
    """The generic cases below do exercise the diodes: some are off, some switch along the way."""
    m = model(eads.RK4(8))
    x, _ = data()
    with torch.no_grad():
        sol = m.couple(m.project(x), record=True)
    states = torch.stack([s for step in sol.tape.aux for s in step]).float()  # (K, B, H)
    assert 0.1 < float(states.mean()) < 0.9
    assert bool(((states.amax(0) - states.amin(0)) > 0).any())  # some diode changes state


@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize(("r_output", "reference"), [(1.0, True), (1.7, True), (1.0, False)])
def test_ectrain_equals_autograd_through_the_solver(name, r_output, reference):
    m = model(SOLVERS[name](), r_output=r_output, reference=reference, reference_voltage=0.7)
    x, y = data()
    loss, ec = adjoint_gradients(m, x, y)
    ref_loss, ref = autograd_gradients(m, x, y)
    assert set(ec) == set(m.conductance_names) == {n for n, _ in m.named_parameters()}
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-13)
    # the issue asks < 1e-4; the adjoint scheme is exact for the discrete forward pass, so it
    # agrees to rounding (measured ~1e-15 for every solver)
    assert max_rel_err(ec, ref) < 1e-10
    for k in m.conductance_names:
        assert ec[k].shape == getattr(m, k).shape and ec[k].dtype == F64


def test_ectrain_gradients_api_returns_every_conductance_gradient():
    m = model(eads.RK4(8))
    x, y = data()
    grads = eads.ectrain_gradients(m, x, y)
    assert set(grads) == set(KEYS)
    assert all(torch.equal(grads[k], adjoint_gradients(m, x, y)[1][k]) for k in KEYS)
    assert all(p.grad is None for p in m.parameters())  # no autograd involved


def finite_differences(m, x, y, k, eps, entries=None):
    """Central differences of the simulated loss in the entries of parameter ``k``."""
    p = getattr(m, k)
    entries = range(p.numel()) if entries is None else entries
    fd = []
    for idx in entries:
        with torch.no_grad():
            flat = p.view(-1)
            old = float(flat[idx])
            flat[idx] = old + eps
            up = simulated_loss(m, x, y)
            flat[idx] = old - eps
            down = simulated_loss(m, x, y)
            flat[idx] = old
        fd.append((up - down) / (2 * eps))
    return torch.tensor(fd, dtype=F64)


@pytest.mark.parametrize("name", ["euler", "rk4"])
def test_ectrain_equals_central_finite_differences(name):
    m = model(SOLVERS[name]())
    x, y = data(B=4)
    ec = eads.ectrain_gradients(m, x, y)
    for k in KEYS:
        # measured ~1e-10 (the diodes are far enough from switching for eps = 1e-6)
        assert rel_err(ec[k].reshape(-1), finite_differences(m, x, y, k, 1e-6)) < 1e-6, k


def test_dopri5_ectrain_equals_central_finite_differences():
    """Dopri5 re-chooses its steps for each perturbed parameter, so its loss is a noisy function
    of the parameters at the level of its tolerance; where the diodes switch the error estimator
    struggles too (at rtol=1e-7, eps=1e-6 the differences are off by 50%). On the smooth
    no-switching circuit (below) at rtol=1e-8 they agree to ~1e-8; 8 entries of each parameter
    keep the test fast. (The switching case is covered by the autograd comparison above.)"""
    m, x, y = no_switch_case(eads.Dopri5(rtol=1e-8, atol=1e-10))
    ec = eads.ectrain_gradients(m, x, y)
    for k in KEYS:
        n = getattr(m, k).numel()
        entries = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:8].tolist()
        fd = finite_differences(m, x, y, k, 1e-5, entries)
        assert rel_err(ec[k].reshape(-1)[entries], fd) < 1e-6, k


class ECTrainLoss(torch.autograd.Function):
    """The clamped-output loss whose backward is EC-Train (no autograd through the circuit)."""

    @staticmethod
    def forward(ctx, P, J, Q, P_ref, m, x, y):
        with torch.no_grad():
            for k, v in zip(KEYS, (P, J, Q, P_ref), strict=True):
                getattr(m, k).copy_(v)
        loss, grads = adjoint_gradients(m, x, y)
        ctx.save_for_backward(*(grads[k] for k in KEYS))
        return loss

    @staticmethod
    def backward(ctx, g):
        return (*(g * gk for gk in ctx.saved_tensors), None, None, None)


@pytest.mark.parametrize(("name", "fast"), [("euler", True), ("rk4", False)])
def test_gradcheck(name, fast):
    m = model(SOLVERS[name]())
    x, y = data(B=3)
    params = tuple(getattr(m, k).detach().clone().requires_grad_() for k in KEYS)
    assert torch.autograd.gradcheck(
        lambda P, J, Q, P_ref: ECTrainLoss.apply(P, J, Q, P_ref, m, x, y),
        params,
        eps=1e-6,
        atol=1e-7,
        rtol=1e-5,
        fast_mode=fast,
    )


# -- convergence to the continuous-time circuit ----------------------------------------------------
def no_switch_case(solver):
    """J >= 0 and P, x > 0, so h > 0 and J h > 0 all along: every diode conducts throughout and
    the coupling stage is linear, ``h(T) = expm(J T) h0``."""
    g = torch.Generator().manual_seed(11)
    m = model(solver, duration=1.0)
    with torch.no_grad():
        m.J.copy_(torch.rand(8, 8, generator=g, dtype=F64) * 0.3)
        m.P.copy_(torch.rand(8, 3, generator=g, dtype=F64) + 0.1)
        m.P_ref.copy_(torch.rand(8, generator=g, dtype=F64) + 0.1)
    x = torch.rand(6, 3, generator=g, dtype=F64) + 0.1
    y = torch.randn(6, 2, generator=g, dtype=F64)
    return m, x, y


def continuous_gradients(m, x, y):
    """Exact gradient of the continuous circuit with every diode on, via autograd of matrix_exp."""
    P, J, Q, p = (getattr(m, k).detach().clone().requires_grad_() for k in KEYS)
    h0 = (x @ P.T + m.reference_voltage * p) / m.r_hidden  # (B, H)
    hT = h0 @ torch.linalg.matrix_exp(J * m.duration).T  # (B, H)
    loss = ((hT @ Q - m.r_output * y) ** 2).mean()
    return dict(zip(KEYS, torch.autograd.grad(loss, (P, J, Q, p)), strict=True))


@pytest.mark.parametrize(
    ("solver", "order", "steps"),
    [
        (eads.Euler, 1, [32, 64, 128, 256]),
        (eads.Midpoint, 2, [16, 32, 64, 128]),
        (eads.RK4, 4, [4, 8, 16, 32]),
    ],
)
def test_gradient_converges_to_continuous_circuit_at_solver_order(solver, order, steps):
    errors = []
    for n in steps:
        m, x, y = no_switch_case(solver(n))
        with torch.no_grad():
            assert bool(m.coupling_field(0.0, m.project(x))[1].all())
        errors.append(max_rel_err(eads.ectrain_gradients(m, x, y), continuous_gradients(m, x, y)))
    # measured: Euler 0.97, Midpoint 1.97, RK4 3.96 (RK4 errors 5e-5 -> 1e-8)
    assert fitted_order(steps, errors) == pytest.approx(order, abs=0.2)
    assert errors[-1] < {1: 1e-2, 2: 1e-3, 4: 1e-6}[order]


@pytest.mark.parametrize("reference", [True, False])
def test_gradient_with_diode_switching_still_converges(reference):
    """Where diodes switch inside steps the field is only piecewise linear. The gradient still
    converges to the continuous circuit's (reference: RK4 with 8192 steps), but at a lower,
    irregular order: measured slopes over 16..1024 steps, seeds 10-12, with and without the
    reference node: Euler 0.96-1.01, RK4 0.82-1.19 (while its forward state converges at order
    ~2.0). Over a shorter range the RK4 slope wanders more (0.68 over 16..256 for seed 10)."""
    x, y = data(B=8, seed=10)
    ref = eads.ectrain_gradients(model(eads.RK4(8192), reference=reference), x, y)
    for solver in (eads.Euler, eads.RK4):
        steps = [16, 64, 256, 1024]
        errors = [
            max_rel_err(eads.ectrain_gradients(model(solver(n), reference=reference), x, y), ref)
            for n in steps
        ]
        assert errors[-1] < errors[0] / 10, (solver, errors)
        assert fitted_order(steps, errors) > 0.7, (solver, errors)
        assert errors[-1] < 1e-3


# -- the peer: torchdiffeq's continuous adjoint ----------------------------------------------------
class PeerEADS(torch.nn.Module):
    """The same model written for torchdiffeq: h0 = P x + p v_ref, dh/dt = relu(J h),
    y = Q^T h(T)."""

    def __init__(self, m: eads.EADS):
        super().__init__()
        for k in KEYS:
            setattr(self, k, torch.nn.Parameter(getattr(m, k).detach().clone()))
        self.T, self.v_ref = m.duration, m.reference_voltage

    def forward(self, t, h):
        return torch.relu(h @ self.J.T)

    def loss(self, x, y, rtol, atol):
        t = torch.tensor([0.0, self.T], dtype=F64)
        hT = odeint_adjoint(
            self,
            x @ self.P.T + self.v_ref * self.P_ref,
            t,
            rtol=rtol,
            atol=atol,
            method="dopri5",
            adjoint_params=(self.J,),
        )[-1]
        return ((hT @ self.Q - y) ** 2).mean()


def peer_gradients(m, x, y, rtol=1e-10, atol=1e-12):
    peer = PeerEADS(m)
    loss = peer.loss(x, y, rtol, atol)
    params = tuple(getattr(peer, k) for k in KEYS)
    return dict(zip(KEYS, torch.autograd.grad(loss, params), strict=True))


def test_odeint_adjoint_peer_agrees_without_switching():
    m, x, y = no_switch_case(eads.RK4(64))
    exact = continuous_gradients(m, x, y)
    peer = peer_gradients(m, x, y)
    assert max_rel_err(peer, exact) < 1e-7  # the peer meets its own tolerance
    assert max_rel_err(eads.ectrain_gradients(m, x, y), peer) < 1e-7  # RK4(64): ~2e-10


@pytest.mark.slow
def test_odeint_adjoint_peer_agrees_with_switching():
    """~9 s: torchdiffeq's adaptive adjoint crawls through the diode kinks."""
    x, y = data(B=8, seed=10)
    m = model(eads.RK4(256))
    peer = peer_gradients(m, x, y, rtol=1e-7, atol=1e-9)
    # the adjoint ODE of a kinked field: EC-Train's RK4 gradient is ~1st order here (4e-4)
    assert max_rel_err(eads.ectrain_gradients(m, x, y), peer) < 1e-3


# -- the transient projection ----------------------------------------------------------------------
def test_transient_projection_gradient_matches_autograd():
    """With stages="transient" the projection settles to c P x with c = 1 - O(tol); EC-Train
    measures c from a unit drive and the output current Q^T h(T) directly, while autograd
    differentiates the actual transients, so they differ at the settle tolerance (measured:
    ~1e-9 for P, ~7e-9 for J and Q at tol=1e-8; ~7e-7 at tol=1e-6)."""
    tol = 1e-8
    m = model(eads.RK4(8), stages="transient", settle_tolerance=tol)
    x, y = data()
    ec = eads.ectrain_gradients(m, x, y)
    ref = autograd_gradients(m, x, y)[1]
    assert max_rel_err(ec, ref) < 100 * tol
