"""The simulator on a CUDA device: the same numbers as on the CPU, and the GPU script's paths.

Marked ``gpu`` (deselected by default; ``pytest -m gpu`` runs them) and skipped where no CUDA
device is present. The measurement itself is ``benchmarks/bench_gpu.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import F64, max_rel_err

import eads
from eads.circuit import adjoint_gradients
from eads.solve import SwitchingHeun, _kernels

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA device and none is present (benchmarks/bench_gpu.py measures one)",
    ),
]


def circuit(solver, dtype=F64, device="cuda", H=32):
    return eads.EADS(8, H, 4, solver=solver, seed=0, dtype=dtype, device=device)


def data(dtype=F64, device="cuda", B=64):
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(B, 8, generator=g, dtype=F64), torch.randn(B, 4, generator=g, dtype=F64)
    return x.to(device, dtype), y.to(device, dtype)


@pytest.mark.parametrize("solver", [SwitchingHeun(5), eads.RK38(4), eads.RK4(4)])
def test_ectrain_on_cuda_equals_the_cpu(solver):
    cpu = eads.ectrain_gradients(circuit(solver, device="cpu"), *data(device="cpu"))
    gpu = eads.ectrain_gradients(circuit(solver), *data())
    assert all(g.device.type == "cuda" for g in gpu.values())
    assert max_rel_err({k: v.cpu() for k, v in gpu.items()}, cpu) < 1e-12


def test_ectrain_on_cuda_equals_autograd():
    m = circuit(SwitchingHeun(5))
    x, y = data()
    _, ec = adjoint_gradients(m, x, y)
    _, ref = eads.Backprop().loss_and_gradients(m, x, y)
    assert max_rel_err(ec, ref) < 1e-10


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_gradients_are_close_to_float64(dtype):
    ref = eads.ectrain_gradients(circuit(SwitchingHeun(5)), *data())
    low = eads.ectrain_gradients(circuit(SwitchingHeun(5), dtype=dtype), *data(dtype=dtype))
    bound = {torch.float32: 1e-5, torch.bfloat16: 5e-2}[dtype]  # rounding: 2^-24 and 2^-8
    assert max_rel_err({k: v.double() for k, v in low.items()}, ref) < bound


def test_compiled_kernels_on_cuda_equal_the_eager_ones():
    if _kernels.compiled() is None:
        pytest.skip("torch.compile is not available here")
    m = circuit(SwitchingHeun(5, compile=True), dtype=torch.float32)
    e = circuit(SwitchingHeun(5), dtype=torch.float32)
    x, y = data(dtype=torch.float32)
    gm, ge = eads.ectrain_gradients(m, x, y), eads.ectrain_gradients(e, x, y)
    assert max_rel_err(gm, ge) < 1e-5


def test_bench_gpu_smoke_on_cuda(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import bench_gpu

    try:
        out = tmp_path / "gpu.json"
        bench_gpu.main(["--smoke", "--out", str(out)])
        result = json.loads(out.read_text())
        assert result["machine"]["gpu"]
        assert all("error" not in row for row in result["simulator"])
    finally:
        sys.modules.pop("bench_gpu", None)
        sys.modules.pop("bench_core", None)
