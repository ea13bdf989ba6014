"""Training: EC-Train learns a task with a known answer as well as backprop, seeded runs repeat
bit for bit, an interrupted and resumed run ends where an uninterrupted one does, and the online
(prequential) mode recovers after an abrupt change of the target."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import F64, max_rel_err

import eads
from eads.config import TrainConfig
from eads.learn import evaluate_mse, fit, fit_online


def teacher_data(n=128, dtype=F64, seed=0):
    """A teacher EADS with random conductances: the student's architecture can fit it exactly."""
    teacher = eads.EADS(3, 16, 2, seed=100, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=dtype)
    with torch.no_grad():
        y = teacher(x)
    return x, y


def student(dtype=F64, seed=0):
    return eads.EADS(3, 16, 2, seed=seed, dtype=dtype)


def params(m):
    return [p.detach().clone() for p in m.parameters()]


def test_ectrain_learns_teacher_and_matches_backprop():
    """Same data, seed, epochs and optimiser: EC-Train reaches backprop's training error within
    5% (measured: identical to ~1e-14 relative, since the gradients agree to rounding) and
    lowers the error by more than 100x (measured 2.6 -> ~1e-3 in 10 epochs)."""
    x, y = teacher_data()
    cfg = TrainConfig(epochs=10, batch_size=16, lr=1e-2, patience=0, seed=0)
    results = {}
    for trainer in (eads.ECTrain(), eads.Backprop()):
        m = student()
        before = evaluate_mse(m, x, y)
        hist = fit(m, trainer, (x, y), None, cfg, progress=False)
        results[trainer.name] = (before, evaluate_mse(m, x, y), hist, m)
    before, ec, hist, m_ec = results["ectrain"]
    _, bp, _, m_bp = results["backprop"]
    assert ec < before / 100
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert ec <= 1.05 * bp
    for p, q in zip(m_ec.parameters(), m_bp.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-9)


