"""Training to convergence: every stop reason is reached where it must be and recorded, the
learning-rate schedules follow their definitions (ReduceLROnPlateau's rule replayed from the
recorded losses, CosineAnnealingLR's closed form), a run resumed mid-way under each schedule
ends bit for bit where the uninterrupted one does, old checkpoints still load, data-parallel
ranks agree on the schedule, and ``eads fit`` says when a run stopped on the cap or the clock.

Durations on 2 shared CPU cores: each test 0.5-4 s, except the 2-process one (6-18 s).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import F64, rel_err, run_cli
from test_cli import data_csv  # noqa: F401  (a fixture)

import eads
from eads._errors import ConfigError
from eads.config import RunConfig, TrainConfig, load_toml
from eads.learn import fit
from eads.learn.loop import STOP_REASONS
from eads.runs import load_checkpoint, save_checkpoint


def _data(n=48, seed=0, dtype=F64):
    """A learnable map: inputs and a teacher circuit's outputs."""
    teacher = eads.EADS(3, 8, 2, seed=100, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=dtype)
    with torch.no_grad():
        return x, teacher(x)


def _noise_val(n=24, dtype=F64):
    """A validation set with targets unrelated to the inputs: its loss soon stops falling."""
    g = torch.Generator().manual_seed(9)
    return torch.randn(n, 3, generator=g, dtype=dtype), 3 * torch.randn(
        n, 2, generator=g, dtype=dtype
    )


def _student(seed=0, dtype=F64):
    return eads.EADS(3, 8, 2, seed=seed, dtype=dtype)


def _fit(cfg, val=True, **kw):
    model = _student()
    hist = fit(
        model, eads.ECTrain(), _data(), _noise_val() if val else None, cfg, progress=False, **kw
    )
    return model, hist


def _cfg(**kw):
    base = dict(epochs=40, batch_size=8, lr=2e-2, seed=1)
    return TrainConfig(**{**base, **kw})


def _replay_plateau(losses, lr0, factor, patience, lr_min, threshold=0.0):
    """ReduceLROnPlateau's rule, written out: the lr each epoch should train with, given the
    losses it watched. An epoch is bad unless its loss is strictly below the best so far;
    after ``patience + 1`` bad epochs in a row the lr is multiplied by ``factor`` (floored at
    ``lr_min``) and the count restarts."""
    lrs, lr, best, bad = [], lr0, math.inf, 0
    for loss in losses:
        lrs.append(lr)
        if loss < best * (1 - threshold):  # losses >= 0: torch's "rel" mode
            best, bad = loss, 0
        else:
            bad += 1
        if bad > patience:
            new = max(lr * factor, lr_min)
            if lr - new > 1e-8:  # torch's eps: smaller changes are ignored
                lr = new
            bad = 0
    return lrs


# ----------------------------------------------------------------------------- stop reasons


def test_patience_stops_a_run_whose_validation_loss_stalls():
    _, hist = _fit(_cfg(epochs=500, patience=4))
    assert hist.stop_reason == "patience" and hist.stopped_early
    assert hist.epochs_run < 500
    # it stops exactly `patience` epochs after the best one, which it keeps
    assert hist.epochs_run - 1 - hist.best_epoch == 4
    assert hist.best_val == min(hist.val_loss) == hist.val_loss[hist.best_epoch]
    assert len(hist.lr) == len(hist.train_loss) == len(hist.val_loss) == hist.epochs_run


