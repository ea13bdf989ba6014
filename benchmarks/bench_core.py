"""Core throughput: EADS EC-Train and inference against torchdiffeq on the identical model.

Run from the repository root (one command regenerates ``benchmarks/results/core.json``)::

    .venv/bin/python benchmarks/bench_core.py [--hidden 32 128 512] [--threads 1 2]
        [--batch 1024] [--target 2e-3] [--device cpu|cuda] [--dtype float32|bfloat16]

The model: N = M = 32 inputs/outputs, H hidden nodes, T = 1, the reference node on (the default
circuit), batch B. The peer is torchdiffeq on the same ODE: ``h0 = P x + v_ref p``,
``dh/dt = relu(J h)``, loss ``mean (Q^T h(T) - y)^2``. For each H and thread count:

* reference gradient: float64 EC-Train with ``SwitchingHeun(512)`` (second order, ~1e-7 from
  the continuous circuit); RK4(1024) in float64 is computed beside it and their difference
  recorded (``reference_disagreement``);
* equal accuracy: each method takes the smallest step count on ``STEP_LADDER`` whose gradient
  error (relative, all parameters, first 128 samples, in the benchmark dtype) is at most
  ``--target``;
* methods: ``eads`` (:class:`eads.solve.SwitchingHeun`, tape + adjoint circuit, eager kernels),
  ``eads_compiled`` (the same with ``compile=True``; skipped with ``--no-compile``),
  ``eads_rk38`` (the default solver, ``RK38``, on the fused Runge-Kutta path), torchdiffeq
  ``odeint`` (rk4 = the 3/8 rule, autograd through the solver) and ``odeint_adjoint`` (rk4,
  continuous adjoint that re-integrates h backwards);
* timing: all methods interleaved, ``--repeats`` rounds, each sample at least ``--min-time``
  seconds; the median per call and its spread (interquartile range / median) are recorded, with
  the load average before and after the row;
* inference (no gradient) at equal output error: each side takes the fewest steps whose output
  error is at most ``--output-target``; eads runs the 3/8 rule on its fused path (per evaluation
  the most accurate eads solver for a forward pass alone, and torchdiffeq's rk4 tableau), and
  ``eads_switching_infer`` records the trained SwitchingHeun model's own inference as well;
* FLOPs: an EC-Train step counts ``6 evals B H^2`` (forward, adjoint and dL/dJ products) plus
  ``4 B H (N + M)`` for the linear stages; divided by the time and by this machine's matmul rate
  measured beside the row at the same thread count (``fraction_of_matmul_rate``);
* the tape's bytes (``Tape.nbytes``) at this B and H.

Ratios are ``eads`` (or the faster of ``eads`` and ``eads_compiled``: ``best``) over the peers'
samples/s. On CUDA the same rows run with device synchronisation; with ``--dtype bfloat16`` the
step counts are the float32 ones and the gradient error at them is recorded (bfloat16 cannot reach
the target). Timings are never a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time

import torch

import eads
from eads.runs import git_revision
from eads.solve import SwitchingHeun, _kernels

STEP_LADDER = (2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64, 96, 128)
N_IO = 32
ERROR_SAMPLES = 128
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}


# -- the machine ---------------------------------------------------------------------------------
def loadavg() -> list[float] | None:
    try:
        return [float(v) for v in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    info = {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dtype: torch.dtype, repeat: int = 5) -> float:
    """Best matmul rate (FLOP/s) over square sizes 512..2048 (4096 on a GPU) and repeats."""
    sizes = (512, 1024, 2048) + ((4096,) if device.type == "cuda" else ())
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        a @ b
        sync(device)
        for _ in range(repeat):
            t = time.perf_counter()
            a @ b
            sync(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


# -- timing ----------------------------------------------------------------------------------------
def interleaved(fns: dict, device: torch.device, repeats: int, min_time: float) -> dict:
    """Per-call time of each function, measured in interleaved rounds: ``{name: stats}``.

    Each function is first run once (warm-up, compilation) and calibrated to ``k`` calls per
    sample (at least ``min_time`` seconds); then ``repeats`` rounds each take one sample of every
    function in turn, so that a change in the machine's load hits all of them alike.
    """
    calls = {}
    for name, fn in fns.items():
        fn()
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        calls[name] = max(1, int(min_time / max(time.perf_counter() - t, 1e-9)))
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            sync(device)
            samples[name].append((time.perf_counter() - t) / calls[name])
    out = {}
    for name, s in samples.items():
        q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0]] * 3
        med = statistics.median(s)
        out[name] = {
            "median_s": med,
            "spread": (q[2] - q[0]) / med,
            "calls_per_sample": calls[name],
        }
    return out


# -- the models -------------------------------------------------------------------------------
def rel(a: dict, b: dict) -> float:
    """Relative error of gradient dict ``a`` against ``b`` over all of ``b``'s parameters."""
    num = sum(float((a[k].double().cpu() - b[k].double().cpu()).norm() ** 2) for k in b)
    den = sum(float(b[k].double().cpu().norm() ** 2) for k in b)
    return (num / den) ** 0.5


