"""The adjoint circuit of EADS: EC-Train's gradient of the clamped-output error.

Seed paper Sec. 3.2 and Appendix A, with the index convention ``f(h) = relu(J h)``.

With inputs clamped to ``x`` and outputs to the truth ``y``, each output node sees the current
``I_in = Q^T h(T)`` from the hidden nodes and ``I_R = r_y y`` through its own resistor. The loss is
the batch mean of ``L = mean_m (I_in - I_R)^2``, and the error currents give

    delta = 2/M (I_in - I_R)                       (B, M)
    dL/dQ = h(T) delta^T
    a(T)  = Q delta,   da/dt = -J^T (s * a),   s = 1[J h(t) > 0]   (integrated from T back to 0)
    dL/dJ = int_0^T (s * a) h^T dt
    dL/dP = a(0) x^T / r_h
    dL/dp = v_ref sum_b a(0) / r_h                 (the reference node's conductances, if any)

The adjoint ODE is integrated with the *adjoint scheme* of the forward solver: the same Butcher
tableau run backwards, with each stage's diode states and stage voltages taken from the forward
pass's tape rather than recomputed, and ``dL/dJ`` accumulated with the solver's own quadrature
weights. This discretisation of the adjoint circuit is consistent with the continuous one at the
solver's order, and it is the unique one whose gradient equals the exact gradient of the simulated
forward pass (Hager 2000, Numer. Math. 87; Sanz-Serna 2016, SIAM Rev. 58): EC-Train on the
simulator therefore agrees with autograd through the solver to rounding error, and both converge
to the gradient of the continuous-time circuit as the step shrinks (tests/circuit/test_adjoint.py).

Memory: the forward trajectory is stored (the tape), not recomputed backwards: the stage inputs
``steps * stages * B * H`` floats plus one byte per diode state. Integrating ``h`` backward in time
instead would save that memory but is unstable (the backward coupling dynamics amplify rounding
error) and would double the matrix products.

All per-stage outer products of ``dL/dJ`` are stacked into a single ``(H, K) x (K, H)`` matrix
product (``K = steps * stages * B``).
"""

from __future__ import annotations

import torch

from eads._errors import DataError
from eads.circuit._checks import check_batch
from eads.circuit.eads import EADS


def error_currents(model: EADS, h_T: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``I_in - I_R`` at each clamped output node, ``(B, M)``."""
    return h_T @ model.Q - model.r_output * y  # (B, M)


@torch.no_grad()
def adjoint_gradients(
    model: EADS, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """EC-Train's loss and gradients ``{'P', 'J', 'Q'}`` (and ``'P_ref'``) of the batch-mean loss.

    Runs the circuit forward once (recording the tape), measures the error currents with the
    outputs clamped to ``y``, runs the adjoint circuit from ``T`` back to ``0`` and returns
    ``(loss, grads)``; ``grads[name]`` has the shape of ``model.<name>``.
    """
    x = model.check_inputs(x)
    y = check_batch("y", y, model.n_outputs, "n_outputs").to(model.P.dtype)
    if y.shape[0] != x.shape[0]:
        raise DataError(
            f"x and y must hold the same number of samples, got {x.shape[0]} and {y.shape[0]}."
        )
    B, M = y.shape
    J, Q = model.J.detach(), model.Q.detach()

    h0 = model.project(x)  # (B, H)
    sol = model.couple(h0, record=True)
    h_T, tape = sol.y, sol.tape
    err = error_currents(model, h_T, y)  # (B, M)
    loss = (err**2).mean()
    delta = (2.0 / (M * B)) * err  # (B, M): batch mean folded in
    grad_Q = h_T.T @ delta  # (H, M)

    a = delta @ Q.T  # (B, H): a(T) = Q delta
    A, b = tape.a, tape.b
    n_stages = len(b)
    # dL/dJ = sum over stages of w_i u_i^T: the w_i go into one buffer shaped like the tape's
    # inputs, so the whole integral is one (H, K) x (K, H) matrix product at the end.
    stacked = tape.input_buffer is not None
    W = torch.zeros_like(tape.input_buffer) if stacked else None
    weighted, inputs = [], []
    for k in reversed(range(tape.n_steps)):
        dt, u, s = tape.dts[k], tape.inputs[k], tape.aux[k]
        g: list[torch.Tensor | None] = [None] * n_stages
        for i in reversed(range(n_stages)):
            dk = a * (dt * b[i]) if b[i] != 0.0 else None  # dL/dk_i
            for j in range(i + 1, n_stages):
                if j < len(A) and i < len(A[j]) and A[j][i] != 0.0 and g[j] is not None:
                    dk = (
                        dk.add_(g[j], alpha=dt * A[j][i])
                        if dk is not None
                        else g[j] * (dt * A[j][i])
                    )
            if dk is None:
                continue
            if stacked:
                w = torch.mul(dk, s[i], out=W[k, i])  # (B, H): through the diodes, s * a
            else:
                w = dk * s[i]
                weighted.append(w)
                inputs.append(u[i])
            g[i] = w @ J  # (B, H): back through the coupling conductances, J^T (s * a)
        for gi in g:
            if gi is not None:
                a = a + gi
    H = J.shape[0]
    if stacked:
        grad_J = W.view(-1, H).T @ tape.input_buffer.view(-1, H)  # (H, K) @ (K, H)
    else:
        grad_J = torch.cat(weighted).T @ torch.cat(inputs)
    # the projection's adjoint: dL/d(drive) = c a(0) / r_h, c the settled fraction (1 if settled)
    a_drive = (_settled_fraction(model, x) / model.r_hidden) * a  # (B, H)
    grads = {"P": a_drive.T @ x, "J": grad_J, "Q": grad_Q}  # dL/dP (H, N) = a_drive^T x
    if model.reference:
        grads["P_ref"] = model.reference_voltage * a_drive.sum(0)  # (H,): the same local rule
    return loss, grads


def _settled_fraction(model: EADS, x: torch.Tensor) -> float:
    """``c`` in ``h0 = c (P x + p v_ref) / r_h``: 1 at equilibrium, ``1 - exp(-r_h t_s)`` for a
    transient projection.

    The projection is linear in its drive, so its adjoint is the same linear map; we measure the
    settled fraction ``c`` from the transient of a unit drive rather than assume full settling.
    """
    if model.stages == "equilibrium":
        return 1.0
    drive = torch.ones(1, 1, dtype=x.dtype, device=x.device)
    settled, _ = model._settle_linear(drive, model.r_hidden)
    return float(settled) * model.r_hidden
