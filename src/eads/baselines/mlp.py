"""A small fully connected network: the digital reference for plain function learning."""

from __future__ import annotations

import torch
from torch import nn

from eads._errors import ConfigError


class MLP(nn.Module):
    """``n_layers`` hidden layers of width ``n_hidden`` with GELU, a linear output layer."""

    def __init__(
        self,
        n_inputs: int,
        n_hidden: int,
        n_outputs: int,
        *,
        n_layers: int = 2,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        for name, v in (("n_inputs", n_inputs), ("n_hidden", n_hidden), ("n_outputs", n_outputs)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}.")
        if seed is not None:
            torch.manual_seed(seed)
        layers: list[nn.Module] = []
        width = n_inputs
        for _ in range(n_layers):
            layers += [nn.Linear(width, n_hidden, dtype=dtype), nn.GELU()]
            width = n_hidden
        layers.append(nn.Linear(width, n_outputs, dtype=dtype))
        self.net = nn.Sequential(*layers)
        self.n_inputs, self.n_outputs = n_inputs, n_outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.net[0].weight.dtype))