def make_model(H, solver, dtype=torch.float32, device="cpu") -> eads.EADS:
    return eads.EADS(N_IO, H, N_IO, seed=0, solver=solver, dtype=dtype, device=device)


class Peer(torch.nn.Module):
    """The same circuit for torchdiffeq (the field ``relu(J h)``); shares the model's tensors."""

    def __init__(self, model: eads.EADS):
        super().__init__()
        self.model = model

    def forward(self, t, h):
        return torch.relu(h @ self.model.J.T)

    def h0(self, x):
        m = self.model
        return x @ m.P.T + m.reference_voltage * m.P_ref

    def times(self, x):
        return torch.tensor([0.0, self.model.duration], dtype=x.dtype, device=x.device)


def tdq_grads(peer: Peer, x, y, steps: int, adjoint: bool) -> dict:
    """torchdiffeq's gradients of the clamped-output loss (rk4 with ``steps`` fixed steps)."""
    from torchdiffeq import odeint, odeint_adjoint

    m = peer.model
    opts = {"step_size": m.duration / steps}
    names = m.conductance_names
    params = tuple(getattr(m, k) for k in names)
    with torch.enable_grad():
        h0 = peer.h0(x)
        if adjoint:
            hT = odeint_adjoint(
                peer, h0, peer.times(x), method="rk4", options=opts,
                adjoint_params=(m.J,), adjoint_options=opts,
            )[-1]  # fmt: skip
        else:
            hT = odeint(peer, h0, peer.times(x), method="rk4", options=opts)[-1]
        loss = ((hT @ m.Q - m.r_output * y) ** 2).mean()
        grads = torch.autograd.grad(loss, params)
    return dict(zip(names, grads, strict=True))


@torch.no_grad()
def tdq_infer(peer: Peer, x, steps: int) -> torch.Tensor:
    from torchdiffeq import odeint

    m = peer.model
    opts = {"step_size": m.duration / steps}
    return odeint(peer, peer.h0(x), peer.times(x), method="rk4", options=opts)[-1] @ m.Q


def steps_for(error_of, target: float, no_grad: bool = False) -> tuple[int, float]:
    """The smallest step count on the ladder whose error is at most ``target``."""
    for s in STEP_LADDER:
        with torch.no_grad() if no_grad else contextlib.nullcontext():
            err = error_of(s)
        if err <= target:
            return s, err
    return s, err


_REFERENCES: dict[tuple, tuple] = {}
_STEPS: dict[tuple, dict] = {}


