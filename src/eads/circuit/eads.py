"""The EADS circuit: projection, diode-rectified coupling, readout (Liu et al., ICML 2025).

Layout: circuit state is ``(batch, nodes)`` throughout: inputs ``x (B, N)``, hidden nodes
``h (B, H)``, outputs ``y (B, M)``. Node values are capacitor voltages; parameters are
conductances; time is in units of the node time constant ``C / g_unit``.

Symbols (seed paper Sec. 2.1, 3 and Appendix A) and attributes:

=========  ==================  ===============================================================
symbol     attribute           meaning
=========  ==================  ===============================================================
``P``      ``P`` (H, N)        input-to-hidden projection conductances
``J``      ``J`` (H, H)        hidden coupling conductances (behind the diodes)
``Q``      ``Q`` (H, M)        hidden-to-output readout conductances
``r_h``    ``r_hidden``        self-reaction conductance of a hidden node
``r_y``    ``r_output``        self-reaction conductance of an output node
``T``      ``duration``        how long the coupling stage runs
``p``      ``P_ref`` (H,)      reference-node-to-hidden conductances (not in the paper; below)
``v_ref``  ``reference_voltage``  the reference node's clamped voltage (state units)
=========  ==================  ===============================================================

The three stages:

1. projection: ``dh/dt = P x + p v_ref - r_h h`` from ``h = 0``; settles to
   ``h0 = (P x + p v_ref) / r_h``;
2. coupling, for a time ``T``: ``dh/dt = relu(J h)``, the relu standing for the diodes (we use
   ``f(h) = relu(J h)`` throughout; the paper's appendix swaps J's indices between Eq. 5 and 19);
3. readout: ``dy/dt = Q^T h(T) - r_y y`` from ``y = 0``; settles to ``y = Q^T h(T) / r_y``.

The reference node (``reference=True``, the default) departs from the paper's equations. It is
a node clamped at the constant voltage ``v_ref`` (a reference-voltage source on the chip), wired
into every hidden node through its own trained conductances ``p``; EC-Train updates them with
the same local rule as ``P`` (``dL/dp = v_ref a(0) / r_h``, an input that is always ``v_ref``).
Why: without a constant node every stage is positively homogeneous (``relu(J c h) = c relu(J h)``
for ``c > 0``), so ``model(c x) == c model(x)`` exactly, and the circuit can learn no offset, no
threshold and no curvature that does not scale with its input. ``reference=False`` gives the
paper's literal equations.

``stages="equilibrium"`` takes the linear stages' closed-form equilibria (fast, exact in the
limit of a fully settled stage); ``stages="transient"`` integrates them until the node currents
fall below ``settle_tolerance`` and records how long that took.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from eads._errors import ConfigError
from eads.circuit._checks import (
    check_batch,
    check_positive,
    check_reference,
    check_size,
    check_stable,
)
from eads.solve import RK38, AbstractSolver, Solution, settle

_STAGE_MODES = ("equilibrium", "transient")


@dataclass
class StageTimes:
    """How long each stage ran for one batch, in node time constants, per sample ``(batch,)``."""

    projection: torch.Tensor
    coupling: float
    readout: torch.Tensor


class EADS(nn.Module):
    """An EADS circuit with ``n_inputs`` inputs, ``n_hidden`` hidden and ``n_outputs`` output nodes.

    ``model(x)`` anneals the circuit with inputs ``x (batch, n_inputs)`` clamped and returns the
    outputs ``y (batch, n_outputs)``. The coupling stage is integrated by ``solver`` (a strategy
    object, default ``RK38(n_steps=8)``, the 3/8 rule); the forward pass is differentiable by
    autograd (the digital baseline, :class:`eads.Backprop`), and :func:`eads.ectrain_gradients`
    computes the same gradient the way the hardware does, through the adjoint circuit.

    Initial conductances: ``P ~ N(0, 1/N)``, ``Q ~ N(0, 1/H)``, ``J ~ N(0, coupling_init^2 / H)``
    so that the coupling stage grows states by at most about ``exp(coupling_init * T)``.

    Do not use a large ``duration`` with large couplings: ``relu(J h)`` can grow exponentially,
    and a state that leaves ``rail`` raises :class:`eads.UnstableCircuitError`.
    """

    def __init__(
        self,
        n_inputs: int,
        n_hidden: int,
        n_outputs: int,
        *,
        duration: float = 1.0,
        r_hidden: float = 1.0,
        r_output: float = 1.0,
        solver: AbstractSolver | None = None,
        stages: str = "equilibrium",
        settle_tolerance: float = 1e-6,
        settle_dt: float = 0.05,
        rail: float = 1e4,
        coupling_init: float = 0.5,
        reference: bool = True,
        reference_voltage: float = 1.0,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        self.n_inputs = check_size("n_inputs", n_inputs)
        self.n_hidden = check_size("n_hidden", n_hidden)
        self.n_outputs = check_size("n_outputs", n_outputs)
        self.duration = check_positive("duration", duration)
        self.r_hidden = check_positive("r_hidden", r_hidden)
        self.r_output = check_positive("r_output", r_output)
        self.settle_tolerance = check_positive("settle_tolerance", settle_tolerance)
        self.settle_dt = check_positive("settle_dt", settle_dt)
        self.rail = check_positive("rail", rail)
        self.reference = check_reference(reference, reference_voltage, self.rail)
        self.reference_voltage = float(reference_voltage)
        if stages not in _STAGE_MODES:
            raise ConfigError(f"stages must be one of {_STAGE_MODES}, got {stages!r}.")
        if solver is not None and not isinstance(solver, AbstractSolver):
            raise ConfigError(f"solver must be a solver object such as RK4(), got {solver!r}.")
        self.stages = stages
        self.solver = solver or RK38(n_steps=8)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        H, N, M = n_hidden, n_inputs, n_outputs

        def init(shape, std):
            return nn.Parameter(
                (torch.randn(shape, generator=gen, dtype=torch.float64) * std).to(
                    device=device, dtype=dtype
                )
            )

        self.P = init((H, N), 1 / math.sqrt(N))
        self.J = init((H, H), check_positive("coupling_init", coupling_init) / math.sqrt(H))
        self.Q = init((H, M), 1 / math.sqrt(H))
        # drawn last, so P, J and Q start where a circuit without the reference starts; scaled so
        # that the reference drives a hidden node as much as one standardised input does
        ref_std = 1 / (math.sqrt(N) * abs(self.reference_voltage))
        self.register_parameter("P_ref", init((H,), ref_std) if self.reference else None)

    @property
    def conductance_names(self) -> tuple[str, ...]:
        """The trained conductance arrays: ``("P", "J", "Q")`` plus ``"P_ref"`` with a reference."""
        return ("P", "J", "Q", "P_ref") if self.reference else ("P", "J", "Q")

    def reference_drive(self, P_ref: torch.Tensor | None = None) -> torch.Tensor | float:
        """The reference node's current into each hidden node, ``p v_ref (H,)`` (0 without it)."""
        P_ref = self.P_ref if P_ref is None else P_ref
        return P_ref * self.reference_voltage if self.reference else 0.0

    def extra_repr(self) -> str:
        return (
            f"n_inputs={self.n_inputs}, n_hidden={self.n_hidden}, n_outputs={self.n_outputs}, "
            f"duration={self.duration}, solver={self.solver!r}, stages={self.stages!r}, "
            f"reference={self.reference_voltage if self.reference else None}"
        )

    # -- the three stages ------------------------------------------------------------------
    def check_inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = check_batch("x", x, self.n_inputs, "n_inputs")
        return x.to(self.P.dtype)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Projection: ``h0 = (P x + p v_ref) / r_h`` (or its transient), ``(B, N) -> (B, H)``."""
        # one pass: the reference current is added inside the product (addmm), and a division
        # by r_h = 1 (exact) is skipped
        ref = self.reference_drive()
        if isinstance(ref, torch.Tensor):
            drive = torch.addmm(ref, x, self.P.T)  # (B, H)
        else:
            drive = x @ self.P.T  # (B, H)
        if self.stages == "equilibrium":
            return drive if self.r_hidden == 1.0 else drive / self.r_hidden
        h0, _ = self._settle_linear(drive, self.r_hidden)
        return h0

    def coupling_field(self, t: float, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``f(h) = relu(J h)`` and the diode states ``s = 1[J h > 0]`` as 0/1 values of ``h``'s
        dtype, both ``(B, H)``."""
        k = torch.relu(h @ self.J.T)  # (B, H)
        return k, torch.sign(k)

    def couple(self, h0: torch.Tensor, *, record: bool = False) -> Solution:
        """Coupling stage: integrate ``dh/dt = relu(J h)`` over ``[0, T]`` from ``h0``.

        The field is handed to the solver as the rectified linear map it is
        (:meth:`eads.solve.AbstractSolver.integrate_rectified`), so a fixed-step solver fuses its
        stages into preallocated buffers and :class:`eads.solve.SwitchingHeun` can locate the
        diode switches. With ``record=True`` the solution carries a :class:`eads.solve.Tape` of
        every stage input and diode state, which the adjoint circuit reuses (memory:
        ``Tape.nbytes``; for a Runge-Kutta method ``2 * steps * stages * B * H`` values).
        """
        sol = self.solver.integrate_rectified(self.J, h0, 0.0, self.duration, record=record)
        check_stable(
            "coupling",
            sol.y,
            self.rail,
            f"lower the duration (T={self.duration:g}) or the coupling conductances J",
        )
        return sol

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Readout stage: ``y = Q^T h / r_y`` (or its transient), ``(B, H) -> (B, M)``."""
        drive = h @ self.Q  # (B, M)
        if self.stages == "equilibrium":
            return drive / self.r_output
        y, _ = self._settle_linear(drive, self.r_output)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check_inputs(x)
        return self.readout(self.couple(self.project(x)).y)

    # -- transients and timing -------------------------------------------------------------
    def _settle_linear(self, drive: torch.Tensor, r: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Charge nodes from 0 under ``dv/dt = drive - r v`` until the currents settle."""
        start = torch.zeros_like(drive)
        return settle(
            lambda t, v: drive - r * v,
            start,
            tolerance=self.settle_tolerance,
            dt=self.settle_dt,
            max_time=50.0 / r + 50.0,
            rail=self.rail,
        )

    def stage_times(self, x: torch.Tensor) -> StageTimes:
        """Simulate every stage as a transient and return how long each took (time constants)."""
        x = self.check_inputs(x)
        with torch.no_grad():
            h0, t_proj = self._settle_linear(x @ self.P.T + self.reference_drive(), self.r_hidden)
            hT = self.couple(h0).y
            _, t_read = self._settle_linear(hT @ self.Q, self.r_output)
        return StageTimes(t_proj, self.duration, t_read)

    def coupling_trajectory(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden-node voltages along the coupling stage at the solver's step times.

        Returns ``times (K+1,)`` and ``h (K+1, B, H)``; time 0 is the end of the projection.
        """
        x = self.check_inputs(x)
        with torch.no_grad():
            sol = self.couple(self.project(x), record=True)
        tape = sol.tape
        states = [steps[0] for steps in tape.inputs] + [sol.y]
        times = [0.0]
        for dt in tape.dts:
            times.append(times[-1] + dt)
        return torch.tensor(times, dtype=sol.y.dtype), torch.stack(states)