def test_an_improvement_threshold_counts_only_relative_gains_for_patience_and_plateau():
    """A loss that creeps down: with a 5 % threshold, patience counts from the last epoch that
    beat the best by 5 %, and the plateau schedule sees the same epochs (replayed rule)."""
    cfg = _cfg(epochs=60, patience=6, schedule_patience=2, improvement_threshold=0.05)
    _, hist = _fit(cfg, val=False)  # the training loss falls steadily, by ever smaller steps
    best, best_epoch = math.inf, -1
    for epoch, loss in enumerate(hist.train_loss):
        if loss < best * 0.95:
            best, best_epoch = loss, epoch
    assert hist.best_epoch == best_epoch and hist.best_val == best
    assert hist.stop_reason == "patience" and hist.epochs_run - 1 - best_epoch == 6
    assert hist.lr == _replay_plateau(hist.train_loss, 2e-2, 0.5, 2, 2e-5, threshold=0.05)
    # smaller gains were made after the best epoch: without the threshold they would count
    assert min(hist.train_loss[best_epoch + 1 :]) < best
    with pytest.raises(ConfigError, match="improvement_threshold"):
        TrainConfig(improvement_threshold=1.0)


def test_the_epoch_cap_stops_a_run_with_huge_patience():
    _, hist = _fit(_cfg(epochs=6, patience=10**6))
    assert hist.stop_reason == "epoch_cap" and not hist.stopped_early
    assert hist.epochs_run == 6 and len(hist.train_loss) == 6
    # patience = 0: the cap is the only stop
    _, hist = _fit(_cfg(epochs=3, patience=0))
    assert hist.stop_reason == "epoch_cap" and hist.epochs_run == 3


def test_the_wall_time_stops_after_the_first_epoch_past_it():
    _, hist = _fit(_cfg(patience=0, max_time_s=1e-9))
    assert hist.stop_reason == "wall_time" and hist.epochs_run == 1
    assert len(hist.train_loss) == 1  # the epoch ran to its end
    # checked after each epoch: the run stops at the first epoch whose time reaches the limit
    times = []

    def slow(epoch, history):
        times.append(history.train_time_s)
        time.sleep(0.4)  # counts towards the next epoch's training time

    _, hist = _fit(_cfg(patience=0, max_time_s=0.6), on_epoch=slow)
    assert hist.stop_reason == "wall_time" and hist.epochs_run == len(times) >= 2
    assert times[-1] >= 0.6 and all(t < 0.6 for t in times[:-1])
    assert set(STOP_REASONS) == {"patience", "epoch_cap", "wall_time"}


def test_wall_time_accumulates_across_resumes(tmp_path):
    ckpt = tmp_path / "ckpt.safetensors"
    cfg = _cfg(epochs=4, patience=0, max_time_s=0.3)
    _, first = _fit(cfg, checkpoint=ckpt, on_epoch=lambda e, h: time.sleep(0.4))
    assert first.stop_reason == "wall_time" and first.epochs_run == 2
    # resumed under the same limit: the time is spent, nothing more is trained
    _, again = _fit(cfg, checkpoint=ckpt, resume=True)
    assert again.epochs_run == 2 and again.stop_reason == "wall_time"
    assert again.train_loss == first.train_loss
    # under a higher limit it goes on to the cap, its clock starting from the checkpoint's
    _, more = _fit(_cfg(epochs=4, patience=0, max_time_s=100.0), checkpoint=ckpt, resume=True)
    assert more.stop_reason == "epoch_cap" and more.epochs_run == 4
    assert more.train_time_s >= 0.4 and more.train_loss[:2] == first.train_loss


def test_a_callback_can_still_stop_the_run():
    """tasks/pde.py's budget stop: ``on_epoch`` sets ``stopped_early``; the run ends there."""

    def stop_at_two(epoch, history):
        if epoch == 1:
            history.stopped_early = True

    _, hist = _fit(_cfg(patience=0), on_epoch=stop_at_two)
    assert hist.epochs_run == 2 and hist.stop_reason == "patience"


# ----------------------------------------------------------------------------- schedules


