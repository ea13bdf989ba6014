"""The cell of a benchmark grid and its executor: cells run locally or on Ray, skipping cells done.

A *cell* is one independent unit of a benchmark (dataset x resolution x model x seed ...). Each
finished cell's result is written atomically to ``<run_dir>/cells/<cell id>.json``; re-running a
benchmark into the same directory skips the cells whose result exists, so an interrupted grid
finishes where it stopped. Each local cell is checked again just before it starts, so two
processes given the same directory (say, two halves of a long grid on two cores) skip what the
other finished; they may still duplicate the one cell both start at the same moment.
``executor="local"`` runs cells one after another in this process
(needs no Ray); ``executor="ray"`` submits them as Ray tasks (``ray.init()`` on this machine by
default, or ``address=`` to join a cluster; ``pip install eads[distributed]``), retrying a task
whose worker dies ``max_retries`` times and recording a cell that still fails with its error.
A cell whose function raises is recorded failed at once (a deterministic error would only fail
again); a rerun tries failed cells again.

On a cluster the run directory should be on a file system every node sees (NFS): the workers
write the cells' run directories and checkpoints there. The driver also writes each returned
result itself, so the gathered table is whole even where the workers' disks are private.

A cell file that cannot be trusted -- not JSON, not a JSON object, without its ``cell``, ``id``
or ``status`` field, or written for another cell -- is never taken as done: it is logged as a
warning and the cell is recomputed (a report reading the run leaves it out, with the same
warning). A cell's id (:attr:`Cell.id`) is the contract with the run directories already
written: it must not change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
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
        result.update(
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=5),
        )
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
    gpus_per_cell: float = 0.0,
    max_retries: int = 2,
    progress: bool = True,
) -> list[dict]:
    """Run ``fn(cell, run_dir) -> metrics`` for every cell not yet done; return all results.

    ``fn`` must be picklable for ``executor="ray"`` (a module-level function or a
    ``functools.partial`` of one). ``max_retries``: how many times Ray re-runs a cell whose
    worker process died (killed, out of memory, node lost) before recording it failed.
    Nothing is started or written when Ray is missing or ``address`` cannot be reached.
    """
    from tqdm.auto import tqdm

    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {EXECUTORS}, got {executor!r}.")
    if address and executor != "ray":
        raise ConfigError(f"address={address!r} needs executor 'ray', got {executor!r}.")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigError(f"max_retries must be an integer >= 0, got {max_retries!r}.")
    if not cpus_per_cell > 0 or not gpus_per_cell >= 0:
        raise ConfigError(
            f"cpus_per_cell must be > 0 and gpus_per_cell >= 0, got {cpus_per_cell!r} and "
            f"{gpus_per_cell!r}."
        )
    run_dir = Path(run_dir)
    todo = [c for c in cells if not _done(run_dir, c)]
    log.info("%d cells, %d already done", len(cells), len(cells) - len(todo))
    if executor == "ray" and todo:
        connect_ray(address)  # before anything is written: a bad address starts nothing
    (run_dir / "cells").mkdir(parents=True, exist_ok=True)
    if executor == "local":
        for cell in tqdm(todo, desc="cells", disable=not progress):
            if _done(run_dir, cell):  # another runner on the same directory finished it meanwhile
                log.info("cell %s was finished by another runner; skipped", cell.id)
                continue
            _run_one(fn, cell, run_dir)
    elif todo:
        _run_ray(todo, fn, run_dir, cpus_per_cell, gpus_per_cell, max_retries, progress)
    return [json.loads(_result_path(run_dir, c).read_text()) for c in cells]


#: the fields every cell file holds (:func:`_run_one` writes them)
CELL_FIELDS = ("cell", "id", "status")


def read_cell(path: str | Path, cell: Cell | None = None) -> dict | None:
    """The result in cell file ``path``, or None (with a logged warning) when it is corrupt.

    Corrupt: not valid JSON, not a JSON object, one of :data:`CELL_FIELDS` missing, or (with
    ``cell``) an ``id`` other than ``cell.id``. A missing file is None without a warning.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        why = f"not valid JSON ({exc})"
    else:
        missing = [k for k in CELL_FIELDS if not isinstance(result, dict) or k not in result]
        if missing:
            why = f"missing the fields {missing}"
        elif cell is not None and result["id"] != cell.id:
            why = f"written for cell {result['id']!r}, not {cell.id!r}"
        else:
            return result
    log.warning("cell file %s is corrupt (%s); it is not used, the cell is recomputed", path, why)
    return None


