"""Run directories: everything a run produces, in one folder, written atomically.

A run directory holds

* ``config.json`` -- the resolved configuration (all defaults filled in);
* ``meta.json`` -- seed, code revision (git), device, library versions, start time, and for a
  run trained on a data file that file's fingerprint (``data``: path, size in bytes, sha256),
  by which a resume checks that it is given the same data;
* ``checkpoint.safetensors`` -- parameters, optimiser state and loop state (resumable);
* ``metrics.json`` -- the results; ``history.json`` -- per-epoch losses;
* whatever else the run adds (``standardizer.json``, plots).

Every file is replaced atomically (:mod:`eads._io`), so an interrupted run leaves the previous
complete version of each file, never half of one (and, when killed outright, perhaps a
``.tmp-*`` file, which :meth:`RunDir.remove_temporaries` deletes).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from eads import _faults
from eads._errors import CheckpointError
from eads._io import atomic_write_json, atomic_write_with, remove_temporaries

CHECKPOINT = "checkpoint.safetensors"


def git_revision() -> str:
    """The code revision (``git describe``-like), or ``"unknown"`` outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description(device: torch.device | str | None = None) -> str:
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def run_metadata(seed: int, device: torch.device | str | None = None) -> dict[str, Any]:
    from eads import __version__

    return {
        "seed": seed,
        "revision": git_revision(),
        "device": device_description(device),
        "eads": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def data_fingerprint(path: str | Path) -> dict[str, Any]:
    """``{"path", "bytes", "sha256"}`` of a data file: what tells two data files apart."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


class RunDir:
    """A run directory (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(
        cls,
        path: str | Path,
        config: dict[str, Any],
        seed: int,
        device=None,
        *,
        data: dict[str, Any] | None = None,
    ) -> RunDir:
        """Make the folder and write ``config.json`` then ``meta.json`` (``data``: the
        :func:`data_fingerprint` of the run's data file, recorded in ``meta.json``)."""
        if _faults.ARMED:
            _faults.point("before-run-dir")
        run = cls(path)
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run.path / "config.json", config)
        meta = run_metadata(seed, device)
        if data is not None:
            meta["data"] = data
        atomic_write_json(run.path / "meta.json", meta)
        return run

    def remove_temporaries(self) -> list[Path]:
        """Delete what writes interrupted by a kill left (``.tmp-*``); returns their paths.

        Call it only while no other process writes to this run directory."""
        return remove_temporaries(self.path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def read_json(self, name: str) -> dict[str, Any]:
        path = self.path / name
        if not path.is_file():
            raise CheckpointError(f"Run directory {str(self.path)!r} holds no {name}.")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            raise CheckpointError(f"{str(path)!r} is corrupt (not valid JSON).") from None

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)

    def config(self) -> dict[str, Any]:
        return self.read_json("config.json")


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], state: dict) -> None:
    """Atomically write tensors and a JSON-able state dict to a safetensors file."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {"state": json.dumps(state)}
    atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by :func:`save_checkpoint`; clear error if missing or corrupt."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            metadata = fh.metadata() or {}
        state = json.loads(metadata.get("state", "{}"))
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is corrupt or unreadable ({exc})."
        ) from None
    return tensors, state
