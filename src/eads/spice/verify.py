"""Check the simulator against ngspice: same circuit, same inputs, compare and time.

The measure of disagreement (:func:`relative_difference`) is, per sample (or per time point),
the largest absolute difference over the nodes divided by the largest magnitude of the
simulator's nodes, then the maximum over samples (and time points). Dividing by each sample's
own scale, not by each node's value, keeps an output that happens to sit near 0 V from turning a
microvolt into a huge "relative" error.

The simulator is run in float64 (a copy of the model), so what is compared is the circuit and
the time integration, not float32 rounding. ``reference_rel_diff`` compares ngspice with a
tightly-tolerated float64 Dopri5 solution: it is ngspice's own error, the floor that refining the
simulator's steps approaches.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from eads._errors import ConfigError
from eads.circuit.eads import EADS
from eads.circuit.npgl import NPGL
from eads.hardware.constants import CircuitConstants
from eads.solve import AbstractSolver, Dopri5
from eads.spice.netlist import (
    AbstractRectifier,
    Netlist,
    SpiceSettings,
    _run_inputs,
    netlist_for,
)
from eads.spice.runner import SpiceResult, run_ngspice

log = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    """The result of :func:`verify_model` (differences are dimensionless, times in seconds)."""

    kind: str
    """``"eads"`` or ``"npgl"``."""
    n_samples: int
    output_rel_diff: float
    """Largest relative difference of the final outputs, ngspice vs the simulator."""
    trajectory_rel_diff: float | None
    """Largest relative difference of the hidden voltages at the simulator's coupling steps
    (EADS only; ngspice linearly interpolated between its own time points)."""
    reference_rel_diff: float | None
    """ngspice vs a float64 Dopri5 (rtol 1e-10) simulator: ngspice's own error (EADS only)."""
    solver_rel_diff: dict[str, float]
    """Output difference for each extra solver asked for (``repr(solver) -> difference``)."""
    spice_s: float
    """Wall-clock time of the ngspice process (start-up and netlist parsing included)."""
    spice_analysis_s: float | None
    """ngspice's own "Total analysis time" (the transient alone)."""
    simulator_s: float
    """Time of the model's forward pass as configured (best of 3)."""
    simulator_transient_s: float
    """Time of the forward pass with every stage simulated as a transient (best of 3)."""
    peak_v: float
    """Largest node voltage (volt) along the way, from the simulator."""
    supply_rail_v: float
    spice_outputs: np.ndarray = field(repr=False)
    """ngspice's outputs in state units, ``(batch, n_outputs)``."""
    simulator_outputs: np.ndarray = field(repr=False)
    """The simulator's outputs, ``(batch, n_outputs)``."""

    @property
    def ratio(self) -> float:
        """ngspice's time over the simulator's (as configured) for the same circuit."""
        return self.spice_s / self.simulator_s

    @property
    def transient_ratio(self) -> float:
        """ngspice's time over the all-transient simulator's."""
        return self.spice_s / self.simulator_transient_s

    def summary(self) -> dict:
        """A JSON-friendly dict of the scalar fields."""
        out = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("spice_outputs", "simulator_outputs")
        }
        out["ratio"], out["transient_ratio"] = self.ratio, self.transient_ratio
        return out


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max_rows ||actual - expected||_inf / ||expected||_inf`` over the last axis.

    ``(..., nodes)`` arrays of the same shape; a row whose expected values are all zero is
    measured against 1e-12 instead.
    """
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if a.shape != e.shape:
        raise ConfigError(f"cannot compare arrays of shapes {a.shape} and {e.shape}.")
    num = np.abs(a - e).max(axis=-1)
    den = np.maximum(np.abs(e).max(axis=-1), 1e-12)
    return float((num / den).max())


def _float64(model):
    m = copy.deepcopy(model).double()
    m.eval()
    return m


def simulate(model, x: np.ndarray, solver: AbstractSolver | None = None) -> np.ndarray:
    """The simulator's final outputs ``(batch, n_outputs)`` in float64, with ``solver`` if given."""
    m = _float64(model)
    if solver is not None:
        if not isinstance(m, EADS):
            raise ConfigError("Only an EADS circuit takes a coupling solver.")
        m.solver = solver
    with torch.no_grad():
        return m(torch.as_tensor(x, dtype=torch.float64)).numpy()


