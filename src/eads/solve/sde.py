"""Euler-Maruyama: the coupling stage with thermal noise on the node voltages (a Langevin term).

Integrates the Ito SDE ``dy = f(t, y) dt + sigma dW`` in ``n_steps`` equal steps::

    y_{k+1} = y_k + dt f(t_k, y_k) + sigma sqrt(dt) xi_k,      xi_k ~ N(0, I)

It is strong order 1/2 and weak order 1 for additive noise (Kloeden & Platen 1992, Sec. 10.2 and
14.1). ``sigma`` is in state units per square root of a node time constant; for a node leaking
through a conductance ``r`` its stationary variance is ``sigma^2 / (2 r)`` in the limit of small
steps (exactly ``sigma^2 / (r (2 - r dt))`` for the discrete scheme), which
:meth:`eads.hardware.constants.CircuitConstants.thermal_noise_sigma` sets to kT/C.

The deterministic part is forward Euler's tableau, and the tape it records (stage inputs = the
noisy states actually visited, and the field's aux) is Euler's, so the adjoint circuit of
:mod:`eads.circuit.adjoint` runs back through the same noisy trajectory unchanged: with additive
noise the step's Jacobian does not depend on the noise. With ``sigma = 0`` no noise is drawn and
the result is bit-for-bit :class:`eads.solve.Euler`'s.

Do not use it for accuracy on a noiseless problem (it is first order); do not use a step much
larger than the fastest node's time constant (``r dt`` near 2 makes the scheme unstable).
"""

from __future__ import annotations

import math

import torch

from eads._errors import ConfigError
from eads.solve._base import AbstractFixedStep, AbstractSolver, Solution, Tape, VectorField


class EulerMaruyama(AbstractFixedStep):
    """Euler-Maruyama with additive noise of amplitude ``noise_std`` (scalar or per node).

    ``generator`` (or ``seed``) makes the noise reproducible; each call to :meth:`integrate`
    continues the generator's stream, so two forward passes see different noise.
    """

    name, order = "euler_maruyama", 1
    a, b, c = ((),), (1.0,), (0.0,)

    def __init__(
        self,
        n_steps: int = 8,
        noise_std: float | torch.Tensor = 0.0,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__(n_steps)
        if isinstance(noise_std, torch.Tensor):
            if not torch.isfinite(noise_std).all() or (noise_std < 0).any():
                raise ConfigError("noise_std must be finite and >= 0 everywhere.")
        else:
            try:
                noise_std = float(noise_std)
            except (TypeError, ValueError):
                raise ConfigError(f"noise_std must be a number >= 0, got {noise_std!r}.") from None
            if not math.isfinite(noise_std) or noise_std < 0:
                raise ConfigError(f"noise_std must be a finite number >= 0, got {noise_std!r}.")
        self.noise_std = noise_std
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        self.generator = generator

    def __repr__(self) -> str:
        return f"EulerMaruyama(n_steps={self.n_steps}, noise_std={self.noise_std!r})"

    @property
    def noiseless(self) -> bool:
        s = self.noise_std
        return bool((s == 0).all()) if isinstance(s, torch.Tensor) else s == 0.0

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
        dt = (t1 - t0) / self.n_steps
        tape = Tape(self.a, self.b) if record else None
        if record:  # preallocated like AbstractFixedStep's, so the adjoint stacks without copies
            tape.input_buffer = y0.new_empty((self.n_steps, 1, *y0.shape))
            if aux:
                shape = (self.n_steps, 1, *y0.shape)
                tape.aux_buffer = torch.empty(shape, dtype=aux_dtype, device=y0.device)
        noiseless = self.noiseless
        sigma = self.noise_std
        if isinstance(sigma, torch.Tensor):
            sigma = sigma.to(device=y0.device, dtype=y0.dtype)
        scale = math.sqrt(abs(dt))
        y = y0
        for n in range(self.n_steps):
            slots = None
            if record:
                slots = (tape.input_buffer[n], tape.aux_buffer[n] if aux else None)
            y, inputs, _, auxes = self.step(f, t0 + n * dt, y, dt, aux=aux, slots=slots)
            if not noiseless:
                xi = torch.randn(y.shape, generator=self.generator, dtype=y.dtype, device="cpu").to(
                    y.device
                )  # (batch, nodes); drawn on the CPU so a seed repeats anywhere
                y = y + (sigma * scale) * xi
            if tape is not None:
                tape.dts.append(dt)
                tape.inputs.append(inputs)
                tape.aux.append(auxes)
        return Solution(y, t1, self.n_steps, tape)

    def integrate_rectified(self, weight, y0, t0, t1, *, record=False):
        """The coupling field ``relu(y W^T)`` through :meth:`integrate`, so the noise is drawn;
        noiseless, the fixed-step fused path (the same numbers as Euler's)."""
        if self.noiseless:
            return AbstractFixedStep.integrate_rectified(self, weight, y0, t0, t1, record=record)
        return AbstractSolver.integrate_rectified(self, weight, y0, t0, t1, record=record)


__all__ = ["EulerMaruyama"]
