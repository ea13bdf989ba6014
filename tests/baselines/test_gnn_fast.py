"""DDGCRN's fast path against the implementation it replaced (per-step autograd, einsum).

The reference below is the previous ``eads.baselines.gnn`` DDGCRN forward, written out on the
model's own parameters: each step's graph ``D^-1/2 relu(E E^T) D^-1/2`` by autograd, the
node-adaptive weights ``einsum("nd,dkio->nkio")`` and their product ``einsum("bnki,nkio->bno")``,
steps indexed ``x[:, t]``, and the GRU update ``r h + (1 - r) c``. The new model must give the
same outputs and the same gradient for every parameter, under the same parameter names.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as tf

from eads.baselines import gnn


def _ref_graph(nodevec, x):
    r = tf.relu(nodevec @ nodevec.transpose(1, 2))
    deg = r.sum(-1, keepdim=True)
    inv = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
    return inv * (r @ (inv * x))


def _ref_dgcn(conv, x, dyn_emb, static_emb):
    nodevec = torch.tanh(dyn_emb * conv.filter(x))
    xg = torch.stack([x, _ref_graph(nodevec, x)], dim=2)  # (B, N, 2, C_in)
    weights = torch.einsum("nd,dkio->nkio", static_emb, conv.weights_pool)
    return torch.einsum("bnki,nkio->bno", xg, weights) + static_emb @ conv.bias_pool


def _ref_cell(cell, x, state, dyn_emb, static_emb):
    zr = torch.sigmoid(_ref_dgcn(cell.gate, torch.cat([x, state], -1), dyn_emb, static_emb))
    z, r = zr.split(cell.hidden, dim=-1)
    cand = torch.tanh(_ref_dgcn(cell.update, torch.cat([x, z * state], -1), dyn_emb, static_emb))
    return r * state + (1 - r) * cand


def _ref_dgcrm(encoder, x, dyn_emb, static_emb):
    seq = x
    for cell in encoder.cells:
        state = x.new_zeros(x.shape[0], x.shape[2], cell.hidden)
        outs = []
        for t in range(seq.shape[1]):
            state = _ref_cell(cell, seq[:, t], state, dyn_emb[:, t], static_emb)
            outs.append(state)
        seq = torch.stack(outs, dim=1)
    return seq[:, -1]


def _ref_ddgcrn(model, x):
    b, t, n, _ = x.shape
    dyn = model.node_emb.expand(b, t, n, -1)
    if model.tod_feature is not None:
        idx = (x[..., model.tod_feature] * model.steps_per_day).long()
        dyn = dyn * model.tod_emb[idx.clamp(0, model.steps_per_day - 1)]
    if model.dow_feature is not None:
        dyn = dyn * model.dow_emb[x[..., model.dow_feature].long().clamp(0, 6)]
    signal = x[..., model.signal_features]
    h1 = _ref_dgcrm(model.encoder1, signal, dyn, model.node_emb)
    out1 = model.head1(model.drop1(h1))
    recon = model.reconstruct(h1).view(b, n, t, -1).transpose(1, 2)
    h2 = _ref_dgcrm(model.encoder2, signal - recon, dyn, model.node_emb)
    out2 = model.head2(model.drop2(h2))
    return (out1 + out2).transpose(1, 2)


N, T, H = 9, 6, 4
CASES = [
    (dict(), 2),
    (dict(n_layers=2), 2),
    (dict(time_of_day_feature=1, steps_per_day=24, day_of_week_feature=2), 3),
    (dict(day_of_week_feature=1), 2),  # a day embedding without the time-of-day one
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("extra", "features"), CASES)
def test_ddgcrn_equals_the_previous_implementation(extra, features, dtype):
    torch.manual_seed(0)
    model = gnn.DDGCRN(N, features, T, H, hidden=16, embed_dim=5, dropout=0.0, **extra)
    model = model.to(dtype).train()
    x = torch.randn(3, T, N, features, dtype=dtype)
    if "time_of_day_feature" in extra:
        x[..., 1] = torch.rand(3, T, N, dtype=dtype)
    if "day_of_week_feature" in extra:
        x[..., extra["day_of_week_feature"]] = torch.randint(0, 7, (3, T, N)).to(dtype)
    params = list(model.parameters())
    fast = model(x)
    slow = _ref_ddgcrn(model, x)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast, slow, **tol)
    weight = torch.randn_like(fast)  # a loss whose gradient differs at every output
    g_fast = torch.autograd.grad((fast * weight).sum(), params)
    g_slow = torch.autograd.grad((slow * weight).sum(), params)
    grad_tol = tol if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), g_fast, g_slow, strict=True):
        assert b.abs().max() > 0, name  # every compared gradient is non-trivial
        torch.testing.assert_close(a, b, **grad_tol, msg=name)


def test_ddgcrn_parameter_names_and_shapes_are_unchanged():
    model = gnn.DDGCRN(N, 3, T, H, hidden=16, embed_dim=5, time_of_day_feature=1)
    conv = lambda c_out: {  # noqa: E731
        "weights_pool": (5, 2, 18, c_out),
        "bias_pool": (5, c_out),
        "filter.0.weight": (16, 18),
        "filter.0.bias": (16,),
        "filter.2.weight": (2, 16),
        "filter.2.bias": (2,),
        "filter.4.weight": (5, 2),
        "filter.4.bias": (5,),
    }
    expected = {"node_emb": (N, 5), "tod_emb": (288, 5)}
    for enc in ("encoder1", "encoder2"):
        for part, c_out in (("gate", 32), ("update", 16)):
            for k, shape in conv(c_out).items():
                expected[f"{enc}.cells.0.{part}.{k}"] = shape
    expected |= {
        "head1.weight": (H, 16),
        "head1.bias": (H,),
        "reconstruct.weight": (T * 2, 16),
        "reconstruct.bias": (T * 2,),
        "head2.weight": (H, 16),
        "head2.bias": (H,),
    }
    got = {k: tuple(p.shape) for k, p in model.named_parameters()}
    assert got == expected


def test_dynamic_graph_input_matches_autograd_with_isolated_nodes():
    torch.manual_seed(1)
    e = torch.randn(3, 7, 4, dtype=torch.float64)
    e[0, 0] = 0.0  # degree 0: the release's where(deg > 0) gives 0 and no gradient
    e[1] = e[1].abs()
    e[1, 2] = -e[1, 2]  # edges to itself only
    e[2, :, 0] = -e[2, :, 0].abs()
    e[2, 3] = torch.tensor([1e-7, 0.0, 0.0, 0.0])  # degree 1e-14: under the clamp's 1e-12
    e.requires_grad_()
    x = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    out = gnn._DynamicGraphInput.apply(e, x)  # (N, B, 2 C)
    ref = torch.cat([x, _ref_graph(e, x)], dim=-1).transpose(0, 1)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    assert ref[0, 0, 5:].abs().max() == 0 and ref[2, 1, 5:].abs().min() > 0
    # incoming gradients both contiguous and batch-major (the layouts the cells hand it)
    for g in (torch.randn(7, 3, 10, dtype=e.dtype), torch.randn(3, 7, 10).double().transpose(0, 1)):
        a = torch.autograd.grad(out, (e, x), g, retain_graph=True)
        b = torch.autograd.grad(ref, (e, x), g, retain_graph=True)
        for ga, gb in zip(a, b, strict=True):
            torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-14)


def test_dynamic_graph_input_gradcheck():
    torch.manual_seed(2)
    e = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gnn._DynamicGraphInput.apply, (e, x))
