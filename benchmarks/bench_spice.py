"""ngspice vs the simulator: the same EADS circuit, timed side by side.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_spice.py [--hidden 32 128] [--samples 1]

For each hidden size H, a seeded EADS (4 inputs, H hidden, 2 outputs, T = 1, RK4(8)) is exported
(:func:`eads.spice.netlist.eads_netlist`) for ``samples`` inputs and run by ngspice at the
export's default tolerances; the simulator runs the same inputs (best of 3 after a warm-up) as
configured (closed-form linear stages, RK4 coupling) and with every stage a transient. Written to
``benchmarks/results/spice.json``: wall times in seconds, ngspice's own analysis time, the
ratios ngspice / simulator, and the agreement (largest relative difference of the outputs).
Never gate CI on these numbers: they depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import eads
from eads._io import atomic_write_json
from eads.spice.verify import verify_model

RESULTS = Path(__file__).resolve().parent / "results" / "spice.json"


def _ngspice_version() -> str:
    try:
        out = subprocess.run(["ngspice", "--version"], capture_output=True, text=True, timeout=30)
        line = next((ln for ln in out.stdout.splitlines() if "ngspice-" in ln), "")
        return line.strip("* ").split(" ")[0] or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "not installed"


def bench(hidden: int, samples: int, seed: int = 0) -> dict:
    model = eads.EADS(4, hidden, 2, seed=seed)
    x = np.random.default_rng(seed).normal(size=(samples, 4))
    rep = verify_model(model, x)
    return {
        "n_hidden": hidden,
        "n_samples": samples,
        "spice_s": rep.spice_s,
        "spice_analysis_s": rep.spice_analysis_s,
        "simulator_s": rep.simulator_s,
        "simulator_transient_s": rep.simulator_transient_s,
        "ratio_spice_over_simulator": rep.ratio,
        "ratio_spice_over_transient_simulator": rep.transient_ratio,
        "output_rel_diff": rep.output_rel_diff,
        "trajectory_rel_diff": rep.trajectory_rel_diff,
        "reference_rel_diff": rep.reference_rel_diff,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rows = []
    for h in args.hidden:
        row = bench(h, args.samples)
        rows.append(row)
        print(
            f"H={h:4d}: ngspice {row['spice_s']:.3g} s, simulator {row['simulator_s']:.3g} s "
            f"(ratio {row['ratio_spice_over_simulator']:.3g}), all-transient simulator "
            f"{row['simulator_transient_s']:.3g} s (ratio "
            f"{row['ratio_spice_over_transient_simulator']:.3g}); outputs agree to "
            f"{row['output_rel_diff']:.2g}"
        )
    atomic_write_json(
        args.out,
        {
            "command": " ".join(
                ["OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_spice.py"]
                + (sys.argv[1:] if argv is None else argv)
            ),
            "ngspice": _ngspice_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {platform.processor()}".strip(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "rows": rows,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
