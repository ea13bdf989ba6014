"""A 4-trial sweep on the demo task, one trial after another vs on a local Ray instance.

    python benchmarks/bench_sweep.py [--workers 2] [--epochs 6] [--hidden 32] [--out FILE]

The same spec (the Burgers demo map, a grid of 2 learning rates x 2 seeds = 4 trials of EADS
with EC-Train) runs twice into fresh directories: ``executor="local"`` (this process, one trial
after another, torch on 1 thread) and ``executor="ray"`` (``ray.init(num_cpus=workers)``, one CPU
and one torch thread per trial). Reported: wall time of each, Ray's start-up separately, the
ratio serial / Ray with and without start-up, and whether both gave the same validation metric
trial by trial (they must). Writes JSON (default benchmarks/results/sweep.json). Timings on a
machine shared with other jobs are noisy; the JSON records the load average at start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

SPEC = """
[sweep]
seeds = [0, 1]
cpus = 1
[demo]
n_samples = {n_samples}
[model]
n_hidden = {hidden}
n_steps = 8
[train]
epochs = {epochs}
batch_size = 32
patience = 0
[grid]
train.lr = [1e-3, 3e-3]
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--n-samples", type=int, default=600)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep.json")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import torch

    import eads
    from eads.runs import git_revision
    from eads.tasks.executor import connect_ray
    from eads.tasks.sweep import run_sweep

    torch.set_num_threads(1)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.toml"
        spec.write_text(
            SPEC.format(n_samples=args.n_samples, hidden=args.hidden, epochs=args.epochs)
        )
        t = time.perf_counter()
        run_sweep(spec, Path(tmp) / "serial", executor="local", progress=False)
        serial_s = time.perf_counter() - t

        t = time.perf_counter()
        ray = connect_ray(None, num_cpus=args.workers)
        ray_start_s = time.perf_counter() - t
        t = time.perf_counter()
        run_sweep(spec, Path(tmp) / "ray", executor="ray", progress=False)
        ray_s = time.perf_counter() - t
        ray.shutdown()

        def val(d):
            rows = json.loads((Path(tmp) / d / "results.json").read_text())["rows"]
            return {r["trial"]: r["val.relative_mse"] for r in rows}

        def train_s(d):
            rows = json.loads((Path(tmp) / d / "results.json").read_text())["rows"]
            return round(sum(r["train_time_s"] for r in rows) / len(rows), 2)

        same = val("serial") == val("ray")
        trial_train_s = {"serial": train_s("serial"), "ray": train_s("ray")}
        n_trials = len(val("serial"))
    result = {
        "benchmark": "4-trial sweep on the demo task: serial (local executor) vs Ray",
        "command": "python benchmarks/bench_sweep.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "trials": n_trials,
        "ray_workers": args.workers,
        "serial_s": round(serial_s, 2),
        "ray_s": round(ray_s, 2),
        "ray_start_s": round(ray_start_s, 2),
        "ratio_serial_over_ray": round(serial_s / ray_s, 3),
        "ratio_including_ray_start": round(serial_s / (ray_s + ray_start_s), 3),
        "same_metrics_per_trial": same,
        "mean_trial_train_s": trial_train_s,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_avg_start": [round(v, 2) for v in load_start],
            "load_avg_end": [round(v, 2) for v in os.getloadavg()],
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "eads": eads.__version__,
        "torch": torch.__version__,
        "ray": ray.__version__,
        "revision": git_revision(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "mean_trial_train_s",
                    "serial_s",
                    "ray_s",
                    "ray_start_s",
                    "ratio_serial_over_ray",
                    "same_metrics_per_trial",
                )
            }
        )
    )


if __name__ == "__main__":
    main()
