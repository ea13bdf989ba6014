"""The "step" learning-rate schedule (the FNO paper's halving every 100 epochs): its closed form
``lr_e = lr0 * gamma ** floor(e / step)`` and a bad step is a one-sentence error; a run
resumed mid-way under it equals the uninterrupted run bit for bit (test_convergence.py's
resume test, parametrised over every schedule). Each test < 2 s.
"""

from __future__ import annotations

import pytest
from test_convergence import _cfg, _fit

from eads._errors import ConfigError
from eads.config import TrainConfig


def test_step_follows_its_closed_form():
    lr0, gamma, step = 2e-2, 0.5, 4
    _, hist = _fit(
        _cfg(epochs=13, lr=lr0, patience=0, schedule="step", schedule_step=step,
             schedule_factor=gamma)
    )  # fmt: skip
    closed = [lr0 * gamma ** (e // step) for e in range(13)]
    assert hist.lr == pytest.approx(closed, rel=1e-12, abs=0)
    assert hist.lr[3] == lr0 and hist.lr[4] == lr0 / 2 and hist.lr[12] == lr0 / 8
    assert hist.stop_reason == "epoch_cap"


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_a_bad_step_is_one_sentence(bad):
    with pytest.raises(ConfigError, match=r"train\.schedule_step must be a positive integer"):
        TrainConfig(schedule="step", schedule_step=bad)
