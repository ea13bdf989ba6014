"""How a circuit learns: trainer strategies that turn a batch into a loss and gradients.

* :class:`ECTrain` -- the paper's on-device training of EADS: error currents at the clamped
  outputs, local updates of ``Q`` and ``P``, and ``J``'s gradient from the adjoint circuit
  (:mod:`eads.circuit.adjoint`). No autograd is involved.
* :class:`Backprop` -- the digital baseline: autograd through the same solver (any module).
* :class:`SampledNodesBackprop` -- autograd on random point subsets of a graph kernel network
  (the GKN paper's Nystrom training), for the PDE benchmark's GNO.
* :class:`ConditionalLikelihood` -- NP-GL's offline training: the output nodes' Gaussian
  conditional means, given all other nodes at their data values, fitted to the data by MAE.

A trainer only computes gradients; the update rule (SGD as the hardware applies it, or Adam)
and the loop live in :mod:`eads.learn.loop`.
"""

from __future__ import annotations

import torch
from torch import nn

from eads._errors import ConfigError
from eads.circuit.adjoint import adjoint_gradients
from eads.circuit.eads import EADS
from eads.circuit.nonideal import NonIdealEADS
from eads.circuit.npgl import NPGL


class AbstractTrainer:
    """``loss_and_gradients(model, x, y) -> (loss, {parameter name: gradient})``."""

    name = "abstract"

    def check_model(self, model: nn.Module) -> None:
        pass

    def loss_and_gradients(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def ectrain_gradients(model: EADS, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """EC-Train's gradients ``{'P', 'J', 'Q'}`` of the batch-mean clamped-output loss.

    ``L = mean over outputs of (Q^T h(T) - r_y y)^2``, averaged over the batch; see
    :mod:`eads.circuit.adjoint` for the circuit that computes it.
    """
    return adjoint_gradients(model, x, y)[1]


class ECTrain(AbstractTrainer):
    """EC-Train (seed paper Sec. 3.2): gradients from error currents and the adjoint circuit."""

    name = "ectrain"

    def check_model(self, model):
        if not isinstance(model, EADS):
            raise ConfigError(
                f"trainer 'ectrain' trains EADS circuits only, got {type(model).__name__}; "
                "use 'backprop' or, for NP-GL, 'likelihood'."
            )
        if isinstance(model, NonIdealEADS) and not model.nonideal.ideal:
            raise ConfigError(
                "trainer 'ectrain' computes the ideal circuit's gradient; this circuit has "
                "non-idealities, so train it with 'hw-ectrain'."
            )

    def loss_and_gradients(self, model, x, y):
        self.check_model(model)
        return adjoint_gradients(model, x, y)


def _autograd(model: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    names, params = zip(
        *[(n, p) for n, p in model.named_parameters() if p.requires_grad], strict=True
    )
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {
        n: (g if g is not None else torch.zeros_like(p))
        for n, p, g in zip(names, params, grads, strict=True)
    }


class Backprop(AbstractTrainer):
    """Autograd through the simulated circuit (or any module): mean squared error.

    For an EADS circuit the loss is the same clamped-output current loss as EC-Train's, so the
    two differ only in how the gradient is obtained.
    """

    name = "backprop"

    def loss_and_gradients(self, model, x, y):
        with torch.enable_grad():
            pred = model(x)
            scale = model.r_output**2 if isinstance(model, EADS) else 1.0
            loss = scale * ((pred - y.to(pred.dtype)) ** 2).mean()
            grads = _autograd(model, loss)
        return loss.detach(), grads


class SampledNodesBackprop(AbstractTrainer):
    """Autograd on random point subsets: the Nystrom training of graph kernel networks (Li et
    al. 2020, arXiv:2003.03485, Sec. 4). Each step draws ``model.sample_nodes(batch)`` grid
    points per instance and fits ``model.forward_at(x, nodes)`` to ``y`` at those points (mean
    squared error). For models with both methods, such as :class:`eads.baselines.operators.GNO`;
    validation and prediction still use the whole grid (``model(x)``).
    """

    name = "backprop-sampled"

    def check_model(self, model):
        if not (hasattr(model, "sample_nodes") and hasattr(model, "forward_at")):
            raise ConfigError(
                f"trainer 'backprop-sampled' needs a model with sample_nodes() and forward_at() "
                f"(a graph kernel network), got {type(model).__name__}; use 'backprop'."
            )

    def loss_and_gradients(self, model, x, y):
        self.check_model(model)
        nodes = model.sample_nodes(x.shape[0])  # (B, m), from torch's global generator
        with torch.enable_grad():
            pred = model.forward_at(x, nodes)  # (B, m)
            target = y.reshape(y.shape[0], -1).gather(1, nodes).to(pred.dtype)
            loss = ((pred - target) ** 2).mean()
            grads = _autograd(model, loss)
        return loss.detach(), grads


class ConditionalLikelihood(AbstractTrainer):
    """NP-GL's training: fit each output node's conditional mean to the data (MAE loss).

    The conditional mean of output node i is ``sum_j W_ij x_j / (2 h_i)`` with every other node
    (inputs and the other outputs) clamped to its data value. Minimising the absolute error of
    these means is the seed paper's conditional-likelihood training of NP-GL.
    """

    name = "likelihood"

    def check_model(self, model):
        if not isinstance(model, NPGL):
            raise ConfigError(
                f"trainer 'likelihood' trains NP-GL only, got {type(model).__name__}."
            )

    def loss_and_gradients(self, model, x, y):
        self.check_model(model)
        with torch.enable_grad():
            x = x.to(model.J.dtype)
            y = y.to(model.J.dtype)
            mu = model.conditional_mean(model.nodes(x, y))[:, model.n_inputs :]  # (B, M)
            loss = (mu - y).abs().mean()
            grads = _autograd(model, loss)
        return loss.detach(), grads


TRAINERS: dict[str, type[AbstractTrainer]] = {
    "ectrain": ECTrain,
    "backprop": Backprop,
    "likelihood": ConditionalLikelihood,
    "backprop-sampled": SampledNodesBackprop,
}


def register_trainer(cls: type[AbstractTrainer]) -> type[AbstractTrainer]:
    """Add a trainer class to :data:`TRAINERS` under its ``name`` (usable as a decorator), so
    that configs and the CLI can name a trainer defined in another package."""
    if not (isinstance(cls, type) and issubclass(cls, AbstractTrainer)):
        raise ConfigError(f"register_trainer takes an AbstractTrainer subclass, got {cls!r}.")
    known = TRAINERS.get(cls.name)
    if known is not None and known is not cls:
        raise ConfigError(f"A trainer named {cls.name!r} is registered already ({known!r}).")
    TRAINERS[cls.name] = cls
    return cls


def make_trainer(name: str) -> AbstractTrainer:
    if name not in TRAINERS:
        raise ConfigError(f"Unknown trainer {name!r}; valid trainers are {sorted(TRAINERS)}.")
    return TRAINERS[name]()
