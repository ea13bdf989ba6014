"""SPICE export and verification: the trained circuit as an ngspice netlist, checked in ngspice.

>>> from eads.spice import export_run, verify_run
>>> net = export_run("runs/fit-x", "circuit.cir")        # doctest: +SKIP
>>> verify_run("runs/fit-x", samples=3).output_rel_diff   # doctest: +SKIP
"""

from eads.spice.netlist import (
    AbstractRectifier,
    IdealRectifier,
    Netlist,
    SmoothRectifier,
    SpiceSettings,
    eads_netlist,
    export_netlist,
    export_run,
    npgl_netlist,
    run_inputs,
)
from eads.spice.runner import SpiceError, SpiceResult, find_ngspice, read_raw, run_ngspice
from eads.spice.verify import VerifyReport, relative_difference, verify_model, verify_run

__all__ = [
    "AbstractRectifier",
    "IdealRectifier",
    "Netlist",
    "SmoothRectifier",
    "SpiceError",
    "SpiceResult",
    "SpiceSettings",
    "VerifyReport",
    "eads_netlist",
    "export_netlist",
    "export_run",
    "find_ngspice",
    "npgl_netlist",
    "read_raw",
    "relative_difference",
    "run_inputs",
    "run_ngspice",
    "verify_model",
    "verify_run",
]
