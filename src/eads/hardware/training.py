"""Hardware-aware EC-Train as a trainer strategy (usable with :func:`eads.fit`)."""

from __future__ import annotations

from eads._errors import ConfigError
from eads.circuit.nonideal import NonIdealEADS, hardware_aware_gradients
from eads.learn.trainers import AbstractTrainer, register_trainer


@register_trainer
class HardwareAwareECTrain(AbstractTrainer):
    """EC-Train through the imperfect circuit of a :class:`eads.circuit.nonideal.NonIdealEADS`.

    The forward anneal, the clamped error measurement and the adjoint pass all run on the
    effective (quantised, varied, noisy, saturating, non-ideal-diode) circuit; the updates land on
    the programmed conductances (straight-through). On an ideal circuit it is plain EC-Train.
    """

    name = "hw-ectrain"

    def check_model(self, model):
        if not isinstance(model, NonIdealEADS):
            raise ConfigError(
                f"trainer 'hw-ectrain' trains NonIdealEADS circuits only, got "
                f"{type(model).__name__}; wrap it with NonIdealEADS.from_model(model, nonideal)."
            )

    def loss_and_gradients(self, model, x, y):
        self.check_model(model)
        return hardware_aware_gradients(model, x, y)


__all__ = ["HardwareAwareECTrain"]
