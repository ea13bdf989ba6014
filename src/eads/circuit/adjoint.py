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

With :class:`eads.solve.SwitchingHeun` the forward map locates each diode switch inside its
step; its adjoint (:func:`_switching_adjoint`) is exact for that map as well, and since the map is
smooth across switches the gradient converges at order two instead of one
(tests/circuit/test_switching_adjoint.py), which is what lets EC-Train take a quarter of the
evaluations at equal gradient error (benchmarks/README.md).

Memory: the forward trajectory is stored (the tape), not recomputed backwards: for a Runge-Kutta
method the stage inputs and the diode states (as 0/1 floats), ``2 * steps * stages * B * H``
values; for SwitchingHeun ``5 * steps * B * H`` (``Tape.nbytes``). The adjoint writes its stage
weights over the tape's diode states in place, so it needs no second buffer of that size.
Integrating ``h`` backward in time instead would save that memory but is unstable (the backward
coupling dynamics amplify rounding error) and would double the matrix products. Every sample's
circuit is independent, so on a CPU the batch runs in row blocks (:data:`BLOCK_BYTES`): ``B``
above is then a block's rows, which bounds the tape's memory and keeps it nearer the core.

All per-stage outer products of ``dL/dJ`` are stacked into a single ``(H, K) x (K, H)`` matrix
product (``K = steps * stages * B``).
"""

from __future__ import annotations

import torch

from eads._errors import ConfigError, DataError
from eads.circuit._checks import check_batch
from eads.circuit.eads import EADS
from eads.solve import AbstractFixedStep, EulerMaruyama, SwitchingHeun, Tape
from eads.solve.switching import SwitchingTape


def error_currents(model: EADS, h_T: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``I_in - I_R`` at each clamped output node, ``(B, M)``."""
    return torch.addmm(y, h_T, model.Q, beta=-model.r_output)  # (B, M): Q^T h - r_y y, one pass


#: EC-Train on a CPU runs the batch in row blocks whose tape and temporaries take about this many
#: bytes, so that they stay nearer the core between the forward pass, the adjoint and ``dL/dJ``
#: (and the tape's memory is bounded by the block, not the batch)...
BLOCK_BYTES = 8 * 2**20
#: ... but no block under this many rows. Measured on one thread (benchmarks/README.md): blocks
#: of 512 rows are 1.05-1.07x one block at B = 1024, H = 128, 1.3x at B = 4096 and 1.08x at
#: H = 256, and even (0.98-1.0x) at H = 512 and 1024, where blocks of 128 rows lose 3-7 % (each
#: product then reads all of ``J`` for fewer rows, and a block costs ~0.3 ms of Python).
MIN_BLOCK_ROWS = 512


