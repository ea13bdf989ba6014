"""Heun's method with the diode switches located inside each step: second order through kinks.

For the rectified linear field of the EADS coupling stage, ``dh/dt = relu(z)`` with ``z = h W^T``,
every explicit Runge-Kutta method samples the diode states ``1[z > 0]`` at its stage points. Where
a diode switches inside a step the simulated map is kinked between stage points, and its gradient
with respect to the conductances converges to the continuous circuit's at order one only, whatever
the method's nominal order (tests/circuit/test_adjoint.py; the error is about ``0.05 / evals`` for
Euler, Heun, RK4 and the 3/8 rule alike on the benchmark's circuit).

:class:`SwitchingHeun` integrates ``relu`` of the linear interpolant of ``z`` exactly instead:

    z0 = h_n W^T,   h~ = h_n + dt relu(z0),   z1 = h~ W^T                (Euler predictor)
    h_{n+1} = h_n + dt Phi(z0, z1),   Phi(z0, z1) = int_0^1 relu((1 - s) z0 + s z1) ds

which is Heun's method (the explicit trapezoidal rule) wherever no diode switches, and elsewhere
places each switch at the zero of the interpolant. In closed form, elementwise,

    theta = (relu(z0) + relu(z1)) / (|z0| + |z1|)      (the fraction of the step a diode conducts,
                                                        weighted; 0 when both are 0)
    Phi   = theta (relu(z0) + relu(z1)) / 2
    dPhi/dz0 = phi0 = theta^2 / 2 + s0 theta (1 - theta),   s0 = 1[z0 > 0]
    dPhi/dz1 = phi1 = theta - phi0

``Phi`` is positively homogeneous of degree one, so ``Phi = phi0 z0 + phi1 z1`` (Euler's theorem)
and the weights are its exact derivative: they play the part of the diode states in the adjoint.
``Phi`` is continuously differentiable away from ``z0 = z1 = 0``, so the simulated map is smooth
across switches up to the predictor's ``O(dt^2)`` kink, and both the state and the gradient
converge at order two (measured on the benchmark's circuit, H = 128: gradient error 1.6e-3 at 4
steps, 8 evaluations, where the 3/8 rule needs 32 evaluations).

The tape holds per step the inputs ``h_n, h~_n``, the predictor's diode states ``s0`` and the
weights ``(phi0 - s0, phi1)``: ``5 * steps * B * H`` values. :func:`eads.circuit.adjoint_gradients`
runs the exact adjoint of this map (it equals autograd through it to rounding).

Do not use it for fields that are not ``relu(h W^T)``: on any other field (:meth:`integrate`, e.g.
the non-ideal diodes of :class:`eads.circuit.nonideal.NonIdealEADS`) it is plain Heun, order two
for the state and one for the gradient across kinks. It is second order only: for smooth fields
or tight tolerances prefer RK4 or :class:`eads.solve.Dopri5`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eads._errors import ConfigError
from eads.solve import _kernels
from eads.solve._base import AbstractFixedStep, Solution, Tape, needs_autograd


@dataclass
class SwitchingTape(Tape):
    """A :class:`SwitchingHeun` tape: ``input_buffer (steps, 2, B, H)`` holds ``h_n, h~_n``;
    ``weights (steps, 2, B, H)`` the adjoint's weights ``(phi0 - s0, phi1)`` and ``masks (steps,
    B, H)`` the predictor's diode states ``s0`` (0/1 in ``h``'s dtype). ``aux[k] = [s0, None]``.

    The adjoint overwrites ``weights`` with its stage weights (the tape is used once).
    """

    weights: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    fused: bool = False  #: recorded with the compiled kernels
    #: ``(6, B, H)``: the forward's temporaries, free once it returns; the adjoint runs in them
    #: (not the tape's data, and not counted in ``nbytes``)
    scratch: torch.Tensor | None = None

    def _tensors(self):
        yield from super()._tensors()
        for t in (self.weights, self.masks):
            if t is not None:
                yield t


class SwitchingHeun(AbstractFixedStep):
    """Heun's method that integrates the diodes' relu exactly between stage points (order 2).

    See the module docstring for the scheme. ``n_steps`` equal steps, two products ``h W^T`` per
    step. On a generic field (:meth:`integrate`) it is Heun's method.
    """

    name, order = "switching-heun", 2
    a, b, c = ((), (1.0,)), (0.5, 0.5), (0.0, 1.0)

    def __init__(self, n_steps: int = 8, *, compile: bool = False):
        super().__init__(n_steps)
        if not isinstance(compile, bool):
            raise ConfigError(f"compile must be True or False, got {compile!r}.")
        self.compile = compile

    def __repr__(self) -> str:
        extra = ", compile=True" if self.compile else ""
        return f"SwitchingHeun(n_steps={self.n_steps}{extra})"

    def integrate_rectified(self, weight, y0, t0, t1, *, record=False):
        """``compile=True`` runs the element-wise work as fused ``torch.compile`` kernels
        (:mod:`eads.solve._kernels`; eager if compiling fails): worth it for ``H >= 128`` on a
        CPU, where those passes are bound by memory; the first call compiles (seconds)."""
        n = self.n_steps
        dt = (t1 - t0) / n
        if needs_autograd(weight, y0):
            return self._integrate_autograd(weight, y0, dt, n, t1, record)
        WT = weight.T  # (H, H)
        ws = self.workspace
        # the temporaries live in the workspace too: allocated afresh each call, (B, H) blocks
        # above the allocator's mmap threshold fault in zeroed pages on every training step
        work = ws.get("scratch", (6, *y0.shape), y0)  # z0, z1, r0, r1, theta, h~ (B, H) each
        z0, z1, r0, r1, theta, predicted = work.unbind(0)
        tape = None
        if record:
            tape = SwitchingTape(self.a, self.b)
            U = tape.input_buffer = ws.get("inputs", (n, 2, *y0.shape), y0)  # h_n, h~_n
            Wt = tape.weights = ws.get("weights", (n, 2, *y0.shape), y0)  # phi0 - s0, phi1
            S0 = tape.masks = ws.get("masks", (n, *y0.shape), y0)  # s0
            tape.fused = self.compile and _kernels.compiled() is not None
            tape.scratch = work
            # every step's views at once (indexing costs microseconds a view)
            hs, hts = U[:, 0].unbind(0), U[:, 1].unbind(0)
            s0s, w0s, w1s = S0.unbind(0), Wt[:, 0].unbind(0), Wt[:, 1].unbind(0)
            hs[0].copy_(y0)
            h = hs[0]
        else:
            h = y0
            states = ws.get("states", (2, *y0.shape), y0).unbind(0)  # ping-pong h_n
        if self.compile and _kernels.compiled() is not None:
            step_fn = self._fused_step
            scratch = (y0.new_full((), dt),)
        else:
            step_fn = self._eager_step
            scratch = (r0, r1, theta, y0.new_zeros(()))
        for step in range(n):
            if step == n - 1:
                h_next = torch.empty_like(y0)
            else:
                h_next = hs[step + 1] if record else states[step % 2]
            ht = hts[step] if record else predicted
            slots = (s0s[step], w0s[step], w1s[step]) if record else None
            step_fn(WT, h, ht, h_next, z0, z1, dt, slots, scratch)
            if record:
                tape.dts.append(dt)
                tape.inputs.append([hs[step], hts[step]])
                tape.aux.append([s0s[step], None])
            h = h_next
        return Solution(h, t1, 2 * n, tape)

    @staticmethod
    def _eager_step(WT, h, ht, h_next, z0, z1, dt, slots, scratch):
        """One step in eager operations on preallocated buffers (about 17 passes recorded)."""
        r0, r1, theta, zero = scratch
        torch.mm(h, WT, out=z0)  # (B, H)
        torch.clamp(z0, min=0.0, out=r0)
        torch.add(h, r0, alpha=dt, out=ht)  # the Euler predictor h~
        torch.mm(ht, WT, out=z1)  # (B, H)
        if slots is not None:
            torch.sign(r0, out=slots[0])  # s0 = 1[z0 > 0]
        torch.clamp(z1, min=0.0, out=r1)
        r1.add_(r0)  # p = relu(z0) + relu(z1)
        z0.add_(z1).sub_(r1, alpha=2.0)  # -(|z0| + |z1|) = z0 + z1 - 2 p
        z0.clamp_(max=-torch.finfo(z0.dtype).tiny)  # both zero: theta = 0 / tiny = 0
        torch.div(r1, z0, out=theta).neg_()  # theta = p / (|z0| + |z1|), in [0, 1]
        torch.addcmul(h, theta, r1, value=dt / 2, out=h_next)  # h + dt theta p / 2
        if slots is not None:
            s0, w0, w1 = slots
            # phi0 = theta^2 / 2 + s0 theta (1 - theta); stored: phi0 - s0 and theta - phi0
            m = torch.addcmul(theta, theta, theta, value=-1.0, out=z1)  # theta (1 - theta)
            phi0 = torch.addcmul(zero, theta, theta, value=0.5, out=r0).addcmul_(s0, m)
            torch.sub(theta, phi0, out=w1)
            torch.sub(phi0, s0, out=w0)

    @staticmethod
    def _fused_step(WT, h, ht, h_next, z0, z1, dt, slots, scratch):
        """One step with the element-wise work in two compiled kernels."""
        (dt_t,) = scratch
        torch.mm(h, WT, out=z0)
        if slots is None:
            _kernels.call("predictor", z0, h, dt_t, ht)
            torch.mm(ht, WT, out=z1)
            _kernels.call("update", z0, z1, h, dt_t, h_next)
        else:
            s0, w0, w1 = slots
            _kernels.call("predictor_record", z0, h, dt_t, ht, s0)
            torch.mm(ht, WT, out=z1)
            _kernels.call("update_record", z0, z1, h, s0, dt_t, h_next, w0, w1)

    def _integrate_autograd(self, weight, y0, dt, n, t1, record):
        """The same map in differentiable operations: ``Phi = phi0 z0 + phi1 z1`` with the
        weights held constant, whose autograd derivative is ``Phi``'s (they are its partials).
        A recorded tape holds detached copies."""
        WT = weight.T
        tape = SwitchingTape(self.a, self.b) if record else None
        stored = []
        h = y0
        for _ in range(n):
            z0 = h @ WT  # (B, H)
            ht = h + dt * torch.relu(z0)
            z1 = ht @ WT  # (B, H)
            phi0, phi1, s0 = switching_weights(z0, z1)
            if tape is not None:
                stored.append((h.detach(), ht.detach(), phi0 - s0, phi1, s0))
                tape.dts.append(dt)
            h = h + dt * (phi0 * z0 + phi1 * z1)
        if tape is not None:
            tape.input_buffer = torch.stack([torch.stack(s[:2]) for s in stored])
            tape.weights = torch.stack([torch.stack(s[2:4]) for s in stored])
            tape.masks = torch.stack([s[4] for s in stored])
            tape.inputs = [list(u.unbind(0)) for u in tape.input_buffer]
            tape.aux = [[m, None] for m in tape.masks]
        return Solution(h, t1, 2 * n, tape)


@torch.no_grad()
def switching_weights(
    z0: torch.Tensor, z1: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``phi0, phi1`` (the partials of ``Phi``) and ``s0 = 1[z0 > 0]``, elementwise, ``(B, H)``."""
    p = torch.relu(z0) + torch.relu(z1)
    total = z0.abs() + z1.abs()
    theta = p / total.clamp_min(torch.finfo(z0.dtype).tiny)
    s0 = torch.sign(torch.relu(z0))
    phi0 = 0.5 * theta * theta + s0 * theta * (1 - theta)
    return phi0, theta - phi0, s0


def switching_integral(z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """``Phi(z0, z1) = int_0^1 relu((1 - s) z0 + s z1) ds``, elementwise (the oracle's form)."""
    p = torch.relu(z0) + torch.relu(z1)
    total = z0.abs() + z1.abs()
    return 0.5 * p * p / total.clamp_min(torch.finfo(z0.dtype).tiny)


__all__ = ["SwitchingHeun", "SwitchingTape", "switching_integral", "switching_weights"]
