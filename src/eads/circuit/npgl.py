"""NP-GL: the flat real-valued Ising network that EADS builds on (Wu et al., ICLR 2024, Eq. 1-3).

All ``D = N + M`` nodes (inputs first, then outputs) sit in one layer with the Hamiltonian

    H(x) = - sum_{i != j} J_ij x_i x_j + sum_i h_i x_i^2,

and the circuit follows its gradient, ``dx/dt = -dH/dx``, so the energy never rises. With
``W = J + J^T`` (zero diagonal), ``-dH/dx_i = sum_j W_ij x_j - 2 h_i x_i``. Inputs are clamped;
the outputs settle to the minimum of the quadratic, which is the linear solve

    (2 diag(h_o) - W_oo) y = W_oc x.

The reference node (``reference=True``, the default; not in the paper) is one more clamped node
``x_0 = v_ref`` (a reference-voltage source) coupled to every output by its own trained
conductances ``b = J_ref (M,)``: it adds ``- v_ref sum_i b_i y_i`` to H, so the outputs settle to
``(2 diag(h_o) - W_oo) y = W_oc x + b v_ref``, and each output's conditional mean gains
``b_i v_ref / (2 h_i)``. Without it the annealed output is linear and homogeneous in the inputs
(``y(c x) = c y(x)``), so NP-GL cannot learn an offset; ``reference=False`` gives the paper's
literal Hamiltonian.

Each node's conditional given the rest is Gaussian with mean ``sum_j W_ij x_j / (2 h_i)``; NP-GL
is trained offline by fitting those conditional means of the output nodes to the data (MAE,
as in the seed paper) -- see :class:`eads.ConditionalLikelihood`.

Stability by construction: the output self-reactions are parametrised as
``h_i = margin + softplus(rho_i) + 1/2 sum_{j in out, j != i} |W_ij|``, so
``2 diag(h_o) - W_oo`` is strictly diagonally dominant with a positive diagonal, hence positive
definite, and annealing always converges. This restricts the reachable (J, h) pairs; it is the
price of never training a circuit that cannot settle. An optional ``mask (D, D)`` (a graph)
zeroes couplings that the hardware does not wire.

Do not use NP-GL for strongly nonlinear maps: its annealed output is affine in the inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eads._errors import ConfigError, DataError
from eads.circuit._checks import (
    check_batch,
    check_positive,
    check_reference,
    check_size,
    check_stable,
)
from eads.solve import settle

_STAGE_MODES = ("equilibrium", "transient")


class NPGL(nn.Module):
    """NP-GL with ``n_inputs`` clamped input nodes and ``n_outputs`` annealed output nodes.

    ``model(x)`` returns the annealed outputs ``(batch, n_outputs)``: the exact minimum
    (``stages="equilibrium"``, a linear solve) or the transient of ``dx/dt = -dH/dx`` integrated
    until the node currents fall below ``settle_tolerance`` (``stages="transient"``).
    """

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        *,
        mask: torch.Tensor | None = None,
        stages: str = "equilibrium",
        settle_tolerance: float = 1e-6,
        settle_dt: float = 0.05,
        margin: float = 0.05,
        rail: float = 1e4,
        coupling_init: float = 0.1,
        reference: bool = True,
        reference_voltage: float = 1.0,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        self.n_inputs = check_size("n_inputs", n_inputs)
        self.n_outputs = check_size("n_outputs", n_outputs)
        D = n_inputs + n_outputs
        if stages not in _STAGE_MODES:
            raise ConfigError(f"stages must be one of {_STAGE_MODES}, got {stages!r}.")
        self.stages = stages
        self.settle_tolerance = check_positive("settle_tolerance", settle_tolerance)
        self.settle_dt = check_positive("settle_dt", settle_dt)
        self.margin = check_positive("margin", margin)
        self.rail = check_positive("rail", rail)
        self.reference = check_reference(reference, reference_voltage, self.rail)
        self.reference_voltage = float(reference_voltage)
        offdiag = 1.0 - torch.eye(D, dtype=dtype, device=device)
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=dtype, device=device)
            if mask.shape != (D, D):
                raise ConfigError(
                    f"mask must have shape ({D}, {D}) (inputs then outputs), "
                    f"got {tuple(mask.shape)}."
                )
            offdiag = offdiag * (mask != 0).to(dtype)
        self.register_buffer("mask", offdiag)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        std = check_positive("coupling_init", coupling_init) / math.sqrt(D)
        J = torch.randn(D, D, generator=gen, dtype=torch.float64) * std
        self.J = nn.Parameter(J.to(device=device, dtype=dtype))
        self.rho = nn.Parameter(torch.zeros(D, dtype=dtype, device=device))
        # drawn after J, so J starts where a circuit without the reference starts
        ref = torch.randn(n_outputs, generator=gen, dtype=torch.float64) * std
        ref = nn.Parameter((ref / abs(self.reference_voltage)).to(device=device, dtype=dtype))
        self.register_parameter("J_ref", ref if self.reference else None)

    def extra_repr(self) -> str:
        ref = self.reference_voltage if self.reference else None
        return (
            f"n_inputs={self.n_inputs}, n_outputs={self.n_outputs}, stages={self.stages!r}, "
            f"reference={ref}"
        )

    def reference_drive(self) -> torch.Tensor | float:
        """The reference node's current into each output, ``b v_ref (M,)`` (0 without it)."""
        return self.J_ref * self.reference_voltage if self.reference else 0.0

    @property
    def n_nodes(self) -> int:
        return self.n_inputs + self.n_outputs

    def coupling(self) -> torch.Tensor:
        """``W = (J + J^T)`` masked, zero diagonal, ``(D, D)``."""
        Jm = self.J * self.mask
        return Jm + Jm.T

    def self_reaction(self, W: torch.Tensor | None = None) -> torch.Tensor:
        """``h (D,)``, positive, and diagonally dominant over the output block."""
        W = self.coupling() if W is None else W
        N = self.n_inputs
        inputs = torch.zeros_like(self.rho[:N])  # input nodes need no dominance margin
        dominance = torch.cat([inputs, 0.5 * W[N:, N:].abs().sum(dim=1)])
        return self.margin + F.softplus(self.rho) + dominance

    def energy(self, nodes: torch.Tensor) -> torch.Tensor:
        """``H(x)`` per sample for full node states ``(B, D)`` -> ``(B,)``."""
        W = self.coupling()
        h = self.self_reaction(W)
        energy = -0.5 * ((nodes @ W) * nodes).sum(-1) + (h * nodes**2).sum(-1)
        if self.reference:
            energy = energy - (nodes[:, self.n_inputs :] * self.reference_drive()).sum(-1)
        return energy

    def conditional_mean(self, nodes: torch.Tensor) -> torch.Tensor:
        """Each node's Gaussian conditional mean given the others, ``(B, D) -> (B, D)``."""
        W = self.coupling()
        field = nodes @ W.T  # (B, D)
        if self.reference:
            zeros = torch.zeros_like(field[0, : self.n_inputs])
            field = field + torch.cat([zeros, self.reference_drive()])
        return field / (2 * self.self_reaction(W))

    def field(self, x: torch.Tensor):
        """The output nodes' vector field ``-dH/dy`` with inputs clamped to ``x``."""
        W = self.coupling()
        h = self.self_reaction(W)
        N = self.n_inputs
        drive = x @ W[N:, :N].T + self.reference_drive()  # (B, M)
        W_oo, h_o = W[N:, N:], h[N:]
        return lambda t, y: drive + y @ W_oo.T - 2 * h_o * y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_batch("x", x, self.n_inputs, "n_inputs").to(self.J.dtype)
        if self.stages == "transient":
            y0 = torch.zeros(x.shape[0], self.n_outputs, dtype=x.dtype, device=x.device)
            y, _ = settle(
                self.field(x),
                y0,
                tolerance=self.settle_tolerance,
                dt=self.settle_dt,
                max_time=1e4,
                rail=self.rail,
            )
            return y
        return self.equilibrium(x)

    def equilibrium(self, x: torch.Tensor) -> torch.Tensor:
        """The exact annealed outputs: the linear solve of the quadratic minimum."""
        W = self.coupling()
        h = self.self_reaction(W)
        N = self.n_inputs
        A = torch.diag(2 * h[N:]) - W[N:, N:]  # (M, M), positive definite
        rhs = x @ W[N:, :N].T + self.reference_drive()  # (B, M)
        y = torch.linalg.solve(A, rhs.T).T
        check_stable("NP-GL annealing", y, self.rail, "the couplings are too large")
        return y

    def nodes(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Stack clamped inputs and outputs into the full node state ``(B, D)``."""
        if x.shape[0] != y.shape[0]:
            raise DataError(
                f"x and y must hold the same number of samples, got {x.shape[0]} and {y.shape[0]}."
            )
        return torch.cat([x, y], dim=1)