@torch.no_grad()
def adjoint_gradients(
    model: EADS, x: torch.Tensor, y: torch.Tensor, *, block_rows: int | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """EC-Train's loss and gradients ``{'P', 'J', 'Q'}`` (and ``'P_ref'``) of the batch-mean loss.

    Runs the circuit forward once (recording the tape), measures the error currents with the
    outputs clamped to ``y``, runs the adjoint circuit from ``T`` back to ``0`` and returns
    ``(loss, grads)``; ``grads[name]`` has the shape of ``model.<name>``.

    Every sample's circuit is independent, so the batch may run in blocks of ``block_rows``
    samples whose gradients add up (equal to one block to rounding). By default
    (:func:`default_block_rows`) a CPU batch is cut into equal blocks of about
    :data:`BLOCK_BYTES` of tape each; other devices, transient stages and solvers whose tape
    size is not known in advance run as one block.
    """
    x = model.check_inputs(x)
    y = check_batch("y", y, model.n_outputs, "n_outputs").to(model.P.dtype)
    if y.shape[0] != x.shape[0]:
        raise DataError(
            f"x and y must hold the same number of samples, got {x.shape[0]} and {y.shape[0]}."
        )
    if block_rows is None:
        block_rows = default_block_rows(model, x)
    elif isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1:
        raise ConfigError(f"block_rows must be a positive integer or None, got {block_rows!r}.")
    B = x.shape[0]
    n_blocks = -(-B // block_rows)
    rows = -(-B // n_blocks)  # equal blocks (the last may be shorter): one tape shape, reused
    # the projection's adjoint: dL/d(drive) = c a(0) / r_h, c the settled fraction (1 if settled)
    scale = _settled_fraction(model, x) / model.r_hidden
    total = None
    for start in range(0, B, rows):
        part = _block_gradients(model, x[start : start + rows], y[start : start + rows], B, scale)
        if total is None:
            total = part
        else:
            for name, value in part.items():
                total[name].add_(value)
    sq_sum = total.pop("loss")
    return sq_sum / (B * model.n_outputs), total


def default_block_rows(model: EADS, x: torch.Tensor) -> int:
    """Rows per block of :func:`adjoint_gradients` for the batch ``x``: on a CPU, as many as fit
    :data:`BLOCK_BYTES` of tape and buffers (at least :data:`MIN_BLOCK_ROWS`); elsewhere, or
    where blocks are not known to be safe and sized (:func:`_values_per_row`), the whole batch."""
    B = x.shape[0]
    values = _values_per_row(model)
    if x.device.type != "cpu" or values is None:
        return B
    per_row = values * model.n_hidden * x.element_size()
    return min(B, max(MIN_BLOCK_ROWS, BLOCK_BYTES // per_row))


def _values_per_row(model: EADS) -> int | None:
    """Values per sample and hidden node that one block holds (its tape and the buffers beside
    it), or None where blocks could change the result or the tape's size is not known ahead:
    transient stages settle the whole batch to one tolerance, a subclass's own coupling stage
    (the non-ideal circuit) may draw noise for the whole batch, and an adaptive or stochastic
    solver chooses its steps or draws its noise per call."""
    solver = model.solver
    if model.stages != "equilibrium" or type(model).couple is not EADS.couple:
        return None
    if isinstance(solver, SwitchingHeun):
        return 5 * solver.n_steps + 6  # the tape, and the scratch the forward and adjoint share
    fused = type(solver).integrate_rectified is AbstractFixedStep.integrate_rectified
    if fused and not isinstance(solver, EulerMaruyama):
        stages = len(solver.b)
        return 2 * solver.n_steps * stages + 2 * stages + 3  # tape, stage and adjoint buffers
    return None


def _block_gradients(
    model: EADS, x: torch.Tensor, y: torch.Tensor, B: int, scale: float
) -> dict[str, torch.Tensor]:
    """One block's share of the batch-mean gradients (and its sum of squared errors, ``loss``).

    ``B`` is the whole batch's size, so that the blocks' shares add up to the batch mean.
    """
    M = y.shape[1]
    J, Q = model.J.detach(), model.Q.detach()
    h0 = model.project(x)  # (R, H)
    sol = model.couple(h0, record=True)
    h_T, tape = sol.y, sol.tape
    err = error_currents(model, h_T, y)  # (R, M)
    sq_sum = err.square().sum()
    delta = err.mul_(2.0 / (M * B))  # (R, M): dL/dI, the batch mean folded in
    grad_Q = h_T.T @ delta  # (H, M)

    scratch = tape.scratch if isinstance(tape, SwitchingTape) else None
    a = delta @ Q.T if scratch is None else torch.mm(delta, Q.T, out=scratch[2])  # (R, H): Q delta
    if isinstance(tape, SwitchingTape):
        a, grad_J = _switching_adjoint(tape, a, J)
    else:
        a, grad_J = _runge_kutta_adjoint(tape, a, J)
    a_drive = a if scale == 1.0 else scale * a  # (R, H); a product by 1 is exact: skip the pass
    grads = {"loss": sq_sum, "P": a_drive.T @ x, "J": grad_J, "Q": grad_Q}  # dL/dP = a_drive^T x
    if model.reference:
        grads["P_ref"] = model.reference_voltage * a_drive.sum(0)  # (H,): the same local rule
    return grads


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


def _runge_kutta_adjoint(
    tape: Tape, a: torch.Tensor, J: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The adjoint scheme of an explicit Runge-Kutta tape: ``(a(0), dL/dJ)`` from ``a(T)``.

    Per step, backwards through the stages (``dk_i`` the adjoint of stage derivative ``k_i``,
    ``g_i`` that of stage input ``u_i``)::

        dk_i = dt (b_i a + sum_{j>i} A_ji g_j),   w_i = s_i * dk_i,   g_i = w_i J,
        a <- a + sum_i g_i,                        dL/dJ += sum_i w_i^T u_i

    Where the tape's diode states are floats, ``w_i`` overwrites ``s_i`` in place (no second
    tape-sized buffer) and the sum over the stages' ``g_i`` is folded into the last product
    (``addmm``). ``dL/dJ`` is one ``(H, K) x (K, H)`` product at the end.
    """
    A, b = tape.a, tape.b
    n_stages = len(b)
    H = J.shape[0]
    # read[j]: an earlier stage's dk takes g_j (some A[j][i] != 0, i < j); otherwise g_j only
    # joins the running sum, and the product adds it there directly
    read = [j < len(A) and any(c != 0.0 for c in A[j]) for j in range(n_stages)]
    in_place = tape.aux_buffer is not None and tape.aux_buffer.dtype == a.dtype
    zero = a.new_zeros(())
    g = [a.new_empty(a.shape) if read[j] else None for j in range(n_stages)]
    e_buf = a.new_empty(a.shape)
    sums = (a.new_empty(a.shape), a.new_empty(a.shape))  # ping-pong a(t_k)
    weighted, inputs = [], []
    for n, k in enumerate(reversed(range(tape.n_steps))):
        dt, u, s = tape.dts[k], tape.inputs[k], tape.aux[k]
        total = None  # a + the g_i so far
        have = [False] * n_stages
        for i in reversed(range(n_stages)):
            terms = [(A[j][i], g[j]) for j in range(i + 1, n_stages)
                     if i < len(A[j]) and A[j][i] != 0.0 and have[j]]  # fmt: skip
            if b[i] != 0.0:  # dk_i = scale * e
                scale, e, coefs = dt * b[i], a, [(c / b[i], gj) for c, gj in terms]
            elif terms:
                c0 = terms[0][0]
                scale, e, coefs = dt * c0, terms[0][1], [(c / c0, gj) for c, gj in terms[1:]]
            else:  # stage i's derivative never reaches the output: w_i = 0
                if in_place:
                    s[i].zero_()
                continue
            if coefs:
                e = torch.add(e, coefs[0][1], alpha=coefs[0][0], out=e_buf)
                for c, gj in coefs[1:]:
                    e.add_(gj, alpha=c)
            si = s[i] if s[i].dtype == a.dtype else s[i].to(a.dtype)
            if in_place:  # w_i = s_i * dk_i (B, H), written over s_i
                w = torch.addcmul(zero, e, si, value=scale, out=s[i])
            else:
                w = torch.addcmul(zero, e, si, value=scale)
                weighted.append(w)
                inputs.append(u[i])
            # g_i = w_i J: back through the coupling conductances, J^T (s * dk)
            if read[i]:
                torch.mm(w, J, out=g[i])
                have[i] = True
                if total is None:
                    total = torch.add(a, g[i], out=sums[n % 2])
                else:
                    total.add_(g[i])
            elif total is None:
                total = torch.addmm(a, w, J, out=sums[n % 2])
            else:
                total.addmm_(w, J)
        if total is not None:
            a = total
    if in_place:
        grad_J = tape.aux_buffer.view(-1, H).T @ tape.input_buffer.view(-1, H)  # (H, K) @ (K, H)
    else:
        grad_J = torch.cat(weighted).T @ torch.cat(inputs)
    return a, grad_J


def _switching_adjoint(
    tape: SwitchingTape, a: torch.Tensor, J: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact adjoint of :class:`eads.solve.SwitchingHeun`: ``(a(0), dL/dJ)`` from ``a(T)``.

    Forward step: ``z0 = h J^T``, ``h~ = h + dt relu(z0)``, ``z1 = h~ J^T``,
    ``h' = h + dt (phi0 z0 + phi1 z1)``. Backwards, with ``a`` the adjoint of ``h'`` and
    ``w = dL/dz / dt``::

        w1 = phi1 a,   t = a + dt w1 J                  (t: a plus the adjoint of h~)
        w0 = (phi0 - s0) a + s0 t                       (= phi0 a + s0 * dt w1 J)
        a <- t + dt w0 J,   dL/dJ += dt (w0^T h + w1^T h~)

    The ``w`` overwrite the tape's weights in place, and both products accumulate into ``a``
    itself (``addmm_``: an ``addmm`` into another buffer would first copy ``a`` there), so ``a``
    is overwritten too; ``(phi0 - s0) a`` is taken before the first product moves it on. Five
    passes over ``(B, H)`` arrays a step besides the products, as many as a fused kernel for
    ``w0`` plus that copy, and faster than it (``benchmarks/README.md``).
    """
    H = J.shape[0]
    U, Wt, S0 = tape.input_buffer, tape.weights, tape.masks
    w0s, w1s, s0s = Wt[:, 0].unbind(0), Wt[:, 1].unbind(0), S0.unbind(0)  # (B, H) views
    for k in reversed(range(tape.n_steps)):
        dt, w0, w1 = tape.dts[k], w0s[k], w1s[k]
        w1.mul_(a)  # w1 = phi1 a  (B, H)
        w0.mul_(a)  # (phi0 - s0) a, before a moves on
        a.addmm_(w1, J, alpha=dt)  # t = a + dt w1 J, in place
        w0.addcmul_(s0s[k], a)  # w0 = (phi0 - s0) a + s0 t
        a.addmm_(w0, J, alpha=dt)  # a <- t + dt w0 J
    grad_J = Wt.view(-1, H).T @ U.view(-1, H)  # (H, K) @ (K, H)
    return a, grad_J.mul_(tape.dts[0]) if tape.n_steps else grad_J
