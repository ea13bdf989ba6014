"""Export a trained EADS or NP-GL circuit as an ngspice netlist in physical units.

Scaling (:class:`eads.hardware.constants.CircuitConstants`): a parameter value ``w`` is a
conductance ``w * g`` (siemens, ``g = unit_conductance_s``), a state value ``v`` is a voltage
``v * V_s`` (volts, ``V_s = volts_per_unit``), each node is a capacitor ``C = capacitance_f`` to
ground, and one unit of the simulator's time is ``tau = C / g`` seconds. With these, the
simulator's ``dh/dt = f(h)`` becomes KCL at the node, ``C dV/dt = g * f(V / V_s) * V_s``.

EADS netlist (one copy of the circuit per test input, nodes ``s<b>_in<j>``, ``s<b>_h<i>``,
``s<b>_z<i>``, ``s<b>_hq<i>``, ``s<b>_y<k>``), stages clocked by three non-overlapping PWL phase
signals ``phi_p``, ``phi_c``, ``phi_r`` (0 V or 1 V) as in the seed paper's Figure 3:

1. projection, ``0 <= t < t_p``: the input sources drive ``x_j V_s`` (a PWL source, switched to
   0 V at the end of the phase, standing for the input DAC's switch); ``P`` is a
   voltage-controlled current source (G element) per entry, from input ``j`` into hidden ``i``;
   the reference node (if the circuit has one) is a source ``ref`` at ``v_ref V_s``, switched
   like the inputs, wired into hidden ``i`` by a G element of ``P_ref_i g``;
   the hidden self-reaction resistor ``r_h g`` is switched in by ``phi_p`` (a B source
   ``I = r_h g V(phi_p) V(h)``). The nodes settle to ``h0 = P x / r_h`` (``settle`` node time
   constants of that stage; error ``exp(-settle)``), with ``+ P_ref v_ref`` in the drive.
2. coupling, for ``T``: ``J`` is a G element per entry into a summing node ``z_i`` held by a
   ``1/g`` resistor, so ``V(z_i) = sum_j J_ij V(h_j)`` (no capacitor: instantaneous); the diode
   is a behavioural current source ``I = g V(phi_c) rect(V(z_i))`` into ``h_i`` with the ideal
   rectifier ``rect(v) = max(v, 0)`` by default (:class:`IdealRectifier`). Why ideal: the
   simulator's ``relu(J h)`` is the ideal diode of a precision rectifier; a Shockley diode
   would add a ~0.6 V knee (six state units at 0.1 V per unit) and could not meet a 1 %
   agreement; :class:`SmoothRectifier` is there to study a soft knee.
3. readout, after the coupling: the hidden voltages are held (their nodes float: no current in
   or out) and drive the outputs through buffers ``hq_i = V(phi_r) V(h_i)`` and ``Q`` as G
   elements into the outputs, each with its self-reaction resistor ``r_y g`` to ground; they
   settle to ``y = Q^T h(T) / r_y``.

Negative conductances are written as they are: a VCCS with negative transconductance is an
ordinary SPICE element (on a chip it would be a differential pair of positive conductances).

Phase edges are linear ramps of ``ramp`` time constants, with a gap of one ramp between phases
(break before make). The coupling gate's integral is exactly ``T``; because the coupling field
is autonomous, a gated field ``phi_c(t) relu(J h)`` is the ungated one in the time
``s(t) = int phi_c``, so the ramps cost no accuracy (:meth:`Netlist.coupling_time_s`).

NP-GL netlist: inputs clamped by DC sources, each output node a capacitor with its
self-reaction resistor ``2 h_i g`` to ground, and every ``W_ij`` (outputs' rows) a G element; a
reference node is one more DC source ``ref`` at ``v_ref V_s`` with a G element of ``J_ref_i g``
into each output; it
anneals from 0 V and settles in ``settle`` time constants of its slowest mode.

Do not use these netlists for a circuit whose node voltages must respect the supply rail: the
sources here are ideal and never saturate (:attr:`Netlist.peak_v` reports the largest node
voltage the simulator predicts, to compare with ``supply_rail_v``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from eads._errors import ConfigError, DataError
from eads._io import atomic_write_text
from eads.circuit.eads import EADS
from eads.circuit.npgl import NPGL
from eads.hardware.constants import CircuitConstants


# -- rectifiers (strategy objects) ---------------------------------------------------------
class AbstractRectifier:
    """The diode of a coupling branch: ``expression(v)`` is ngspice text for ``rect(v)``."""

    def expression(self, v: str) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class IdealRectifier(AbstractRectifier):
    """``rect(v) = max(v, 0)``: the simulator's relu exactly (an ideal precision rectifier)."""

    def expression(self, v: str) -> str:
        return f"max({v}, 0)"


