"""docs/ARCHITECTURE.md's floors: a module imports only from the floors below it.

Checked by parsing the source (``ast``), so function-local imports count as much as top-level
ones: ``learn/`` and ``hardware/`` (floor 3), ``circuit/`` (2) and ``solve/`` (1) never import
``tasks/``, the CLI or the package's public re-exports (``import eads`` / ``from eads import X``);
``learn/`` never imports ``hardware/`` (its trainers register themselves); ``circuit/`` and
``solve/`` never import ``learn/``; ``spice/`` reads trained runs through ``learn/``, never
``tasks/``; ``report/`` (floor 2) never imports ``learn/`` or ``hardware/`` (it never trains);
``bench/`` (floor 1, the benchmark core) imports nothing from floor 2 up. < 1 s.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "eads"

ABOVE_FLOOR_3 = ("eads.tasks", "eads.cli", "eads._cli", "eads.estimator", "eads.spice")
FORBIDDEN = {
    # spice/ is on floor 4 beside tasks/, but reads trained runs through learn/, not tasks/
    "spice": ("eads.tasks", "eads.cli", "eads._cli", "eads.estimator"),
    "hardware": ABOVE_FLOOR_3,
    # trainers defined in hardware/ register themselves; learn/ never reaches into it
    "learn": (*ABOVE_FLOOR_3, "eads.hardware"),
    "circuit": (*ABOVE_FLOOR_3, "eads.learn"),
    "solve": (*ABOVE_FLOOR_3, "eads.learn"),
    # report/ (floor 2) draws from run directories: it never trains, so never reaches learn/
    "report": (*ABOVE_FLOOR_3, "eads.learn", "eads.hardware"),
    # bench/ (floor 1, the benchmark core) sits below the reports that read its cells
    "bench": (*ABOVE_FLOOR_3, "eads.learn", "eads.hardware", "eads.circuit", "eads.report"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every module an ``import`` anywhere in ``source`` reaches.

    Relative imports are resolved against ``module``; ``from pkg import name`` yields both
    ``pkg`` and ``pkg.name`` (``name`` may be a submodule).
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if target != "eads":  # ``from eads import x``: only ``eads.x`` says what it reaches
                found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def _violates(name: str, forbidden: tuple[str, ...]) -> bool:
    parts = name.split(".")
    if parts[0] != "eads":
        return False
    if len(parts) == 1:  # ``import eads``: the package's public re-exports, floor 5
        return True
    top = PACKAGE / parts[1]
    if len(parts) == 2 and not (top.is_dir() or top.with_suffix(".py").is_file()):
        return True  # ``from eads import ECTrain``: a re-export of eads/__init__.py, floor 5
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def violations(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    module = _module_name(path)
    hits = imported_modules(path.read_text(), module, path.name == "__init__.py")
    where = path.relative_to(SRC)
    return [f"{where}:{line} imports {name}" for line, name in hits if _violates(name, forbidden)]


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_lower_floors_import_nothing_from_above(floor):
    files = sorted((PACKAGE / floor).rglob("*.py"))
    assert files, f"no modules under src/eads/{floor}"
    bad = [v for path in files for v in violations(path, FORBIDDEN[floor])]
    assert not bad, "layering violation (docs/ARCHITECTURE.md):\n" + "\n".join(bad)


def test_the_checker_sees_every_kind_of_import():
    source = """
import torch
import eads._errors as errs
from eads import _errors
from eads.learn.loop import fit

def late():
    from eads.tasks.fit import fit_run
    import eads._cli.core as core

class K:
    def m(self):
        from eads import cli, ECTrain
        from ..tasks import fit
        from .. import estimator
        import eads
"""
    hits = imported_modules(source, "eads.learn.distributed")
    bad = {name for _, name in hits if _violates(name, FORBIDDEN["circuit"])}
    assert bad == {
        "eads.learn.loop",
        "eads.learn.loop.fit",
        "eads.tasks.fit",
        "eads.tasks.fit.fit_run",
        "eads._cli.core",
        "eads.cli",
        "eads.ECTrain",
        "eads.tasks",
        "eads.estimator",
        "eads",
    }
    lines = {name: line for line, name in hits}
    assert lines["eads.tasks.fit.fit_run"] == 8 and lines["eads.estimator"] == 15
    assert not {n for _, n in hits if _violates(n, FORBIDDEN["learn"])} & {
        "torch",
        "eads._errors",
        "eads._errors._errors",
        "eads.learn.loop",
    }
    assert not _violates("eads.learn.loop", ("eads.lea",))  # whole names, not prefixes
    # a package's own relative import resolves against the package, not its parent
    assert imported_modules("from .loop import fit", "eads.learn", is_package=True)[0][1] == (
        "eads.learn.loop"
    )