def _best_time(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _simulator_times(model, x: np.ndarray) -> tuple[float, float]:
    xt = torch.as_tensor(x, dtype=next(model.parameters()).dtype)
    transient = copy.deepcopy(model)
    transient.stages = "transient"
    with torch.no_grad():
        return _best_time(lambda: model(xt)), _best_time(lambda: transient(xt))


def _outputs(net: Netlist, res: SpiceResult) -> np.ndarray:
    vs = net.constants.volts_per_unit
    return np.array([[res.voltage(n)[-1] for n in nodes] for nodes in net.output_nodes]) / vs


def _trajectory_difference(model: EADS, x: np.ndarray, net: Netlist, res: SpiceResult) -> float:
    with torch.no_grad():
        times, h = _float64(model).coupling_trajectory(torch.as_tensor(x, dtype=torch.float64))
    ts = net.coupling_time_s(times.numpy())  # (K+1,) seconds
    h = h.numpy()  # (K+1, B, H)
    vs = net.constants.volts_per_unit
    worst = 0.0
    for b, nodes in enumerate(net.hidden_nodes):
        hs = np.stack([np.interp(ts, res.time, res.voltage(n)) for n in nodes], axis=1) / vs
        worst = max(worst, relative_difference(hs, h[:, b]))  # (K+1, H)
    return worst


def verify_model(
    model: EADS | NPGL,
    x: torch.Tensor | np.ndarray,
    *,
    solvers: Sequence[AbstractSolver] = (),
    constants: CircuitConstants | None = None,
    settings: SpiceSettings | None = None,
    rectifier: AbstractRectifier | None = None,
    flip_coupling: tuple[int, int] | None = None,
    timeout_s: float = 300.0,
    workdir: str | os.PathLike | None = None,
    timing: bool = True,
) -> VerifyReport:
    """Export ``model`` for the test inputs ``x (batch, n_inputs)``, run ngspice, compare.

    ``solvers`` are extra coupling solvers whose outputs are also compared (EADS only), e.g.
    ``[Euler(4), Euler(16), Euler(64)]`` to watch the agreement improve as the step shrinks.
    ``flip_coupling`` mis-wires one coupling (see :func:`eads.spice.netlist.eads_netlist`).
    ``timing=False`` skips timing the simulator (its times are then NaN).
    """
    kwargs = dict(constants=constants, settings=settings, flip_coupling=flip_coupling)
    if rectifier is not None:
        kwargs["rectifier"] = rectifier
    net = netlist_for(model, x, **kwargs)
    xs = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, np.float64)
    xs = xs.reshape(len(net.output_nodes), -1)
    if solvers and not isinstance(model, EADS):
        raise ConfigError("solvers can only be compared for an EADS circuit.")
    res = run_ngspice(net.text, timeout_s=timeout_s, workdir=workdir)
    y_spice = _outputs(net, res)  # (B, M)
    y_sim = simulate(model, xs)  # (B, M)
    traj = ref = None
    if isinstance(model, EADS):
        traj = _trajectory_difference(model, xs, net, res)
        ref = relative_difference(y_spice, simulate(model, xs, Dopri5(rtol=1e-10, atol=1e-12)))
    per_solver = {repr(s): relative_difference(y_spice, simulate(model, xs, s)) for s in solvers}
    sim_s, sim_tr_s = _simulator_times(model, xs) if timing else (math.nan, math.nan)
    c = net.constants
    if net.peak_v > c.supply_rail_v:
        log.warning(
            "node voltages reach %.3g V, beyond the %.3g V supply rail; the ideal sources of the "
            "netlist do not saturate",
            net.peak_v,
            c.supply_rail_v,
        )
    return VerifyReport(
        kind=net.kind,
        n_samples=len(xs),
        output_rel_diff=relative_difference(y_spice, y_sim),
        trajectory_rel_diff=traj,
        reference_rel_diff=ref,
        solver_rel_diff=per_solver,
        spice_s=res.wall_s,
        spice_analysis_s=res.analysis_s,
        simulator_s=sim_s,
        simulator_transient_s=sim_tr_s,
        peak_v=net.peak_v,
        supply_rail_v=c.supply_rail_v,
        spice_outputs=y_spice,
        simulator_outputs=y_sim,
    )


def verify_run(
    run_dir: str | os.PathLike, *, samples: int = 3, seed: int = 0, **kwargs
) -> VerifyReport:
    """:func:`verify_model` on a fitted run directory's model for ``samples`` of its inputs."""
    from eads.learn.registry import load_trained

    model, config, xs, _ = load_trained(run_dir)
    x = _run_inputs(config, xs, samples, seed)
    return verify_model(model, x, **kwargs)