def test_plateau_lowers_the_lr_exactly_when_its_patience_runs_out():
    cfg = _cfg(epochs=30, patience=1000, schedule_patience=2, schedule_factor=0.5, min_lr_ratio=0.1)
    _, hist = _fit(cfg)
    expected = _replay_plateau(hist.val_loss, 2e-2, 0.5, 2, 2e-3)
    assert hist.lr == expected
    lowered = [e for e in range(1, 30) if hist.lr[e] < hist.lr[e - 1]]
    assert len(lowered) >= 3  # the schedule acted, several times
    assert hist.lr[-1] == pytest.approx(2e-3, rel=1e-12)  # down to the floor min_lr_ratio * lr
    assert min(hist.lr) >= 2e-3 * (1 - 1e-12)


def test_plateau_without_validation_watches_the_training_loss():
    """Training on noise: the training loss rises now and then; the lr falls right after."""
    x, y = _noise_val(n=48)
    cfg = TrainConfig(epochs=25, batch_size=8, lr=5e-2, patience=1000, schedule_patience=0)
    hist = fit(_student(), eads.ECTrain(), (x, y), None, cfg, progress=False)
    assert hist.val_loss == []
    assert hist.lr == _replay_plateau(hist.train_loss, 5e-2, 0.5, 0, 5e-2 * 1e-3)
    assert min(hist.lr) < 5e-2


def test_plateau_is_off_without_patience_and_none_is_constant():
    """patience = 0 trains a fixed budget: the default "plateau" keeps the lr constant."""
    cfg = _cfg(epochs=12, patience=0, schedule_patience=0)
    _, hist = _fit(cfg)
    assert hist.lr == [2e-2] * 12
    _, hist = _fit(_cfg(epochs=30, patience=1000, schedule="none"))
    assert hist.lr == [2e-2] * 30
    # the same run with the schedule on does lower it (so the two lines above can fail)
    _, hist = _fit(_cfg(epochs=12, patience=1000, schedule_patience=0))
    assert min(hist.lr) < 2e-2


def test_cosine_follows_its_closed_form():
    epochs, lr0, ratio = 17, 2e-2, 0.05
    _, hist = _fit(_cfg(epochs=epochs, patience=0, schedule="cosine", min_lr_ratio=ratio))
    lr_min = ratio * lr0
    closed = [lr_min + (lr0 - lr_min) * (1 + math.cos(math.pi * t / epochs)) / 2 for t in range(17)]
    np.testing.assert_allclose(hist.lr, closed, rtol=1e-12, atol=0)
    assert hist.lr[0] == lr0 and hist.lr[-1] < 0.01 * lr0 + lr_min


@pytest.mark.parametrize(
    "schedule, extra",
    [
        ("none", {}),
        ("plateau", {"schedule_patience": 1}),
        ("cosine", {"patience": 0}),
        ("step", {"schedule_step": 3}),
    ],
)
def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path, schedule, extra):
    cfg = _cfg(**{"epochs": 12, "patience": 1000, "schedule": schedule, **extra})
    full, h_full = _fit(cfg, checkpoint=tmp_path / "full.safetensors")

    class Interrupt(Exception):
        pass

    def cut(epoch, history):
        if epoch == 4:
            raise Interrupt

    ckpt = tmp_path / "cut.safetensors"
    with pytest.raises(Interrupt):
        _fit(cfg, checkpoint=ckpt, on_epoch=cut)
    resumed = _student(seed=99)  # the checkpoint must overwrite everything
    h_res = fit(
        resumed, eads.ECTrain(), _data(), _noise_val(), cfg, checkpoint=ckpt, resume=True,
        progress=False,
    )  # fmt: skip
    for p, q in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
    assert h_res.train_loss == h_full.train_loss and h_res.val_loss == h_full.val_loss
    assert h_res.lr == h_full.lr and h_res.stop_reason == h_full.stop_reason == "epoch_cap"
    assert h_res.best_epoch == h_full.best_epoch and h_res.epochs_run == 12
    if schedule != "none":  # the lr changed after the cut, so the schedule's state mattered
        assert len(set(h_full.lr[5:])) > 1
        assert h_full.lr[5:] != [h_full.lr[5]] * 7
    if schedule == "step":  # it lowered the lr twice after the cut (epochs 6, 9)
        assert len(set(h_full.lr[5:])) == 3


