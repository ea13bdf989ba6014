"""How time is integrated: explicit Runge-Kutta strategy objects and settle-to-tolerance."""

from eads.solve._base import (
    RK4,
    SOLVERS,
    AbstractFixedStep,
    AbstractSolver,
    Dopri5,
    Euler,
    Midpoint,
    Solution,
    Tape,
    make_solver,
)
from eads.solve.settle import settle

__all__ = [
    "RK4",
    "SOLVERS",
    "AbstractFixedStep",
    "AbstractSolver",
    "Dopri5",
    "Euler",
    "Midpoint",
    "Solution",
    "Tape",
    "make_solver",
    "settle",
]
