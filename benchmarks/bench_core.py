"""Core throughput: EADS inference and EC-Train against torchdiffeq on the identical model.

    python benchmarks/bench_core.py [--hidden 32 128 512] [--batch 1024] [--target 2e-3]

For each hidden size H (N = M = 32 inputs/outputs, T = 1, float32, batch B):

* reference gradient: float64 EC-Train with 512 RK4 steps (the continuous-time limit);
* each method takes the smallest step count whose gradient error (relative, on 128 samples)
  is at most ``--target`` -- steps chosen by accuracy, not by habit;
* throughput in samples/s of inference (``model(x)``) and of one training gradient, for
  eads (RK38, stored tape, adjoint circuit), torchdiffeq ``odeint`` (rk4, backprop through the
  solver) and ``odeint_adjoint`` (rk4, continuous adjoint that re-integrates h backwards);
* the counted FLOPs of an EC-Train step (6 K S B H^2 for forward, adjoint and dJ, plus the linear
  stages) divided by time, as a fraction of this machine's measured float32 matmul rate.

Writes JSON (default benchmarks/results/core.json). Timings are never a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

import eads
from eads.runs import git_revision


def matmul_rate(repeat: int = 5) -> float:
    """Best float32 matmul rate (FLOP/s) over square sizes 512..2048 and several repeats."""
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        for _ in range(repeat):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def timeit(fn, min_time: float = 1.0) -> float:
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def rel(a: dict, b: dict) -> float:
    num = sum(float((a[k] - b[k]).norm() ** 2) for k in b)
    den = sum(float(b[k].norm() ** 2) for k in b)
    return (num / den) ** 0.5


def tdq_grads(model, x, y, steps, adjoint):
    from torchdiffeq import odeint, odeint_adjoint

    class Field(torch.nn.Module):
        def __init__(self, J):
            super().__init__()
            self.J = J

        def forward(self, t, h):
            return torch.relu(h @ self.J.T)

    field = Field(model.J)
    t = torch.tensor([0.0, model.duration], dtype=x.dtype)
    opts = {"step_size": model.duration / steps}
    for p in model.parameters():
        p.grad = None
    h0 = x @ model.P.T
    if adjoint:
        hT = odeint_adjoint(
            field,
            h0,
            t,
            method="rk4",
            options=opts,
            adjoint_params=(model.J,),
            adjoint_options=opts,
        )[-1]
    else:
        hT = odeint(field, h0, t, method="rk4", options=opts)[-1]
    loss = ((hT @ model.Q - y) ** 2).mean()
    loss.backward()
    return {k: getattr(model, k).grad.clone() for k in "PJQ"}


STEP_LADDER = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def steps_for(error_of, target: float) -> tuple[int, float]:
    """The smallest step count on the ladder whose gradient error is at most ``target``."""
    for s in STEP_LADDER:
        err = error_of(s)
        if err <= target:
            return s, err
    return s, err


def bench_hidden(H: int, B: int, target: float, peak: float) -> dict:
    N = M = 32
    torch.manual_seed(0)
    x64, y64 = torch.randn(B, N, dtype=torch.float64), torch.randn(B, M, dtype=torch.float64)
    # Gradient errors on the first 128 samples (a float64 reference at 512 steps for the whole
    # batch would dominate the run); throughput on the full batch.
    xe, ye = x64[:128], y64[:128]
    ref_model = eads.EADS(N, H, M, seed=0, dtype=torch.float64, solver=eads.RK4(512))
    ref = eads.ectrain_gradients(ref_model, xe, ye)
    x, y = x64.float(), y64.float()
    xf, yf = xe.float(), ye.float()
    out = {"H": H, "B": B, "target_grad_error": target, "grad_error_samples": 128}

    def ours(s):
        m = eads.EADS(N, H, M, seed=0, solver=eads.RK38(s))
        return rel({k: v.double() for k, v in eads.ectrain_gradients(m, xf, yf).items()}, ref)

    steps, out["eads_grad_error"] = steps_for(ours, target)
    out["eads_steps"] = steps
    model = eads.EADS(N, H, M, seed=0, solver=eads.RK38(steps))
    with torch.no_grad():
        out["eads_infer_sps"] = B / timeit(lambda: model(x))
    out["eads_train_sps"] = B / timeit(lambda: eads.ectrain_gradients(model, x, y))

    for name, adj in (("odeint", False), ("odeint_adjoint", True)):

        def theirs(s, adj=adj):
            return rel({k: v.double() for k, v in tdq_grads(model, xf, yf, s, adj).items()}, ref)

        s, out[f"{name}_grad_error"] = steps_for(theirs, target)
        out[f"{name}_steps"] = s
        out[f"{name}_train_sps"] = B / timeit(lambda s=s, adj=adj: tdq_grads(model, x, y, s, adj))
        out[f"ratio_train_vs_{name}"] = out["eads_train_sps"] / out[f"{name}_train_sps"]
    from torchdiffeq import odeint

    def tdq_infer():
        with torch.no_grad():
            h0 = x @ model.P.T
            f = lambda t, h: torch.relu(h @ model.J.T)  # noqa: E731
            hT = odeint(
                f, h0, torch.tensor([0.0, 1.0]), method="rk4", options={"step_size": 1.0 / steps}
            )[-1]
            return hT @ model.Q

    out["odeint_infer_sps"] = B / timeit(tdq_infer)
    out["ratio_infer_vs_odeint"] = out["eads_infer_sps"] / out["odeint_infer_sps"]
    flops = 6 * steps * 4 * B * H * H + 2 * 2 * B * H * (N + M)
    out["train_flops"] = flops
    out["fraction_of_matmul_rate"] = flops * out["eads_train_sps"] / B / peak
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--target", type=float, default=2e-3, help="gradient error to reach")
    ap.add_argument("--out", default="benchmarks/results/core.json")
    args = ap.parse_args()
    rows = []
    peak = 0.0
    for H in args.hidden:
        peak = max(peak, matmul_rate())  # re-measured beside each row: the machine may be shared
        row = bench_hidden(H, args.batch, args.target, peak)
        row["fraction_of_matmul_rate"] = (
            row["train_flops"] * row["eads_train_sps"] / row["B"] / peak
        )
        rows.append(row)
        print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}))
    result = {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "revision": git_revision(),
        "matmul_rate_flops": peak,
        "rows": rows,
    }
    from eads._io import atomic_write_json

    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
