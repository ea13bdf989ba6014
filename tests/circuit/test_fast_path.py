"""EC-Train's fast path (row blocks, buffers shared by the forward pass and the adjoint, one-pass
checks) against oracles, in float64.

Oracles: autograd through the same solver (the digital baseline, no buffers, no blocks, no
in-place arithmetic); EC-Train on the whole batch as one block; ``torch.isfinite`` and
``abs().max()`` for the boundary checks.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import F64, max_rel_err

import eads
from eads.circuit import adjoint
from eads.circuit._checks import all_finite, check_batch, check_stable, extremes
from eads.circuit.adjoint import adjoint_gradients, default_block_rows
from eads.circuit.nonideal import NonIdealEADS
from eads.solve import _kernels

# (H, B, steps): one node, one sample, one step; sizes that are not multiples of a vector width
SHAPES = [(1, 1, 1), (5, 6, 3), (24, 37, 7), (16, 64, 2)]
SOLVERS = {"switching-heun": eads.solve.SwitchingHeun, "rk4": eads.RK4, "rk38": eads.RK38}


def case(H, B, steps, solver, reference, seed=0):
    g = torch.Generator().manual_seed(seed + 100 * H + B)
    m = eads.EADS(
        3, H, 2, solver=SOLVERS[solver](steps), reference=reference, reference_voltage=0.7,
        coupling_init=1.5, seed=seed, dtype=F64,
    )  # fmt: skip
    x = torch.randn(B, 3, generator=g, dtype=F64)
    y = torch.randn(B, 2, generator=g, dtype=F64)
    return m, x, y


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("reference", [True, False])
@pytest.mark.parametrize(("H", "B", "steps"), SHAPES)
def test_ectrain_equals_autograd_in_one_block_and_in_many(H, B, steps, solver, reference):
    m, x, y = case(H, B, steps, solver, reference)
    ref_loss, ref = eads.Backprop().loss_and_gradients(m, x, y)
    for rows in (None, B, 1, 5):
        loss, ec = adjoint_gradients(m, x, y, block_rows=rows)
        assert set(ec) == set(m.conductance_names)
        assert float(loss) == pytest.approx(float(ref_loss), rel=1e-12, abs=1e-300)
        assert max_rel_err(ec, ref) < 1e-12, rows  # measured <= 7e-16


def test_the_diodes_switch_in_these_cases():
    """The cases above exercise the rectifier: some diodes are off, some switch in a step."""
    m, x, _ = case(24, 37, 7, "rk4", True)
    with torch.no_grad():
        states = m.couple(m.project(x), record=True).tape.aux_buffer.flatten(0, 1)
    assert bool(((states.amax(0) - states.amin(0)) > 0).any())  # a diode switches
    assert bool((states.amax(0) == 0).any())  # and one stays off throughout


@pytest.mark.parametrize("solver", ["switching-heun", "rk38"])
def test_blocks_add_up_to_one_block(solver):
    m, x, y = case(12, 23, 4, solver, True)
    one_loss, one = adjoint_gradients(m, x, y, block_rows=23)
    for rows in (1, 2, 7, 11, 12, 22, 50):
        loss, grads = adjoint_gradients(m, x, y, block_rows=rows)
        assert float(loss) == pytest.approx(float(one_loss), rel=1e-13)
        assert max_rel_err(grads, one) < 1e-13, rows


def test_gradients_are_not_views_of_the_solvers_buffers():
    """The tape and scratch are reused by the next integration; what EC-Train returns is not."""
    m, x, y = case(16, 40, 3, "switching-heun", True)
    first = {k: v.clone() for k, v in adjoint_gradients(m, x, y, block_rows=16)[1].items()}
    kept = adjoint_gradients(m, x, y, block_rows=16)[1]
    for rows in (16, None):
        adjoint_gradients(m, torch.randn_like(x), torch.randn_like(y), block_rows=rows)
        with torch.no_grad():
            m(torch.randn_like(x))
    assert all(torch.equal(kept[k], first[k]) for k in first)


@pytest.mark.slow
def test_compiled_kernels_and_blocks_agree_with_autograd():
    """Seconds to minutes on first use (inductor compiles the kernels; cached on disk after)."""
    if _kernels.compiled() is None:
        pytest.skip("torch.compile is not available in this installation")
    m, x, y = case(16, 19, 4, "switching-heun", True)
    c = eads.EADS(3, 16, 2, solver=eads.solve.SwitchingHeun(4, compile=True), seed=0, dtype=F64,
                  coupling_init=1.5, reference_voltage=0.7)  # fmt: skip
    c.load_state_dict(m.state_dict())
    _, ref = eads.Backprop().loss_and_gradients(m, x, y)
    assert max_rel_err(adjoint_gradients(c, x, y, block_rows=6)[1], ref) < 1e-12


def test_default_blocks_follow_the_byte_budget():
    x = torch.zeros(1024, 32)
    sh = eads.EADS(32, 128, 32, solver=eads.solve.SwitchingHeun(4), seed=0)
    per_row = (5 * 4 + 6) * 128 * 4  # tape and scratch, float32
    rows = default_block_rows(sh, x)
    assert rows == max(adjoint.MIN_BLOCK_ROWS, adjoint.BLOCK_BYTES // per_row) < 1024
    assert default_block_rows(sh, x[:100]) == 100  # a small batch is one block
    big = eads.EADS(32, 2048, 32, solver=eads.solve.SwitchingHeun(4), seed=0)
    assert default_block_rows(big, torch.zeros(8192, 32)) == adjoint.MIN_BLOCK_ROWS
    small = eads.EADS(32, 32, 32, solver=eads.solve.SwitchingHeun(4), seed=0)
    assert default_block_rows(small, x) == 1024  # the whole tape fits the budget
    rk = eads.EADS(32, 128, 32, solver=eads.RK38(8), seed=0)
    assert default_block_rows(rk, torch.zeros(4096, 32)) == adjoint.MIN_BLOCK_ROWS


@pytest.mark.parametrize(
    "build",
    [
        lambda: eads.EADS(32, 128, 32, solver=eads.solve.SwitchingHeun(4), stages="transient"),
        lambda: eads.EADS(32, 128, 32, solver=eads.Dopri5()),
        lambda: eads.EADS(32, 128, 32, solver=eads.solve.EulerMaruyama(4, noise_std=0.1)),
        lambda: NonIdealEADS.from_model(eads.EADS(32, 128, 32)),
    ],
    ids=["transient", "adaptive", "stochastic", "non-ideal"],
)
def test_one_block_where_blocks_could_change_the_result(build):
    """Transient stages settle the whole batch to one tolerance, an adaptive solver picks its
    steps for the batch, noise is drawn per call: these keep the batch whole."""
    assert default_block_rows(build(), torch.zeros(4096, 32)) == 4096


@pytest.mark.parametrize("rows", [0, -3, 2.5, True, "8"])
def test_block_rows_must_be_a_positive_integer(rows):
    m, x, y = case(4, 5, 2, "rk4", True)
    with pytest.raises(eads.ConfigError, match="block_rows"):
        adjoint_gradients(m, x, y, block_rows=rows)


# -- the one-pass boundary checks ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (33, 65)])
def test_all_finite_equals_isfinite_wherever_the_bad_value_sits(dtype, shape):
    g = torch.Generator().manual_seed(1)
    base = torch.randn(shape, generator=g).to(dtype)
    assert all_finite(base)
    lo, hi = extremes(base)
    assert (lo, hi) == (float(base.min()), float(base.max()))
    n = base.numel()
    positions = sorted({0, 1, n // 2, n - 17, n - 2, n - 1} & set(range(n)))
    for bad in (math.nan, math.inf, -math.inf):
        for pos in positions:
            x = base.clone()
            x.view(-1)[pos] = bad
            assert all_finite(x) is bool(torch.isfinite(x).all()) is False, (bad, pos)


def test_checks_of_other_dtypes_fall_back_to_isfinite():
    assert all_finite(torch.arange(6).reshape(2, 3))
    assert all_finite(torch.ones(2, 3, dtype=torch.bool))
    z = torch.ones(2, 2, dtype=torch.complex128)
    assert all_finite(z)
    z[1, 1] = complex(math.nan, 0.0)
    assert not all_finite(z)
    assert check_batch("x", torch.arange(6).reshape(2, 3), 3, "n_inputs").shape == (2, 3)
    with pytest.raises(eads.DataError, match="NaN"):
        check_batch("x", torch.tensor([[1.0, math.inf]]), 2, "n_inputs")


def test_check_stable_reports_the_largest_magnitude_either_side():
    state = torch.tensor([[1.0, -3e4], [2e4, 0.5]], dtype=F64)
    with pytest.raises(eads.UnstableCircuitError, match=r"reached 3e\+04, beyond the rail 10000"):
        check_stable("coupling", state, 1e4, "hint")
    check_stable("coupling", state, 3e4, "hint")  # exactly at the rail is inside
    for bad in (math.nan, math.inf, -math.inf):
        state[0, 0] = bad
        with pytest.raises(eads.UnstableCircuitError, match="non-finite"):
            check_stable("coupling", state, 1e4, "hint")