def reference(H: int, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, torch.Tensor, float | None]:
    """float64 reference gradients and outputs on the error samples (on ``x``'s device), and
    the disagreement of the two references (RK4(1024) is skipped beyond H = 512: its tape);
    computed once per H and data."""
    key = (H, x.device.type, float(x.sum()), float(y.sum()))
    if key not in _REFERENCES:
        ref_model = make_model(H, SwitchingHeun(512), torch.float64, x.device)
        ref = eads.ectrain_gradients(ref_model, x, y)
        with torch.no_grad():
            out = ref_model(x).cpu()
        gap = None
        if H <= 512:
            rk4 = make_model(H, eads.RK4(1024), torch.float64, x.device)
            gap = rel(eads.ectrain_gradients(rk4, x, y), ref)
        _REFERENCES[key] = ({k: v.cpu() for k, v in ref.items()}, out, gap)
    return _REFERENCES[key]


def train_flops(evals: int, B: int, H: int) -> int:
    return 6 * evals * B * H * H + 4 * B * H * (2 * N_IO)


def bench_row(
    H: int,
    B: int,
    target: float,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
    min_time: float,
    use_compile: bool,
    steps_from: dict | None = None,
    output_target: float = 1e-4,
) -> dict:
    """One benchmark row: step counts at equal gradient error, then interleaved timings."""
    torch.manual_seed(0)
    x64 = torch.randn(B, N_IO, dtype=torch.float64)
    y64 = torch.randn(B, N_IO, dtype=torch.float64)
    xe, ye = x64[:ERROR_SAMPLES].to(device), y64[:ERROR_SAMPLES].to(device)
    ref, ref_out, ref_gap = reference(H, xe, ye)
    x, y = x64.to(device, dtype), y64.to(device, dtype)
    xf, yf = x[:ERROR_SAMPLES], y[:ERROR_SAMPLES]
    row = {
        "H": H, "B": B, "threads": torch.get_num_threads(), "device": str(device),
        "dtype": str(dtype).removeprefix("torch."), "target_grad_error": target,
        "grad_error_samples": ERROR_SAMPLES, "output_target": output_target,
        "reference": "float64 SwitchingHeun(512)",
        "reference_disagreement": ref_gap, "load_before": loadavg(),
    }  # fmt: skip

    def ours_error(solver):
        return rel(eads.ectrain_gradients(make_model(H, solver, dtype, device), xf, yf), ref)

    peer_model = make_model(H, eads.RK38(8), dtype, device)
    peer = Peer(peer_model)

    def peer_error(s, adjoint):
        return rel(tdq_grads(peer, xf, yf, s, adjoint), ref)

    errors = {
        "eads": lambda s: ours_error(SwitchingHeun(s)),
        "eads_rk38": lambda s: ours_error(eads.RK38(s)),
        "odeint": lambda s: peer_error(s, False),
        "odeint_adjoint": lambda s: peer_error(s, True),
    }
    # the step counts depend on the accuracy, not on the threads: chosen once per H and dtype
    key = (H, B, target, str(device), dtype)
    if key not in _STEPS:
        found = {}
        for name, error_of in errors.items():
            if steps_from is not None:  # bfloat16: the float32 step counts, and the error there
                found[name] = (steps_from[name], error_of(steps_from[name]))
            else:
                found[name] = steps_for(error_of, target)
        _STEPS[key] = found
    steps = {}
    for name, (s, err) in _STEPS[key].items():
        steps[name] = s
        row[f"{name}_steps"], row[f"{name}_grad_error"] = s, err

    models = {
        "eads": make_model(H, SwitchingHeun(steps["eads"]), dtype, device),
        "eads_rk38": make_model(H, eads.RK38(steps["eads_rk38"]), dtype, device),
    }
    if use_compile:
        models["eads_compiled"] = make_model(
            H, SwitchingHeun(steps["eads"], compile=True), dtype, device
        )
        steps["eads_compiled"] = steps["eads"]
    train = {name: (lambda m=m: eads.ectrain_gradients(m, x, y)) for name, m in models.items()}
    train["odeint"] = lambda: tdq_grads(peer, x, y, steps["odeint"], False)
    train["odeint_adjoint"] = lambda: tdq_grads(peer, x, y, steps["odeint_adjoint"], True)

    # inference at equal output error: the 3/8 rule (the fused path) is the most accurate eads
    # solver per evaluation for the forward pass alone, and it is torchdiffeq's rk4 tableau
    key_out = ("output", *key, output_target)
    if key_out not in _STEPS:
        out_errors = {
            "eads_infer": lambda s: _out_err(
                make_model(H, eads.RK38(s), dtype, device)(xf), ref_out
            ),
            "odeint_infer": lambda s: _out_err(tdq_infer(peer, xf, s), ref_out),
        }
        found = {}
        for name, error_of in out_errors.items():
            if steps_from is not None:
                with torch.no_grad():
                    found[name] = (steps_from[name], error_of(steps_from[name]))
            else:
                found[name] = steps_for(error_of, output_target, no_grad=True)
        _STEPS[key_out] = found
    for name, (s, err) in _STEPS[key_out].items():
        row[f"{name}_steps"], row[f"{name}_output_error"] = s, err
    infer_model = make_model(H, eads.RK38(row["eads_infer_steps"]), dtype, device)
    infer = {
        "eads_infer": lambda: infer_model(x),
        "odeint_infer": lambda: tdq_infer(peer, x, row["odeint_infer_steps"]),
        "eads_switching_infer": lambda: models["eads"](x),
    }
    with torch.no_grad():
        row["eads_switching_infer_output_error"] = _out_err(models["eads"](xf), ref_out)

    peak_before = matmul_rate(device, dtype)
    with torch.no_grad():
        t_inf = interleaved(infer, device, repeats, min_time)
    t_train = interleaved(train, device, repeats, min_time)
    peak = max(peak_before, matmul_rate(device, dtype))
    row["load_after"] = loadavg()
    row["matmul_rate_flops"] = peak

    for name, t in t_train.items():
        row[f"{name}_train_sps"] = B / t["median_s"]
        row[f"{name}_train_spread"] = t["spread"]
    for name, t in t_inf.items():
        row[f"{name}_sps"] = B / t["median_s"]
        row[f"{name}_spread"] = t["spread"]
    best = "eads"
    if use_compile and row["eads_compiled_train_sps"] > row["eads_train_sps"]:
        best = "eads_compiled"
    row["best"] = best
    for peer_name in ("odeint", "odeint_adjoint"):
        ref_sps = row[f"{peer_name}_train_sps"]
        row[f"ratio_train_vs_{peer_name}"] = row[f"{best}_train_sps"] / ref_sps
        row[f"ratio_train_eager_vs_{peer_name}"] = row["eads_train_sps"] / ref_sps
        row[f"ratio_rk38_vs_{peer_name}"] = row["eads_rk38_train_sps"] / ref_sps
    row["ratio_infer_vs_odeint"] = row["eads_infer_sps"] / row["odeint_infer_sps"]
    for name in (*models, "odeint", "odeint_adjoint"):
        evals = steps[name] * (2 if name.startswith("eads") and name != "eads_rk38" else 4)
        flops = train_flops(evals, B, H)
        row[f"{name}_train_flops"] = flops
        row[f"{name}_fraction_of_matmul_rate"] = flops * row[f"{name}_train_sps"] / B / peak
    row["fraction_of_matmul_rate"] = row[f"{best}_fraction_of_matmul_rate"]
    with torch.no_grad():
        tape = models["eads"].couple(models["eads"].project(x), record=True).tape
    row["eads_tape_bytes"] = tape.nbytes
    row["eads_rk38_tape_bytes"] = 2 * steps["eads_rk38"] * 4 * B * H * x.element_size()
    return row


