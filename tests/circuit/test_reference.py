"""The reference node of EADS and NP-GL: without it both maps are positively homogeneous, with it
both fit an affine target exactly (to rounding), and its voltage is checked at the boundary.

Oracles: homogeneity is an identity of the paper's equations (``relu(J c h) = c relu(J h)`` for
``c > 0``, and NP-GL's linear solve); the affine fit is compared with the least-squares floor of
a map without an intercept, computed in closed form by ``torch.linalg.lstsq``. EC-Train's
gradient with the reference node against autograd is in test_adjoint.py, ngspice in
tests/spice/test_spice.py.
"""

from __future__ import annotations

import pytest
import torch
from conftest import F64

import eads
from eads.config import TrainConfig
from eads.learn import evaluate_mse, fit


def circuits(reference: bool, **kw):
    return {
        "eads": eads.EADS(3, 8, 2, seed=0, dtype=F64, reference=reference, **kw),
        "npgl": eads.NPGL(3, 2, seed=0, dtype=F64, reference=reference, **kw),
    }


def inputs(B=16, seed=1):
    return torch.randn(B, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("kind", ["eads", "npgl"])
def test_without_reference_the_map_is_positively_homogeneous(kind):
    m = circuits(False)[kind]
    x = inputs()
    with torch.no_grad():
        for c in (0.25, 3.0):
            assert torch.allclose(m(c * x), c * m(x), rtol=1e-12, atol=1e-13)
        assert torch.equal(m(torch.zeros_like(x)), torch.zeros(16, 2, dtype=F64))


@pytest.mark.parametrize("kind", ["eads", "npgl"])
def test_with_reference_the_map_is_not_homogeneous(kind):
    m = circuits(True)[kind]
    x = inputs()
    with torch.no_grad():
        gap = (m(3.0 * x) - 3.0 * m(x)).abs().max()
        at_zero = m(torch.zeros_like(x)).abs().max()
    assert float(gap) > 1e-2 and float(at_zero) > 1e-2  # an offset the inputs do not scale


def test_reference_off_keeps_the_other_conductances_of_the_same_seed():
    on, off = circuits(True)["eads"], circuits(False)["eads"]
    for k in ("P", "J", "Q"):
        assert torch.equal(getattr(on, k), getattr(off, k))
    assert off.P_ref is None and off.conductance_names == ("P", "J", "Q")
    assert "P_ref" in dict(on.named_parameters())


def affine_task(B=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, 3, generator=g, dtype=F64)
    A = torch.randn(3, 2, generator=g, dtype=F64)
    return x, x @ A + torch.tensor([1.5, -0.7], dtype=F64)


@pytest.mark.parametrize(("kind", "trainer"), [("eads", eads.ECTrain()), ("npgl", eads.Backprop())])
def test_reference_node_fits_an_affine_target_exactly(kind, trainer):
    """With J = 0 the EADS map is linear in (x, v_ref) and EC-Train leaves J at 0 (every diode
    is off, so dL/dJ = 0); NP-GL's annealed output is affine. With the reference node both
    reach the affine target to rounding (measured MSE ~1e-31); without it both stop at the
    closed-form least-squares floor of a map without intercept (measured: equal to 13 digits)."""
    x, y = affine_task()
    floor = float(((x @ torch.linalg.lstsq(x, y).solution - y) ** 2).mean())
    assert floor > 0.5  # the offset is a real part of the target
    cfg = TrainConfig(epochs=1500, batch_size=64, lr=1e-2, patience=0)
    mse = {}
    for reference in (True, False):
        m = circuits(reference)[kind]
        if kind == "eads":
            with torch.no_grad():
                m.J.zero_()
        fit(m, trainer, (x, y), None, cfg, progress=False)
        mse[reference] = evaluate_mse(m, x, y)
    assert mse[True] < 1e-20
    assert mse[False] == pytest.approx(floor, rel=1e-8)


@pytest.mark.parametrize("kind", ["eads", "npgl"])
@pytest.mark.parametrize(
    ("voltage", "words"),
    [
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (0.0, "nonzero"),
        (2e4, "outside the supply rail"),
        ("high", "a number"),
    ],
)
def test_bad_reference_voltage_is_refused(kind, voltage, words):
    with pytest.raises(eads.ConfigError, match=words):
        circuits(True, reference_voltage=voltage)[kind]


def test_reference_voltage_scales_its_conductances_not_the_map():
    """The node is a voltage times trained conductances: a circuit at v_ref = 2 whose P_ref is
    half that of a circuit at v_ref = 1 computes the same map."""
    a = eads.EADS(3, 8, 2, seed=0, dtype=F64)
    b = eads.EADS(3, 8, 2, seed=0, dtype=F64, reference_voltage=2.0)
    with torch.no_grad():
        b.P_ref.copy_(a.P_ref / 2)
        x = inputs()
        assert torch.allclose(a(x), b(x), rtol=1e-14, atol=1e-14)
