"""Digital graph-forecasting baselines: Graph WaveNet, MTGNN, DDGCRN, MegaCRN, and two references.

Written in plain torch with dense adjacency matrices (fine for N <= a few hundred nodes, which
covers every data set in :mod:`eads.data.spatiotemporal`). Why not a package: the maintained
implementations (torch-spatiotemporal 0.9.5's ``GraphWaveNetModel``, which imports
``torch_scatter`` at import time, and torch-geometric-temporal 0.56.2's ``MTGNN``) need
``torch-scatter`` and ``torch-sparse``, which PyPI ships only as source archives that must be
compiled against the installed torch (several minutes on 2 cores, and a C++ toolchain), and
neither package has DDGCRN or MegaCRN. Plain torch keeps all four in one style with no extra
install.

How they are checked instead (``tests/baselines/test_gnn.py``): each model's parameter count at
its paper's width equals the count its released code implies, less the layers that release
builds but never uses (worked out layer by layer in the test), and each forward pass and
gradient equals the release's forward pass, written out in the release's own layout, on the
same weights. ``benchmarks/bench_gnn.py`` times forward+backward beside the counted FLOPs.

Layout inside the models: Graph WaveNet, MTGNN and MegaCRN compute node-major and channels-last,
``(N, B, L, C)`` (or ``(N, B, C)`` per step), so that each graph propagation is one GEMM
``A^T @ x.view(N, -1)`` and each 1x1 or dilated convolution one GEMM over stacked channels or
taps. The releases' ``(B, C, N, L)`` layout with ``einsum`` and ``Conv2d`` costs a permutation
copy per propagation and, on CPU, oneDNN's 1x1-convolution backward ran at 2-15 GFLOP/s; the
outputs are the same up to float rounding (the tests hold them to the releases' to ~1e-6).

Common interface (layout of :mod:`eads.data.spatiotemporal`):

* constructor ``Model(n_nodes, in_features, history, horizon, adjacency=None, *,
  target_feature=0, <named hyperparameters>)``; ``adjacency`` is an ``(N, N)`` array/tensor
  (ignored by models that learn their graph only);
* ``forward(x)`` with ``x`` of shape ``(batch, history, nodes, in_features)`` (z-scored) returns
  ``(batch, horizon, nodes)``: the target feature in the same z-units;
* ``auxiliary_loss()`` returns the extra training loss of the last forward pass (MegaCRN's
  memory losses; 0 for the others): add it to the forecasting loss when training.

Defaults are the papers' settings for PEMS-like traffic data; the tests use tiny ones.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eads._errors import ConfigError

__all__ = [
    "DDGCRN",
    "GNN_BASELINES",
    "MTGNN",
    "AbstractGraphForecaster",
    "GraphWaveNet",
    "HistoricalAverage",
    "LastValue",
    "MegaCRN",
    "build_gnn",
    "count_parameters",
]


class AbstractGraphForecaster(nn.Module):
    """Base class: stores the sizes, checks inputs, and holds the (optional) fixed adjacency."""

    trainable: bool = True

    def __init__(
        self,
        n_nodes: int,
        in_features: int,
        history: int,
        horizon: int,
        adjacency=None,
        *,
        target_feature: int = 0,
        needs_adjacency: bool = False,
    ):
        super().__init__()
        for arg, value in (
            ("n_nodes", n_nodes),
            ("in_features", in_features),
            ("history", history),
            ("horizon", horizon),
        ):
            if int(value) != value or value < 1:
                raise ConfigError(f"{arg}={value!r} must be a positive integer.")
        if not 0 <= target_feature < in_features:
            raise ConfigError(
                f"target_feature={target_feature} must index the {in_features} input features."
            )
        self.n_nodes, self.in_features = int(n_nodes), int(in_features)
        self.history, self.horizon = int(history), int(horizon)
        self.target_feature = int(target_feature)
        if adjacency is None:
            if needs_adjacency:
                raise ConfigError(
                    f"{type(self).__name__} uses the road/sensor graph: pass adjacency of shape "
                    f"({n_nodes}, {n_nodes})."
                )
            self.register_buffer("adjacency", None)
        else:
            adj = torch.as_tensor(np.asarray(adjacency), dtype=torch.float32)
            if adj.shape != (n_nodes, n_nodes):
                raise ConfigError(
                    f"adjacency has shape {tuple(adj.shape)}; with n_nodes={n_nodes} it must be "
                    f"({n_nodes}, {n_nodes})."
                )
            if not torch.isfinite(adj).all() or (adj < 0).any():
                raise ConfigError("adjacency must hold finite, non-negative edge weights.")
            self.register_buffer("adjacency", adj)
        self._aux_loss: Tensor | None = None

    def _check_input(self, x: Tensor) -> None:
        want = (self.history, self.n_nodes, self.in_features)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ConfigError(
                f"x has shape {tuple(x.shape)}; {type(self).__name__} expects (batch, history, "
                f"nodes, features) = (B, {', '.join(map(str, want))})."
            )

    def auxiliary_loss(self) -> Tensor:
        """Extra training loss from the last forward pass (0 unless the model defines one)."""
        if self._aux_loss is None:
            return torch.zeros(())
        return self._aux_loss


def _transition(adj: Tensor) -> Tensor:
    """Row-normalised random-walk matrix ``D^-1 A`` (rows with no edges stay zero)."""
    deg = adj.sum(-1, keepdim=True)
    return torch.where(deg > 0, adj / deg.clamp_min(1e-12), torch.zeros_like(adj))


# --------------------------------------------------------------------------------------------
# Reference forecasters
# --------------------------------------------------------------------------------------------


class LastValue(AbstractGraphForecaster):
    """Persistence: every horizon step repeats the last observed input of the target feature."""

    trainable = False

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        last = x[:, -1, :, self.target_feature]  # (B, N)
        return last.unsqueeze(1).expand(-1, self.horizon, -1).contiguous()  # (B, H, N)


class HistoricalAverage(AbstractGraphForecaster):
    """Historical average: every horizon step is the mean of the history window of each node.

    This is the window form used as "HA" by Guo et al. (2019, ASTGCN, sec. 5.2: "the average
    value of the last 12 time slices"); ``window`` limits it to the last ``window`` steps. The
    seasonal form (average at the same time of week over the training set) needs absolute time,
    which ``forward(x)`` does not see.
    """

    trainable = False

    def __init__(
        self,
        n_nodes,
        in_features,
        history,
        horizon,
        adjacency=None,
        *,
        target_feature: int = 0,
        window: int | None = None,
    ):
        super().__init__(
            n_nodes, in_features, history, horizon, adjacency, target_feature=target_feature
        )
        window = history if window is None else int(window)
        if not 1 <= window <= history:
            raise ConfigError(f"window={window} must lie in 1..history={history}.")
        self.window = window

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        mean = x[:, -self.window :, :, self.target_feature].mean(dim=1)  # (B, N)
        return mean.unsqueeze(1).expand(-1, self.horizon, -1).contiguous()  # (B, H, N)


# --------------------------------------------------------------------------------------------
# Graph WaveNet
# --------------------------------------------------------------------------------------------


def _propagate(z: Tensor, a: Tensor, add: Tensor | None = None) -> Tensor:
    """Graph WaveNet's ``nconv`` on the node-major layout: ``z'[w] = sum_v A[v, w] z[v]``.

    ``z`` is ``(N, ...)``, contiguous; the product is one GEMM ``A^T @ z.view(N, -1)`` (no
    permutation copies); ``add`` (same shape as ``z``) is fused into it as ``add + A^T z``.
    """
    flat = z.reshape(z.shape[0], -1)  # (N, M)
    if add is None:
        return (a.T @ flat).view(z.shape)
    return torch.addmm(add.reshape(z.shape[0], -1), a.T, flat).view(z.shape)


def _pointwise(x: Tensor, conv: nn.Conv2d, bias: bool = True) -> Tensor:
    """A 1x1 ``Conv2d`` applied over the last (channel) axis of a channels-last tensor."""
    return F.linear(x, conv.weight.flatten(1), conv.bias if bias else None)


class _DiffusionConv(nn.Module):
    """``Z = sum_s sum_{k=0..K} P_s^k X W_{k,s}`` (Graph WaveNet eq. 7; ``P^0 = I`` once).

    The release concatenates ``[X, P_1 X, P_1^2 X, ...]`` and applies a 1x1 convolution; here the
    same weights act first and the powers are applied by Horner's rule,
    ``sum_k P^k (X W_k) = P (X W_1 + P (X W_2 + ...))``, which is the same sum (equal up to float
    rounding) with the same number of propagations and no concatenated copy. Layout
    ``(N, B, L, C)``.
    """

    def __init__(self, c_in: int, c_out: int, n_supports: int, order: int, dropout: float):
        super().__init__()
        self.order, self.c_in = order, c_in
        self.mlp = nn.Conv2d((order * n_supports + 1) * c_in, c_out, kernel_size=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, supports: list[Tensor]) -> Tensor:
        blocks = self.mlp.weight.flatten(1).split(self.c_in, dim=1)  # (C_out, C_in) each
        out = F.linear(x, blocks[0], self.mlp.bias)  # (N, B, L, C_out)
        j = 1
        for a in supports:
            ys = [F.linear(x, w) for w in blocks[j : j + self.order]]  # ys[k] goes with P^(k+1)
            j += self.order
            z = ys[-1]
            for y in reversed(ys[:-1]):
                z = _propagate(z, a, add=y)
            out = _propagate(z, a, add=out)
        return self.dropout(out)


class GraphWaveNet(AbstractGraphForecaster):
    """Graph WaveNet (Wu, Pan, Long, Jiang, Zhang, IJCAI 2019, "Graph WaveNet for Deep
    Spatial-Temporal Graph Modeling").

    Stacked blocks of a gated dilated causal convolution (``tanh(conv) * sigmoid(conv)``,
    kernel 2, dilations 1, 2 per block) followed by a diffusion graph convolution (eq. 7)
    ``Z = sum_k P_f^k X W_k1 + P_b^k X W_k2 + A_adp^k X W_k3`` with forward / backward
    transition matrices of the given graph and the self-adaptive adjacency
    ``A_adp = softmax(relu(E1 E2^T))`` (eq. 5), residual and skip connections, and an output
    MLP that emits all ``horizon`` steps at once. Defaults are the paper's (sec. 5.1): 8 layers
    (4 blocks x 2), 32 residual/dilation channels, 256 skip, 512 end channels, diffusion order
    2, node embeddings of size 10, dropout 0.3; the inputs are left-padded to the receptive field
    (13 steps). Trained in the paper with Adam, lr 1e-3, weight decay 1e-4, MAE loss.

    The released code also builds a graph convolution and batch norm after the last layer's skip
    branch whose output is never used, and 1x1 residual convolutions that run only when the graph
    convolution is off; they are left out here, so the outputs are the same and every parameter
    is trained (at the release's METR-LA width, N = 207 and two input features: 293,688
    parameters here, 309,400 in the release).

    ``adjacency=None`` or ``use_graph=False`` leaves only the adaptive matrix (the paper's
    "adaptive-only" variant); ``adaptive=False`` only the given graph.
    """

    def __init__(
        self,
        n_nodes: int,
        in_features: int,
        history: int,
        horizon: int,
        adjacency=None,
        *,
        target_feature: int = 0,
        residual_channels: int = 32,
        dilation_channels: int = 32,
        skip_channels: int = 256,
        end_channels: int = 512,
        n_blocks: int = 4,
        n_layers: int = 2,
        kernel_size: int = 2,
        diffusion_order: int = 2,
        embedding_dim: int = 10,
        dropout: float = 0.3,
        use_graph: bool = True,
        adaptive: bool = True,
    ):
        super().__init__(
            n_nodes, in_features, history, horizon, adjacency, target_feature=target_feature
        )
        self.use_graph = use_graph and self.adjacency is not None
        self.adaptive = adaptive
        n_supports = 2 * self.use_graph + self.adaptive
        if n_supports == 0:
            raise ConfigError("GraphWaveNet needs adjacency with use_graph=True, or adaptive=True.")
        if self.adaptive:
            self.node_emb_source = nn.Parameter(torch.randn(n_nodes, embedding_dim))
            self.node_emb_target = nn.Parameter(torch.randn(embedding_dim, n_nodes))
        self.start_conv = nn.Conv2d(in_features, residual_channels, kernel_size=1)
        self.filter_convs, self.gate_convs = nn.ModuleList(), nn.ModuleList()
        self.skip_convs, self.gconvs, self.norms = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.dilations: list[int] = []
        receptive_field = 1
        for _ in range(n_blocks):
            extra, dilation = kernel_size - 1, 1
            for _ in range(n_layers):
                self.dilations.append(dilation)
                self.filter_convs.append(
                    nn.Conv2d(
                        residual_channels,
                        dilation_channels,
                        (1, kernel_size),
                        dilation=(1, dilation),
                    )
                )
                self.gate_convs.append(
                    nn.Conv2d(
                        residual_channels,
                        dilation_channels,
                        (1, kernel_size),
                        dilation=(1, dilation),
                    )
                )
                self.skip_convs.append(nn.Conv2d(dilation_channels, skip_channels, 1))
                self.gconvs.append(
                    _DiffusionConv(
                        dilation_channels, residual_channels, n_supports, diffusion_order, dropout
                    )
                )
                self.norms.append(nn.BatchNorm2d(residual_channels))
                receptive_field += extra
                extra *= 2
                dilation *= 2
        del self.gconvs[-1], self.norms[-1]  # the last layer's would feed nothing
        self.receptive_field = receptive_field
        self.end_conv_1 = nn.Conv2d(skip_channels, end_channels, 1)
        self.end_conv_2 = nn.Conv2d(end_channels, horizon, 1)

    def _supports(self) -> list[Tensor]:
        supports = []
        if self.use_graph:
            supports += [_transition(self.adjacency), _transition(self.adjacency.T)]
        if self.adaptive:
            adp = F.softmax(F.relu(self.node_emb_source @ self.node_emb_target), dim=1)
            supports.append(adp)  # (N, N)
        return supports

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        # Node-major, channels-last layout (N, B, L, C): graph propagation is one GEMM over the
        # node axis and every convolution one GEMM over the channel axis (see _propagate).
        h = x.permute(2, 0, 1, 3)  # (N, B, T, F)
        if h.shape[2] < self.receptive_field:
            h = F.pad(h, (0, 0, self.receptive_field - h.shape[2], 0))
        h = _pointwise(h, self.start_conv)  # (N, B, L, C_res)
        supports = self._supports()
        skip = None
        n_layers = len(self.dilations)
        for i, dilation in enumerate(self.dilations):
            residual = h
            gated = self._gated_tcn(h, i, dilation)  # (N, B, L_i, C_dil)
            # Only the last time step of the skip sum reaches the output, and the skip
            # convolutions are 1x1, so only that step is computed (the release computes all).
            s = _pointwise(gated[:, :, -1], self.skip_convs[i])  # (N, B, C_skip)
            skip = s if skip is None else s + skip
            if i == n_layers - 1:
                break  # the last layer's graph conv would feed nothing (see class docstring)
            h = self.gconvs[i](gated, supports) + residual[:, :, -gated.shape[2] :]
            c = h.shape[-1]
            h = self.norms[i](h.reshape(-1, c, 1, 1)).view(h.shape)  # BatchNorm over N, B, L
        out = F.relu(_pointwise(F.relu(skip), self.end_conv_1))  # (N, B, C_end)
        return _pointwise(out, self.end_conv_2).permute(1, 2, 0)  # (B, H, N)

    def _gated_tcn(self, h: Tensor, i: int, dilation: int) -> Tensor:
        """``tanh(W_f * h) . sigmoid(W_g * h)``, the dilated causal convolutions as one GEMM over
        the stacked taps ``[h(t), h(t + d), ...]`` (channels-last, time on axis 2)."""
        filt, gate = self.filter_convs[i], self.gate_convs[i]
        k = filt.kernel_size[1]
        length = h.shape[2] - (k - 1) * dilation
        taps = torch.cat([h[:, :, j * dilation : j * dilation + length] for j in range(k)], -1)
        weight = torch.cat([filt.weight, gate.weight])[:, :, 0]  # (2 C_dil, C_res, k)
        weight = weight.permute(0, 2, 1).reshape(weight.shape[0], -1)  # (2 C_dil, k C_res)
        fg = F.linear(taps, weight, torch.cat([filt.bias, gate.bias]))  # (N, B, L_i, 2 C_dil)
        f, g = fg.chunk(2, dim=-1)
        return torch.tanh(f) * torch.sigmoid(g)


# --------------------------------------------------------------------------------------------
# MTGNN
# --------------------------------------------------------------------------------------------


class _GraphLearner(nn.Module):
    """MTGNN's graph learning layer (Wu et al. 2020, eqs. 1-6): a uni-directed, top-k graph.

    ``M1 = tanh(a E1 W1)``, ``M2 = tanh(a E2 W2)``,
    ``A = relu(tanh(a (M1 M2^T - M2 M1^T)))``, then each row keeps its k largest entries.
    """

    def __init__(self, n_nodes: int, k: int, dim: int, alpha: float):
        super().__init__()
        self.emb1, self.emb2 = nn.Embedding(n_nodes, dim), nn.Embedding(n_nodes, dim)
        self.lin1, self.lin2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.k, self.alpha = min(k, n_nodes), alpha
        self.register_buffer("idx", torch.arange(n_nodes), persistent=False)

    def forward(self) -> Tensor:
        m1 = torch.tanh(self.alpha * self.lin1(self.emb1(self.idx)))  # (N, d)
        m2 = torch.tanh(self.alpha * self.lin2(self.emb2(self.idx)))
        adj = F.relu(torch.tanh(self.alpha * (m1 @ m2.T - m2 @ m1.T)))  # (N, N)
        # The paper breaks ties with small noise before top-k; selection only, no gradient.
        noisy = adj.detach() + torch.rand_like(adj) * 0.01
        keep = torch.zeros_like(adj).scatter_(1, noisy.topk(self.k, dim=1).indices, 1.0)
        return adj * keep


class _MixProp(nn.Module):
    """Mix-hop propagation (eqs. 7-8): ``H_k = b X + (1 - b) A~ H_{k-1}``, then an MLP over the
    concatenated ``[H_0 .. H_K]`` with ``A~ = D~^-1 (A + I)``.

    Node-major layout ``(N, B, L, C)``: each hop is one fused GEMM
    ``addmm(b X, A~, H, alpha=1 - b)`` over the node axis, and the MLP is applied block by block
    (``sum_k H_k W_k``) instead of on a concatenated copy.
    """

    def __init__(self, c_in: int, c_out: int, depth: int, dropout: float, beta: float):
        super().__init__()
        self.mlp = nn.Conv2d((depth + 1) * c_in, c_out, kernel_size=1)
        self.depth, self.beta, self.dropout, self.c_in = depth, beta, dropout, c_in

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        a = adj + torch.eye(adj.shape[0], device=adj.device, dtype=adj.dtype)
        a = a / a.sum(1, keepdim=True)
        n = x.shape[0]
        blocks = self.mlp.weight.flatten(1).split(self.c_in, dim=1)  # (C_out, C_in) each
        flat_x = x.reshape(n, -1)  # (N, B L C)
        h = flat_x
        out = F.linear(x, blocks[0], self.mlp.bias)  # (N, B, L, C_out)
        for k in range(1, self.depth + 1):
            h = torch.addmm(flat_x, a, h, beta=self.beta, alpha=1 - self.beta)  # (N, B L C)
            out = out + F.linear(h.view(x.shape), blocks[k])
        return out


class _DilatedInception(nn.Module):
    """Parallel dilated convolutions with kernels (2, 3, 6, 7), cut to the shortest output.

    Cut to the last ``L - 6 d`` steps, kernel ``k`` reads the last ``k`` of the seven taps
    ``x(t), x(t + d), .., x(t + 6 d)``; so the four are one 7-tap convolution whose weight is
    zero on the taps a kernel does not reach, applied as one GEMM over the stacked taps
    (:meth:`weight`, channels-last layout, time on axis 2).
    """

    kernels = (2, 3, 6, 7)

    def __init__(self, c_in: int, c_out: int, dilation: int):
        super().__init__()
        if c_out % len(self.kernels):
            raise ConfigError(f"MTGNN conv_channels={c_out} must be divisible by 4.")
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out // len(self.kernels), (1, k), dilation=(1, dilation))
            for k in self.kernels
        )
        self.dilation = dilation

    def weight(self) -> tuple[Tensor, Tensor]:
        """``(C_out, 7 C_in)`` weight over the stacked taps (tap-major), and the bias."""
        kmax = max(self.kernels)
        rows = []
        for conv, k in zip(self.convs, self.kernels, strict=True):
            w = conv.weight[:, :, 0].permute(0, 2, 1)  # (C_out/4, k, C_in)
            rows.append(F.pad(w, (0, 0, kmax - k, 0)))  # zero on the first 7 - k taps
        w = torch.cat(rows)  # (C_out, 7, C_in)
        return w.reshape(w.shape[0], -1), torch.cat([conv.bias for conv in self.convs])

    @staticmethod
    def taps(x: Tensor, dilation: int) -> Tensor:
        """``[x(t), x(t + d), .., x(t + 6 d)]`` stacked on the channel axis of (N, B, L, C)."""
        kmax = max(_DilatedInception.kernels)
        length = x.shape[2] - (kmax - 1) * dilation
        return torch.cat([x[:, :, j * dilation : j * dilation + length] for j in range(kmax)], -1)


class MTGNN(AbstractGraphForecaster):
    """MTGNN (Wu, Pan, Long, Jiang, Chang, Zhang, KDD 2020, "Connecting the Dots: Multivariate
    Time Series Forecasting with Graph Neural Networks").

    A learned uni-directed graph (top-k per node, :class:`_GraphLearner`), then layers of a
    gated dilated-inception temporal convolution and two mix-hop graph convolutions (over
    ``A`` and ``A^T``, summed), residual and skip connections with layer norm, and an output
    MLP emitting all ``horizon`` steps. Defaults follow the paper's traffic settings (sec. 5.3,
    METR-LA/PEMS-BAY): 3 layers, 32 conv/residual channels, 64 skip, 128 end channels,
    mix-hop depth 2 with retain ratio beta 0.05, node embeddings 40, k = 20 neighbours,
    saturation alpha 3, dropout 0.3, dilation exponential 1 (receptive field 19). Trained with
    Adam lr 1e-3, weight decay 1e-4, MAE loss, curriculum over horizon steps (not reproduced).

    With ``learn_graph=False`` the given ``adjacency`` is used instead of the learned graph.
    The release also builds 1x1 residual convolutions that run only without the graph
    convolution; they are left out (402,284 parameters at its METR-LA width, 405,452 in the
    release).
    """

    def __init__(
        self,
        n_nodes: int,
        in_features: int,
        history: int,
        horizon: int,
        adjacency=None,
        *,
        target_feature: int = 0,
        conv_channels: int = 32,
        residual_channels: int = 32,
        skip_channels: int = 64,
        end_channels: int = 128,
        n_layers: int = 3,
        gcn_depth: int = 2,
        propagation_beta: float = 0.05,
        node_dim: int = 40,
        subgraph_size: int = 20,
        tanh_alpha: float = 3.0,
        dilation_exponential: int = 1,
        dropout: float = 0.3,
        learn_graph: bool = True,
    ):
        super().__init__(
            n_nodes,
            in_features,
            history,
            horizon,
            adjacency,
            target_feature=target_feature,
            needs_adjacency=not learn_graph,
        )
        self.learn_graph, self.dropout = learn_graph, dropout
        if learn_graph:
            self.graph = _GraphLearner(n_nodes, subgraph_size, node_dim, tanh_alpha)
        kmax = max(_DilatedInception.kernels)
        if dilation_exponential > 1:
            rf = int(
                1 + (kmax - 1) * (dilation_exponential**n_layers - 1) / (dilation_exponential - 1)
            )
        else:
            rf = n_layers * (kmax - 1) + 1
        self.receptive_field = rf
        self.seq_len = max(history, rf)
        self.start_conv = nn.Conv2d(in_features, residual_channels, 1)
        self.skip0 = nn.Conv2d(in_features, skip_channels, (1, self.seq_len))
        self.filter_convs, self.gate_convs = nn.ModuleList(), nn.ModuleList()
        self.skip_convs, self.gconv1, self.gconv2 = (
            nn.ModuleList(),
            nn.ModuleList(),
            nn.ModuleList(),
        )
        self.norms = nn.ModuleList()
        length, dilation = self.seq_len, 1
        for _ in range(n_layers):
            length -= (kmax - 1) * dilation
            self.filter_convs.append(_DilatedInception(residual_channels, conv_channels, dilation))
            self.gate_convs.append(_DilatedInception(residual_channels, conv_channels, dilation))
            self.skip_convs.append(nn.Conv2d(conv_channels, skip_channels, (1, length)))
            self.gconv1.append(
                _MixProp(conv_channels, residual_channels, gcn_depth, dropout, propagation_beta)
            )
            self.gconv2.append(
                _MixProp(conv_channels, residual_channels, gcn_depth, dropout, propagation_beta)
            )
            self.norms.append(nn.LayerNorm([residual_channels, n_nodes, length]))
            dilation *= dilation_exponential
        self.skip_end = nn.Conv2d(residual_channels, skip_channels, (1, length))
        self.end_conv_1 = nn.Conv2d(skip_channels, end_channels, 1)
        self.end_conv_2 = nn.Conv2d(end_channels, horizon, 1)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        # Node-major, channels-last layout (N, B, L, C), as in GraphWaveNet.forward.
        h = x.permute(2, 0, 1, 3)  # (N, B, T, F)
        if h.shape[2] < self.seq_len:
            h = F.pad(h, (0, 0, self.seq_len - h.shape[2], 0))
        adj = self.graph() if self.learn_graph else self.adjacency  # (N, N)
        skip = _full_time_conv(F.dropout(h, self.dropout, self.training), self.skip0)
        h = _pointwise(h, self.start_conv)  # (N, B, L, C_res)
        for i in range(len(self.filter_convs)):
            residual = h
            filt, gate = self.filter_convs[i], self.gate_convs[i]
            (wf, bf), (wg, bg) = filt.weight(), gate.weight()
            taps = _DilatedInception.taps(h, filt.dilation)  # (N, B, L_i, 7 C_res)
            fg = F.linear(taps, torch.cat([wf, wg]), torch.cat([bf, bg]))
            f, g = fg.chunk(2, dim=-1)
            g = torch.tanh(f) * torch.sigmoid(g)
            g = F.dropout(g, self.dropout, self.training)  # (N, B, L_i, C_conv)
            skip = skip + _full_time_conv(g, self.skip_convs[i])  # (N, B, C_skip)
            h = self.gconv1[i](g, adj) + self.gconv2[i](g, adj.T)
            h = _layer_norm_cnl(h + residual[:, :, -h.shape[2] :], self.norms[i])
        skip = skip + _full_time_conv(h, self.skip_end)  # (N, B, C_skip)
        out = _pointwise(F.relu(_pointwise(F.relu(skip), self.end_conv_1)), self.end_conv_2)
        return out.permute(1, 2, 0)  # (B, H, N)


def _full_time_conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """A ``(1, L)`` ``Conv2d`` spanning the time axis of (N, B, L, C), as one GEMM: (N, B, C)."""
    w = conv.weight[:, :, 0].permute(0, 2, 1)  # (C_out, L, C_in), time-major like x
    return F.linear(x.reshape(*x.shape[:2], -1), w.reshape(w.shape[0], -1), conv.bias)


def _layer_norm_cnl(h: Tensor, norm: nn.LayerNorm) -> Tensor:
    """``nn.LayerNorm([C, N, L])`` of the release, applied to the (N, B, L, C) layout."""
    var, mean = torch.var_mean(h, dim=(0, 2, 3), unbiased=False, keepdim=True)  # (1, B, 1, 1)
    out = (h - mean) * torch.rsqrt(var + norm.eps)
    if norm.elementwise_affine:
        weight = norm.weight.permute(1, 2, 0).unsqueeze(1)  # (C, N, L) -> (N, 1, L, C)
        out = out * weight + norm.bias.permute(1, 2, 0).unsqueeze(1)
    return out


# --------------------------------------------------------------------------------------------
# DDGCRN
# --------------------------------------------------------------------------------------------


class _DynamicGraphInput(torch.autograd.Function):
    """DGCN's graph-filtered input ``[x, A x]`` with ``A = D^-1/2 R D^-1/2``,
    ``R = relu(E E^T)``, ``D = diag(R 1)``, for E (B, N, D) and x (B, N, C), returned
    node-major as (N, B, 2 C) for the node-adaptive product; nodes without edges give 0 (the
    release's ``where(deg > 0, ...)``).

    The backward is written out so that each (B, N, N) matrix is made and read as few times as
    possible and every batched product gets contiguous operands: with ``s = deg^-1/2``,
    ``y = s x``, ``u = R y``, and ``g_x0``, ``g_p`` the gradients of the ``x`` and ``A x = s u``
    halves,

    ``g_u = s g_p``, ``g_y = R^T g_u``, ``g_x = g_x0 + s g_y``,
    ``g_s = sum_c (g_p u + g_y x)``, ``g_deg = -s^3 g_s / 2`` (0 where ``deg < 1e-12``, as the
    clamp's gradient), ``g_R = g_u y^T + g_deg 1^T``, ``g_S = g_R [R > 0]``,
    ``g_E = (g_S + g_S^T) E``.

    ``R`` is recomputed in the backward (the same product, so the same bits) rather than kept:
    one small GEMM instead of a (B, N, N) tensor per step held until the backward. Autograd's
    version of the same formula spent as long again as these products in copies, gradient
    additions, and products of mis-strided operands.
    """

    @staticmethod
    def forward(ctx, e: Tensor, x: Tensor) -> Tensor:
        x = x.contiguous()
        r = torch.bmm(e, e.transpose(1, 2)).relu_()  # (B, N, N)
        deg = r.sum(-1, keepdim=True)  # (B, N, 1)
        s = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
        y = s * x  # (B, N, C)
        u = torch.bmm(r, y)  # (B, N, C)
        c = x.shape[-1]
        out = x.new_empty(x.shape[1], x.shape[0], 2 * c)  # (N, B, 2 C)
        out[..., :c].copy_(x.transpose(0, 1))
        torch.mul(u.transpose(0, 1), s.transpose(0, 1), out=out[..., c:])
        ctx.save_for_backward(e, x, deg, s, y, u)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor]:
        e, x, deg, s, y, u = ctx.saved_tensors
        r = torch.bmm(e, e.transpose(1, 2)).relu_()  # recomputed, the same bits as forward's
        c = x.shape[-1]
        g = g.transpose(0, 1)  # (B, N, 2 C)
        gp = g[..., c:]
        gu = torch.mul(gp, s, out=torch.empty_like(y))  # contiguous whatever g's layout
        gy = torch.bmm(r.transpose(1, 2), gu)  # (B, N, C)
        gs = (gp * u).sum(-1, keepdim=True) + (gy * x).sum(-1, keepdim=True)  # (B, N, 1)
        gdeg = torch.where(deg >= 1e-12, -0.5 * s**3 * gs, torch.zeros_like(gs))
        gr = torch.bmm(gu, y.transpose(1, 2)).add_(gdeg)  # (B, N, N)
        # relu's own backward kernel: a (B, N, N) boolean mask (r > 0) cost ~7x as long
        gr = torch.ops.aten.threshold_backward(gr, r, 0.0)  # 0 where R = 0
        ge = torch.baddbmm(torch.bmm(gr, e), gr.transpose(1, 2), e)  # (B, N, D)
        gx = torch.addcmul(g[..., :c], s, gy, out=torch.empty_like(x))
        return ge, gx


class _DynamicGraphConv(nn.Module):
    """DDGCRN's DGCN: a graph filtered from the current input, node-adaptive weights.

    ``E_t = tanh(E_dyn ⊙ FC(x_t))``, ``A_t = D^-1/2 relu(E_t E_t^T) D^-1/2``;
    ``out = [x, A_t x] W(E) + b(E)`` with ``W(E) = E W_pool`` (node-adaptive parameters as in
    AGCRN), ``E`` the static node embedding.

    The node-adaptive product is one batched GEMM over nodes, ``[x, A_t x] (N, B, 2 C_in) @
    W(E) (N, 2 C_in, C_out)``, on ``[x, A_t x]`` built node-major by
    :class:`_DynamicGraphInput`, and returned as a (B, N, C_out) view:
    ``einsum("bnki,nkio->bno")`` copied both operands (``W(E)`` into another order, at every
    step) in the forward and again in the backward.
    """

    def __init__(
        self, c_in: int, c_out: int, embed_dim: int, hyper_dim: int = 16, middle_dim: int = 2
    ):
        super().__init__()
        self.weights_pool = nn.Parameter(torch.empty(embed_dim, 2, c_in, c_out))
        self.bias_pool = nn.Parameter(torch.empty(embed_dim, c_out))
        nn.init.xavier_normal_(self.weights_pool)
        nn.init.xavier_normal_(self.bias_pool)
        self.filter = nn.Sequential(
            nn.Linear(c_in, hyper_dim),
            nn.Sigmoid(),
            nn.Linear(hyper_dim, middle_dim),
            nn.Sigmoid(),
            nn.Linear(middle_dim, embed_dim),
        )

    def node_parameters(self, static_emb: Tensor) -> tuple[Tensor, Tensor]:
        """``W(E) (N, 2 C_in, C_out)`` (the ``[x, A_t x]`` blocks stacked) and ``b(E) (N, 1,
        C_out)``: fixed over a window, so the recurrences compute them once per forward pass
        rather than at every step."""
        d, _, c_in, c_out = self.weights_pool.shape
        weights = static_emb @ self.weights_pool.view(d, -1)  # (N, 2 C_in C_out)
        bias = static_emb @ self.bias_pool  # (N, C_out)
        return weights.view(-1, 2 * c_in, c_out), bias.unsqueeze(1)

    def forward(
        self,
        x: Tensor,
        dyn_emb: Tensor,
        static_emb: Tensor,
        params: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        # x (B, N, C_in); dyn_emb (B, N, D) or (N, D); static_emb (N, D)
        nodevec = torch.tanh(dyn_emb * self.filter(x))  # (B, N, D)
        xg = _DynamicGraphInput.apply(nodevec, x)  # [x, A_t x] node-major, (N, B, 2 C_in)
        weights, bias = self.node_parameters(static_emb) if params is None else params
        out = torch.baddbmm(bias, xg, weights)  # (N, B, 2 C_in) @ (N, 2 C_in, C_out)
        return out.transpose(0, 1)  # (B, N, C_out)


class _DDGCRNCell(nn.Module):
    """GRU cell whose gates are :class:`_DynamicGraphConv` (DDGCRN's DGCRM cell)."""

    def __init__(self, c_in: int, hidden: int, embed_dim: int):
        super().__init__()
        self.hidden = hidden
        self.gate = _DynamicGraphConv(c_in + hidden, 2 * hidden, embed_dim)
        self.update = _DynamicGraphConv(c_in + hidden, hidden, embed_dim)

    def forward(
        self, x: Tensor, state: Tensor, dyn_emb: Tensor, static_emb: Tensor, params=None
    ) -> Tensor:
        gate_p, update_p = (None, None) if params is None else params
        zr = torch.sigmoid(self.gate(torch.cat([x, state], -1), dyn_emb, static_emb, gate_p))
        z, r = zr.split(self.hidden, dim=-1)
        cand = torch.tanh(self.update(torch.cat([x, z * state], -1), dyn_emb, static_emb, update_p))
        # r * state + (1 - r) * cand in one kernel rather than four
        return torch.lerp(cand, state, r)  # (B, N, hidden)


class _DGCRM(nn.Module):
    """Stacked :class:`_DDGCRNCell` layers unrolled over the window."""

    def __init__(self, c_in: int, hidden: int, embed_dim: int, n_layers: int):
        super().__init__()
        self.cells = nn.ModuleList(
            _DDGCRNCell(c_in if i == 0 else hidden, hidden, embed_dim) for i in range(n_layers)
        )

    def forward(self, x: Tensor, dyn_emb: Tensor, static_emb: Tensor) -> Tensor:
        # x (B, T, N, C); dyn_emb (B, T, N, D), or (N, D) when it does not vary -> last hidden
        # state (B, N, hidden). The steps are unbound once (indexing x[:, t] would give every
        # step a full-size zero gradient in the backward), and only the last layer's final
        # state is kept.
        seq = x.unbind(1)
        dyn = dyn_emb.unbind(1) if dyn_emb.dim() == 4 else [dyn_emb] * len(seq)
        for cell in self.cells:
            state = x.new_zeros(x.shape[0], x.shape[2], cell.hidden)
            params = (
                cell.gate.node_parameters(static_emb),
                cell.update.node_parameters(static_emb),
            )
            outs = []
            for inp, emb in zip(seq, dyn, strict=True):
                state = cell(inp, state, emb, static_emb, params)
                outs.append(state)
            seq = outs
        return state


class DDGCRN(AbstractGraphForecaster):
    """DDGCRN (Weng, Fan, Wu, Hu, Tian, Zhu, Wu, Pattern Recognition 2023, "A Decomposition
    Dynamic Graph Convolutional Recurrent Network for Traffic Forecasting").

    Two dynamic-graph GRU encoders (DGCRM, :class:`_DDGCRNCell`): the first forecasts the
    horizon and reconstructs the input window ("regular" component); the second reads the
    residual input minus reconstruction and adds its own forecast. Each step's graph is built
    from a node embedding modulated by a hyper-network of the current input (and by
    time-of-day / day-of-week embeddings when those features are present). Defaults are the
    released PEMS04 settings: 64 hidden units, 1 layer, embedding size 10, Chebyshev order 2
    (identity + dynamic graph), dropout 0.1. Trained with Adam lr 3e-3, MAE loss.

    Differences from the release, forced by the common interface: time embeddings are used
    only if ``time_of_day_feature`` (values in [0, 1)) and ``steps_per_day`` are given, and
    ``day_of_week_feature`` likewise (values 0..6); the reconstruction covers the whole history
    window (the release subtracts it from the last ``horizon`` inputs, which needs
    history == horizon); all non-time input features are fed (the release feeds flow only).
    The given ``adjacency`` is not used (the model learns its graphs). The release also holds
    parameters its forward pass never reads (a plain ``weights`` / ``bias`` in every graph
    convolution and a second node embedding); they are left out (515,880 parameters at the
    PEMS04 settings with both time embeddings, 569,254 in the release).
    """

    def __init__(
        self,
        n_nodes: int,
        in_features: int,
        history: int,
        horizon: int,
        adjacency=None,
        *,
        target_feature: int = 0,
        hidden: int = 64,
        n_layers: int = 1,
        embed_dim: int = 10,
        dropout: float = 0.1,
        time_of_day_feature: int | None = None,
        steps_per_day: int = 288,
        day_of_week_feature: int | None = None,
    ):
        super().__init__(
            n_nodes, in_features, history, horizon, adjacency, target_feature=target_feature
        )
        time_features = [f for f in (time_of_day_feature, day_of_week_feature) if f is not None]
        if any(not 0 <= f < in_features for f in time_features) or target_feature in time_features:
            raise ConfigError(
                f"time feature indices {time_features} must index the {in_features} inputs and "
                f"differ from target_feature={target_feature}."
            )
        self.signal_features = [f for f in range(in_features) if f not in time_features]
        self.tod_feature, self.dow_feature = time_of_day_feature, day_of_week_feature
        self.steps_per_day = int(steps_per_day)
        self.node_emb = nn.Parameter(torch.empty(n_nodes, embed_dim))
        nn.init.xavier_normal_(self.node_emb)
        if time_of_day_feature is not None:
            self.tod_emb = nn.Parameter(torch.empty(self.steps_per_day, embed_dim))
            nn.init.xavier_normal_(self.tod_emb)
        if day_of_week_feature is not None:
            self.dow_emb = nn.Parameter(torch.empty(7, embed_dim))
            nn.init.xavier_normal_(self.dow_emb)
        c_in = len(self.signal_features)
        self.encoder1 = _DGCRM(c_in, hidden, embed_dim, n_layers)
        self.encoder2 = _DGCRM(c_in, hidden, embed_dim, n_layers)
        self.head1 = nn.Linear(hidden, horizon)
        self.reconstruct = nn.Linear(hidden, history * c_in)
        self.head2 = nn.Linear(hidden, horizon)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        b, t, n, _ = x.shape
        dyn = self.node_emb  # (N, D), or (B, T, N, D) with time embeddings
        if self.tod_feature is not None:
            idx = (x[..., self.tod_feature] * self.steps_per_day).long()
            dyn = dyn * self.tod_emb[idx.clamp(0, self.steps_per_day - 1)]
        if self.dow_feature is not None:
            dyn = dyn * self.dow_emb[x[..., self.dow_feature].long().clamp(0, 6)]
        signal = x[..., self.signal_features]  # (B, T, N, C)
        h1 = self.encoder1(signal, dyn, self.node_emb)  # (B, N, hidden)
        out1 = self.head1(self.drop1(h1))  # (B, N, H)
        recon = self.reconstruct(h1).view(b, n, t, -1).transpose(1, 2)  # (B, T, N, C)
        h2 = self.encoder2(signal - recon, dyn, self.node_emb)
        out2 = self.head2(self.drop2(h2))  # (B, N, H)
        return (out1 + out2).transpose(1, 2)  # (B, H, N)


# --------------------------------------------------------------------------------------------
# MegaCRN
# --------------------------------------------------------------------------------------------


def _chebyshev_stack(supports: list[Tensor], cheb_k: int) -> Tensor:
    """``T_1 .. T_{K-1}`` of each support (``T_0 = I``, ``T_1 = A``,
    ``T_k = 2 A T_{k-1} - T_{k-2}``), stacked support-major as ``(S (K - 1), N, N)``. Fixed
    over a forward pass, so it is built once there, not in every graph convolution of every
    step."""
    terms = []
    for a in supports:
        eye = torch.eye(a.shape[0], device=a.device, dtype=a.dtype)
        ks = [eye, a]
        for _ in range(2, cheb_k):
            ks.append(2 * a @ ks[-1] - ks[-2])
        terms += ks[1:cheb_k]
    n = supports[0].shape[0]
    return torch.stack(terms) if terms else supports[0].new_zeros(0, n, n)


class _ChebGraphConv(nn.Module):
    """MegaCRN's AGCN: ``[T_k(A_s) x for each support s, k < K] W + b`` with Chebyshev terms
    ``T_0 = I, T_1 = A, T_k = 2 A T_{k-1} - T_{k-2}`` (the release's weight layout,
    ``(S K C_in, C_out)``, support-major).

    Node-major layout ``x (N, B, C_in)``: all non-identity terms act in one GEMM
    ``stack (S (K-1) N, N) @ x (N, B C_in)``; the ``T_0 = I`` term of every support is ``x``
    itself, so its weight blocks are summed instead of multiplying by the identity.
    """

    def __init__(self, c_in: int, c_out: int, cheb_k: int, n_supports: int):
        super().__init__()
        self.cheb_k, self.n_supports, self.c_in = cheb_k, n_supports, c_in
        self.weight = nn.Parameter(torch.empty(n_supports * cheb_k * c_in, c_out))
        self.bias = nn.Parameter(torch.zeros(c_out))
        nn.init.xavier_normal_(self.weight)

    def forward(self, x: Tensor, stack: Tensor) -> Tensor:
        n, p = x.shape[0], stack.shape[0]
        y = (stack.reshape(p * n, n) @ x.reshape(n, -1)).view(p, *x.shape)  # (P, N, B, C_in)
        w = self.weight.view(self.n_supports, self.cheb_k, self.c_in, -1)
        c_out = w.shape[-1]
        w = torch.cat([w[:, 0].sum(0, keepdim=True), w[:, 1:].reshape(p, self.c_in, c_out)])
        xg = torch.cat([x, *y.unbind(0)], dim=-1)  # (N, B, (P + 1) C_in)
        return xg @ w.reshape(-1, c_out) + self.bias  # (N, B, C_out)


class _GCRUCell(nn.Module):
    def __init__(self, c_in: int, hidden: int, cheb_k: int, n_supports: int):
        super().__init__()
        self.hidden = hidden
        self.gate = _ChebGraphConv(c_in + hidden, 2 * hidden, cheb_k, n_supports)
        self.update = _ChebGraphConv(c_in + hidden, hidden, cheb_k, n_supports)

    def forward(self, x: Tensor, state: Tensor, stack: Tensor) -> Tensor:
        # x (N, B, C_in), state (N, B, hidden), stack from _chebyshev_stack
        zr = torch.sigmoid(self.gate(torch.cat([x, state], -1), stack))
        z, r = zr.split(self.hidden, dim=-1)
        cand = torch.tanh(self.update(torch.cat([x, z * state], -1), stack))
        return r * state + (1 - r) * cand


class MegaCRN(AbstractGraphForecaster):
    """MegaCRN (Jiang, Wang, Yong, Jeph, Chen, Kobayashi, Song, Fukushima, Suzumura, AAAI 2023,
    "Spatio-Temporal Meta-Graph Learning for Traffic Forecasting").

    A GCRU encoder-decoder whose graph comes from a Meta-Graph Learner: a memory bank
    ``M (m, d)``; node embeddings ``E1 = W_E1 M``, ``E2 = W_E2 M``; supports
    ``softmax(relu(E1 E2^T))`` and ``softmax(relu(E2 E1^T))`` (Chebyshev order ``cheb_k``).
    The final encoder state queries the memory, ``Q = H W_q``, ``V = softmax(Q M^T) M``, and
    ``[H, V]`` starts the decoder, which rolls out ``horizon`` steps feeding back its own
    output. The memory is trained with a triplet loss between the query, its best and second-best
    memory items (margin 1) and a compactness loss ``||Q - M_best||^2``, weighted by
    ``lambda_contrast`` and ``lambda_compact``; :meth:`auxiliary_loss` returns their sum for the
    last forward pass. Defaults are the paper's (sec. 4.1): 64 hidden units, 1 layer, Chebyshev
    order 3, 20 memory items of size 64, both loss weights 0.01. Trained with Adam lr 1e-2,
    MAE loss.

    Differences from the release: no curriculum teacher forcing (``forward(x)`` has no labels)
    and no future time-of-day covariate in the decoder (so one decoder input channel fewer:
    386,457 parameters at METR-LA width, 388,761 in the release). The given ``adjacency`` is
    not used.
    """

    def __init__(
        self,
        n_nodes: int,
        in_features: int,
        history: int,
        horizon: int,
        adjacency=None,
        *,
        target_feature: int = 0,
        hidden: int = 64,
        n_layers: int = 1,
        cheb_k: int = 3,
        memory_size: int = 20,
        memory_dim: int = 64,
        lambda_contrast: float = 0.01,
        lambda_compact: float = 0.01,
    ):
        super().__init__(
            n_nodes, in_features, history, horizon, adjacency, target_feature=target_feature
        )
        self.memory = nn.Parameter(torch.empty(memory_size, memory_dim))
        self.w_query = nn.Parameter(torch.empty(hidden, memory_dim))
        self.w_emb1 = nn.Parameter(torch.empty(n_nodes, memory_size))
        self.w_emb2 = nn.Parameter(torch.empty(n_nodes, memory_size))
        for p in (self.memory, self.w_query, self.w_emb1, self.w_emb2):
            nn.init.xavier_normal_(p)
        self.encoder = nn.ModuleList(
            _GCRUCell(in_features if i == 0 else hidden, hidden, cheb_k, 2) for i in range(n_layers)
        )
        dec_hidden = hidden + memory_dim
        self.decoder = nn.ModuleList(
            _GCRUCell(1 if i == 0 else dec_hidden, dec_hidden, cheb_k, 2) for i in range(n_layers)
        )
        self.proj = nn.Linear(dec_hidden, 1)
        self.lambda_contrast, self.lambda_compact = lambda_contrast, lambda_compact
        self.cheb_k = cheb_k

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        b, t, n, _ = x.shape
        e1 = self.w_emb1 @ self.memory  # (N, d)
        e2 = self.w_emb2 @ self.memory
        supports = [F.softmax(F.relu(e1 @ e2.T), dim=-1), F.softmax(F.relu(e2 @ e1.T), dim=-1)]
        stack = _chebyshev_stack(supports, self.cheb_k)  # (2 (K - 1), N, N)
        # Node-major layout (T, N, B, C) so each graph product is one GEMM (_ChebGraphConv).
        seq = x.permute(1, 2, 0, 3)  # (T, N, B, F)
        for cell in self.encoder:
            state = x.new_zeros(n, b, cell.hidden)
            outs = []
            for step in range(t):
                state = cell(seq[step], state, stack)
                outs.append(state)
            seq = torch.stack(outs)  # (T, N, B, hidden)
        h = seq[-1]  # (N, B, hidden)
        query = h @ self.w_query  # (N, B, d)
        score = F.softmax(query @ self.memory.T, dim=-1)  # (N, B, m)
        value = score @ self.memory  # (N, B, d)
        top2 = score.topk(2, dim=-1).indices
        pos, neg = self.memory[top2[..., 0]], self.memory[top2[..., 1]]  # (N, B, d)
        contrast = F.triplet_margin_loss(query, pos.detach(), neg.detach(), margin=1.0)
        compact = F.mse_loss(query, pos.detach())
        self._aux_loss = self.lambda_contrast * contrast + self.lambda_compact * compact
        states = [torch.cat([h, value], dim=-1)] * len(self.decoder)  # (N, B, hidden + d)
        go = x.new_zeros(n, b, 1)
        outs = []
        for _ in range(self.horizon):
            inp = go
            for i, cell in enumerate(self.decoder):
                states[i] = cell(inp, states[i], stack)
                inp = states[i]
            go = self.proj(inp)  # (N, B, 1)
            outs.append(go[..., 0])
        return torch.stack(outs).permute(2, 0, 1)  # (B, H, N)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

GNN_BASELINES: dict[str, type[AbstractGraphForecaster]] = {
    "graph_wavenet": GraphWaveNet,
    "mtgnn": MTGNN,
    "ddgcrn": DDGCRN,
    "megacrn": MegaCRN,
    "historical_average": HistoricalAverage,
    "last_value": LastValue,
}


def build_gnn(name: str, **kwargs) -> AbstractGraphForecaster:
    """Construct a baseline by registry name; keyword arguments go to its constructor."""
    if name not in GNN_BASELINES:
        raise ConfigError(
            f"GNN baseline {name!r} is unknown; valid names are {sorted(GNN_BASELINES)}."
        )
    return GNN_BASELINES[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