def test_a_checkpoint_without_schedule_state_still_loads(tmp_path):
    """Checkpoints written before this change hold no scheduler, lr list or stop reason."""
    ckpt = tmp_path / "old.safetensors"
    cfg = _cfg(epochs=3, patience=0)
    _fit(cfg, checkpoint=ckpt)
    tensors, state = load_checkpoint(ckpt)
    del state["history"]["lr"], state["history"]["stop_reason"]
    state.pop("scheduler", None)
    save_checkpoint(ckpt, tensors, state)
    _, hist = _fit(_cfg(epochs=5, patience=1000, schedule_patience=0), checkpoint=ckpt, resume=True)
    assert hist.epochs_run == 5 and hist.stop_reason == "epoch_cap"
    assert len(hist.lr) == 5 and hist.lr[:3] == [2e-2] * 3


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"schedule": "linear"}, "train.schedule"),
        ({"schedule_factor": 1.0}, "train.schedule_factor"),
        ({"schedule_factor": 0.0}, "train.schedule_factor"),
        ({"schedule_patience": -1}, "train.schedule_patience"),
        ({"schedule_patience": 1.5}, "train.schedule_patience"),
        ({"min_lr_ratio": 1.0}, "train.min_lr_ratio"),
        ({"min_lr_ratio": -0.1}, "train.min_lr_ratio"),
        ({"max_time_s": 0.0}, "train.max_time_s"),
        ({"max_time_s": float("nan")}, "train.max_time_s"),
    ],
)
def test_bad_schedule_settings_are_one_sentence_errors(bad, field):
    with pytest.raises(ConfigError, match=field) as info:
        TrainConfig(**bad)
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")


def test_defaults_train_to_convergence_and_toml_sets_the_schedule(tmp_path):
    cfg = TrainConfig()
    assert cfg.schedule == "plateau" and cfg.max_time_s is None
    assert cfg.epochs >= 1000 and 0 < cfg.schedule_patience < cfg.patience
    path = tmp_path / "run.toml"
    path.write_text('[train]\nschedule = "cosine"\nmax_time_s = 60.0\n')
    assert load_toml(path).train == TrainConfig(schedule="cosine", max_time_s=60.0)
    d = RunConfig(train=TrainConfig(max_time_s=5.0)).to_dict()
    assert RunConfig.from_dict(json.loads(json.dumps(d))).train.max_time_s == 5.0


def test_estimator_follows_train_config_and_reports_the_stop():
    params = eads.EADSRegressor().get_params()
    defaults = TrainConfig()
    for name in ("epochs", "patience", "schedule", "max_time_s", "lr", "batch_size"):
        assert params[name] == getattr(defaults, name), name
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = X[:, 0] - 0.5 * X[:, 1]
    reg = eads.EADSRegressor(n_hidden=4, epochs=3, patience=10**6).fit(X, y)
    assert reg.history_.stop_reason == "epoch_cap" and reg.history_.epochs_run == 3
    reg = eads.EADSRegressor(n_hidden=4, epochs=5, patience=0, schedule="cosine").fit(X, y)
    assert reg.history_.lr[0] == defaults.lr and reg.history_.lr[-1] < defaults.lr
    reg = eads.EADSRegressor(n_hidden=4, max_time_s=1e-9).fit(X, y)
    assert reg.history_.stop_reason == "wall_time" and reg.history_.epochs_run == 1


# ----------------------------------------------------------------------------- data parallel

N_IN, N_HID, N_OUT = 3, 6, 2
DP_TRAIN = dict(epochs=8, batch_size=7, lr=3e-2, patience=1000, schedule_patience=0, seed=3)


