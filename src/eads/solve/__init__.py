"""How time is integrated: explicit Runge-Kutta strategy objects, the switch-locating Heun
method for the rectified coupling field, and settle-to-tolerance."""

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
from eads.solve._workspace import Workspace
from eads.solve.sde import EulerMaruyama
from eads.solve.settle import settle
from eads.solve.switching import SwitchingHeun, SwitchingTape

SOLVERS["euler-maruyama"] = EulerMaruyama
SOLVERS["switching-heun"] = SwitchingHeun

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
    "SwitchingHeun",
    "SwitchingTape",
    "Tape",
    "Workspace",
    "make_solver",
    "settle",
]
