"""A suite's arguments and its run directory: names and seeds checked, budgets merged, and the
run's ``config.json`` written with every cell it lists.

Every refusal is one :class:`eads.ConfigError` sentence naming the bad value and what is
allowed, raised before anything is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from eads._errors import ConfigError
from eads.bench.budget import Budget
from eads.bench.cells import Cell
from eads.runs import RunDir


def parse_names(
    value: str | Sequence | None, valid: Sequence, what: str, cast: Callable = str
) -> list:
    """The names ``value`` gives (comma-separated or a sequence; None: all of ``valid``), each
    cast by ``cast``, in the given order, duplicates dropped."""
    if value is None:
        return list(valid)
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        items = [cast(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raise ConfigError(
            f"{what}={value!r} must be a comma-separated list of {list(valid)}."
        ) from None
    bad = [v for v in items if v not in valid]
    if bad or not items:
        raise ConfigError(
            f"{what}={value!r} names unknown {what} {bad}; valid {what} are {list(valid)}."
        )
    return list(dict.fromkeys(items))


def parse_seeds(seeds: int | Sequence[int] | None, default: int) -> list[int]:
    """Model seeds: a count n (seeds 0..n-1), the seeds themselves (duplicates dropped), or
    None (``default`` as a count)."""
    if seeds is None:
        seeds = default
    if isinstance(seeds, bool):
        raise ConfigError(f"seeds={seeds!r} must be a positive count or a list of seeds.")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"seeds={seeds!r} must be at least 1.")
        return list(range(seeds))
    out = list(dict.fromkeys(seeds))
    if not out or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in out):
        raise ConfigError(f"seeds={seeds!r} must name one or more integer seeds >= 0.")
    return out


def merge_budgets(
    budgets: Mapping[str, Budget] | None, defaults: Mapping[str, Budget]
) -> dict[str, Budget]:
    """``defaults`` with the models ``budgets`` names replaced; a name that ``defaults`` lacks
    is refused."""
    unknown = sorted(set(budgets or ()) - set(defaults))
    if unknown:
        raise ConfigError(
            f"budgets name unknown models {unknown}; valid models are {list(defaults)}."
        )
    return {**defaults, **(budgets or {})}


def open_run(run_dir: str | Path, config: dict[str, Any], seed: int) -> list[Cell]:
    """Write ``run_dir``'s ``config.json`` and ``meta.json``; returns every cell the run lists.

    ``config["cells"]`` holds this call's cells (``dataclasses.asdict``). Resuming or extending
    a run keeps the cells an earlier call listed (a cell listed again takes this call's place),
    so the report of the run covers all of them.
    """
    run_dir = Path(run_dir)
    config = dict(config)
    if (run_dir / "config.json").is_file():
        previous = RunDir(run_dir).config()
        ids = {Cell(**c).id for c in config["cells"]}
        config["cells"] = [c for c in previous.get("cells", []) if Cell(**c).id not in ids] + (
            config["cells"]
        )
    RunDir.create(run_dir, config, seed=seed)
    return [Cell(**c) for c in config["cells"]]


def cell_dicts(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """The cells as ``config.json`` lists them."""
    return [dataclasses.asdict(c) for c in cells]


__all__ = ["cell_dicts", "merge_budgets", "open_run", "parse_names", "parse_seeds"]
