"""What the hardware is: the EADS stages, the adjoint circuit, NP-GL's Hamiltonian."""

from eads.circuit.adjoint import adjoint_gradients, error_currents
from eads.circuit.eads import EADS, StageTimes
from eads.circuit.npgl import NPGL

__all__ = ["EADS", "NPGL", "StageTimes", "adjoint_gradients", "error_currents"]
