"""What sits between a suite's data and its models: the standardiser and three module adapters.

* :class:`Standardizer` -- point-wise standardisation with the fitting split's statistics;
* :class:`FlatFunction` -- a model of flat vectors (a circuit) applied to functions on a grid;
* :class:`ModeByGrad` -- train mode while gradients are on, eval mode otherwise (BatchNorm);
* :class:`TensorStateDict` -- a ``state_dict`` of tensors only (what the training loop clones).

They hold no parameters of their own beyond the wrapped module's, which sits under the
attribute ``inner``: a wrapped module's ``state_dict`` keys are ``inner.<name>``, and the
per-epoch checkpoints of unfinished cells (:mod:`eads.bench.training`) depend on that name.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Standardizer:
    """Point-wise ``z = (v - mean) / std`` at each grid point, with the statistics of ``v``.

    ``mean`` and ``std`` (the population standard deviation, floored at 1e-6 so a constant
    point stays finite) are taken over the samples, axis 0, as the FNO authors'
    ``UnitGaussianNormalizer`` does. :meth:`encode` gives float32 tensors, :meth:`decode` maps
    a model's output back to float64 arrays ``z * std + mean``.

    When not to use: a fitting split of a handful of samples (per-point statistics are then
    noise; one mean and std over all points serves better), or data with missing values (the
    statistics are not masked).
    """

    def __init__(self, v: np.ndarray):
        self.mean = v.mean(axis=0)  # (*grid)
        self.std = np.maximum(v.std(axis=0), 1e-6)  # (*grid)

    def encode(self, v: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((v - self.mean) / self.std).astype(np.float32))

    def decode(self, v: torch.Tensor) -> np.ndarray:
        return v.detach().cpu().numpy().astype(np.float64) * self.std + self.mean


class FlatFunction(nn.Module):
    """A model of flat vectors on functions on a grid: ``(B, *grid) -> (B, n) -> inner ->
    (B, n) -> (B, *grid)`` with ``n = prod(grid_shape)``.

    The training loop trains ``inner`` on flattened functions
    (:func:`eads.bench.training.train_one`); this module is what predicts.
    """

    def __init__(self, inner: nn.Module, grid_shape: tuple[int, ...]):
        super().__init__()
        self.inner = inner
        self.grid_shape = tuple(grid_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.reshape(x.shape[0], -1)).reshape(x.shape[0], *self.grid_shape)


class ModeByGrad(nn.Module):
    """Train mode when gradients are on, eval mode otherwise.

    The training loop calls the same module to train (under ``enable_grad``) and to validate
    (under ``no_grad``); this switch gives BatchNorm its batch statistics for training and its
    running statistics for validation and testing. When not to use: a model whose dropout or
    batch statistics must stay on at test time, or one trained under ``no_grad``.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inner.train(torch.is_grad_enabled())
        return self.inner(x)


class TensorStateDict(nn.Module):
    """Drops non-tensor entries from ``state_dict``: neuraloperator's FNO adds a ``_metadata``
    dict that the training loop, which clones every entry, cannot hold."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def state_dict(self, *args, **kwargs):
        sd = super().state_dict(*args, **kwargs)
        for key in [k for k, v in sd.items() if not torch.is_tensor(v)]:
            del sd[key]
        return sd


__all__ = ["FlatFunction", "ModeByGrad", "Standardizer", "TensorStateDict"]
