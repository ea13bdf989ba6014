"""The benchmark core shared by the three suites (PDE, spatio-temporal, attention).

* :mod:`eads.bench.cells` -- the cell (data set x resolution x model x seed), its id, and the
  executor (local or Ray) that skips cells already done and recomputes corrupt cell files;
* :mod:`eads.bench.budget` -- the budget and stopping protocol (patience on validation; the
  epoch and wall-time caps are recorded and marked when they end a cell), mapped onto
  :class:`eads.config.TrainConfig`;
* :mod:`eads.bench.metrics` -- the error metrics and their conventions;
* :mod:`eads.bench.tables` -- rows to CSV, JSON and Markdown (atomic writes);
* :mod:`eads.bench.suite` -- a suite's names, seeds and budgets checked, and its run directory's
  ``config.json`` listing every cell of a resumed or extended run;
* :mod:`eads.bench.adapters` -- the point-wise standardiser and the module adapters (a circuit
  on flattened functions, BatchNorm's mode by grad, a tensor-only ``state_dict``);
* :mod:`eads.bench.training` -- one model trained to its budget through the training loop
  (passed in), per learning rate, checkpointed every epoch so a killed cell continues; a
  validation search's choice as a candidate; latency timing and the predictions file;
* :mod:`eads.bench.forecasting` -- the spatio-temporal suite's window protocol (training stride,
  capped validation windows, the MAPE zero tolerance) and its masked-loss training loop
  (patience, schedule, best state restored), test evaluation, latency and the epoch-cost probe;
* :mod:`eads.bench.bootstrap` -- paired percentile-bootstrap intervals (the attention suite's
  perplexity differences).

Floor 1 (docs/ARCHITECTURE.md): it imports only ``_errors``, ``_io``, ``config`` and ``runs``
(and torch), never ``learn/`` or anything above, so the reports (``eads.report``, floor 2) and
the suites (``eads.tasks``, floor 4) both build on it.
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
