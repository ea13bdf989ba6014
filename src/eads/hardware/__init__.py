"""What the circuit costs: constants with units and sources, time and energy from counted events,
the efficiency report of a trained run, hardware-aware EC-Train and the robustness study."""

from eads.hardware.constants import (
    CircuitConstants,
    ConverterConstants,
    HardwareConstants,
    PaperClaims,
    PowerConstants,
    ProgrammingConstants,
)
from eads.hardware.cost import (
    CircuitSize,
    CostModel,
    InferenceCost,
    StageTimesTau,
    TrainingCost,
    rc_settle_time,
)
from eads.hardware.report import cost_report, format_cost_table
from eads.hardware.training import HardwareAwareECTrain

__all__ = [
    "CircuitConstants",
    "CircuitSize",
    "ConverterConstants",
    "CostModel",
    "HardwareAwareECTrain",
    "HardwareConstants",
    "InferenceCost",
    "PaperClaims",
    "PowerConstants",
    "ProgrammingConstants",
    "StageTimesTau",
    "TrainingCost",
    "cost_report",
    "format_cost_table",
    "rc_settle_time",
]
