"""The "step" learning-rate schedule (the FNO paper's halving every 100 epochs): its closed form
``lr_e = lr0 * gamma ** floor(e / step)``, a run resumed mid-way under it equals the
uninterrupted run bit for bit, and a bad step is a one-sentence error. Each test < 2 s.
"""

from __future__ import annotations

import pytest
import torch
from test_convergence import _cfg, _data, _fit, _noise_val, _student

import eads
from eads._errors import ConfigError
from eads.config import TrainConfig
from eads.learn import fit


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


def test_a_run_resumed_under_step_equals_the_uninterrupted_one(tmp_path):
    cfg = _cfg(epochs=12, patience=1000, schedule="step", schedule_step=3)
    full, h_full = _fit(cfg, checkpoint=tmp_path / "full.safetensors")

    class Interrupt(Exception):
        pass

    def cut(epoch, history):
        if epoch == 4:
            raise Interrupt

    ckpt = tmp_path / "cut.safetensors"
    with pytest.raises(Interrupt):
        _fit(cfg, checkpoint=ckpt, on_epoch=cut)
    resumed = _student(seed=99)
    h_res = fit(
        resumed, eads.ECTrain(), _data(), _noise_val(), cfg, checkpoint=ckpt, resume=True,
        progress=False,
    )  # fmt: skip
    for p, q in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
    assert h_res.lr == h_full.lr and h_res.train_loss == h_full.train_loss
    assert len(set(h_full.lr[5:])) == 3  # it lowered the lr twice after the cut (epochs 6, 9)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_a_bad_step_is_one_sentence(bad):
    with pytest.raises(ConfigError, match=r"train\.schedule_step must be a positive integer"):
        TrainConfig(schedule="step", schedule_step=bad)
