"""The docs' result tables and plots, copied from run directories (``benchmarks/refresh_docs.py``).

A page under ``docs/`` marks a table it takes from a run with a named block::

    <!-- results:begin NAME -->
    ...the run's results.md, verbatim...
    <!-- results:end NAME -->

:data:`BLOCKS` maps each ``NAME`` to its run directory (relative to the repository root), and
:func:`refresh` replaces every block's lines with that run's ``results.md``, byte for byte,
leaving the rest of the page as it was; :data:`PLOTS` are copied from the runs to
``docs/img/``. ``check=True`` changes nothing and says which blocks and plots differ. The
``results.md`` files themselves come from the runs' cells (``eads bench pde-report`` and
``eads bench attention-report``); nothing here reads cells or trains.

Do not use it for prose about the numbers: a block is replaced whole, so hand-written notes go
outside the markers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from eads._errors import CheckpointError, ConfigError
from eads._io import atomic_write_bytes

#: Block name -> run directory (relative to the repository root) whose ``results.md`` fills it.
BLOCKS: dict[str, str] = {
    "pde-released": "benchmarks/results/pde/released",
    "attention-full": "benchmarks/results/attention/full",
    "st-converged": "benchmarks/results/spatiotemporal/converged",
}

#: Plot in a run directory -> its copy under ``docs/`` (both relative to the repository root);
#: a plot a run has not drawn yet is reported and skipped.
PLOTS: dict[str, str] = {
    "benchmarks/results/attention/full/plots/degradation.png": (
        "docs/img/attention_full_degradation.png"
    ),
    "benchmarks/results/pde/released/plots/error_vs_resolution.png": (
        "docs/img/pde_released_error_vs_resolution.png"
    ),
    "benchmarks/results/pde/released/plots/predictions_burgers_released.png": (
        "docs/img/pde_released_predictions.png"
    ),
    "benchmarks/results/pde/released/plots/cost.png": "docs/img/pde_released_cost.png",
    "benchmarks/results/spatiotemporal/converged/plots/learning_beijing_pm25.png": (
        "docs/img/st_converged_learning_beijing_pm25.png"
    ),
    "benchmarks/results/spatiotemporal/converged/plots/predictions_beijing_pm25.png": (
        "docs/img/st_converged_predictions_beijing_pm25.png"
    ),
    "benchmarks/results/spatiotemporal/converged/plots/cost.png": "docs/img/st_converged_cost.png",
}

# A marker anywhere in a page: ``<!-- results:begin NAME -->`` or ``<!-- results:end NAME -->``.
_MARKER = re.compile(r"<!--\s*results:(begin|end)\b(.*?)-->")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# Markdown code, where a marker is only shown, not meant: a fenced block or an inline code span.
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)[^\n]*?\1")


def _mask_code(text: str) -> str:
    """``text`` with its Markdown code (fenced blocks, inline spans) blanked out, same length and
    the same newlines, so that offsets found in it hold for ``text``."""
    out, fence = [], None
    for line in text.splitlines(keepends=True):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)[0] * 3  # closed by a fence of the same character
            out.append(re.sub(r"[^\n]", " ", line))
        elif fence is not None:
            if line.lstrip(" ").startswith(fence):
                fence = None
            out.append(re.sub(r"[^\n]", " ", line))
        else:
            out.append(_CODE_SPAN.sub(lambda s: " " * len(s.group(0)), line))
    return "".join(out)


@dataclass(frozen=True)
class Block:
    """One named block of a page: its content is ``text[start:stop]`` (whole lines)."""

    name: str
    start: int
    """Offset of the first character after the begin marker's line."""
    stop: int
    """Offset of the end marker's line."""
    line: int
    """Line number (1-based) of the begin marker, for messages."""


@dataclass
class RefreshReport:
    """What :func:`refresh` found: ``(page, name)`` of each block that differs from its run (and
    was rewritten, unless checking), plots that differ, and plots that no run has drawn yet."""

    stale_blocks: list[tuple[str, str]] = field(default_factory=list)
    stale_plots: list[str] = field(default_factory=list)
    missing_plots: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not self.stale_blocks and not self.stale_plots


