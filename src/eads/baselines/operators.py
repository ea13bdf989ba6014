"""Digital operator-learning baselines for the PDE benchmark: NN, FCN, GNO and FNO.

Every model maps a batch of input functions sampled on a fixed grid to the output functions on
the same grid: ``(batch, n)`` for 1-D problems (Burgers) and ``(batch, s, s)`` for 2-D problems
(Darcy). Channels, coordinates and graphs are handled inside. Grid coordinates are taken on the
unit interval/square: ``x_j = j / n`` in 1-D (the Burgers layout of :mod:`eads.data.pde`) and the
cell centres ``(i + 1/2) / s`` in 2-D (the Darcy layout).

The seed paper (Liu et al., ICML 2025, Table 2) compares against the rows of the FNO paper
(Li et al. 2020, arXiv:2010.08895, Table 1/2): NN, FCN, GNO and FNO.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eads._errors import ConfigError, DataError

__all__ = [
    "NN",
    "FCN",
    "GNO",
    "FNO",
    "OPERATORS",
    "build_operator",
    "count_parameters",
    "grid_coordinates",
    "receptive_field",
]


def _check_dim_resolution(dim: int, resolution: int) -> None:
    if dim not in (1, 2):
        raise ConfigError(f"dim={dim!r} is not supported; operators take dim 1 or 2.")
    if not isinstance(resolution, int) or resolution < 2:
        raise ConfigError(f"resolution={resolution!r} must be an integer of at least 2.")


def grid_coordinates(dim: int, resolution: int) -> torch.Tensor:
    """Grid points as ``(resolution**dim, dim)``: ``j / n`` in 1-D, cell centres in 2-D."""
    _check_dim_resolution(dim, resolution)
    if dim == 1:
        return (torch.arange(resolution, dtype=torch.float32) / resolution)[:, None]
    c = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    gx, gy = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(-1, 2)  # (s*s, 2), row-major like x.reshape


class _GridOperator(nn.Module):
    """Checks that inputs are ``(batch, n)`` or ``(batch, s, s)`` on the model's grid."""

    def __init__(self, dim: int, resolution: int):
        super().__init__()
        _check_dim_resolution(dim, resolution)
        self.dim = dim
        self.resolution = resolution

    def _check(self, x: torch.Tensor) -> None:
        expected = (self.resolution,) * self.dim
        if x.dim() != self.dim + 1 or tuple(x.shape[1:]) != expected:
            raise DataError(
                f"input has shape {tuple(x.shape)}; {type(self).__name__} expects "
                f"(batch, {', '.join(map(str, expected))})."
            )


# --------------------------------------------------------------------------------------------
# NN
# --------------------------------------------------------------------------------------------


