"""The benchmark budget maps field for field onto ``TrainConfig``, rejects bad values in one
sentence, and the stop marks single out every cell that patience did not stop. < 1 s."""

from __future__ import annotations

import dataclasses

import pytest

from eads._errors import ConfigError
from eads.bench.budget import CAP_MARK, Budget, stop_mark, stop_reason_of
from eads.config import TrainConfig


def test_train_config_carries_every_training_field():
    b = Budget(epochs=500, lr_grid=(1e-3, 3e-4), batch_size=20, patience=50, schedule="step",
               schedule_factor=0.5, schedule_step=100, max_time_s=None)  # fmt: skip
    cfg = b.train_config("backprop", seed=3)
    assert cfg == TrainConfig(
        trainer="backprop", epochs=500, batch_size=20, lr=1e-3, optimizer="adam", patience=50,
        schedule="step", schedule_factor=0.5, schedule_step=100, max_time_s=None, seed=3,
    )  # fmt: skip
    assert b.train_config("backprop", lr=3e-4).lr == 3e-4


def test_params_round_trip_and_unknown_fields_are_refused():
    b = Budget(epochs=10, lr_grid=[1e-2], hyperparameters={"width": 8})
    assert b.lr_grid == (1e-2,)
    assert Budget.from_params(b.to_params()) == b
    with pytest.raises(ConfigError, match=r"unknown fields \['max_train_s'\]"):
        Budget.from_params({**b.to_params(), "max_train_s": 3})


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"epochs": 0}, "train.epochs"),
        ({"patience": -1}, "train.patience"),
        ({"lr_grid": ()}, "lr_grid"),
        ({"lr_grid": (0.0,)}, "train.lr"),
        ({"schedule": "linear"}, "train.schedule"),
        ({"max_time_s": 0.0}, "train.max_time_s"),
        ({"select_trials": -2}, "select_trials"),
    ],
)
def test_bad_budgets_are_one_sentence_errors(bad, match):
    with pytest.raises(ConfigError, match=match) as info:
        Budget(**{"epochs": 5, **bad})
    assert str(info.value).endswith(".") and ". " not in str(info.value)


def test_only_patience_and_untrained_models_go_unmarked():
    for reason in ("patience", "early stopping", "none", "no training"):
        assert stop_mark(reason) == "", reason
    for reason in ("epoch_cap", "epoch budget", "epochs", "wall_time", "time budget",
                   "wall time", "", None, "something new"):  # fmt: skip
        assert stop_mark(reason) == CAP_MARK, reason
    assert stop_reason_of("epoch budget") == "epoch_cap" == stop_reason_of("epochs")
    assert dataclasses.is_dataclass(Budget) and Budget.__dataclass_params__.frozen