def _dp_model():
    return eads.EADS(N_IN, N_HID, N_OUT, seed=11, dtype=F64)


def _dp_rank(out_dir: str) -> None:
    import torch.distributed as dist

    from eads.learn.distributed import fit_data_parallel

    x, y = _data(n=40)
    model = _dp_model()
    hist = fit_data_parallel(
        model, eads.ECTrain(), (x, y), _noise_val(), TrainConfig(**DP_TRAIN), progress=False
    )
    torch.save(
        {"state": model.state_dict(), "lr": hist.lr, "val": hist.val_loss},
        Path(out_dir) / f"rank{dist.get_rank()}.pt",
    )


def test_data_parallel_ranks_follow_one_plateau_schedule(tmp_path):  # ~15 s: 2 processes
    """Every rank sees the same validation loss, so every rank lowers the lr at the same
    epochs, and those are the single process's epochs."""
    from eads.learn.distributed import launch

    launch(_dp_rank, 2, str(tmp_path), backend="gloo", threads=1)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    x, y = _data(n=40)
    ref = _dp_model()
    hist = fit(ref, eads.ECTrain(), (x, y), _noise_val(), TrainConfig(**DP_TRAIN), progress=False)
    assert ranks[0]["lr"] == ranks[1]["lr"] == hist.lr
    assert ranks[0]["val"] == ranks[1]["val"]
    assert min(hist.lr) < DP_TRAIN["lr"]  # the schedule acted
    for name, p in ref.state_dict().items():
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name])
        assert rel_err(ranks[0]["state"][name], p) < 1e-10, name


# ----------------------------------------------------------------------------- CLI


def test_cli_notes_a_run_that_stopped_on_the_cap(tmp_path, data_csv, monkeypatch, capsys):  # noqa: F811
    run = tmp_path / "cap"
    args = ["--hidden", "4", "--epochs", "2", "--patience", "1000", "--quiet", "--run-dir", run]
    code, out, err = run_cli(monkeypatch, capsys, "fit", data_csv, *args)
    assert code == 0, err
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: training stopped on the epoch cap (2 epochs), not on validation patience; "
        "the model may not have converged."
    ]
    assert json.loads((run / "metrics.json").read_text())["stop_reason"] == "epoch_cap"
    history = json.loads((run / "history.json").read_text())
    assert history["stop_reason"] == "epoch_cap" and len(history["lr"]) == 2

    run = tmp_path / "clock"
    args = ["--hidden", "4", "--max-time", "1e-9", "--quiet", "--run-dir", run]
    code, out, err = run_cli(monkeypatch, capsys, "fit", data_csv, *args)
    assert code == 0, err
    assert "note: training stopped on the wall-time limit (1 epochs)" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stop_reason"] == "wall_time" and metrics["epochs_run"] == 1
    cfg = json.loads((run / "config.json").read_text())["train"]
    assert cfg["max_time_s"] == 1e-9 and cfg["schedule"] == "plateau"


def test_cli_prints_no_note_when_patience_stops_the_run(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(3)
    rows = ["a,b,t"] + [f"{a:.6f},{b:.6f},{c:.6f}" for a, b, c in rng.normal(size=(80, 3))]
    data = tmp_path / "noise.csv"  # targets unrelated to the inputs: the val loss stalls
    data.write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    args = ["--hidden", "4", "--patience", "2", "--schedule", "cosine", "--quiet"]
    code, out, err = run_cli(monkeypatch, capsys, "fit", data, *args, "--run-dir", run)
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stop_reason"] == "patience" and metrics["epochs_run"] < 2000
    assert "note:" not in out
    assert json.loads((run / "config.json").read_text())["train"]["schedule"] == "cosine"
    bad = ["--schedule", "linear", "--quiet", "--run-dir", tmp_path / "bad"]
    code, _, err = run_cli(monkeypatch, capsys, "fit", data, *bad)
    assert code == 2 and "train.schedule" in err