def find_blocks(text: str, page: str = "<text>", names: Mapping[str, str] = BLOCKS) -> list[Block]:
    """The named blocks of ``text`` in order (a marker inside Markdown code is text, not a
    marker).

    Raises:
        ConfigError: a marker without a known name (``names``), not on a line of its own, a
            begin without its end (or an end without its begin), or blocks that nest.
    """
    blocks, open_ = [], None  # open_: (name, start, line) of the block being read
    for m in _MARKER.finditer(_mask_code(text)):  # a marker shown as code is not one
        kind, name = m.group(1), m.group(2).strip()
        line = text.count("\n", 0, m.start()) + 1
        where = f"{page} line {line}"
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: the marker {m.group(0)!r} needs a block name, one of {sorted(names)}."
            )
        if name not in names:
            raise ConfigError(
                f"{where}: the block name {name!r} is unknown; known are {sorted(names)}."
            )
        at_line_start = m.start() == 0 or text[m.start() - 1] == "\n"
        at_line_end = m.end() == len(text) or text[m.end()] == "\n"
        if not (at_line_start and at_line_end):
            raise ConfigError(
                f"{where}: the marker {m.group(0)!r} must stand on a line of its own."
            )
        if kind == "begin":
            if open_ is not None:
                raise ConfigError(
                    f"{where}: block {name!r} begins inside block {open_[0]!r} (line {open_[2]}), "
                    "which has not ended."
                )
            open_ = (name, min(m.end() + 1, len(text)), line)
        elif open_ is None or open_[0] != name:
            raise ConfigError(f"{where}: '<!-- results:end {name} -->' has no begin before it.")
        else:
            blocks.append(Block(name, open_[1], m.start(), open_[2]))
            open_ = None
    if open_ is not None:
        raise ConfigError(
            f"{page} line {open_[2]}: block {open_[0]!r} has no "
            f"'<!-- results:end {open_[0]} -->' after it."
        )
    return blocks


def run_results(root: str | Path, name: str, names: Mapping[str, str] = BLOCKS) -> str:
    """The ``results.md`` of block ``name``'s run directory (``names``), as text.

    Raises:
        CheckpointError: the run directory has no ``results.md``.
    """
    path = Path(root) / names[name] / "results.md"
    if not path.is_file():
        raise CheckpointError(
            f"block {name!r} takes its table from {str(path)!r}, which does not exist (build it "
            "with `eads bench pde-report` or `eads bench attention-report`)."
        )
    text = path.read_text(encoding="utf-8")
    return text if text.endswith("\n") else text + "\n"


def render(
    text: str, tables: Mapping[str, str], page: str = "<text>", names: Mapping[str, str] = BLOCKS
) -> tuple[str, list[str]]:
    """``text`` with each block's lines replaced by ``tables[name]`` (newline-terminated); also
    the names of the blocks whose content changed. Everything outside the blocks is kept."""
    out, at, changed = [], 0, []
    for b in find_blocks(text, page, names):
        new = tables[b.name]
        if text[b.start : b.stop] != new and b.name not in changed:
            changed.append(b.name)
        out += [text[at : b.start], new]
        at = b.stop
    out.append(text[at:])
    return "".join(out), changed


def refresh(
    root: str | Path,
    *,
    check: bool = False,
    names: Mapping[str, str] = BLOCKS,
    plots: Mapping[str, str] = PLOTS,
) -> RefreshReport:
    """Bring every block of ``root/docs/*.md`` and every plot of ``plots`` in line with the run
    directories (each page and plot written atomically); ``check=True`` writes nothing. Every
    page is parsed before anything is written, so a bad marker leaves all pages as they were.

    Raises:
        ConfigError: a bad marker (:func:`find_blocks`).
        CheckpointError: a block's run directory has no ``results.md``.
    """
    root = Path(root)
    report = RefreshReport()
    pages = sorted((root / "docs").glob("*.md"))
    texts = {p: p.read_text(encoding="utf-8") for p in pages}
    used = {b.name for p, t in texts.items() for b in find_blocks(t, _rel(p, root), names)}
    tables = {name: run_results(root, name, names) for name in sorted(used)}
    rewritten = {}
    for page, text in texts.items():
        new, changed = render(text, tables, _rel(page, root), names)
        report.stale_blocks += [(_rel(page, root), name) for name in changed]
        if changed:
            rewritten[page] = new
    copies = {}
    for src, dst in plots.items():
        if not (root / src).is_file():
            report.missing_plots.append(src)
            continue
        data = (root / src).read_bytes()
        if not (root / dst).is_file() or (root / dst).read_bytes() != data:
            report.stale_plots.append(dst)
            copies[root / dst] = data
    if not check:
        for page, new in rewritten.items():
            atomic_write_bytes(page, new.encode("utf-8"))
        for dst, data in copies.items():
            atomic_write_bytes(dst, data)
    return report


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
