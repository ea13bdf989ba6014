"""The GNO of the converged PDE run: one epoch's work, timed beside an older implementation.

Run from the repository root (one command regenerates ``benchmarks/results/operators.json``)::

    git show 9ac1dd8:src/eads/baselines/operators.py > /tmp/operators_before.py   # optional
    .venv/bin/python benchmarks/bench_operators.py [--before /tmp/operators_before.py]
        [--resolutions 1024 4096] [--repeats 3] [--out benchmarks/results/operators.json]
    .venv/bin/python benchmarks/bench_operators.py --table benchmarks/results/operators.json

The GNO is built with the run's settings for ``burgers_released`` (``eads.tasks.pde``'s
``FULL_BUDGETS["gno"]`` and ``DATASET_HYPERPARAMETERS``: width 16, kernel width 64, depth 4, 64
sampled points, radius 0.25), at each resolution. Two timings make up one of its epochs:

* **train step**: ``SampledNodesBackprop.loss_and_gradients`` on a batch of 32 (the run's batch;
  900 training instances make 29 steps an epoch);
* **validation**: the whole-grid forward pass (``model(x)``, no gradient) on 100 instances (the
  run's validation split). Its cost grows with the resolution (``resolution / 64`` sub-grids),
  so it is most of an epoch at 4096 points.

Each is the median of ``--repeats`` passes after a warm-up, one thread. With ``--before PATH``
the same passes run for the implementation in that file, interleaved with the current one on
the same weights and inputs, and the JSON records ``speedup = before / after`` and the largest
difference between the two outputs. The box is shared (``/proc/loadavg`` is recorded): compare
the ratios of one run, not absolute times across runs. Timings are never a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gnn import _load_module, _loadavg, matmul_gflops  # noqa: E402  (sibling script)

from eads.baselines import operators  # noqa: E402
from eads.learn.trainers import SampledNodesBackprop  # noqa: E402
from eads.tasks import pde  # noqa: E402

BATCH, N_VAL, STEPS_PER_EPOCH = 32, 100, 29  # the run's batch, validation split, 900 / 32


def gno_settings() -> dict:
    return {
        **pde.FULL_BUDGETS["gno"].hyperparameters,
        **pde.DATASET_HYPERPARAMETERS[("gno", "burgers_released")],
    }


def _passes(module, state, res: int) -> dict:
    """The two timed passes of one implementation, on fixed weights and inputs."""
    model = module.GNO(1, res, **gno_settings())
    model.load_state_dict(state)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(BATCH, res, generator=gen), torch.randn(BATCH, res, generator=gen)
    x_val = torch.randn(N_VAL, res, generator=gen)
    trainer = SampledNodesBackprop()

    def train_step():
        torch.manual_seed(3)  # the same sampled points for every implementation
        trainer.loss_and_gradients(model, x, y)

    def validation():
        with torch.no_grad():
            return model(x_val)

    return {"train_step": train_step, "validation": validation}


def measure(impls: dict[str, dict], repeats: int) -> dict[str, dict]:
    """Median times of every implementation's passes, interleaved (one of each per round)."""
    samples = {k: {p: [] for p in passes} for k, passes in impls.items()}
    for passes in impls.values():
        for f in passes.values():
            f()  # warm-up
    for _ in range(repeats):
        for part in ("train_step", "validation"):
            for k, passes in impls.items():
                t0 = time.perf_counter()
                passes[part]()
                samples[k][part].append(time.perf_counter() - t0)
    out = {}
    for k, parts in samples.items():
        out[k] = {
            p: {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts)}
            for p, ts in parts.items()
        }
        out[k]["epoch_s"] = (
            STEPS_PER_EPOCH * out[k]["train_step"]["median_s"] + out[k]["validation"]["median_s"]
        )
    return out


def table(path: str | Path) -> str:
    result = json.loads(Path(path).read_text())
    lines = [
        "| resolution | sub-grids | train step (32) s | validation (100) s | epoch s | "
        "epoch vs previous code | max output difference |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        a = r["after"]
        speedup = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
        diff = f"{r['max_abs_output_difference']:.1e}" if "speedup" in r else "-"
        lines.append(
            f"| {r['resolution']} | {r['sub_grids']} | {a['train_step']['median_s']:.2f} | "
            f"{a['validation']['median_s']:.1f} | {a['epoch_s']:.0f} | {speedup} | {diff} |"
        )
    lines.append(
        f"\nGNO {result['settings']}, torch {result['torch']}, 1 thread, matmul rate "
        f"{result['matmul_gflops']:.0f} GFLOP/s (2048^2 GEMM); epoch = 29 train steps + "
        "validation."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[1024, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default=None, help="path of an older operators.py")
    parser.add_argument("--out", default="benchmarks/results/operators.json")
    parser.add_argument("--table", default=None, help="print a results file as Markdown; no run")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table))
        return

    torch.set_num_threads(1)
    before = _load_module(args.before) if args.before else None
    result = {
        "command": "benchmarks/bench_operators.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "settings": gno_settings(),
        "matmul_gflops": matmul_gflops(),
        "rows": [],
    }
    for res in args.resolutions:
        torch.manual_seed(0)
        reference = operators.GNO(1, res, **gno_settings())
        state = reference.state_dict()
        load0 = _loadavg()
        row = {"resolution": res, "sub_grids": reference.n_parts}
        impls = {"after": _passes(operators, state, res)}
        if before is not None:
            impls["before"] = _passes(before, state, res)
        row.update(measure(impls, args.repeats))
        if before is not None:
            row["speedup"] = row["before"]["epoch_s"] / row["after"]["epoch_s"]
            diff = impls["after"]["validation"]() - impls["before"]["validation"]()
            row["max_abs_output_difference"] = float(diff.abs().max())
        row["loadavg_before"], row["loadavg_after"] = load0, _loadavg()
        result["rows"].append(row)
        out = Path(args.out)
        out.write_text(json.dumps(result, indent=1) + "\n")  # after every row
        msg = f"{res}: epoch {row['after']['epoch_s']:.0f} s"
        if before is not None:
            msg += f" (before {row['before']['epoch_s']:.0f} s, x{row['speedup']:.2f})"
        print(msg, flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
