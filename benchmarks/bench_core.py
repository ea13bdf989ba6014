"""Core throughput: EADS inference and EC-Train against torchdiffeq on the identical model.

    python benchmarks/bench_core.py [--hidden 32 128 512] [--batch 1024] [--out FILE]

For each hidden size H (N = M = 32 inputs/outputs, T = 1, float32, batch B):

* reference gradient: float64 EC-Train with 256 RK4 steps (the continuous-time limit to ~1e-10);
* for each method, the gradient's relative error against it, at the step count we choose;
* throughput in samples/s of inference (``model(x)``) and of one training gradient, for
  eads (RK4, stored tape, adjoint circuit), torchdiffeq ``odeint`` (rk4, backprop through the
  solver) and ``odeint_adjoint`` (rk4, continuous adjoint that re-integrates h backwards);
* "equal accuracy": torchdiffeq's step count is raised until its gradient error is at most
  ours, and the throughput ratio is taken there;
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


def matmul_rate(n: int = 1024, repeat: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - t)


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
        hT = odeint_adjoint(field, h0, t, method="rk4", options=opts,
                            adjoint_params=(model.J,), adjoint_options=opts)[-1]
    else:
        hT = odeint(field, h0, t, method="rk4", options=opts)[-1]
    loss = ((hT @ model.Q - y) ** 2).mean()
    loss.backward()
    return {k: getattr(model, k).grad.clone() for k in "PJQ"}


def bench_hidden(H: int, B: int, steps: int, peak: float) -> dict:
    N = M = 32
    torch.manual_seed(0)
    x64, y64 = torch.randn(B, N, dtype=torch.float64), torch.randn(B, M, dtype=torch.float64)
    ref_model = eads.EADS(N, H, M, seed=0, dtype=torch.float64, solver=eads.RK4(256))
    ref = eads.ectrain_gradients(ref_model, x64, y64)
    model = eads.EADS(N, H, M, seed=0, solver=eads.RK4(steps))
    x, y = x64.float(), y64.float()
    out = {"H": H, "B": B, "eads_steps": steps}

    g = eads.ectrain_gradients(model, x, y)
    out["eads_grad_error"] = rel({k: v.double() for k, v in g.items()}, ref)
    with torch.no_grad():
        out["eads_infer_sps"] = B / timeit(lambda: model(x))
    out["eads_train_sps"] = B / timeit(lambda: eads.ectrain_gradients(model, x, y))

    # torchdiffeq at our step count, then raised to match our gradient error
    for name, adj in (("odeint", False), ("odeint_adjoint", True)):
        s = steps
        err = rel({k: v.double() for k, v in tdq_grads(model, x, y, s, adj).items()}, ref)
        while err > out["eads_grad_error"] * 1.05 and s < 64:
            s *= 2
            err = rel({k: v.double() for k, v in tdq_grads(model, x, y, s, adj).items()}, ref)
        out[f"{name}_steps"] = s
        out[f"{name}_grad_error"] = err
        out[f"{name}_train_sps"] = B / timeit(lambda s=s, adj=adj: tdq_grads(model, x, y, s, adj))
        out[f"ratio_train_vs_{name}"] = out["eads_train_sps"] / out[f"{name}_train_sps"]
    from torchdiffeq import odeint

    def tdq_infer():
        with torch.no_grad():
            h0 = x @ model.P.T
            f = lambda t, h: torch.relu(h @ model.J.T)  # noqa: E731
            hT = odeint(f, h0, torch.tensor([0.0, 1.0]), method="rk4",
                        options={"step_size": 1.0 / steps})[-1]
            return hT @ model.Q

    out["odeint_infer_sps"] = B / timeit(tdq_infer)
    out["ratio_infer_vs_odeint"] = out["eads_infer_sps"] / out["odeint_infer_sps"]
    stages = 4
    flops = 6 * steps * stages * B * H * H + 2 * 2 * B * H * (N + M)
    out["train_flops"] = flops
    out["fraction_of_matmul_rate"] = flops * out["eads_train_sps"] / B / peak
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/core.json")
    args = ap.parse_args()
    peak = matmul_rate()
    rows = []
    for H in args.hidden:
        row = bench_hidden(H, args.batch, args.steps, peak)
        rows.append(row)
        print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}))
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
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