def test_ectrain_learns_a_linear_map_in_float32():
    """The default dtype: a linear map is in EADS's reach (J = 0 would do)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 3, generator=g)
    y = x @ torch.tensor([[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2]])
    m = eads.EADS(3, 16, 2, seed=0)
    before = evaluate_mse(m, x, y)
    fit(
        m,
        eads.ECTrain(),
        (x, y),
        None,
        TrainConfig(epochs=10, batch_size=16, lr=1e-2, patience=0),
        progress=False,
    )
    assert evaluate_mse(m, x, y) < before / 20


def test_first_update_is_the_same_for_ectrain_and_backprop():
    x, y = teacher_data(n=16)
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.1, optimizer="sgd", patience=0)
    ms = {}
    for trainer in (eads.ECTrain(), eads.Backprop()):
        m = student()
        _, grads = trainer.loss_and_gradients(m, x, y)
        ms[trainer.name] = (grads, m)
        fit(m, trainer, (x, y), None, cfg, progress=False)
    assert max_rel_err(ms["ectrain"][0], ms["backprop"][0]) < 1e-12
    for p, q in zip(ms["ectrain"][1].parameters(), ms["backprop"][1].parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-12, atol=1e-14)
    # and that update is the plain SGD step theta - lr * grad
    m0 = student()
    for name, p in ms["ectrain"][1].named_parameters():
        expected = getattr(m0, name).detach() - 0.1 * ms["ectrain"][0][name]
        assert torch.allclose(p, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("trainer", ["ectrain", "backprop"])
def test_seeded_runs_repeat_exactly(trainer):
    x, y = teacher_data(n=64, dtype=torch.float32)
    xv, yv = teacher_data(n=32, dtype=torch.float32, seed=5)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-2, seed=3)
    runs = []
    for _ in range(2):
        m = student(dtype=torch.float32, seed=3)
        hist = fit(m, eads.learn.make_trainer(trainer), (x, y), (xv, yv), cfg, progress=False)
        runs.append((params(m), hist.train_loss, hist.val_loss))
    assert all(torch.equal(p, q) for p, q in zip(runs[0][0], runs[1][0], strict=True))
    assert runs[0][1] == runs[1][1] and runs[0][2] == runs[1][2]
    # a different seed gives a different run
    m = student(dtype=torch.float32, seed=3)
    fit(
        m,
        eads.ECTrain(),
        (x, y),
        (xv, yv),
        TrainConfig(epochs=3, batch_size=8, lr=1e-2, seed=4),
        progress=False,
    )
    assert not all(torch.equal(p, q) for p, q in zip(runs[0][0], params(m), strict=True))


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_interrupted_and_resumed_run_ends_with_same_parameters(tmp_path, optimizer):
    x, y = teacher_data(n=64, dtype=torch.float32)
    xv, yv = teacher_data(n=32, dtype=torch.float32, seed=5)
    cfg = TrainConfig(epochs=5, batch_size=8, lr=1e-2, optimizer=optimizer, patience=3, seed=1)

    full = student(dtype=torch.float32)
    h_full = fit(
        full,
        eads.ECTrain(),
        (x, y),
        (xv, yv),
        cfg,
        progress=False,
        checkpoint=tmp_path / "full.safetensors",
    )

    def stop_after_two(epoch, history):
        if epoch == 1:
            raise Interrupt

    ckpt = tmp_path / "cut.safetensors"
    with pytest.raises(Interrupt):
        fit(
            student(dtype=torch.float32),
            eads.ECTrain(),
            (x, y),
            (xv, yv),
            cfg,
            progress=False,
            checkpoint=ckpt,
            on_epoch=stop_after_two,
        )
    resumed = student(dtype=torch.float32, seed=99)  # the checkpoint must overwrite everything
    h_res = fit(
        resumed, eads.ECTrain(), (x, y), (xv, yv), cfg, progress=False, checkpoint=ckpt, resume=True
    )
    assert all(torch.equal(p, q) for p, q in zip(params(full), params(resumed), strict=True))
    assert h_res.train_loss == h_full.train_loss and h_res.val_loss == h_full.val_loss
    assert h_res.best_epoch == h_full.best_epoch and h_res.epochs_run == 5
    assert h_res.lr == h_full.lr and h_res.stop_reason == h_full.stop_reason


def test_resume_without_or_with_corrupt_checkpoint(tmp_path):
    x, y = teacher_data(n=16, dtype=torch.float32)
    cfg = TrainConfig(epochs=1, batch_size=8)
    with pytest.raises(eads.CheckpointError, match="does not exist"):
        fit(
            student(torch.float32),
            eads.ECTrain(),
            (x, y),
            None,
            cfg,
            progress=False,
            checkpoint=tmp_path / "none.safetensors",
            resume=True,
        )
    bad = tmp_path / "bad.safetensors"
    fit(student(torch.float32), eads.ECTrain(), (x, y), None, cfg, progress=False, checkpoint=bad)
    bad.write_bytes(bad.read_bytes()[:-40])
    with pytest.raises(eads.CheckpointError, match="corrupt"):
        fit(
            student(torch.float32),
            eads.ECTrain(),
            (x, y),
            None,
            cfg,
            progress=False,
            checkpoint=bad,
            resume=True,
        )
    other = tmp_path / "other.safetensors"
    fit(
        eads.EADS(3, 4, 2, seed=0),
        eads.ECTrain(),
        (x, y),
        None,
        cfg,
        progress=False,
        checkpoint=other,
    )
    with pytest.raises(eads.CheckpointError, match="does not fit"):
        fit(
            student(torch.float32),
            eads.ECTrain(),
            (x, y),
            None,
            cfg,
            progress=False,
            checkpoint=other,
            resume=True,
        )


@pytest.mark.parametrize("batch_size", [1, 32])
def test_per_sample_and_minibatch_modes_both_learn(batch_size):
    x, y = teacher_data(n=64, dtype=torch.float32)
    m = student(dtype=torch.float32)
    before = evaluate_mse(m, x, y)
    lr = 3e-3 if batch_size == 1 else 2e-2
    hist = fit(
        m,
        eads.ECTrain(),
        (x, y),
        None,
        TrainConfig(epochs=4, batch_size=batch_size, lr=lr, patience=0),
        progress=False,
    )
    assert hist.epochs_run == 4
    assert evaluate_mse(m, x, y) < before / 5


def test_early_stopping_restores_best_parameters():
    x, y = teacher_data(n=64, dtype=torch.float32)
    g = torch.Generator().manual_seed(9)
    xv, yv = torch.randn(32, 3, generator=g), torch.randn(32, 2, generator=g) * 5  # unlearnable
    m = student(dtype=torch.float32)
    hist = fit(
        m,
        eads.ECTrain(),
        (x, y),
        (xv, yv),
        TrainConfig(epochs=50, batch_size=8, lr=5e-2, patience=2),
        progress=False,
    )
    assert hist.stopped_early and hist.epochs_run < 50 and hist.stop_reason == "patience"
    assert hist.best_val == min(hist.val_loss)
    assert evaluate_mse(m, xv, yv) == pytest.approx(hist.best_val, rel=1e-6)


def test_fit_rejects_bad_data_and_diverging_training():
    x, y = teacher_data(n=16, dtype=torch.float32)
    cfg = TrainConfig(epochs=1, batch_size=8)
    with pytest.raises(eads.DataError, match="same number of samples"):
        fit(student(torch.float32), eads.ECTrain(), (x, y[:8]), None, cfg, progress=False)
    with pytest.raises(eads.DataError, match="empty"):
        fit(student(torch.float32), eads.ECTrain(), (x[:0], y[:0]), None, cfg, progress=False)
    with pytest.raises(eads.ConfigError, match="EADS circuits only"):
        fit(eads.NPGL(3, 2), eads.ECTrain(), (x, y), None, cfg, progress=False)
    # a huge SGD step throws the circuit off the rail, or the loss to inf: a clear error
    with pytest.raises((eads.DataError, eads.UnstableCircuitError)):
        fit(
            student(torch.float32),
            eads.ECTrain(),
            (x, y * 100),
            None,
            TrainConfig(epochs=5, batch_size=1, lr=1e3, optimizer="sgd"),
            progress=False,
        )


def test_online_mode_recovers_after_an_abrupt_change():
    """Prequential: each sample is predicted before it is learned. At sample 200 the target
    switches from x @ w1 to x @ w2; the running error spikes, then falls back below 10% of the
    spike (measured: ~0.01 before, spike ~2, ~0.005-0.02 at the end)."""
    n, switch = 400, 200
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    w1, w2 = torch.tensor([[1.0], [-0.5]]), torch.tensor([[-1.0], [0.8]])
    y = torch.where(torch.arange(n)[:, None] < switch, x @ w1, x @ w2)
    m = eads.EADS(2, 16, 1, seed=0)
    res = fit_online(
        m, eads.ECTrain(), x, y, TrainConfig(batch_size=1, lr=3e-2), smoothing=20, progress=False
    )
    assert res.errors.shape == (n,) and res.running.shape == (n,)
    run = res.running
    before = run[switch - 1]
    spike = run[switch : switch + 60].max()
    assert spike > 5 * before  # the change is felt ...
    assert run[-1] < 0.1 * spike  # ... and the circuit adapts
    assert run[-1] < run[: switch // 4].mean()  # and ends better than it started
    # prequential: the first error is the untrained circuit's error on the first sample
    with torch.no_grad():
        first = float(((eads.EADS(2, 16, 1, seed=0)(x[:1]) - y[:1]) ** 2).mean())
    assert res.errors[0] == pytest.approx(first, rel=1e-6)
    assert np.all(np.isfinite(res.errors))


def test_online_minibatch_mode():
    n = 256
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, 2, generator=g)
    y = x @ torch.tensor([[0.5], [1.0]])
    res = fit_online(
        eads.EADS(2, 16, 1, seed=0),
        eads.ECTrain(),
        x,
        y,
        TrainConfig(batch_size=8, lr=3e-2),
        smoothing=8,
        progress=False,
    )
    assert res.errors[-32:].mean() < 0.1 * res.errors[:32].mean()


def test_registry_builds_non_ideal_circuits_and_names_hw_ectrain():
    from eads._errors import ConfigError
    from eads.circuit.nonideal import NonIdealEADS
    from eads.config import ModelConfig
    from eads.hardware.training import HardwareAwareECTrain
    from eads.learn.registry import build_model, default_trainer_for, make_trainer

    model = build_model(ModelConfig(n_hidden=4, nonideal={"rail": 2.0}), 3, 1, seed=0)
    assert isinstance(model, NonIdealEADS) and model.nonideal.rail == 2.0
    assert type(build_model(ModelConfig(n_hidden=4), 3, 1)).__name__ == "EADS"
    assert isinstance(make_trainer("hw-ectrain"), HardwareAwareECTrain)
    assert default_trainer_for("eads", nonideal=True) == "hw-ectrain"
    assert default_trainer_for("npgl", nonideal=False) == "likelihood"
    with pytest.raises(ConfigError, match=r"'hw-ectrain'.*'likelihood'"):
        make_trainer("sgd")
    with pytest.raises(ConfigError, match="non-idealities"):
        make_trainer("ectrain").check_model(model)
    with pytest.raises(ConfigError, match="model.nonideal"):
        ModelConfig(nonideal=[1])
