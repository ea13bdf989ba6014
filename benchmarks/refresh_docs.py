"""The docs' result tables and plots, refreshed from the committed run directories.

Run from the repository root::

    .venv/bin/python benchmarks/refresh_docs.py          # rewrite what differs, say what
    .venv/bin/python benchmarks/refresh_docs.py --check  # change nothing; exit 1 on a difference

Each ``<!-- results:begin NAME -->`` ... ``<!-- results:end NAME -->`` block in ``docs/*.md`` gets
the ``results.md`` of NAME's run directory, and the declared plots are copied to ``docs/img/``
(both mappings: :mod:`eads.report.docs`). Rebuild a run's ``results.md`` from its cells first
(``eads bench pde-report RUN_DIR``, ``eads bench attention-report RUN_DIR``). Nothing trains.
Exit codes: 0 in sync (or refreshed), 1 ``--check`` found a difference, 2 a bad marker or a
missing ``results.md`` (one sentence on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eads._errors import EADSError
from eads.report.docs import refresh

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on drift")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this)")
    args = parser.parse_args(argv)
    try:
        report = refresh(args.root, check=args.check)
    except EADSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "differs from its run" if args.check else "refreshed"
    for page, name in report.stale_blocks:
        print(f"{page}: block {name} {verb}")
    for dst in report.stale_plots:
        if not args.check:
            print(f"{dst}: copied")
        elif (args.root / dst).is_file():
            print(f"{dst}: differs from its run")
        else:
            print(f"{dst}: not yet copied from its run")
    for src in report.missing_plots:
        print(f"{src}: not drawn yet, skipped")
    if report.in_sync:
        print("docs in sync with their run directories")
    return 1 if args.check and not report.in_sync else 0


if __name__ == "__main__":
    sys.exit(main())
