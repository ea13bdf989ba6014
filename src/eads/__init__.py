"""eads: simulate, train and evaluate EADS, the Expressive and self-Adaptive Dynamical System
(Liu et al., ICML 2025), and its NP-GL backbone (Wu et al., ICLR 2024).

>>> import torch, eads
>>> model = eads.EADS(n_inputs=4, n_hidden=32, n_outputs=2, seed=0)
>>> y = model(torch.randn(8, 4))               # anneal: (batch, n_outputs)
>>> grads = eads.ectrain_gradients(model, torch.randn(8, 4), torch.randn(8, 2))
"""

__version__ = "0.1.0"

from eads._errors import (
    CheckpointError,
    ConfigError,
    DataError,
    EADSError,
    MissingExtraError,
    SpiceError,
    UnstableCircuitError,
)
from eads.circuit import EADS, NPGL
from eads.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from eads.estimator import EADSRegressor
from eads.hardware.training import HardwareAwareECTrain  # registers the 'hw-ectrain' trainer
from eads.learn import (
    Backprop,
    ConditionalLikelihood,
    ECTrain,
    ectrain_gradients,
    fit,
    fit_online,
)
from eads.solve import RK4, RK38, Dopri5, Euler, EulerMaruyama, Midpoint, SwitchingHeun

__all__ = [
    "EADS",
    "NPGL",
    "RK4",
    "RK38",
    "EulerMaruyama",
    "Backprop",
    "CheckpointError",
    "ConditionalLikelihood",
    "ConfigError",
    "DataConfig",
    "DataError",
    "Dopri5",
    "EADSError",
    "EADSRegressor",
    "HardwareAwareECTrain",
    "MissingExtraError",
    "SpiceError",
    "SwitchingHeun",
    "ECTrain",
    "Euler",
    "Midpoint",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "UnstableCircuitError",
    "ectrain_gradients",
    "fit",
    "fit_online",
]
