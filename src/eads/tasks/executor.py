"""Run the cells of a benchmark grid locally or on Ray, skipping cells already done.

A *cell* is one independent unit of a benchmark (dataset x resolution x model x seed ...). Each
finished cell's result is written atomically to ``<run_dir>/cells/<cell id>.json``; re-running a
benchmark into the same directory skips the cells whose result exists, so an interrupted grid
finishes where it stopped. ``executor="local"`` runs cells one after another in this process
(needs no Ray); ``executor="ray"`` submits them as Ray tasks (``ray.init()`` on this machine by
default, or ``address=`` to join a cluster; ``pip install eads[distributed]``), retrying a task
whose worker dies ``max_retries`` times and recording a cell that still fails with its error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eads._errors import ConfigError
from eads._io import atomic_write_json

log = logging.getLogger(__name__)
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Cell:
    """One unit of a benchmark grid; ``params`` must be JSON-able."""

    task: str
    dataset: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def id(self) -> str:
        key = json.dumps(asdict(self), sort_keys=True)
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        extra = "-".join(f"{v}" for _, v in sorted(self.params.items()) if isinstance(v, int | str))
        name = "_".join(p for p in (self.dataset, extra, self.model, f"s{self.seed}") if p)
        return f"{name}-{digest}".replace("/", "-")


def _result_path(run_dir: Path, cell: Cell) -> Path:
    return run_dir / "cells" / f"{cell.id}.json"


def _run_one(fn: Callable[[Cell, Path], dict], cell: Cell, run_dir: Path) -> dict:
    result = {"cell": asdict(cell), "id": cell.id}
    try:
        result.update(status="ok", **fn(cell, run_dir))
    except Exception as exc:  # one failed cell must not lose the grid
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=5))
    atomic_write_json(_result_path(run_dir, cell), result)
    return result


def run_cells(
    cells: list[Cell],
    fn: Callable[[Cell, Path], dict],
    run_dir: str | Path,
    *,
    executor: str = "local",
    address: str | None = None,
    cpus_per_cell: float = 1.0,
    max_retries: int = 2,
    progress: bool = True,
) -> list[dict]:
    """Run ``fn(cell, run_dir) -> metrics`` for every cell not yet done; return all results."""
    from tqdm.auto import tqdm

    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {EXECUTORS}, got {executor!r}.")
    run_dir = Path(run_dir)
    (run_dir / "cells").mkdir(parents=True, exist_ok=True)
    todo = [c for c in cells if not _done(run_dir, c)]
    log.info("%d cells, %d already done", len(cells), len(cells) - len(todo))
    if executor == "local":
        for cell in tqdm(todo, desc="cells", disable=not progress):
            _run_one(fn, cell, run_dir)
    elif todo:
        _run_ray(todo, fn, run_dir, address, cpus_per_cell, max_retries, progress)
    return [json.loads(_result_path(run_dir, c).read_text()) for c in cells]


def _done(run_dir: Path, cell: Cell) -> bool:
    path = _result_path(run_dir, cell)
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("status") == "ok"
    except json.JSONDecodeError:
        return False


def _run_ray(todo, fn, run_dir, address, cpus_per_cell, max_retries, progress):
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor 'ray' needs Ray; install it with `pip install eads[distributed]`."
        ) from None
    from tqdm.auto import tqdm

    if not ray.is_initialized():
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"Cannot reach a Ray cluster at {address!r} ({exc}).") from None
    remote = ray.remote(num_cpus=cpus_per_cell, max_retries=max_retries)(_run_one)
    pending = {remote.remote(fn, c, run_dir): c for c in todo}
    bar = tqdm(total=len(pending), desc="cells (ray)", disable=not progress)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            cell = pending.pop(ref)
            try:
                ray.get(ref)
            except Exception as exc:  # the worker died more often than max_retries
                atomic_write_json(_result_path(run_dir, cell), {
                    "cell": asdict(cell), "id": cell.id, "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                })
            bar.update(1)
    bar.close()
