"""The whole GPU measurement in one script (under 5 minutes): simulator, peer, digital baselines.

Run from the repository root on a machine with a CUDA device::

    .venv/bin/python benchmarks/bench_gpu.py [--out benchmarks/results/gpu.json]

It writes one JSON file with:

* ``simulator``: the rows of ``bench_core.py`` on the GPU, EC-Train and inference of eads
  (``SwitchingHeun``, eager and compiled kernels; ``RK38``) against torchdiffeq's ``odeint`` and
  ``odeint_adjoint`` on the same ODE, each at the step count of equal gradient error, in float32
  and in bfloat16 (at the float32 step counts; the gradient error there is recorded), at
  ``H = 128, 512, 2048`` with ``B = 1024`` and at ``H = 512`` with ``B = 16384``;
* ``cells``: one benchmark cell per digital baseline, each with the training step (forward,
  backward and Adam update; samples/s and seconds per sample), the inference latency of one
  sample and the batched throughput, the parameter count and the peak GPU memory:
  - ``demo``: the core demo of docs/hardware.md (32 -> 32 Burgers map): the EADS simulator
    (H = 64, EC-Train) and the MLP baseline (2 x 64, backprop), batch 1024;
  - ``pde``: FNO (neuraloperator, the paper's 1-D settings: 4 layers, 16 modes, width 64) on
    Burgers at resolution 1024, batch 20;
  - ``spatiotemporal``: Graph WaveNet at the paper's widths on PEMS08's shape (170 nodes, 3
    features, 12 -> 12 steps; a random graph and random inputs: the cost does not depend on the
    values), batch 64;
* ``power``: the board power read by ``nvidia-smi`` while each measurement ran (mean watts and
  energy per sample), where ``nvidia-smi`` is available;
* the GPU's name, driver, CUDA and torch versions, and the wall time.

``--smoke`` runs every code path at toy sizes (on the CPU too: ``--device cpu --smoke``), which
is what the test suite does; the numbers of a smoke run mean nothing. Timings are never a test.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core  # noqa: E402

import eads  # noqa: E402
from eads.runs import git_revision  # noqa: E402
from eads.solve import SwitchingHeun  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "gpu.json"


# -- board power -----------------------------------------------------------------------------------
class PowerSampler:
    """Samples ``nvidia-smi``'s power draw every ``period`` seconds while active (a context)."""

    def __init__(self, device: torch.device, period: float = 0.2):
        self.enabled = device.type == "cuda" and shutil.which("nvidia-smi") is not None
        self.index = device.index or 0
        self.period = period
        self.samples: list[float] = []
        self._stop = threading.Event()

    def _read(self) -> float | None:
        try:
            out = subprocess.run(
                ["nvidia-smi", f"--id={self.index}", "--query-gpu=power.draw",
                 "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=5,
            )  # fmt: skip
            return float(out.stdout.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None

    def _run(self):
        while not self._stop.is_set():
            w = self._read()
            if w is not None:
                self.samples.append(w)
            self._stop.wait(self.period)

    def __enter__(self):
        self.samples.clear()
        self._stop.clear()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()

    def mean_w(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def gpu_info(device: torch.device) -> dict:
    info = bench_core.machine(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_memory_bytes"] = props.total_memory
        info["gpu_multiprocessors"] = props.multi_processor_count
        if shutil.which("nvidia-smi"):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                q = "name,driver_version,power.limit,clocks.max.sm"
                out = subprocess.run(
                    ["nvidia-smi", f"--id={device.index or 0}", f"--query-gpu={q}",
                     "--format=csv,noheader"],
                    capture_output=True, text=True, timeout=10,
                )  # fmt: skip
                info["nvidia_smi"] = out.stdout.strip()
    return info


# -- the digital cells -----------------------------------------------------------------------------
def _peak_memory(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def measure_cell(
    name: str,
    model: torch.nn.Module,
    batch: torch.Tensor,
    target: torch.Tensor,
    device: torch.device,
    power: PowerSampler,
    repeats: int,
    min_time: float,
    train_step=None,
) -> dict:
    """Training step, single-sample latency and batched inference of one model on one cell."""
    B = batch.shape[0]
    if train_step is None:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def train_step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(batch), target)
            loss.backward()
            opt.step()

    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with power:
        t_train = bench_core.interleaved({"train": train_step}, device, repeats, min_time)["train"]
    train_w = power.mean_w()
    model.eval()
    one = batch[:1]
    with torch.no_grad(), power:
        t_inf = bench_core.interleaved(
            {"one": lambda: model(one), "batch": lambda: model(batch)}, device, repeats, min_time
        )
    infer_w = power.mean_w()
    out = {
        "model": name,
        "batch": B,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_step_s": t_train["median_s"],
        "train_spread": t_train["spread"],
        "train_samples_per_s": B / t_train["median_s"],
        "train_s_per_sample": t_train["median_s"] / B,
        "latency_one_sample_s": t_inf["one"]["median_s"],
        "infer_batch_s": t_inf["batch"]["median_s"],
        "infer_s_per_sample": t_inf["batch"]["median_s"] / B,
        "peak_memory_bytes": _peak_memory(device),
        "train_power_w": train_w,
        "infer_power_w": infer_w,
    }
    if train_w is not None:
        out["train_energy_per_sample_j"] = train_w * out["train_s_per_sample"]
    if infer_w is not None:
        out["infer_energy_per_sample_j"] = infer_w * out["infer_s_per_sample"]
    return out


def demo_cell(device, power, repeats, min_time, smoke) -> dict:
    """The core demo (docs/hardware.md): 32 -> 32, the EADS simulator (H = 64) and the MLP."""
    from eads.baselines.mlp import MLP

    B, N, H = (64, 32, 8) if smoke else (1024, 32, 64)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, N, generator=g).to(device)
    y = torch.randn(B, N, generator=g).to(device)
    circuit = eads.EADS(N, H, N, seed=0, solver=SwitchingHeun(5), device=device)
    opt = torch.optim.SGD(circuit.parameters(), lr=1e-3)

    def ectrain_step():
        grads = eads.ectrain_gradients(circuit, x, y)
        for k, gk in grads.items():
            getattr(circuit, k).grad = gk
        opt.step()

    rows = [
        measure_cell(
            "eads_simulator_ectrain",
            circuit,
            x,
            y,
            device,
            power,
            repeats,
            min_time,
            train_step=ectrain_step,
        ),  # fmt: skip
        measure_cell(
            "mlp", MLP(N, H, N, seed=0).to(device), x, y, device, power, repeats, min_time
        ),  # fmt: skip
    ]
    return {"cell": "demo: 32 -> 32 map (docs/hardware.md)", "models": rows}


def pde_cell(device, power, repeats, min_time, smoke) -> dict:
    from eads.baselines.operators import FNO

    B, res = (4, 32) if smoke else (20, 1024)
    kwargs = {"modes": 4, "width": 8} if smoke else {}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, res, generator=g).to(device)
    y = torch.randn(B, res, generator=g).to(device)
    model = FNO(1, res, **kwargs).to(device)
    return {
        "cell": f"pde: Burgers 1-D, resolution {res}",
        "models": [measure_cell("fno", model, x, y, device, power, repeats, min_time)],
    }


def spatiotemporal_cell(device, power, repeats, min_time, smoke) -> dict:
    from eads.baselines.gnn import GraphWaveNet

    B, n, F, L = (2, 8, 3, 12) if smoke else (64, 170, 3, 12)
    widths = (
        {"residual_channels": 4, "dilation_channels": 4, "skip_channels": 8, "end_channels": 8}
        if smoke
        else {}
    )  # the paper's widths on the GPU
    g = torch.Generator().manual_seed(0)
    adj = (torch.rand(n, n, generator=g) < 0.05).float()
    x = torch.randn(B, L, n, F, generator=g).to(device)
    y = torch.randn(B, L, n, generator=g).to(device)
    model = GraphWaveNet(n, F, L, L, adjacency=adj, **widths).to(device)
    return {
        "cell": f"spatiotemporal: PEMS08 shape ({n} nodes, {F} features, {L} -> {L})",
        "models": [measure_cell("graph_wavenet", model, x, y, device, power, repeats, min_time)],
    }


# -- the simulator rows ------------------------------------------------------------------------
def simulator_rows(device, power, args) -> list[dict]:
    shapes = [(16, 64)] if args.smoke else [(128, 1024), (512, 1024), (2048, 1024), (512, 16384)]
    rows = []
    for H, B in shapes:
        steps32 = None
        for dtype in (torch.float32, torch.bfloat16):
            with power:
                try:
                    row = bench_core.bench_row(
                        H, B, args.target, device, dtype, args.repeats, args.min_time,
                        use_compile=not args.no_compile, steps_from=steps32,
                    )  # fmt: skip
                except Exception as exc:  # a peer failing in bfloat16 must not lose the rest
                    row = {"H": H, "B": B, "dtype": str(dtype), "error": repr(exc)}
            row["power_w"] = power.mean_w()
            if device.type == "cuda":
                row["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
            if dtype == torch.float32 and "error" not in row:
                names = ("eads", "eads_rk38", "odeint", "odeint_adjoint", "eads_infer",
                         "odeint_infer")  # fmt: skip
                steps32 = {k: row[f"{k}_steps"] for k in names}
            rows.append(row)
            print(bench_core.summary_line(row) if "error" not in row else row, flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--target", type=float, default=2e-3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.1)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="toy sizes: check the code paths only")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py: no CUDA device is present; pass --device cpu --smoke "
                         "to check the code paths.")  # fmt: skip
    if args.smoke:
        args.repeats, args.min_time = 2, 0.0
    t0 = time.time()
    power = PowerSampler(device)
    result = {
        "command": " ".join(["python", *sys.argv]),
        "machine": gpu_info(device),
        "revision": git_revision(),
        "smoke": args.smoke,
        "power_sampled": power.enabled,
        "simulator": simulator_rows(device, power, args),
        "cells": [
            cell(device, power, args.repeats, args.min_time, args.smoke)
            for cell in (demo_cell, pde_cell, spatiotemporal_cell)
        ],
    }
    result["wall_s"] = time.time() - t0
    from eads._io import atomic_write_json

    atomic_write_json(args.out, result)
    print(f"wrote {args.out} in {result['wall_s']:.0f} s")
    return result


if __name__ == "__main__":
    main()