def _out_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double().cpu() - ref).norm() / ref.norm())


def summary_line(row: dict) -> str:
    return (
        f"H={row['H']:4d} threads={row['threads']} {row['dtype']}: "
        f"eads {row['eads_train_sps']:9.0f}/s ({row['eads_steps']} steps)"
        + (
            f", compiled {row['eads_compiled_train_sps']:9.0f}/s"
            if "eads_compiled_train_sps" in row
            else ""
        )  # fmt: skip
        + f", rk38 {row['eads_rk38_train_sps']:8.0f}/s ({row['eads_rk38_steps']})"
        f", odeint {row['odeint_train_sps']:8.0f}/s ({row['odeint_steps']})"
        f", adjoint {row['odeint_adjoint_train_sps']:8.0f}/s ({row['odeint_adjoint_steps']})"
        f" | x{row['ratio_train_vs_odeint']:.2f} odeint,"
        f" x{row['ratio_train_vs_odeint_adjoint']:.2f} adjoint,"
        + f" {100 * row['fraction_of_matmul_rate']:.0f}% matmul,"
        f" infer x{row['ratio_infer_vs_odeint']:.2f} | load {row['load_before']}"
    )


def markdown_table(result: dict) -> str:
    """The speed table of a core.json, as the README prints it."""
    lines = [
        "| H | threads | eads EC-Train /s (steps) | odeint /s (steps) | odeint_adjoint /s (steps) "
        "| vs odeint | vs odeint_adjoint | % of matmul rate | inference vs odeint | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        kind = " (compiled)" if r["best"] == "eads_compiled" else ""
        load = "-".join(f"{v:.1f}" for v in (r["load_before"][0], r["load_after"][0]))
        lines.append(
            f"| {r['H']} | {r['threads']} | {r[r['best'] + '_train_sps']:,.0f}{kind} "
            f"({r['eads_steps']}) | {r['odeint_train_sps']:,.0f} ({r['odeint_steps']}) "
            f"| {r['odeint_adjoint_train_sps']:,.0f} ({r['odeint_adjoint_steps']}) "
            f"| {r['ratio_train_vs_odeint']:.2f}x | {r['ratio_train_vs_odeint_adjoint']:.2f}x "
            f"| {100 * r['fraction_of_matmul_rate']:.0f} % | {r['ratio_infer_vs_odeint']:.2f}x "
            f"| {load} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--target", type=float, default=2e-3, help="gradient error to reach")
    ap.add_argument("--output-target", type=float, default=1e-4, help="inference output error")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", nargs="+", default=["float32"], choices=sorted(DTYPES))
    ap.add_argument("--repeats", type=int, default=9, help="interleaved timing rounds")
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per timing sample")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled kernels")
    ap.add_argument("--out", default="benchmarks/results/core.json")
    ap.add_argument("--table", metavar="JSON", help="print the Markdown table of a core.json")
    args = ap.parse_args(argv)
    if args.table:
        import json

        print(markdown_table(json.loads(open(args.table).read())))
        return {}
    device = torch.device(args.device)
    rows = []
    t0 = time.time()
    for threads in args.threads:
        torch.set_num_threads(threads)
        _kernels.reset()  # inductor fixes a CPU kernel's thread count when it compiles it
        for H in args.hidden:
            steps32 = None
            for name in args.dtype:
                row = bench_row(
                    H, args.batch, args.target, device, DTYPES[name], args.repeats,
                    args.min_time, not args.no_compile, steps_from=steps32,
                    output_target=args.output_target,
                )  # fmt: skip
                if name == "float32":
                    names = ("eads", "eads_rk38", "odeint", "odeint_adjoint", "eads_infer",
                             "odeint_infer")  # fmt: skip
                    steps32 = {k: row[f"{k}_steps"] for k in names}
                rows.append(row)
                print(summary_line(row), flush=True)
    result = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": machine(device),
        "revision": git_revision(),
        "wall_s": time.time() - t0,
        "rows": rows,
    }
    from eads._io import atomic_write_json

    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