def load_results(run_dir: str | Path, cells: list[Cell] | None = None) -> list[dict]:
    """The readable results of ``run_dir``'s cells (all of ``cells/`` when ``cells`` is None),
    in order; missing cells and corrupt cell files (see :func:`read_cell`) are left out."""
    run_dir = Path(run_dir)
    if cells is not None:
        found = [read_cell(_result_path(run_dir, c), c) for c in cells]
    else:
        found = [read_cell(p) for p in sorted((run_dir / "cells").glob("*.json"))]
    return [r for r in found if r is not None]


def read_run_config(run_dir: str | Path, task: str, label: str) -> dict:
    """``run_dir``'s ``config.json`` when it is a ``task`` benchmark run with a ``cells/``
    folder; otherwise a one-sentence :class:`ConfigError` calling it "not a ``label`` benchmark
    run" (a report reads only run directories, so this is its one check of its input)."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        config = None
    if (
        not isinstance(config, dict)
        or config.get("task") != task
        or not (run_dir / "cells").is_dir()
    ):
        raise ConfigError(
            f"{str(run_dir)!r} is not {label} benchmark run (no {label.split()[-1]} config.json "
            "and cells/ in it)."
        )
    return config


def _done(run_dir: Path, cell: Cell) -> bool:
    result = read_cell(_result_path(run_dir, cell), cell)
    return result is not None and result["status"] == "ok"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor 'ray' needs Ray; install it with `pip install eads[distributed]` "
            "or use executor 'local'."
        ) from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[1] if "://" in address else address
    default = 10001 if address.startswith("ray://") else 6379  # Ray client / GCS ports
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", str(default))
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise ConfigError(
            f"Ray address {address!r} is not of the form host:port or ray://host:port."
        ) from None


def connect_ray(address: str | None = None, *, num_cpus: int | None = None, timeout_s: float = 5.0):
    """``ray.init`` once: a new local instance for ``address=None`` (``num_cpus``: default all
    cores), else join the cluster at ``address`` ("host:port", "ray://host:port" or "auto").

    The address is probed with a plain TCP connection first (``timeout_s``), so an unreachable
    cluster fails at once with a :class:`ConfigError` instead of Ray's long retry loop.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
    if address in (None, "", "local"):
        kwargs.update(num_cpus=num_cpus, include_dashboard=False)
        address = None
    elif address != "auto":
        host, port = _host_port(address)
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as exc:
            raise ConfigError(
                f"Cannot reach a Ray cluster at {address!r} ({exc.strerror or exc}); start one "
                "with `ray start --head` or fix --address."
            ) from None
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"Cannot reach a Ray cluster at {address!r} ({exc}).") from None
    return ray


def _run_ray(todo, fn, run_dir, cpus_per_cell, gpus_per_cell, max_retries, progress):
    from tqdm.auto import tqdm

    ray = _import_ray()
    remote = ray.remote(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell, max_retries=max_retries)(
        _run_one
    )
    pending = {remote.remote(fn, c, run_dir): c for c in todo}
    bar = tqdm(total=len(pending), desc="cells (ray)", disable=not progress)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            cell = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # the worker died more often than max_retries
                result = {
                    "cell": asdict(cell),
                    "id": cell.id,
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                    "attempts": max_retries + 1,
                }
                log.warning(
                    "cell %s failed after %d attempts: %s",
                    cell.id,
                    max_retries + 1,
                    result["error"],
                )
            atomic_write_json(_result_path(run_dir, cell), result)
            bar.update(1)
    bar.close()