class NN(_GridOperator):
    """Fully connected network (multilayer perceptron) baseline.

    ``pointwise=False`` (default): the whole input function, flattened to ``n_points =
    resolution**dim`` values, goes through ``depth`` hidden layers of ``hidden_width`` GELU units
    to all ``n_points`` outputs. Parameters: ``(n_points + 1) w + (depth - 1)(w + 1) w +
    (w + 1) n_points``. It is tied to one resolution.

    ``pointwise=True``: the FNO paper's "NN" row ("a simple point-wise feedforward neural
    network", Li et al. 2020, Sec. 5): the same MLP applied at every grid point to
    ``(a(x), x)`` (``dim + 1`` inputs, 1 output). Parameters: ``(dim + 2) w + (depth - 1)(w + 1) w
    + w + 1``. It cannot see neighbours, so it is a weak, resolution-independent baseline.
    """

    def __init__(
        self,
        dim: int,
        resolution: int,
        hidden_width: int = 256,
        depth: int = 3,
        pointwise: bool = False,
    ):
        super().__init__(dim, resolution)
        if hidden_width < 1 or depth < 1:
            raise ConfigError(
                f"hidden_width={hidden_width!r} and depth={depth!r} must be positive integers."
            )
        self.pointwise = pointwise
        n_points = resolution**dim
        n_in, n_out = (dim + 1, 1) if pointwise else (n_points, n_points)
        widths = [n_in] + [hidden_width] * depth
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(w_in, w_out), nn.GELU()]
        layers.append(nn.Linear(hidden_width, n_out))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("coords", grid_coordinates(dim, resolution), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        b = x.shape[0]
        flat = x.reshape(b, -1)  # (B, N)
        if not self.pointwise:
            return self.mlp(flat).reshape(x.shape)
        feats = torch.cat(
            [flat[..., None], self.coords.expand(b, -1, -1).to(flat.dtype)], dim=-1
        )  # (B, N, dim+1)
        return self.mlp(feats).reshape(x.shape)


# --------------------------------------------------------------------------------------------
# FCN: dense convolutional encoder-decoder (Zhu & Zabaras 2018)
# --------------------------------------------------------------------------------------------


def _conv_classes(dim: int):
    if dim == 1:
        return nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d
    return nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d


class _DenseLayer(nn.Sequential):
    def __init__(self, dim: int, in_features: int, growth_rate: int):
        conv, _, norm = _conv_classes(dim)
        super().__init__(
            norm(in_features),
            nn.ReLU(),
            conv(in_features, growth_rate, kernel_size=3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], dim=1)  # concatenate new feature maps


class FCN(_GridOperator):
    """Dense convolutional encoder-decoder ("DenseED") of Zhu & Zabaras 2018.

    Y. Zhu and N. Zabaras, "Bayesian deep convolutional encoder-decoder networks for surrogate
    modeling and uncertainty quantification", J. Comput. Phys. 366 (2018), the "FCN" row of the
    FNO paper. Follows the authors' code (cics-nd/cnn-surrogate, ``models/dense_ed.py``, default
    arguments) with its defaults: ``blocks = (3, 6, 3)``, growth rate ``K = 16``,
    ``init_features = 48``, no bottleneck, no dropout, no output activation:

    * ``In_conv``: conv k7 s2 p3 (the even-size variant), ``in -> 48`` maps, halves the grid;
    * encoder: dense block of ``blocks[0]`` layers (BN-ReLU-conv3, each adding ``K`` maps), then
      a down transition (BN-ReLU-conv1 halving the maps, BN-ReLU-conv3 stride 2);
    * decoder: dense block, up transition (BN-ReLU-conv1 halving the maps, BN-ReLU-convT3 s2 p1
      op1), dense block, last decoding (BN-ReLU-conv1 halving, BN-ReLU-convT4 s2 p1 to the
      output channel). All convolutions are bias-free.

    With ``len(blocks) = 2L + 1`` the grid is halved ``L + 1`` times, so ``resolution`` must be a
    multiple of ``2**(L+1)`` (4 for the defaults). ``dim = 1`` uses the same layers in 1-D (the
    paper is 2-D only). BatchNorm makes outputs depend on the batch in training mode.
    """

    def __init__(
        self,
        dim: int,
        resolution: int,
        blocks: tuple[int, ...] = (3, 6, 3),
        growth_rate: int = 16,
        init_features: int = 48,
    ):
        super().__init__(dim, resolution)
        if len(blocks) % 2 == 0 or any(b < 1 for b in blocks):
            raise ConfigError(f"blocks={blocks!r} must be an odd number of positive layer counts.")
        n_down = len(blocks) // 2 + 1
        if resolution % (2**n_down):
            raise ConfigError(
                f"resolution={resolution!r} must be a multiple of {2**n_down} "
                f"for blocks={blocks!r}."
            )
        conv, convt, norm = _conv_classes(dim)
        layers: list[nn.Module] = [
            conv(1, init_features, kernel_size=7, stride=2, padding=3, bias=False)
        ]
        c = init_features
        half = len(blocks) // 2
        for i, n_layers in enumerate(blocks):
            for j in range(n_layers):
                layers.append(_DenseLayer(dim, c + j * growth_rate, growth_rate))
            c += n_layers * growth_rate
            down, last = i < half, i == len(blocks) - 1
            out = c // 2
            layers += [norm(c), nn.ReLU(), conv(c, out, kernel_size=1, bias=False)]
            layers += [norm(out), nn.ReLU()]
            if down:
                layers.append(conv(out, out, kernel_size=3, stride=2, padding=1, bias=False))
            elif not last:
                layers.append(
                    convt(
                        out, out, kernel_size=3, stride=2, padding=1, output_padding=1, bias=False
                    )
                )
            else:
                layers.append(convt(out, 1, kernel_size=4, stride=2, padding=1, bias=False))
            c = out
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.features(x.unsqueeze(1)).squeeze(1)  # (B, 1, *grid) -> (B, *grid)


# --------------------------------------------------------------------------------------------
# GNO: graph kernel network (Li et al. 2020, arXiv:2003.03485)
# --------------------------------------------------------------------------------------------


def radius_graph(coords: torch.Tensor, radius: float) -> torch.Tensor:
    """Directed edges ``(2, E)`` (source, target) between points at distance ``<= radius``.

    Self-loops are included, as in the GKN code's ``ball_connectivity``. Dense pairwise distances:
    fine for the graphs built here (a few hundred points each).
    """
    d = torch.cdist(coords.double(), coords.double())  # (N, N)
    src, dst = torch.nonzero(d <= radius * (1 + 1e-9), as_tuple=True)
    return torch.stack([src, dst])


def strided_sublattices(dim: int, resolution: int, stride: int) -> list[torch.Tensor]:
    """Split the grid's flat indices into ``stride**dim`` interleaved sub-grids of every
    ``stride``-th point per axis (offsets in row-major order). ``stride = 1``: the whole grid."""
    idx = torch.arange(resolution**dim).reshape((resolution,) * dim)
    if dim == 1:
        return [idx[o::stride].reshape(-1) for o in range(stride)]
    return [idx[o1::stride, o2::stride].reshape(-1) for o1 in range(stride) for o2 in range(stride)]


class GNO(_GridOperator):
    """Graph kernel network (GKN/GNO) of Li et al. 2020, "Neural Operator: Graph Kernel Network
    for Partial Differential Equations" (arXiv:2003.03485), the "GNO" row of the FNO paper.
    Written by hand: the maintained ``neuraloperator`` package has no GKN with this training.

    Iterates ``v <- ReLU(W v(x) + b + mean_{y in B(x, r)} kappa(x, y, a(x), a(y)) v(y))`` ``depth``
    times with **one shared** kernel and ``W`` (as the authors' ``KernelNN``), between a lifting
    ``Linear(dim + 1 -> width)`` of ``(a(x), x)`` and a projection ``Linear(width -> 1)``. The
    kernel ``kappa`` is an MLP ``[2 dim + 2, kernel_width, kernel_width, width**2]`` with ReLU
    between layers, read as a ``width x width`` matrix per edge; edge features are
    ``(x, y, a(x), a(y))``. The mean over the ball (self-loops included) is a Monte-Carlo
    estimate of the kernel integral over the ball, so the same network applies to any set of
    points -- the GKN paper's Nystrom approximation, which is how it is trained and evaluated:

    * **training** (:meth:`sample_nodes`, :meth:`forward_at`, used by
      :class:`eads.learn.trainers.SampledNodesBackprop`): each instance is seen on
      ``n_sampled`` grid points drawn at random, joined by a ball graph of radius ``r``, with the
      loss on those points (the authors' ``RandomMeshGenerator``, ``m = 200`` in their Darcy
      scripts);
    * **evaluation** (:meth:`forward`): the grid is split into ``stride**dim`` interleaved
      sub-grids of about ``n_sampled`` points each (every ``stride``-th point per axis), each
      evaluated as its own ball graph, and the predictions are put back together (the authors'
      ``LargeGridSplitter``, without its extra random points). Below ``n_sampled`` points the
      whole grid is one graph.

    Both keep the cost per point independent of the resolution. The default radius puts about
    8 other points in a ball at the density of ``n_sampled`` points: ``r = 4 / n_sampled`` in
    1-D and ``(8 / (pi n_sampled))**0.5 = 0.0997`` in 2-D (the authors' Darcy radius is 0.1 to
    0.15). Distances are not periodic.

    The authors' Darcy settings (graph-pde) are ``width = 64``, ``kernel_width = 1024``,
    ``depth = 6``, batch size 1 to 4 on a GPU, with three extra node features (smoothed ``a`` and
    its gradient) that we leave out. The per-edge kernel costs ``edges x width**2`` memory, so
    the defaults here are smaller and CPU-friendly: ``width = 32``, ``kernel_width = 256``,
    ``depth = 4``. Parameters: ``(dim + 2) w + (2 dim + 3) k + (k + 1) k + (k + 1) w**2 +
    (w + 1) w + w + 1``.
    """

    #: Largest ``batch x edges x width**2`` kernel tensor built at once (elements); bigger
    #: batches are evaluated in chunks.
    max_kernel_elements = 2**26

    def __init__(
        self,
        dim: int,
        resolution: int,
        width: int = 32,
        kernel_width: int = 256,
        depth: int = 4,
        radius: float | None = None,
        n_sampled: int = 256,
    ):
        super().__init__(dim, resolution)
        if width < 1 or kernel_width < 1 or depth < 1 or n_sampled < 2:
            raise ConfigError(
                f"width={width!r}, kernel_width={kernel_width!r}, depth={depth!r} must be "
                f"positive integers and n_sampled={n_sampled!r} at least 2."
            )
        n_points = resolution**dim
        self.width = width
        self.depth = depth
        self.n_sampled = min(n_sampled, n_points)
        ball = 2.0 if dim == 1 else math.pi  # volume of the unit ball
        default = (8.0 / (ball * n_sampled)) ** (1.0 / dim)
        self.radius = default if radius is None else float(radius)
        if not self.radius > 0:
            raise ConfigError(f"radius={radius!r} must be positive.")
        self.stride = max(1, round((n_points / n_sampled) ** (1.0 / dim)))
        coords = grid_coordinates(dim, resolution)  # (N, dim)
        self.register_buffer("coords", coords, persistent=False)
        parts = strided_sublattices(dim, resolution, self.stride)
        self.n_parts = len(parts)
        for i, nodes in enumerate(parts):
            edges = radius_graph(coords[nodes], self.radius)  # (2, E_i), local indices
            self.register_buffer(f"part{i}_nodes", nodes, persistent=False)
            self.register_buffer(f"part{i}_edges", edges, persistent=False)
        self.register_buffer("part_order", torch.cat(parts).argsort(), persistent=False)
        self.lift = nn.Linear(dim + 1, width)
        self.kernel = nn.Sequential(
            nn.Linear(2 * dim + 2, kernel_width),
            nn.ReLU(),
            nn.Linear(kernel_width, kernel_width),
            nn.ReLU(),
            nn.Linear(kernel_width, width * width),
        )
        # row (o, i) of kappa^T is row (i, o) of the kernel's output (see _propagate)
        kernel_t = torch.arange(width * width).reshape(width, width).T.reshape(-1)
        self.register_buffer("kernel_t", kernel_t, persistent=False)
        self.root = nn.Linear(width, width)  # W and b of the shared layer
        self.project = nn.Linear(width, 1)

    def _parts(self):
        for i in range(self.n_parts):
            yield getattr(self, f"part{i}_nodes"), getattr(self, f"part{i}_edges")

    @property
    def n_edges(self) -> int:
        """Edges of the evaluation graphs (all sub-grids together)."""
        return sum(int(e.shape[1]) for _, e in self._parts())

    def _propagate(self, a, coords, src, dst) -> torch.Tensor:
        """Message passing on one flat graph: ``a (n,)``, ``coords (n, dim)``, edges ``src -> dst``
        (``(E,)`` each); returns the prediction at the ``n`` nodes."""
        a = a[:, None]  # (n, 1)
        edge_feats = torch.cat([coords[dst], coords[src], a[dst], a[src]], dim=-1)  # (E, 2d+2)
        # kappa(x, y) transposed, (E, w_out, w_in): the last kernel layer with its rows permuted,
        # so that each message is one batched matrix-vector product (about 5x faster on a CPU
        # than broadcasting v(y) over kappa and summing; the same numbers to rounding)
        last = self.kernel[-1]
        k_t = nn.functional.linear(
            self.kernel[:-1](edge_feats), last.weight[self.kernel_t], last.bias[self.kernel_t]
        ).reshape(-1, self.width, self.width)
        degree = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        degree.index_add_(0, dst, torch.ones_like(dst, dtype=a.dtype))
        inv_deg = (1.0 / degree)[:, None]  # (n, 1); every node has its self-loop
        v = self.lift(torch.cat([a, coords], dim=-1))  # (n, w)
        for _ in range(self.depth):
            msg = torch.matmul(k_t, v[src].unsqueeze(-1)).squeeze(-1)  # (E, w): v(y)^T kappa
            agg = torch.zeros_like(v).index_add_(0, dst, msg) * inv_deg
            v = torch.relu(self.root(v) + agg)
        return self.project(v).squeeze(-1)

    def _forward_graph(self, a, coords, edges) -> torch.Tensor:
        """``a (B, n)`` on points ``coords (n, dim)`` joined by local ``edges (2, E)``: ``(B, n)``
        out. The batch is one block-diagonal graph, cut into chunks that bound the kernel's
        memory."""
        b, n = a.shape
        chunk = max(1, self.max_kernel_elements // max(1, edges.shape[1] * self.width**2))
        outs = []
        for s in range(0, b, chunk):
            ac = a[s : s + chunk]
            bc = ac.shape[0]
            offsets = (torch.arange(bc, device=a.device) * n)[:, None]  # (bc, 1)
            src = (edges[0][None] + offsets).reshape(-1)
            dst = (edges[1][None] + offsets).reshape(-1)
            xy = coords.to(a.dtype).repeat(bc, 1)  # (bc n, dim)
            outs.append(self._propagate(ac.reshape(-1), xy, src, dst).reshape(bc, n))
        return torch.cat(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The whole grid, one sub-grid graph at a time: ``(B, *grid) -> (B, *grid)``."""
        self._check(x)
        flat = x.reshape(x.shape[0], -1)
        preds = [
            self._forward_graph(flat[:, nodes], self.coords[nodes], edges)
            for nodes, edges in self._parts()
        ]
        return torch.cat(preds, dim=1)[:, self.part_order].reshape(x.shape)

    def sample_nodes(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n_sampled`` distinct grid points per instance, drawn uniformly: ``(batch, m)``."""
        n_points = self.coords.shape[0]
        keys = torch.rand(batch, n_points, generator=generator)
        return keys.argsort(dim=1)[:, : self.n_sampled].to(self.coords.device)

    def forward_at(self, x: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
        """The prediction at ``nodes (B, m)`` (flat grid indices), each instance on the ball graph
        of its own points: ``(B, *grid) -> (B, m)``."""
        self._check(x)
        if nodes.dim() != 2 or nodes.shape[0] != x.shape[0]:
            raise DataError(
                f"nodes has shape {tuple(nodes.shape)}; expected (batch={x.shape[0]}, m)."
            )
        b, m = nodes.shape
        a = x.reshape(b, -1).gather(1, nodes)  # (B, m)
        coords = self.coords.to(x.dtype)[nodes]  # (B, m, dim)
        # the same float64 distances and tolerance as radius_graph, so a ball holds the same points
        dist = torch.cdist(coords.double(), coords.double())  # (B, m, m)
        near = dist <= self.radius * (1 + 1e-9)
        bi, tgt, src = torch.nonzero(near, as_tuple=True)
        pred = self._propagate(
            a.reshape(-1), coords.reshape(-1, self.dim), bi * m + src, bi * m + tgt
        )
        return pred.reshape(b, m)


# --------------------------------------------------------------------------------------------
# FNO: wrapper of the maintained neuraloperator package
# --------------------------------------------------------------------------------------------


class FNO(_GridOperator):
    """Fourier neural operator (Li et al. 2020, arXiv:2010.08895), from ``neuraloperator``.

    A thin wrapper of ``neuralop.models.FNO`` (install the ``pde`` extra), not a rewrite. The
    defaults are the FNO paper's settings: 4 Fourier layers; ``modes = 16``, ``width = 64`` in 1-D
    (Burgers) and ``modes = 12``, ``width = 32`` in 2-D (Darcy), the modes capped at
    ``resolution // 2`` (8 on the 16x16 grid, which resolves no more). ``modes`` counts
    frequencies as the paper does (``k = 0..modes-1`` in the last dimension, ``|k| < modes`` in
    the others); it is passed to neuraloperator, whose ``n_modes`` counts both signs, as
    ``2 modes`` for leading dimensions and ``2 modes - 2`` for the last (kept as
    ``n_modes // 2 + 1`` rfft coefficients).
    Lifting and projection, GELU, soft-gated channel MLPs and the grid positional embedding are
    neuraloperator's defaults, not the 2020 code's exact layers.
    """

    def __init__(
        self,
        dim: int,
        resolution: int,
        modes: int | None = None,
        width: int | None = None,
        n_layers: int = 4,
        **fno_kwargs,
    ):
        super().__init__(dim, resolution)
        try:
            from neuralop.models import FNO as _NeuralopFNO  # slow import (~4 s): keep it lazy
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(
                "model 'fno' needs the neuraloperator package; install it with "
                "`pip install 'eads[pde]'` (or `pip install neuraloperator`)."
            ) from exc
        if modes is None:  # the paper's count, capped at what a coarse grid resolves
            modes = min(16 if dim == 1 else 12, resolution // 2)
        width = (64 if dim == 1 else 32) if width is None else width
        if modes < 1 or 2 * modes > resolution or width < 1 or n_layers < 1:
            raise ConfigError(
                f"modes={modes!r}, width={width!r}, n_layers={n_layers!r} must be positive and "
                f"the modes must fit the grid (2*modes <= resolution={resolution})."
            )
        self.modes = modes
        self.width = width
        n_modes = (2 * modes,) * (dim - 1) + (max(2 * modes - 2, 1),)
        self.fno = _NeuralopFNO(
            n_modes=n_modes,
            in_channels=1,
            out_channels=1,
            hidden_channels=width,
            n_layers=n_layers,
            **fno_kwargs,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.fno(x.unsqueeze(1)).squeeze(1)  # (B, 1, *grid) -> (B, *grid)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

OPERATORS: dict[str, type[_GridOperator]] = {"nn": NN, "fcn": FCN, "gno": GNO, "fno": FNO}
"""Benchmark names to model classes; each is called as ``cls(dim, resolution, **hp)``."""


def build_operator(name: str, dim: int, resolution: int, **hyperparameters) -> nn.Module:
    """Build the baseline ``name`` for a ``dim``-D problem on a grid of ``resolution`` points
    per side; ``hyperparameters`` go to the model's constructor (see each class)."""
    if name not in OPERATORS:
        raise ConfigError(
            f"operator name={name!r} is unknown; valid names are {sorted(OPERATORS)}."
        )
    try:
        return OPERATORS[name](dim, resolution, **hyperparameters)
    except TypeError as exc:
        raise ConfigError(
            f"hyperparameters {sorted(hyperparameters)} are not all accepted by {name!r}: {exc}."
        ) from exc


def receptive_field(model: nn.Module, resolution: int, seed: int = 0) -> int:
    """Grid points of a 1-D input that the output at the middle point depends on: the span from
    the first to the last input point with a non-zero gradient of that output, measured by
    autograd at a random input (``seed``) with the model in eval mode (BatchNorm's running
    statistics, no batch coupling). ``resolution``: for a convolutional net the span is fixed
    in points, so it covers less of the domain as the grid refines (:class:`FCN`: 87 points at
    the default blocks); a spectral layer sees the whole period (:class:`FNO`: ``resolution``).

    When not to use it: on a model whose gradient can vanish where it does depend on an input
    (a ReLU exactly at 0 on the random point); the span is then a lower bound.
    """
    was_training = model.training
    model.eval()
    try:
        x = torch.randn(1, resolution, generator=torch.Generator().manual_seed(seed))
        x.requires_grad_(True)
        model(x).reshape(-1)[resolution // 2].backward()
    finally:
        model.train(was_training)
    used = (x.grad.reshape(-1) != 0).nonzero().reshape(-1)
    return int(used.max() - used.min() + 1) if used.numel() else 0


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
