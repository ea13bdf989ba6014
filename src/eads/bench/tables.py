"""Rows to tables: CSV, JSON and Markdown writers (atomic, :mod:`eads._io`) and their formatting.

A *row* is a flat dict (one cell, or one group of seeds); the writers take the column order
explicitly, so a table's layout is stated by the suite that owns it. Numbers the table cannot
show (None, NaN, inf) are written "-". Seeds are summarised as ``mean +- std`` (the sample
standard deviation, ``ddof = 1``; a single seed shows its value alone).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from eads._io import atomic_write_csv, atomic_write_json, atomic_write_text
from eads.bench.budget import stop_reason_of


def fmt(v: Any, spec: str) -> str:
    """``format(v, spec)``, or "-" for a missing or non-finite number."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, sample std)`` of the finite values (std 0 for one value, NaN for none)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def fmt_mean_std(values: Sequence[float], spec: str) -> str:
    """``"m +- s"`` with ``spec`` for both (``"m"`` alone for one value; "-" for none)."""
    vals = [v for v in values if v is not None and math.isfinite(float(v))]
    mean, std = mean_std(vals)
    if not vals:
        return "-"
    return fmt(mean, spec) if len(vals) == 1 else f"{fmt(mean, spec)} \u00b1 {fmt(std, spec)}"


def group_rows(rows: Sequence[dict], key: Callable[[dict], tuple]) -> dict[tuple, list[dict]]:
    """Rows grouped by ``key(row)``, groups and members in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return groups


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]], align: str = "") -> str:
    """A GitHub Markdown table; ``align``: one letter per column, "l" or "r" (default "l")."""
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


def write_csv(path: str | os.PathLike, rows: list[dict], columns: Sequence[str]) -> None:
    """``rows`` as CSV with ``columns`` (extra keys left out), atomically."""
    atomic_write_csv(path, rows, list(columns))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON, atomically."""
    atomic_write_json(path, obj)


def write_text(path: str | os.PathLike, text: str) -> None:
    """A text or Markdown table, newline-terminated, atomically."""
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")


#: The caption of :func:`cpu_hours_table` (what its hours are and are not).
CPU_HOURS_NOTE = (
    "CPU hours of training (`train_cost_s`): the wall time of every model a finished cell "
    "trained (each learning rate or search trial, the chosen one included), summed over the "
    "seeds. One thread of a 2-core machine whose other core was usually busy too, so they can "
    "overstate the CPU time."
)


def cpu_hours(rows: Sequence[dict]) -> float:
    """The rows' ``train_cost_s`` summed, in hours (a missing or non-finite one counts 0)."""
    costs = [r.get("train_cost_s") for r in rows]
    return sum(float(v) for v in costs if v is not None and math.isfinite(float(v))) / 3600.0


def cpu_hours_table(
    rows: Sequence[dict],
    group: Callable[[dict], tuple[str, ...]],
    group_header: Sequence[str],
    labels: dict[str, str] | None = None,
) -> str:
    """CPU hours per group (``group(row)``, e.g. data set x resolution) and model, with a total
    column and row, from the rows whose ``status`` is ``"ok"``; models that do not train (stop
    reason "none": the references) are left out, and a model a group has no finished cell of
    shows "-". Columns: ``group_header``, then the models in first-seen order."""
    labels = labels or {}
    ok = [
        r for r in rows if r.get("status") == "ok" and stop_reason_of(r.get("stopped_by")) != "none"
    ]
    models = list(dict.fromkeys(r["model"] for r in ok))

    def line(key: Sequence[str], rs: list[dict]) -> list[str]:
        by_model = group_rows(rs, lambda r: (r["model"],))
        hours = [fmt(cpu_hours(by_model[(m,)]), ".2f") if (m,) in by_model else "-" for m in models]
        return [*key, *hours, fmt(cpu_hours(rs), ".2f")]

    body = [line(key, rs) for key, rs in group_rows(ok, group).items()]
    body.append(line(["all", *[""] * (len(group_header) - 1)], ok))
    head = [*group_header, *(labels.get(m, m) for m in models), "all models"]
    align = "l" * len(group_header) + "r" * (len(models) + 1)
    return markdown_table(head, body, align=align) + "\n\n" + CPU_HOURS_NOTE
