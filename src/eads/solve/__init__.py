"""How time is integrated: explicit Runge-Kutta strategy objects and settle-to-tolerance."""

from eads.solve._base import (
    RK4,
    RK38,
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
from eads.solve.sde import EulerMaruyama
from eads.solve.settle import settle

SOLVERS["euler-maruyama"] = EulerMaruyama

__all__ = [
    "RK4",
    "RK38",
    "SOLVERS",
    "AbstractFixedStep",
    "AbstractSolver",
    "Dopri5",
    "Euler",
    "EulerMaruyama",
    "Midpoint",
    "Solution",
    "Tape",
    "make_solver",
    "settle",
]
