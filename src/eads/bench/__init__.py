"""The benchmark core shared by the three suites (PDE, spatio-temporal, attention).

* :mod:`eads.bench.cells` -- the cell (data set x resolution x model x seed), its id, and the
  executor (local or Ray) that skips cells already done and recomputes corrupt cell files;
* :mod:`eads.bench.budget` -- the budget and stopping protocol (patience on validation; the
  epoch and wall-time caps are recorded and marked when they end a cell), mapped onto
  :class:`eads.config.TrainConfig`;
* :mod:`eads.bench.metrics` -- the error metrics and their conventions;
* :mod:`eads.bench.tables` -- rows to CSV, JSON and Markdown (atomic writes).

Floor 1 (docs/ARCHITECTURE.md): it imports only ``_errors``, ``_io`` and ``config``, so the
reports (``eads.report``, floor 2) and the suites (``eads.tasks``, floor 4) both build on it.
"""

from eads.bench.budget import CAP_MARK, STOP_REASONS, Budget, stop_mark, stop_reason_of
from eads.bench.cells import Cell, load_results, read_cell, run_cells

__all__ = [
    "CAP_MARK",
    "STOP_REASONS",
    "Budget",
    "Cell",
    "load_results",
    "read_cell",
    "run_cells",
    "stop_mark",
    "stop_reason_of",
]
