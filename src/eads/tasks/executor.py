"""The benchmark cell and its executor, re-exported from :mod:`eads.bench.cells` (their home).

Kept so that ``from eads.tasks.executor import Cell, run_cells`` (scripts, sweeps) still works.
"""

from __future__ import annotations

from eads.bench.cells import (
    CELL_FIELDS,
    EXECUTORS,
    Cell,
    connect_ray,
    load_results,
    read_cell,
    run_cells,
)

__all__ = [
    "CELL_FIELDS",
    "EXECUTORS",
    "Cell",
    "connect_ray",
    "load_results",
    "read_cell",
    "run_cells",
]
