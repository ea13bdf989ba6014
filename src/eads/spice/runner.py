"""Run ngspice in batch mode and read its raw output.

``run_ngspice(text)`` writes the netlist to a temporary folder, runs
``ngspice -b -r out.raw circuit.cir`` with a timeout, and parses the raw file (binary or ASCII;
ngspice writes binary unless ``SPICE_ASCIIRAWFILE`` is set) into a time vector and one vector per
saved quantity. Every failure is a :class:`SpiceError` (an :class:`eads.EADSError`) with one
sentence: ngspice missing, its own error message (unknown element, ``Timestep too small``, ...),
a timeout, or a raw file that is missing or unreadable.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eads._errors import SpiceError

log = logging.getLogger(__name__)

#: The executable looked up on ``PATH``.
NGSPICE = "ngspice"


@dataclass
class SpiceResult:
    """A transient's saved vectors: ``time (K,)`` in seconds and ``vectors[name] (K,)``.

    Names are as ngspice reports them, lower case (``"v(s0_h3)"``). ``wall_s`` is the wall-clock
    time of the ngspice process (start-up and parsing included); ``analysis_s`` its own
    "Total analysis time" when it printed one.
    """

    time: np.ndarray
    vectors: dict[str, np.ndarray]
    wall_s: float
    analysis_s: float | None = None
    log: str = field(default="", repr=False)

    def voltage(self, node: str) -> np.ndarray:
        """The voltage (volt) of ``node`` at every time point, ``(K,)``."""
        key = f"v({node.lower()})"
        if key not in self.vectors:
            raise SpiceError(f"ngspice's output holds no voltage for node {node!r}.")
        return self.vectors[key]


def find_ngspice() -> str:
    """The path of the ``ngspice`` executable, or a :class:`SpiceError` saying how to install it."""
    path = shutil.which(NGSPICE)
    if path is None:
        raise SpiceError(
            "ngspice is not installed (no 'ngspice' on PATH); install it, e.g. with "
            "'apt-get install ngspice', to export-and-verify circuits."
        )
    return path


_ERROR_PATTERNS = re.compile(
    r"(error|too small|singular|aborted|interrupted|not converge|no convergence|fatal)",
    re.IGNORECASE,
)


def _ngspice_message(stdout: str, stderr: str) -> str:
    """ngspice's own error lines, joined into one line (or its last lines if none match)."""
    lines = [ln.strip() for ln in (stderr + "\n" + stdout).splitlines() if ln.strip()]
    hits = [ln for ln in lines if _ERROR_PATTERNS.search(ln)]
    picked = hits or lines[-3:]
    msg = " / ".join(dict.fromkeys(picked))  # unique, in order
    return msg[:600] if msg else "(no message)"


def run_ngspice(
    netlist: str,
    *,
    timeout_s: float = 300.0,
    workdir: str | os.PathLike | None = None,
) -> SpiceResult:
    """Run the netlist text ``netlist`` through ngspice in batch mode and read its raw output.

    ``workdir`` keeps the netlist, raw file and log there (default: a temporary folder that is
    removed afterwards).
    """
    exe = find_ngspice()
    if not (timeout_s > 0):
        raise SpiceError(f"timeout_s must be positive, got {timeout_s!r}.")
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="eads-spice-")
        folder = Path(tmp.name)
    else:
        folder = Path(workdir)
        folder.mkdir(parents=True, exist_ok=True)
    try:
        cir, raw = folder / "circuit.cir", folder / "out.raw"
        cir.write_text(netlist)
        if raw.exists():
            raw.unlink()
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [exe, "-b", "-r", str(raw), str(cir)],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env={**os.environ, "SPICE_ASCIIRAWFILE": "0"},
            )
        except subprocess.TimeoutExpired:
            raise SpiceError(
                f"ngspice did not finish within timeout_s={timeout_s:g} s; raise the timeout or "
                "export fewer test inputs."
            ) from None
        except OSError as exc:
            raise SpiceError(f"ngspice could not be started ({exc}).") from None
        wall = time.perf_counter() - t0
        (folder / "ngspice.log").write_text(proc.stdout + "\n" + proc.stderr)
        failed = proc.returncode != 0 or re.search(
            r"(timestep too small|simulation\(s\) aborted|simulation interrupted)",
            proc.stderr + proc.stdout,
            re.IGNORECASE,
        )
        if failed or not raw.is_file():
            raise SpiceError(
                f"ngspice failed (exit code {proc.returncode}): "
                f"{_ngspice_message(proc.stdout, proc.stderr)}."
            )
        t, vectors = read_raw(raw)
        m = re.search(r"Total analysis time \(seconds\)\s*=\s*([0-9.eE+-]+)", proc.stdout)
        analysis = float(m.group(1)) if m else None
        return SpiceResult(t, vectors, wall, analysis, proc.stdout + proc.stderr)
    finally:
        if tmp is not None:
            tmp.cleanup()


def read_raw(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Parse an ngspice raw file (binary or ASCII, real data, the first plot).

    Returns ``time (K,)`` and ``{name: (K,)}`` for every other variable, names lower-cased.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpiceError(f"ngspice's raw file {str(path)!r} cannot be read ({exc}).") from None
    header: dict[str, str] = {}
    names: list[str] = []
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise SpiceError(f"ngspice's raw file {str(path)!r} ends inside its header.")
        line = data[pos:end].decode("latin-1").rstrip("\r")
        pos = end + 1
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "variables":
            n = int(header.get("no. variables", "0"))
            for _ in range(n):
                end = data.find(b"\n", pos)
                parts = data[pos:end].decode("latin-1").split()
                pos = end + 1
                names.append(parts[1].lower())
            continue
        if key in ("binary", "values"):
            fmt = key
            break
        header[key] = value.strip()
    if "complex" in header.get("flags", ""):
        raise SpiceError("ngspice's raw file holds complex data; only transients are supported.")
    nvars, npts = len(names), int(header.get("no. points", "0"))
    if nvars == 0 or names[0] != "time":
        raise SpiceError(f"ngspice's raw file {str(path)!r} holds no transient (no time vector).")
    if fmt == "binary":
        count = len(data[pos:]) // 8 // nvars
        arr = np.frombuffer(data[pos : pos + count * nvars * 8], dtype="<f8").reshape(count, nvars)
    else:
        tokens = data[pos:].decode("latin-1").split()
        # each point: index, then nvars values
        per = nvars + 1
        count = len(tokens) // per
        arr = np.array(
            [[float(tokens[p * per + 1 + v]) for v in range(nvars)] for p in range(count)]
        ).reshape(count, nvars)
    if npts and count < npts:
        log.warning("ngspice's raw file holds %d of %d points", count, npts)
    if count == 0:
        raise SpiceError(f"ngspice's raw file {str(path)!r} holds no data points.")
    t = np.abs(arr[:, 0])  # ngspice may flag a point by the sign of its time
    return t, {name: arr[:, k].copy() for k, name in enumerate(names) if k}
