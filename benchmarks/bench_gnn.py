"""Graph-forecasting baselines at paper width: forward+backward time per batch beside FLOPs.

Run from the repository root (one command regenerates ``benchmarks/results/gnn.json``)::

    git show HEAD~0:src/eads/baselines/gnn.py > /tmp/gnn_before.py   # optional "before"
    .venv/bin/python benchmarks/bench_gnn.py [--before /tmp/gnn_before.py] [--threads 1 2]
        [--datasets sz_taxi pems04 ...] [--models graph_wavenet mtgnn ddgcrn megacrn]
        [--repeats 3] [--batch 64] [--out benchmarks/results/gnn.json] [--append]
    .venv/bin/python benchmarks/bench_gnn.py --table benchmarks/results/gnn.json   # Markdown

For each data set (its node count: sz_taxi 156, nyc_taxi 69, beijing 12, texas 254, pems04 307,
pems08 170), model (the paper defaults of :mod:`eads.baselines.gnn`, one input feature, 12 steps
in and out, a random 5 %-dense adjacency: every model here is dense in N, so the density does not
change the cost) and thread count:

* FLOPs of one forward pass and of forward+backward, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions: 2 per
  multiply-add; elementwise work is not counted);
* the median (and min, max) wall time of ``--repeats`` forward+backward passes in training mode
  after one warm-up, ``loss = mean|y| + auxiliary_loss``;
* achieved GFLOP/s (counted forward+backward FLOPs / median time) and its fraction of this
  machine's float32 matmul rate, measured at the same thread count beside the rows (a
  2048 x 2048 GEMM);
* with ``--before PATH``, the same rows for the implementation in that file (e.g. the committed
  version, as above), timed interleaved with the current one so that both see the same load;
  the JSON records ``speedup = before / after`` and the largest output difference between the
  two on the same weights and input (eval mode, so dropout is off).

``/proc/loadavg`` is recorded before and after each row: the box is shared, so compare ratios
measured in one run, never absolute times across runs. Timings are never a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from eads.baselines import gnn

NODES = {"sz_taxi": 156, "nyc_taxi": 69, "beijing": 12, "texas": 254, "pems04": 307, "pems08": 170}
MODELS = ("graph_wavenet", "mtgnn", "ddgcrn", "megacrn")


def _loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _load_module(path: str):
    spec = importlib.util.spec_from_file_location("gnn_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _adjacency(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    a = (rng.random((n, n)) < 0.05).astype(np.float32) * rng.uniform(0.1, 1.0, (n, n))
    idx = np.arange(n)
    a[idx, (idx + 1) % n] = 1.0  # no isolated nodes
    return a.astype(np.float32)


def _build(module, name: str, n: int, seed: int = 0):
    torch.manual_seed(seed)
    return module.build_gnn(
        name, n_nodes=n, in_features=1, history=12, horizon=12, adjacency=_adjacency(n)
    )


def _step(model, x):
    model.zero_grad(set_to_none=True)
    out = model(x)
    (out.abs().mean() + model.auxiliary_loss()).backward()


def count_flops(model, x) -> tuple[int, int]:
    with FlopCounterMode(display=False) as fwd:
        out = model(x)
    forward = fwd.get_total_flops()
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as both:
        out = model(x)
        (out.abs().mean() + model.auxiliary_loss()).backward()
    return forward, both.get_total_flops()


def time_steps(models: dict, x, repeats: int) -> dict[str, list[float]]:
    """Interleaved timing: one pass of every model per round."""
    for m in models.values():
        _step(m, x)  # warm-up
    samples = {k: [] for k in models}
    for _ in range(repeats):
        for k, m in models.items():
            t0 = time.perf_counter()
            _step(m, x)
            samples[k].append(time.perf_counter() - t0)
    return samples


def table(path: str | Path, threads: int = 1) -> str:
    """The Markdown table of a results file's rows at ``threads`` threads (no timing)."""
    result = json.loads(Path(path).read_text())
    head = "| data set | nodes | model | parameters | fwd+bwd GFLOP | s / batch | GFLOP/s | "
    head += "of matmul rate | vs previous code |\n|---|---:|---|---:|---:|---:|---:|---:|---:|"
    lines = [head]
    order = {name: i for i, name in enumerate(MODELS)}
    rows = [r for r in result["rows"] if r["threads"] == threads]
    rows.sort(key=lambda r: (-r["nodes"], order.get(r["model"], 99)))
    for r in rows:
        a = r["after"]
        speedup = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
        lines.append(
            f"| {r['dataset']} | {r['nodes']} | {r['model']} | {r['parameters']:,} | "
            f"{r['forward_backward_flops'] / 1e9:.1f} | {a['median_s']:.2f} | "
            f"{a['achieved_gflops']:.0f} | {100 * a['fraction_of_matmul_rate']:.0f} % | {speedup} |"
        )
    rate = result["matmul_gflops_by_threads"][str(threads)]
    lines.append(
        f"\nBatch {result['batch']}, {result['history']} steps in and out, torch "
        f"{result['torch']}, {threads} thread(s); matmul rate {rate:.0f} GFLOP/s (2048^2 GEMM)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(NODES), choices=list(NODES))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--before", default=None, help="path of an older gnn.py to time beside")
    parser.add_argument("--out", default="benchmarks/results/gnn.json")
    parser.add_argument(
        "--append", action="store_true", help="keep the rows already in --out (another run)"
    )
    parser.add_argument("--table", default=None, help="print a results file as Markdown; no run")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return

    before = _load_module(args.before) if args.before else None
    out = Path(args.out)
    previous = json.loads(out.read_text()) if args.append and out.is_file() else {}
    rows = previous.get("rows", [])
    rates = {int(k): v for k, v in previous.get("matmul_gflops_by_threads", {}).items()}
    commands = previous.get("commands", [])
    commands.append("benchmarks/bench_gnn.py " + " ".join(sys.argv[1:]))

    def write() -> None:
        result = {
            "commands": commands,
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "batch": args.batch,
            "history": 12,
            "horizon": 12,
            "in_features": 1,
            "matmul_gflops_by_threads": rates,
            "rows": rows,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")  # after every row: partial runs count

    for threads in args.threads:
        torch.set_num_threads(threads)
        rates[threads] = matmul_gflops()
        for dataset in args.datasets:
            n = NODES[dataset]
            x = torch.randn(args.batch, 12, n, 1, generator=torch.Generator().manual_seed(1))
            for name in args.models:
                load0 = _loadavg()
                models = {"after": _build(gnn, name, n).train()}
                if before is not None:
                    models["before"] = _build(before, name, n).train()
                    models["before"].load_state_dict(models["after"].state_dict())
                fwd, fwdbwd = count_flops(models["after"], x)
                samples = time_steps(models, x, args.repeats)
                row = {
                    "dataset": dataset,
                    "nodes": n,
                    "model": name,
                    "threads": threads,
                    "parameters": gnn.count_parameters(models["after"]),
                    "forward_flops": fwd,
                    "forward_backward_flops": fwdbwd,
                    "matmul_gflops": rates[threads],
                }
                for k, ts in samples.items():
                    med = statistics.median(ts)
                    row[k] = {
                        "median_s": med,
                        "min_s": min(ts),
                        "max_s": max(ts),
                        "achieved_gflops": fwdbwd / med / 1e9,
                        "fraction_of_matmul_rate": fwdbwd / med / 1e9 / rates[threads],
                    }
                if before is not None:
                    row["speedup"] = row["before"]["median_s"] / row["after"]["median_s"]
                    if threads == args.threads[0]:
                        with FlopCounterMode(display=False) as fc:
                            models["before"](x)
                        row["before_forward_flops"] = fc.get_total_flops()
                    # The timing passes updated each model's BatchNorm running statistics
                    # with its own dropout draws: compare on identical weights and buffers.
                    models["before"].load_state_dict(models["after"].state_dict())
                    with torch.no_grad():
                        torch.manual_seed(2)
                        ya = models["after"].eval()(x)
                        torch.manual_seed(2)
                        yb = models["before"].eval()(x)
                    row["max_abs_output_difference"] = float((ya - yb).abs().max())
                row["loadavg_before"], row["loadavg_after"] = load0, _loadavg()
                rows.append(row)
                write()
                after = row["after"]
                msg = f"{threads}t {dataset:8s} {name:13s} fwd {fwd:.2e} FLOP  after "
                msg += f"{after['median_s']:.3f}s ({after['achieved_gflops']:.1f} GF/s)"
                if before is not None:
                    msg += f"  before {row['before']['median_s']:.3f}s  x{row['speedup']:.1f}"
                print(msg, flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
