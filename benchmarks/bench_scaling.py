"""How the cost of an EC-Train step grows in batch, hidden size and steps, against the FLOP line.

Run from the repository root::

    .venv/bin/python benchmarks/bench_scaling.py [--threads 1] [--no-memory]

Three sweeps of eads EC-Train (``SwitchingHeun``, eager kernels; N = M = 32, T = 1, float32),
each varying one of B, H and the step count around ``B = 1024, H = 128, 4 steps``; every point is
the median of interleaved repeats. The ideal line is the counted FLOPs
(``6 evals B H^2 + 4 B H (N + M)``, ``evals = 2 steps``) at the machine's measured matmul rate.
Then the tape's memory at large ``B x H``: its bytes (``Tape.nbytes``, exactly what is allocated:
``5 steps B H`` values) and the growth of the process's peak resident memory over one EC-Train
step (tape, the forward's and the adjoint's ``(B, H)`` buffers), each in a fresh subprocess
(Linux: the peak is reset through ``/proc/self/clear_refs`` and read as ``VmHWM``).

Writes the JSON and ``benchmarks/results/scaling.png`` (log-log, measured points and the ideal
line per sweep).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core  # noqa: E402

import eads  # noqa: E402
from eads.runs import git_revision  # noqa: E402
from eads.solve import SwitchingHeun  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BASE = {"B": 1024, "H": 128, "steps": 4}
SWEEPS = {
    "B": [64, 128, 256, 512, 1024, 2048, 4096, 8192],
    "H": [16, 32, 64, 128, 256, 512, 1024],
    "steps": [1, 2, 4, 8, 16, 32],
}
MEMORY = [(1024, 512), (4096, 1024), (8192, 2048)]  # (B, H) at 4 steps


def point(B: int, H: int, steps: int, repeats: int, min_time: float) -> dict:
    torch.manual_seed(0)
    x, y = torch.randn(B, bench_core.N_IO), torch.randn(B, bench_core.N_IO)
    model = bench_core.make_model(H, SwitchingHeun(steps))
    t = bench_core.interleaved(
        {"train": lambda: eads.ectrain_gradients(model, x, y)}, torch.device("cpu"), repeats,
        min_time,
    )["train"]  # fmt: skip
    flops = bench_core.train_flops(2 * steps, B, H)
    return {"B": B, "H": H, "steps": steps, "time_s": t["median_s"], "spread": t["spread"],
            "flops": flops}  # fmt: skip


MEMORY_PROBE = r"""
import sys, torch, eads
from eads.solve import SwitchingHeun
torch.set_num_threads(int(sys.argv[3]))
B, H = int(sys.argv[1]), int(sys.argv[2])
m = eads.EADS(32, H, 32, seed=0, solver=SwitchingHeun(4))
x, y = torch.randn(B, 32), torch.randn(B, 32)

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS:")
eads.ectrain_gradients(m, x, y)
print(before, status("VmHWM:"), m.solver.workspace.nbytes)
"""


def memory_point(B: int, H: int, threads: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(B), str(H), str(threads)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    ).stdout.split()  # fmt: skip
    before, after, tape = (int(v) for v in out[-3:])
    return {"B": B, "H": H, "steps": 4, "tape_bytes": tape, "tape_bytes_formula": 5 * 4 * B * H * 4,
            "peak_rss_growth_bytes": after - before}  # fmt: skip


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peak = result["matmul_rate_flops"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (name, pts) in zip(axes, result["sweeps"].items(), strict=True):
        xs = [p[name] for p in pts]
        ax.loglog(xs, [p["time_s"] for p in pts], "o-", label="eads EC-Train (measured)")
        ax.loglog(xs, [p["flops"] / peak for p in pts], "k--",
                  label=f"counted FLOPs at {peak / 1e9:.0f} GFLOP/s")  # fmt: skip
        ax.set_xlabel({"B": "batch B", "H": "hidden nodes H", "steps": "steps"}[name])
        fixed = ", ".join(f"{k}={v}" for k, v in BASE.items() if k != name)
        ax.set_title(f"vs {name} ({fixed})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("seconds per EC-Train step")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"SwitchingHeun EC-Train, {result['threads']} thread(s), {result['cpu']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.2)
    ap.add_argument("--no-memory", action="store_true", help="skip the large-tape probes")
    ap.add_argument("--out", default=str(RESULTS / "scaling.json"))
    ap.add_argument("--plot", default=str(RESULTS / "scaling.png"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    result = {
        "command": " ".join(["python", *sys.argv]),
        "cpu": bench_core.cpu_name(),
        "threads": args.threads,
        "torch": torch.__version__,
        "revision": git_revision(),
        "load_before": bench_core.loadavg(),
        "matmul_rate_flops": bench_core.matmul_rate(torch.device("cpu"), torch.float32),
        "base": BASE,
        "sweeps": {},
    }
    for name, values in SWEEPS.items():
        pts = []
        for v in values:
            p = point(**{**BASE, name: v}, repeats=args.repeats, min_time=args.min_time)
            p["fraction_of_matmul_rate"] = p["flops"] / p["time_s"] / result["matmul_rate_flops"]
            pts.append(p)
            print(json.dumps(p), flush=True)
        result["sweeps"][name] = pts
    result["matmul_rate_after_flops"] = bench_core.matmul_rate(torch.device("cpu"), torch.float32)
    if not args.no_memory:
        result["tape_memory"] = [memory_point(B, H, args.threads) for B, H in MEMORY]
        for m in result["tape_memory"]:
            print(json.dumps(m), flush=True)
    result["load_after"] = bench_core.loadavg()
    result["wall_s"] = time.time() - t0
    from eads._io import atomic_write_json

    atomic_write_json(args.out, result)
    if args.plot:
        plot(result, Path(args.plot))
    print(f"wrote {args.out} and {args.plot}")
    return result


if __name__ == "__main__":
    main()
