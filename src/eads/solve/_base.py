"""Explicit Runge-Kutta integration as strategy objects.

A solver integrates ``dy/dt = f(t, y)`` for a batch of states laid out as ``(batch, nodes)``. All
solvers here are explicit Runge-Kutta methods given by a Butcher tableau ``(a, b, c)``; the fixed-
step ones take ``n_steps`` equal steps, the adaptive one chooses its steps by an embedded error
estimate. Each can record a *tape* of its stages (the stage inputs ``u_i`` and whatever auxiliary
tensor the vector field returns with its derivative, e.g. the diode states), which the adjoint
circuit in :mod:`eads.circuit` reuses instead of recomputing the forward pass.

For the rectified linear field of the coupling stage, ``relu(y W^T)``, every solver also has
:meth:`AbstractSolver.integrate_rectified`: the fixed-step ones run it on buffers allocated once,
and :mod:`eads.solve.switching` adds a method that locates the diode switches inside a step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from eads._errors import ConfigError
from eads.solve._workspace import Workspace

#: A vector field: ``f(t, y) -> dy`` or, with ``aux=True``, ``f(t, y) -> (dy, aux)``.
VectorField = Callable[[float, torch.Tensor], torch.Tensor | tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Tape:
    """The stages of a recorded integration, for an adjoint pass.

    ``dts[k]`` is step k's size; ``inputs[k][i]`` the input ``u_i`` of stage i of step k
    ``(batch, nodes)``; ``aux[k][i]`` the auxiliary tensor the field returned there (or None).
    """

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    dts: list[float] = field(default_factory=list)
    inputs: list[list[torch.Tensor]] = field(default_factory=list)
    aux: list[list[torch.Tensor | None]] = field(default_factory=list)
    input_buffer: torch.Tensor | None = None  #: (steps, stages, B, H) when preallocated
    aux_buffer: torch.Tensor | None = None  #: (steps, stages, B, H) when preallocated

    @property
    def n_steps(self) -> int:
        return len(self.dts)

    @property
    def nbytes(self) -> int:
        """Bytes the tape holds (each stored tensor counted once; views into a buffer are free)."""
        storages = {}
        for t in self._tensors():
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return sum(storages.values())

    def _tensors(self):
        for t in (self.input_buffer, self.aux_buffer):
            if t is not None:
                yield t
        for row in (*self.inputs, *self.aux):
            yield from (t for t in row if t is not None)


@dataclass
class Solution:
    """Final state, the time reached, the number of field evaluations, and the tape if recorded."""

    y: torch.Tensor
    t: float
    n_evals: int
    tape: Tape | None = None


class AbstractSolver:
    """Base class: an explicit Runge-Kutta method with tableau ``a`` (strictly lower), ``b``, ``c``.

    Subclasses set the tableau and ``order``; ``integrate`` takes the steps.
    """

    name: str = "abstract"
    order: int = 0
    a: tuple[tuple[float, ...], ...] = ()
    b: tuple[float, ...] = ()
    c: tuple[float, ...] = ()

    def step(
        self,
        f: VectorField,
        t: float,
        y: torch.Tensor,
        dt: float,
        aux: bool = False,
        slots: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor | None]]:
        """One step. Returns the new state, the stage inputs, stage derivatives and stage aux.

        With ``slots = (inputs (stages, B, H), aux (stages, B, H))`` the stage inputs and aux are
        written straight into those preallocated buffers (the tape), with no extra copies.
        """
        inputs, ks, auxes = [], [], []
        for i, (ai, ci) in enumerate(zip(self.a, self.c, strict=True)):
            terms = [(dt * ai[j], ks[j]) for j in range(i) if ai[j] != 0.0]
            if slots is not None:
                u = slots[0][i]
                if terms:
                    torch.add(y, terms[0][1], alpha=terms[0][0], out=u)
                    for coef, k in terms[1:]:
                        u.add_(k, alpha=coef)
                else:
                    u.copy_(y)
            else:
                u = y
                for coef, k in terms:
                    u = u + coef * k
            out = f(t + ci * dt, u)
            if aux:
                k, ax = out
                if slots is not None and slots[1] is not None:
                    slots[1][i].copy_(ax)
                    ax = slots[1][i]
            else:
                k, ax = out, None
            inputs.append(u)
            ks.append(k)
            auxes.append(ax)
        y_new = y
        for bi, k in zip(self.b, ks, strict=True):
            if bi != 0.0:
                y_new = y_new + (dt * bi) * k
        return y_new, inputs, ks, auxes

    def integrate(
        self,
        f: VectorField,
        y0: torch.Tensor,
        t0: float,
        t1: float,
        *,
        record: bool = False,
        aux: bool = False,
        aux_dtype: torch.dtype = torch.bool,
    ) -> Solution:
        """Integrate from ``t0`` to ``t1``; ``aux``: the field returns ``(dy, aux)`` where aux is
        a per-node tensor like ``y`` of dtype ``aux_dtype`` (e.g. the diode states)."""
        raise NotImplementedError

    def integrate_rectified(
        self,
        weight: torch.Tensor,
        y0: torch.Tensor,
        t0: float,
        t1: float,
        *,
        record: bool = False,
    ) -> Solution:
        """Integrate the rectified linear field ``dy/dt = relu(y W^T)``, ``W = weight (H, H)``.

        The field of the ideal EADS coupling stage. Knowing its form lets a solver fuse the stage
        arithmetic into preallocated buffers (fixed-step methods) or locate the diode switches
        inside a step (:class:`eads.solve.SwitchingHeun`). With ``record`` the tape's aux holds
        the diode states ``1[y W^T > 0]`` as 0/1 values of ``y0``'s dtype. The base version calls
        :meth:`integrate` on the field.
        """
        WT = weight.T  # (H, H): y W^T in the (batch, nodes) layout
        if record:

            def f(t, y):
                k = torch.relu(y @ WT)  # (B, H)
                return k, torch.sign(k)  # the diode states as 0/1 floats

            return self.integrate(f, y0, t0, t1, record=True, aux=True, aux_dtype=y0.dtype)
        return self.integrate(lambda t, y: torch.relu(y @ WT), y0, t0, t1)


def needs_autograd(*tensors: torch.Tensor) -> bool:
    """Whether autograd would record operations on ``tensors`` (then no ``out=`` buffers)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class AbstractFixedStep(AbstractSolver):
    """A fixed-step method: ``n_steps`` equal steps over the interval."""

    def __init__(self, n_steps: int = 8):
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ConfigError(f"n_steps must be a positive integer, got {n_steps!r}.")
        self.n_steps = n_steps

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_steps={self.n_steps})"

    @property
    def workspace(self) -> Workspace:
        """The buffers :meth:`integrate_rectified` records its tape into, kept between calls: a
        recorded tape is valid until this solver's next recorded integration of the same shape
        (the adjoint consumes it at once). :class:`eads.solve.SwitchingHeun` keeps its ``(B, H)``
        temporaries here too (6, and 2 more without a tape), also after a forward pass alone.
        ``workspace.clear()`` frees them."""
        ws = self.__dict__.get("_workspace")
        if ws is None:
            ws = self.__dict__["_workspace"] = Workspace()
        return ws

    def integrate(self, f, y0, t0, t1, *, record=False, aux=False, aux_dtype=torch.bool):
        dt = (t1 - t0) / self.n_steps
        tape = Tape(self.a, self.b) if record else None
        if record:
            # The whole tape in two preallocated buffers: (steps, stages, B, H) stage inputs and
            # aux (allocated on the first aux seen), so the adjoint can stack without copying.
            stages = len(self.b)
            tape.input_buffer = y0.new_empty((self.n_steps, stages, *y0.shape))
            if aux:
                shape = (self.n_steps, stages, *y0.shape)
                tape.aux_buffer = torch.empty(shape, dtype=aux_dtype, device=y0.device)
        y = y0
        for n in range(self.n_steps):
            slots = None
            if record:
                slots = (tape.input_buffer[n], tape.aux_buffer[n] if aux else None)
            y, inputs, _, auxes = self.step(f, t0 + n * dt, y, dt, aux=aux, slots=slots)
            if tape is not None:
                tape.dts.append(dt)
                tape.inputs.append(inputs)
                tape.aux.append(auxes)
        return Solution(y, t1, self.n_steps * len(self.b), tape)

    def integrate_rectified(self, weight, y0, t0, t1, *, record=False):
        """``dy/dt = relu(y W^T)`` with every stage written into buffers allocated once.

        Same arithmetic as :meth:`integrate` on the field (equal to rounding), with fewer passes
        over memory: the stage inputs are built in their tape slots, ``y_{n+1}`` is written
        straight into the next step's first slot (no copy), the products land in preallocated
        stage buffers, the relu acts in place and the diode states are stored as 0/1 floats
        (``sign(relu(z))``), since float masks multiply several times faster than booleans.
        Where autograd must see the operations, it falls back to :meth:`integrate`.
        """
        if needs_autograd(weight, y0):
            return super().integrate_rectified(weight, y0, t0, t1, record=record)
        n, stages = self.n_steps, len(self.b)
        dt = (t1 - t0) / n
        WT = weight.T  # (H, H)
        tape = Tape(self.a, self.b) if record else None
        K = y0.new_empty((stages, *y0.shape))  # (stages, B, H): the stage derivatives
        if record:
            shape = (n, stages, *y0.shape)
            U = tape.input_buffer = self.workspace.get("inputs", shape, y0)  # stage inputs
            S = tape.aux_buffer = self.workspace.get("aux", shape, y0)  # diode states
            U[0, 0].copy_(y0)
            y = U[0, 0]
        else:
            scratch = y0.new_empty(y0.shape)  # a stage input, consumed by its product
            states = (y0.new_empty(y0.shape), y0.new_empty(y0.shape))  # ping-pong y_n
            y = y0
        for step in range(n):
            for i, ai in enumerate(self.a):
                terms = [(dt * coef, j) for j, coef in enumerate(ai) if coef != 0.0]
                if not terms:  # the stage input is y_n (the tape's slot 0 holds it already)
                    u = U[step, i].copy_(y) if record and i > 0 else y
                else:
                    u = U[step, i] if record else scratch
                    torch.add(y, K[terms[0][1]], alpha=terms[0][0], out=u)
                    for coef, j in terms[1:]:
                        u.add_(K[j], alpha=coef)
                torch.mm(u, WT, out=K[i])  # (B, H): z = u W^T
                K[i].clamp_(min=0.0)  # k = relu(z)
                if record:
                    torch.sign(K[i], out=S[step, i])  # 1[z > 0]
            if step == n - 1:
                y_next = torch.empty_like(y0)
            else:
                y_next = U[step + 1, 0] if record else states[step % 2]
            weights = [(dt * bi, i) for i, bi in enumerate(self.b) if bi != 0.0]
            torch.add(y, K[weights[0][1]], alpha=weights[0][0], out=y_next)
            for coef, i in weights[1:]:
                y_next.add_(K[i], alpha=coef)
            if record:
                tape.dts.append(dt)
                tape.inputs.append(list(U[step].unbind(0)))
                tape.aux.append(list(S[step].unbind(0)))
            y = y_next
        return Solution(y, t1, n * stages, tape)


