"""Operator baselines: shapes, gradients, parameter counts against the stated architectures,
and the loss falls on a tiny batch."""

from __future__ import annotations

import pytest
import torch

from eads._errors import ConfigError, DataError
from eads.baselines.operators import (
    FCN,
    FNO,
    GNO,
    NN,
    OPERATORS,
    build_operator,
    count_parameters,
    grid_coordinates,
    receptive_field,
)

CASES = [(name, dim) for name in ("nn", "fcn", "gno", "fno") for dim in (1, 2)]
RES = {1: 32, 2: 16}


def make(name: str, dim: int, **hp) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_operator(name, dim, RES[dim], **hp)


def batch(dim: int, n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn((n,) + (RES[dim],) * dim, generator=g)


@pytest.mark.parametrize("name,dim", CASES)
def test_output_shape_and_every_parameter_gets_a_gradient(name, dim):
    model = make(name, dim)
    x = batch(dim)
    y = model(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


SMALL = {
    "nn": dict(hidden_width=64),
    "fcn": dict(blocks=(2, 3, 2), growth_rate=8, init_features=16),
    "gno": dict(width=8, kernel_width=32, depth=2),
    "fno": dict(modes=4, width=16),
}


@pytest.mark.parametrize("name,dim", CASES)
def test_a_few_steps_lower_the_loss_on_a_tiny_batch(name, dim):
    model = make(name, dim, **SMALL[name])
    x = batch(dim)
    # a smooth, nonlinear target operator: local average of x plus its square
    target = 0.5 * (x + torch.roll(x, 1, dims=-1)) + 0.1 * x**2
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# ----------------------------------------------------------------------------- parameter counts


def nn_params(n_in_points: int, w: int, depth: int) -> int:
    return (n_in_points + 1) * w + (depth - 1) * (w + 1) * w + (w + 1) * n_in_points


@pytest.mark.parametrize("dim", [1, 2])
def test_nn_parameter_count(dim):
    n = RES[dim] ** dim
    assert count_parameters(NN(dim, RES[dim], hidden_width=64, depth=3)) == nn_params(n, 64, 3)
    pw = NN(dim, RES[dim], hidden_width=64, depth=3, pointwise=True)
    assert count_parameters(pw) == (dim + 2) * 64 + 2 * 65 * 64 + 64 + 1


def dense_ed_params(dim, blocks=(3, 6, 3), growth=16, init=48) -> int:
    """Zhu & Zabaras' DenseED, counted from its description (BN: 2 per map; convs bias-free)."""

    def k(size):
        return size**dim

    total = 1 * init * k(7)  # In_conv
    c = init
    for i, n_layers in enumerate(blocks):
        for j in range(n_layers):
            c_in = c + j * growth
            total += 2 * c_in + c_in * growth * k(3)  # BN-ReLU-conv3
        c += n_layers * growth
        out = c // 2
        total += 2 * c + c * out + 2 * out  # BN, conv1 (halving), BN
        if i < len(blocks) - 1:
            total += out * out * k(3)  # conv3 stride 2 (down) or convT3 (up)
        else:
            total += out * 1 * k(4)  # last convT4 to the output
        c = out
    return total


# By hand for blocks (3, 6, 3), K = 16, 48 initial maps, 2-D: In_conv 2352 + enc block 28032
# + down 25632 + dec block 77088 + up 57456 + dec block 38544 + last decoding 8520.
FCN_DEFAULT_2D_PARAMS = 237_624


@pytest.mark.parametrize("dim", [1, 2])
def test_fcn_parameter_count(dim):
    assert count_parameters(FCN(dim, RES[dim])) == dense_ed_params(dim)
    small = FCN(dim, RES[dim], blocks=(2, 3, 2), growth_rate=8, init_features=16)
    assert count_parameters(small) == dense_ed_params(dim, (2, 3, 2), 8, 16)


def test_fcn_default_2d_count_is_the_hand_computed_number():
    assert count_parameters(FCN(2, 64)) == dense_ed_params(2) == FCN_DEFAULT_2D_PARAMS


def test_receptive_fields_match_each_architecture():  # ~1 s
    # the FCN's convolutions, counted by hand: conv7 s2 (7 points), 3 x conv3 at spacing 2 (+12),
    # conv3 s2 (+4), 6 x conv3 at spacing 4 (+48), 3 x conv3 at spacing 2 (+12) = 83 points,
    # plus at most 4 + 2 from the two stride-2 transposed convolutions; fixed in grid points,
    # so the same at every resolution (2.1 % of a 4096-point period)
    spans = {res: receptive_field(FCN(1, res), res) for res in (256, 1024)}
    assert spans[256] == spans[1024] and 83 <= spans[256] <= 89
    assert receptive_field(FNO(1, 64), 64) == 64  # spectral: the whole period
    assert receptive_field(NN(1, 64), 64) == 64  # dense: every input
    assert receptive_field(NN(1, 64, pointwise=True), 64) == 1  # its own point only


@pytest.mark.parametrize("dim", [1, 2])
def test_gno_parameter_count(dim):
    w, k = 16, 32
    model = GNO(dim, RES[dim], width=w, kernel_width=k, depth=3)
    expected = (
        (dim + 2) * w + (2 * dim + 3) * k + (k + 1) * k + (k + 1) * w * w + (w + 1) * w + w + 1
    )
    assert count_parameters(model) == expected


@pytest.mark.parametrize("dim,modes,width", [(1, 16, 64), (2, 12, 32)])
def test_fno_spectral_weights_follow_the_paper_settings(dim, modes, width):
    model = FNO(dim, 64)  # defaults are the FNO paper's
    assert model.modes == modes and model.width == width
    convs = model.fno.fno_blocks.convs
    assert len(convs) == 4
    expected = (width, width) + (2 * modes,) * (dim - 1) + (modes,)
    for conv in convs:
        assert tuple(conv.weight.shape) == expected
        assert conv.weight.to_tensor().is_complex()


# ----------------------------------------------------------------------------- GNO oracle


def test_gno_message_passing_matches_dense_reference():
    torch.manual_seed(0)
    model = GNO(1, 12, width=4, kernel_width=8, depth=2, radius=0.2)
    x = torch.randn(2, 12)
    coords = grid_coordinates(1, 12)  # (N, 1)
    adj = (torch.cdist(coords, coords) <= 0.2 + 1e-9).float()  # (N, N), self-loops included
    assert model.n_edges == int(adj.sum())
    a = x[..., None]  # (B, N, 1)
    n = 12
    xi = coords[None, :, None, :].expand(2, n, n, 1)  # target x
    yj = coords[None, None, :, :].expand(2, n, n, 1)  # source y
    feats = torch.cat([xi, yj, a[:, :, None].expand(2, n, n, 1), a[:, None].expand(2, n, n, 1)], -1)
    k = model.kernel(feats).reshape(2, n, n, 4, 4)  # (B, N, N, w, w)
    v = model.lift(torch.cat([a, coords.expand(2, -1, -1)], -1))
    for _ in range(2):
        msg = torch.einsum("bjw,bijwo->bijo", v, k) * adj[None, :, :, None]
        v = torch.relu(model.root(v) + msg.sum(2) / adj.sum(1)[None, :, None])
    ref = model.project(v).squeeze(-1)
    torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- errors


def test_registry_and_errors():
    assert set(OPERATORS) == {"nn", "fcn", "gno", "fno"}
    with pytest.raises(ConfigError, match=r"\['fcn', 'fno', 'gno', 'nn'\]"):
        build_operator("unet", 1, 32)
    with pytest.raises(ConfigError, match="dim"):
        build_operator("nn", 3, 8)
    with pytest.raises(ConfigError, match="not all accepted"):
        build_operator("nn", 1, 32, modes=4)
    with pytest.raises(ConfigError, match="multiple of 4"):
        build_operator("fcn", 2, 18)
    with pytest.raises(DataError, match=r"\(batch, 32\)"):
        build_operator("nn", 1, 32)(torch.zeros(2, 16))


def test_models_are_deterministic_under_a_seed():
    x = batch(2)
    outs = [make("gno", 2)(x) for _ in range(2)]
    torch.testing.assert_close(outs[0], outs[1])


# ----------------------------------------------------------------------------- GNO: Nystrom


def test_gno_default_radius_puts_about_eight_neighbours_in_a_ball():
    for dim, res in [(1, 256), (2, 16)]:  # grids of exactly n_sampled = 256 points: one graph
        model = GNO(dim, res, width=2, kernel_width=2, depth=1)
        assert model.stride == 1 and model.n_parts == 1
        degree = torch.bincount(model.part0_edges[1], minlength=res**dim).float()
        assert 8 <= degree.median() <= 10  # interior points: themselves and 8 neighbours


def test_gno_sampled_forward_on_every_point_equals_the_whole_grid_forward():
    torch.manual_seed(0)
    model = GNO(2, 8, width=4, kernel_width=8, depth=2, radius=0.3)
    x = torch.randn(3, 8, 8)
    perm = torch.stack([torch.randperm(64) for _ in range(3)])  # every point, shuffled
    at = model.forward_at(x, perm)
    torch.testing.assert_close(at, model(x).reshape(3, -1).gather(1, perm), rtol=1e-5, atol=1e-6)


def test_gno_evaluates_large_grids_on_interleaved_subgrids():
    torch.manual_seed(0)
    model = GNO(1, 64, width=4, kernel_width=8, depth=2, n_sampled=16)
    assert model.stride == 4 and model.n_parts == 4
    x = torch.randn(2, 64)
    out = model(x)
    for o in range(4):  # each sub-grid of every 4th point is its own graph
        nodes = torch.arange(o, 64, 4).expand(2, -1)
        torch.testing.assert_close(out[:, o::4], model.forward_at(x, nodes), rtol=1e-5, atol=1e-6)
    # the cost per point does not grow with the resolution: edges per point stay as at n_sampled
    coarse = GNO(1, 16, width=4, kernel_width=8, depth=2, n_sampled=16)
    assert model.n_edges / 64 <= coarse.n_edges / 16 + 1e-9


def test_gno_chunked_batch_equals_one_pass():
    torch.manual_seed(0)
    model = GNO(1, 32, width=4, kernel_width=8, depth=2)
    x = torch.randn(5, 32)
    whole = model(x)
    model.max_kernel_elements = 1  # one instance per chunk
    torch.testing.assert_close(model(x), whole, rtol=1e-5, atol=1e-6)


def test_gno_sample_nodes_are_distinct_points_of_the_grid():
    model = GNO(2, 32, width=2, kernel_width=2, depth=1, n_sampled=100)
    nodes = model.sample_nodes(4, generator=torch.Generator().manual_seed(0))
    assert nodes.shape == (4, 100)
    assert all(len(set(row.tolist())) == 100 for row in nodes)
    assert nodes.min() >= 0 and nodes.max() < 32 * 32
    with pytest.raises(DataError, match=r"\(batch=2, m\)"):
        model.forward_at(torch.zeros(2, 32, 32), nodes)


def test_sampled_nodes_trainer_on_every_point_matches_backprop():
    """With every grid point drawn, the sampled loss is the whole-grid MSE: same gradients."""
    from eads.learn import Backprop, SampledNodesBackprop

    torch.manual_seed(0)
    model = GNO(1, 16, width=4, kernel_width=8, depth=2, n_sampled=16, radius=0.2)
    x, y = torch.randn(3, 16), torch.randn(3, 16)
    loss_s, g_s = SampledNodesBackprop().loss_and_gradients(model, x, y)
    loss_b, g_b = Backprop().loss_and_gradients(model, x, y)
    torch.testing.assert_close(loss_s, loss_b)
    for name in g_b:
        torch.testing.assert_close(g_s[name], g_b[name], rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="backprop-sampled"):
        SampledNodesBackprop().check_model(torch.nn.Linear(2, 2))


def test_gno_trained_on_sampled_points_improves_on_the_whole_grid():
    import eads
    from eads.learn import SampledNodesBackprop, evaluate_mse

    torch.manual_seed(0)
    model = GNO(1, 64, width=8, kernel_width=32, depth=2, n_sampled=16)  # 4 sub-grids
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 64, generator=g).cumsum(-1) / 8  # rough functions
    y = 0.5 * (x + torch.roll(x, 1, dims=-1)) + 0.1 * x**2
    before = evaluate_mse(model, x[48:], y[48:])
    cfg = eads.TrainConfig(trainer="backprop-sampled", epochs=15, batch_size=8, lr=1e-2)
    eads.fit(model, SampledNodesBackprop(), (x[:48], y[:48]), None, cfg, progress=False)
    assert evaluate_mse(model, x[48:], y[48:]) < 0.5 * before
