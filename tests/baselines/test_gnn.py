"""Graph-forecasting baselines: shapes, gradient flow, learning on a toy graph, references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eads._errors import ConfigError
from eads.baselines import gnn

N, F, T, H = 6, 2, 12, 4


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models: thread hand-offs cost more than they save, badly so on a busy 2-core box.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = {
    "graph_wavenet": dict(
        residual_channels=8,
        dilation_channels=8,
        skip_channels=16,
        end_channels=16,
        embedding_dim=4,
        dropout=0.0,
    ),
    "mtgnn": dict(
        conv_channels=8,
        residual_channels=8,
        skip_channels=16,
        end_channels=16,
        node_dim=4,
        subgraph_size=3,
        dropout=0.0,
    ),
    "ddgcrn": dict(hidden=8, embed_dim=4, dropout=0.0),
    "megacrn": dict(hidden=8, memory_size=4, memory_dim=8),
}


def _ring(n: int = N) -> np.ndarray:
    a = np.zeros((n, n), np.float32)
    idx = np.arange(n)
    a[idx, (idx + 1) % n] = a[(idx + 1) % n, idx] = 1.0
    return a


def _build(name, **extra):
    return gnn.build_gnn(
        name,
        n_nodes=N,
        in_features=F,
        history=T,
        horizon=H,
        adjacency=_ring(),
        **TINY[name],
        **extra,
    )


@pytest.mark.parametrize("name", sorted(TINY))
def test_output_shape_and_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = _build(name)
    out = model(torch.randn(3, T, N, F))
    assert out.shape == (3, H, N)
    (out.square().mean() + model.auxiliary_loss()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}.{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", sorted(TINY))
def test_loss_falls_on_a_toy_diffusion_problem(name):
    # Each node's series is a sinusoid; its future is a graph-mixed, phase-shifted copy.
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n_series = 16
    t = np.arange(T + H)[None, :, None] + rng.uniform(0, 24, (n_series, 1, 1))
    phase = np.linspace(0, np.pi, N)[None, None, :]
    signal = np.sin(2 * np.pi * t / 12 + phase).astype(np.float32)  # (S, T+H, N)
    x = torch.from_numpy(np.stack([signal[:, :T], np.cos(signal[:, :T])], axis=-1))
    y = torch.from_numpy(signal[:, T:])  # (S, H, N)
    model = _build(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = (model(x) - y).abs().mean()
        (loss + model.auxiliary_loss()).backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses


@pytest.mark.parametrize("name", sorted(TINY))
def test_seeded_models_repeat_exactly(name):
    x = torch.randn(2, T, N, F)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = _build(name).eval()
        torch.manual_seed(4)
        outs.append(model(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_ddgcrn_uses_time_embeddings_when_given():
    torch.manual_seed(0)
    model = gnn.DDGCRN(N, 3, T, H, time_of_day_feature=2, steps_per_day=24, **TINY["ddgcrn"])
    x = torch.randn(2, T, N, 3)
    x[..., 2] = torch.arange(T).float()[None, :, None] / 24
    out = model(x)
    out.sum().backward()
    assert out.shape == (2, H, N) and model.tod_emb.grad.abs().sum() > 0


def test_megacrn_auxiliary_loss_is_a_positive_scalar():
    torch.manual_seed(0)
    model = _build("megacrn")
    assert model.auxiliary_loss().item() == 0.0
    model(torch.randn(2, T, N, F))
    aux = model.auxiliary_loss()
    assert aux.ndim == 0 and aux.item() > 0


def test_last_value_and_historical_average_against_hand_computation():
    x = torch.arange(2 * T * N * F, dtype=torch.float32).reshape(2, T, N, F)
    last = gnn.LastValue(N, F, T, H, target_feature=1)(x)
    torch.testing.assert_close(last, x[:, -1:, :, 1].expand(2, H, N))
    ha = gnn.HistoricalAverage(N, F, T, H)(x)
    expect = x[..., 0].sum(dim=1, keepdim=True) / T  # (2, 1, N)
    torch.testing.assert_close(ha, expect.expand(2, H, N))
    ha3 = gnn.HistoricalAverage(N, F, T, H, window=3)(x)
    torch.testing.assert_close(ha3[:, 0], (x[:, -1, :, 0] + x[:, -2, :, 0] + x[:, -3, :, 0]) / 3)
    assert list(gnn.LastValue(N, F, T, H).parameters()) == []
    assert not gnn.LastValue.trainable and gnn.GraphWaveNet.trainable


def test_registry_and_input_checks():
    assert set(gnn.GNN_BASELINES) == {
        "graph_wavenet",
        "mtgnn",
        "ddgcrn",
        "megacrn",
        "historical_average",
        "last_value",
    }
    with pytest.raises(ConfigError, match="graph_wavenet"):
        gnn.build_gnn("stgcn", n_nodes=N, in_features=F, history=T, horizon=H)
    with pytest.raises(ConfigError, match=r"adjacency has shape \(5, 5\)"):
        gnn.GraphWaveNet(N, F, T, H, np.eye(5))
    with pytest.raises(ConfigError, match="expects"):
        _build("graph_wavenet")(torch.randn(2, T, N + 1, F))
    with pytest.raises(ConfigError, match="pass adjacency"):
        gnn.MTGNN(N, F, T, H, learn_graph=False)
    with pytest.raises(ConfigError, match="target_feature"):
        gnn.LastValue(N, F, T, H, target_feature=F)


def test_graph_wavenet_and_mtgnn_variants():
    torch.manual_seed(0)
    x = torch.randn(2, T, N, F)
    assert _build("graph_wavenet", adaptive=False)(x).shape == (2, H, N)
    gw = gnn.GraphWaveNet(N, F, T, H, None, **TINY["graph_wavenet"])  # adaptive only
    assert gw(x).shape == (2, H, N)
    assert _build("mtgnn", learn_graph=False)(x).shape == (2, H, N)
    long = gnn.GraphWaveNet(N, F, 20, H, _ring(), **TINY["graph_wavenet"])  # history > field
    assert long(torch.randn(2, 20, N, F)).shape == (2, H, N)