class Euler(AbstractFixedStep):
    """Forward Euler, order 1: ``y' = y + dt f(t, y)``.

    The cheapest step; use it to mimic a crude hardware time discretisation, not for accuracy.
    """

    name, order = "euler", 1
    a, b, c = ((),), (1.0,), (0.0,)


class Midpoint(AbstractFixedStep):
    """Explicit midpoint rule, order 2."""

    name, order = "midpoint", 2
    a, b, c = ((), (0.5,)), (0.0, 1.0), (0.0, 0.5)


class RK4(AbstractFixedStep):
    """The classical 4-stage Runge-Kutta method, order 4 (for smooth fields).

    Where the diode states switch inside a step the field is only piecewise smooth: the observed
    order of the state drops to about 2, and that of the parameter gradient (which depends on the
    switching times) to about 1 (tests/circuit/test_adjoint.py). Choose the step count by the
    gradient error you need, not by habit; for training the ideal circuit,
    :class:`eads.solve.SwitchingHeun` reaches a given gradient error in about a quarter of the
    evaluations.
    """

    name, order = "rk4", 4
    a = ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0))
    b = (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    c = (0.0, 0.5, 0.5, 1.0)


class RK38(AbstractFixedStep):
    """Kutta's 3/8 rule, a 4-stage method of order 4 (torchdiffeq's ``rk4``).

    Its stages sit at ``t + dt/3`` and ``t + 2 dt/3``; with switching diodes its gradient error
    is often smaller than the classical RK4's at the same step count
    (``benchmarks/bench_core.py``).
    """

    name, order = "rk38", 4
    a = ((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0))
    b = (1 / 8, 3 / 8, 3 / 8, 1 / 8)
    c = (0.0, 1 / 3, 2 / 3, 1.0)


class Dopri5(AbstractSolver):
    """Dormand-Prince 5(4) with error control, order 5.

    Steps are accepted when the embedded error estimate, scaled by ``atol + rtol * |y|`` and
    measured in the RMS norm over the batch, is at most one; the next step size follows the
    standard controller ``dt * clip(0.9 * err^(-1/5), 0.2, 5)``. Use it for inference and
    reference solutions; for training prefer a fixed-step method, whose step count you choose by
    the gradient error (the adjoint here differentiates through the accepted steps but not through
    the step-size controller).
    """

    name, order = "dopri5", 5
    a = (
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    )
    b = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
    b_err = (
        35 / 384 - 5179 / 57600,
        0.0,
        500 / 1113 - 7571 / 16695,
        125 / 192 - 393 / 640,
        -2187 / 6784 + 92097 / 339200,
        11 / 84 - 187 / 2100,
        -1 / 40,
    )
    c = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)

    def __init__(self, rtol: float = 1e-6, atol: float = 1e-8, max_steps: int = 10_000):
        if not (rtol > 0 and atol > 0):
            raise ConfigError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}.")
        self.rtol, self.atol, self.max_steps = rtol, atol, max_steps

    def __repr__(self) -> str:
        return f"Dopri5(rtol={self.rtol}, atol={self.atol})"

    def integrate(self, f, y0, t0, t1, *, record=False, aux=False, aux_dtype=torch.bool):
        tape = Tape(self.a, self.b) if record else None
        y, t = y0, t0
        span = t1 - t0
        dt = span / 10
        n_evals = 0
        for _ in range(self.max_steps):
            if t >= t1 - 1e-12 * abs(span):
                return Solution(y, t1, n_evals, tape)
            dt = min(dt, t1 - t)
            y_new, inputs, ks, auxes = self.step(f, t, y, dt, aux=aux)
            n_evals += len(self.b)
            err = sum((dt * e) * k for e, k in zip(self.b_err, ks, strict=True) if e != 0.0)
            scale = self.atol + self.rtol * torch.maximum(y.abs(), y_new.abs())
            ratio = float(torch.sqrt(torch.mean((err / scale) ** 2)).detach())
            if not math.isfinite(ratio):
                ratio = 1e10
            if ratio <= 1.0:
                if tape is not None:
                    tape.dts.append(dt)
                    tape.inputs.append(inputs)
                    tape.aux.append(auxes)
                y, t = y_new, t + dt
            dt = dt * min(5.0, max(0.2, 0.9 * ratio ** (-0.2) if ratio > 0 else 5.0))
        raise ConfigError(
            f"Dopri5 did not reach t={t1} within max_steps={self.max_steps}; "
            "the dynamics may be unstable or too stiff."
        )


SOLVERS: dict[str, type[AbstractSolver]] = {
    "euler": Euler,
    "midpoint": Midpoint,
    "rk4": RK4,
    "rk38": RK38,
    "dopri5": Dopri5,
}


def make_solver(name: str, **kwargs) -> AbstractSolver:
    """Build a solver from its registry name (used by configs and the CLI)."""
    if name not in SOLVERS:
        raise ConfigError(f"Unknown solver {name!r}; valid solvers are {sorted(SOLVERS)}.")
    return SOLVERS[name](**kwargs)