@dataclass(frozen=True)
class SmoothRectifier(AbstractRectifier):
    """``rect(v) = width_v * ln(1 + exp(v / width_v))``, a softplus knee ``width_v`` volts wide.

    Written as ``max(v, 0) + w ln(1 + exp(-|v| / w))`` so that ``exp`` never overflows. It
    exceeds relu by at most ``w ln 2`` (at ``v = 0``), so it does not match the simulator to 1 %
    unless ``width_v`` is far below the typical coupling voltage; use it to study a soft diode.
    """

    width_v: float = 1e-3
    """Width of the knee (volt)."""

    def __post_init__(self):
        if not (isinstance(self.width_v, (int, float)) and self.width_v > 0):
            raise ConfigError(f"width_v must be a positive number of volts, got {self.width_v!r}.")

    def expression(self, v: str) -> str:
        w = _num(self.width_v)
        return f"(max({v}, 0) + {w}*ln(1 + exp(-abs({v})/{w})))"


# -- transient settings ----------------------------------------------------------------------
@dataclass(frozen=True)
class SpiceSettings:
    """How the exported transient is clocked and how tightly ngspice integrates it."""

    settle: float = 25.0
    """Length of each settling stage, in time constants of its slowest mode (dimensionless);
    the unsettled remainder is ``exp(-settle)`` (1.4e-11 at 25)."""

    ramp: float = 1e-3
    """Rise and fall time of the phase signals, in node time constants ``tau``."""

    max_step: float = 0.1
    """Largest ngspice time step, in node time constants ``tau`` (it also bounds the error of
    interpolating the hidden trajectories between ngspice's time points)."""

    reltol: float = 1e-7
    """ngspice's relative tolerance (``.options reltol``; its default is 1e-3)."""

    method: str = "trap"
    """ngspice's integration method, ``"trap"`` (trapezoidal, its default) or ``"gear"``."""

    def __post_init__(self):
        for name in ("settle", "ramp", "max_step", "reltol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"SpiceSettings.{name} must be positive, got {value!r}.")
        if self.method not in ("gear", "trap"):
            raise ConfigError(
                f"SpiceSettings.method must be 'gear' or 'trap', got {self.method!r}."
            )


@dataclass(frozen=True)
class Schedule:
    """Phase edges of an exported transient (seconds)."""

    projection_end_s: float
    """``phi_p`` starts to fall (the projection has settled)."""
    coupling_start_s: float
    """``phi_c`` starts to rise."""
    coupling_end_s: float
    """``phi_c`` is back at 0."""
    readout_start_s: float
    """``phi_r`` starts to rise."""
    stop_s: float
    """End of the transient (the readout has settled)."""
    ramp_s: float
    """Rise/fall time of each phase signal."""


@dataclass
class Netlist:
    """An exported circuit: the netlist text and what is needed to read ngspice's answer.

    ``hidden_nodes[b]`` and ``output_nodes[b]`` are the node names of sample ``b``'s hidden and
    output nodes (lower case, as ngspice reports them); voltages divided by ``volts_per_unit``
    are the simulator's states.
    """

    text: str
    kind: str
    """``"eads"`` or ``"npgl"``."""
    constants: CircuitConstants
    schedule: Schedule
    duration: float
    """Coupling duration ``T`` in node time constants (0 for NP-GL)."""
    hidden_nodes: list[list[str]] = field(default_factory=list)
    output_nodes: list[list[str]] = field(default_factory=list)
    peak_v: float = 0.0
    """Largest node voltage (volt) the simulator predicts for these inputs."""

    @property
    def tau_s(self) -> float:
        return self.constants.node_time_constant_s

    def coupling_time_s(self, t: np.ndarray | float) -> np.ndarray:
        """The circuit time (s) at which the coupling stage has run for ``t`` time constants.

        Inverts ``s(t) = int phi_c dt``: quadratic on the rising ramp, linear on the plateau,
        and quadratic on the falling one.
        """
        sched = self.schedule
        tau, T = self.tau_s, self.duration
        r = sched.ramp_s / tau  # ramp in time constants
        s = np.clip(np.asarray(t, dtype=np.float64), 0.0, T)
        rise = sched.coupling_start_s / tau + np.sqrt(2 * r * np.minimum(s, r / 2))
        flat = sched.coupling_start_s / tau + r + (s - r / 2)
        fall = sched.coupling_end_s / tau - np.sqrt(2 * r * np.clip(T - s, 0.0, None))
        out = np.where(s < r / 2, rise, np.where(s > T - r / 2, fall, flat))
        return out * tau

    def write(self, path: str | os.PathLike) -> None:
        """Write the netlist to ``path`` atomically (no partial file on failure)."""
        atomic_write_text(path, self.text)


def _num(v: float) -> str:
    return f"{float(v):.12e}"


def _inputs(x: torch.Tensor | np.ndarray, n_inputs: int) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != n_inputs or a.shape[0] < 1:
        raise DataError(
            f"x must have shape (batch, {n_inputs}) with batch >= 1, got {tuple(a.shape)}."
        )
    if not np.isfinite(a).all():
        raise DataError("x holds NaN or inf; every test input must be finite.")
    return a


def _check_flip(flip: tuple[int, int] | None, rows: int, cols: int) -> None:
    if flip is None:
        return
    i, j = flip
    if not (0 <= i < rows and 0 <= j < cols):
        raise ConfigError(f"flip_coupling must index a ({rows}, {cols}) matrix, got {flip!r}.")


def _header(title: str, constants: CircuitConstants, settings: SpiceSettings) -> list[str]:
    c = constants
    return [
        f"* {title}",
        f"* C = {c.capacitance_f:g} F per node, g = {c.unit_conductance_s:g} S per unit, "
        f"{c.volts_per_unit:g} V per unit, tau = C/g = {c.node_time_constant_s:g} s",
        f".options reltol={settings.reltol:g} abstol=1e-18 vntol=1e-12 chgtol=1e-24 "
        f"trtol=1 method={settings.method} maxord=2 itl4=100",
    ]


def eads_netlist(
    model: EADS,
    x: torch.Tensor | np.ndarray,
    *,
    constants: CircuitConstants | None = None,
    rectifier: AbstractRectifier | None = None,
    settings: SpiceSettings | None = None,
    flip_coupling: tuple[int, int] | None = None,
) -> Netlist:
    """The netlist of ``model`` annealing each test input ``x (batch, n_inputs)`` (state units).

    ``flip_coupling=(i, j)`` wires ``J_ij`` with the wrong sign (a deliberate fault, to show
    that the verification can fail). See the module docstring for the circuit.
    """
    if not isinstance(model, EADS):
        raise ConfigError(f"model must be an eads.EADS circuit, got {type(model).__name__}.")
    c = constants or CircuitConstants()
    rect = rectifier or IdealRectifier()
    st = settings or SpiceSettings()
    xs = _inputs(x, model.n_inputs)  # (B, N)
    H, M = model.n_hidden, model.n_outputs
    P = model.P.detach().double().cpu().numpy()  # (H, N)
    J = model.J.detach().double().cpu().numpy().copy()  # (H, H)
    Q = model.Q.detach().double().cpu().numpy()  # (H, M)
    p_ref = model.P_ref.detach().double().cpu().numpy() if model.reference else None  # (H,)
    _check_flip(flip_coupling, H, H)
    if flip_coupling is not None:
        J[flip_coupling] = -J[flip_coupling]
    g, Vs, tau = c.unit_conductance_s, c.volts_per_unit, c.node_time_constant_s
    r_h, r_y, T = model.r_hidden, model.r_output, model.duration

    ramp = st.ramp
    t_p = st.settle / r_h
    c0 = t_p + 2 * ramp
    c1 = c0 + T + ramp  # the gate's integral over [c0, c1] is exactly T
    r0 = c1 + ramp
    stop = r0 + ramp + st.settle / r_y
    sched = Schedule(*(v * tau for v in (t_p, c0, c1, r0, stop, ramp)))

    lines = _header(
        f"EADS circuit: {model.n_inputs} inputs, {H} hidden, {M} outputs, T = {T:g} tau, "
        f"{len(xs)} test input(s); rectifier {rect!r}",
        c,
        st,
    )
    s = sched
    lines += [
        "* phase clocks (Figure 3): projection, coupling, readout",
        f"Vphi_p phi_p 0 PWL(0 1 {_num(s.projection_end_s)} 1 "
        f"{_num(s.projection_end_s + s.ramp_s)} 0)",
        f"Vphi_c phi_c 0 PWL(0 0 {_num(s.coupling_start_s)} 0 "
        f"{_num(s.coupling_start_s + s.ramp_s)} 1 {_num(s.coupling_end_s - s.ramp_s)} 1 "
        f"{_num(s.coupling_end_s)} 0)",
        f"Vphi_r phi_r 0 PWL(0 0 {_num(s.readout_start_s)} 0 "
        f"{_num(s.readout_start_s + s.ramp_s)} 1)",
    ]
    if p_ref is not None:
        v = _num(model.reference_voltage * Vs)
        lines += [
            "* reference node: a constant voltage, switched off with the inputs",
            f"Vref ref 0 PWL(0 {v} {_num(s.projection_end_s)} {v} "
            f"{_num(s.projection_end_s + s.ramp_s)} 0)",
        ]
    hidden_nodes, output_nodes, saves = [], [], []
    for b, xb in enumerate(xs):
        p = f"s{b}_"
        hn = [f"{p}h{i}" for i in range(H)]
        yn = [f"{p}y{k}" for k in range(M)]
        hidden_nodes.append(hn)
        output_nodes.append(yn)
        saves += hn + yn
        lines.append(f"* ---- sample {b}: inputs driven during the projection")
        for j, xj in enumerate(xb):
            v = _num(xj * Vs)
            lines.append(
                f"Vin_{b}_{j} {p}in{j} 0 PWL(0 {v} {_num(s.projection_end_s)} {v} "
                f"{_num(s.projection_end_s + s.ramp_s)} 0)"
            )
        lines.append("* hidden nodes: capacitor, switched self-reaction, projection P")
        for i in range(H):
            lines.append(f"Ch_{b}_{i} {p}h{i} 0 {_num(c.capacitance_f)} IC=0")
            lines.append(f"Brh_{b}_{i} {p}h{i} 0 I = {_num(r_h * g)}*V(phi_p)*V({p}h{i})")
            for j in range(model.n_inputs):
                if P[i, j] != 0.0:
                    lines.append(f"Gp_{b}_{i}_{j} 0 {p}h{i} {p}in{j} 0 {_num(P[i, j] * g)}")
            if p_ref is not None and p_ref[i] != 0.0:
                lines.append(f"Gpr_{b}_{i} 0 {p}h{i} ref 0 {_num(p_ref[i] * g)}")
        lines.append("* coupling J into summing nodes z, then the rectifier into h")
        for i in range(H):
            lines.append(f"Rz_{b}_{i} {p}z{i} 0 {_num(1 / g)}")
            for j in range(H):
                if J[i, j] != 0.0:
                    lines.append(f"Gj_{b}_{i}_{j} 0 {p}z{i} {p}h{j} 0 {_num(J[i, j] * g)}")
            lines.append(
                f"Bd_{b}_{i} 0 {p}h{i} I = {_num(g)}*V(phi_c)*{rect.expression(f'V({p}z{i})')}"
            )
        lines.append("* readout: buffered hidden voltages through Q into the output nodes")
        for i in range(H):
            lines.append(f"Bq_{b}_{i} {p}hq{i} 0 V = V(phi_r)*V({p}h{i})")
        for k in range(M):
            lines.append(f"Cy_{b}_{k} {p}y{k} 0 {_num(c.capacitance_f)} IC=0")
            lines.append(f"Ry_{b}_{k} {p}y{k} 0 {_num(1 / (r_y * g))}")
            for i in range(H):
                if Q[i, k] != 0.0:
                    lines.append(f"Gq_{b}_{k}_{i} 0 {p}y{k} {p}hq{i} 0 {_num(Q[i, k] * g)}")
    lines += _footer(saves, sched, st, tau)
    peak = _eads_peak(model, xs, J) * Vs
    return Netlist("\n".join(lines) + "\n", "eads", c, sched, T, hidden_nodes, output_nodes, peak)


def _eads_peak(model: EADS, xs: np.ndarray, J: np.ndarray) -> float:
    """Largest |state| the simulator predicts along the coupling stage (state units)."""
    with torch.no_grad():
        x = torch.as_tensor(xs, dtype=model.P.dtype)
        _, h = model.coupling_trajectory(x)
        y = model(x)
    v_ref = abs(model.reference_voltage) if model.reference else 0.0
    return float(max(h.abs().max(), y.abs().max(), torch.as_tensor(xs).abs().max(), v_ref))


def npgl_netlist(
    model: NPGL,
    x: torch.Tensor | np.ndarray,
    *,
    constants: CircuitConstants | None = None,
    settings: SpiceSettings | None = None,
    flip_coupling: tuple[int, int] | None = None,
) -> Netlist:
    """The netlist of an NP-GL ``model`` annealing each test input ``x (batch, n_inputs)``.

    ``dy/dt = W_oc x + W_oo y - 2 h_o y`` (inputs clamped): each output node is a capacitor with
    a self-reaction resistor of conductance ``2 h_i g`` to ground, and each nonzero ``W_ij`` of
    the outputs' rows is a G element from node ``j`` into output ``i``. ``flip_coupling=(i, j)``
    (``i`` an output's index among all ``D`` nodes) wires ``W_ij`` with the wrong sign.
    """
    if not isinstance(model, NPGL):
        raise ConfigError(f"model must be an eads.NPGL circuit, got {type(model).__name__}.")
    c = constants or CircuitConstants()
    st = settings or SpiceSettings()
    xs = _inputs(x, model.n_inputs)  # (B, N)
    N, M, D = model.n_inputs, model.n_outputs, model.n_nodes
    with torch.no_grad():
        W = model.coupling().double().cpu().numpy().copy()  # (D, D)
        h = model.self_reaction().double().cpu().numpy()  # (D,)
        b_ref = model.J_ref.double().cpu().numpy() if model.reference else None  # (M,)
    _check_flip(flip_coupling, D, D)
    if flip_coupling is not None:
        if flip_coupling[0] < N:
            raise ConfigError(
                f"flip_coupling's row must be an output node (>= {N}), got {flip_coupling!r}."
            )
        W[flip_coupling] = -W[flip_coupling]
    A = np.diag(2 * h[N:]) - W[N:, N:]  # (M, M): dy/dt = W_oc x - A y
    slowest = float(np.min(np.real(np.linalg.eigvals(A))))
    if not slowest > 0:
        raise ConfigError(
            "The NP-GL circuit has a non-decaying mode (2 diag(h) - W is not positive definite); "
            "it would not settle."
        )
    g, Vs, tau = c.unit_conductance_s, c.volts_per_unit, c.node_time_constant_s
    stop = st.settle / slowest
    sched = Schedule(0.0, 0.0, 0.0, 0.0, stop * tau, 0.0)
    lines = _header(f"NP-GL circuit: {N} inputs, {M} outputs, {len(xs)} test input(s)", c, st)
    output_nodes, saves = [], []
    if b_ref is not None:
        lines.append(f"Vref ref 0 DC {_num(model.reference_voltage * Vs)}")
    for b, xb in enumerate(xs):
        p = f"s{b}_"
        names = [f"{p}in{j}" for j in range(N)] + [f"{p}y{k}" for k in range(M)]
        output_nodes.append(names[N:])
        saves += names[N:]
        lines.append(f"* ---- sample {b}: clamped inputs")
        for j, xj in enumerate(xb):
            lines.append(f"Vin_{b}_{j} {names[j]} 0 DC {_num(xj * Vs)}")
        lines.append("* output nodes: capacitor, self-reaction 2h, couplings W")
        for k in range(M):
            i = N + k
            lines.append(f"Cy_{b}_{k} {names[i]} 0 {_num(c.capacitance_f)} IC=0")
            lines.append(f"Ry_{b}_{k} {names[i]} 0 {_num(1 / (2 * h[i] * g))}")
            for j in range(D):
                if j != i and W[i, j] != 0.0:
                    lines.append(f"Gw_{b}_{i}_{j} 0 {names[i]} {names[j]} 0 {_num(W[i, j] * g)}")
            if b_ref is not None and b_ref[k] != 0.0:
                lines.append(f"Gr_{b}_{k} 0 {names[i]} ref 0 {_num(b_ref[k] * g)}")
    lines += _footer(saves, sched, st, tau)
    with torch.no_grad():
        y = model.equilibrium(torch.as_tensor(xs, dtype=model.J.dtype))
    v_ref = abs(model.reference_voltage) if model.reference else 0.0
    peak = float(max(np.abs(xs).max(), y.abs().max(), v_ref)) * Vs
    return Netlist("\n".join(lines) + "\n", "npgl", c, sched, 0.0, [], output_nodes, peak)


def _footer(saves: list[str], sched: Schedule, st: SpiceSettings, tau: float) -> list[str]:
    out = []
    for k in range(0, len(saves), 16):
        out.append(".save " + " ".join(f"v({n})" for n in saves[k : k + 16]))
    tmax = st.max_step * tau
    out.append(f".tran {_num(tmax)} {_num(sched.stop_s)} 0 {_num(tmax)} uic")
    out.append(".end")
    return out


def netlist_for(model, x, **kwargs) -> Netlist:
    """:func:`eads_netlist` or :func:`npgl_netlist`, whichever fits ``model``."""
    if isinstance(model, EADS):
        return eads_netlist(model, x, **kwargs)
    if isinstance(model, NPGL):
        kwargs.pop("rectifier", None)
        return npgl_netlist(model, x, **kwargs)
    raise ConfigError(
        f"Only EADS and NP-GL circuits can be exported to SPICE, got {type(model).__name__}."
    )


def export_netlist(model, x, path: str | os.PathLike, **kwargs) -> Netlist:
    """Build the netlist of ``model`` for inputs ``x`` and write it to ``path`` atomically."""
    net = netlist_for(model, x, **kwargs)
    net.write(path)
    return net


# -- run directories ---------------------------------------------------------------------------
def run_inputs(run_dir: str | os.PathLike, n: int = 3, *, seed: int = 0) -> np.ndarray:
    """``n`` test inputs for a fitted run, in the model's (standardised) state units, ``(n, N)``.

    Rows drawn (seeded) from the run's own data file when it can still be read; otherwise ``n``
    seeded standard-normal draws, which is the distribution of standardised inputs.
    """
    from eads.learn.registry import load_trained

    _, config, xs, _ = load_trained(run_dir)
    return _run_inputs(config, xs, n, seed)


def _run_inputs(config, x_scaler, n: int, seed: int) -> np.ndarray:
    from eads.data.tabular import read_table

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"samples must be a positive integer, got {n!r}.")
    rng = np.random.default_rng(seed)
    try:
        table = read_table(config.data.path, config.data.inputs, (), require_outputs=False)
        rows = rng.choice(len(table.x), size=min(n, len(table.x)), replace=False)
        return x_scaler.transform(table.x[np.sort(rows)]).astype(np.float64)
    except (DataError, OSError):
        return rng.standard_normal((n, len(x_scaler.mean)))


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    samples: int = 1,
    seed: int = 0,
    npgl: bool = False,
    **kwargs,
) -> Netlist:
    """Export the trained circuit of a run directory for ``samples`` of its inputs to ``out``.

    The circuit kind follows the run's model; ``npgl=True`` insists on an NP-GL run. Nothing
    is written unless the whole netlist was built.
    """
    from eads.learn.registry import load_trained

    model, config, xs, _ = load_trained(run_dir)
    if npgl and not isinstance(model, NPGL):
        raise ConfigError(
            f"--npgl needs a run of an NP-GL model, but {str(run_dir)!r} holds a "
            f"{config.model.kind!r} model."
        )
    x = _run_inputs(config, xs, samples, seed)
    return export_netlist(model, x, out, **kwargs)
