"""How a circuit learns: trainers (EC-Train, backprop, conditional likelihood) and the loop."""

from eads.learn.loop import History, OnlineResult, evaluate_mse, fit, fit_online
from eads.learn.trainers import (
    TRAINERS,
    AbstractTrainer,
    Backprop,
    ConditionalLikelihood,
    ECTrain,
    SampledNodesBackprop,
    ectrain_gradients,
    make_trainer,
)

__all__ = [
    "TRAINERS",
    "AbstractTrainer",
    "Backprop",
    "ConditionalLikelihood",
    "ECTrain",
    "History",
    "OnlineResult",
    "SampledNodesBackprop",
    "ectrain_gradients",
    "evaluate_mse",
    "fit",
    "fit_online",
    "make_trainer",
]
