"""The core's training pieces (eads.bench.adapters, eads.bench.training) on toy models: the
standardiser against hand-computed statistics, the adapters against the bare modules, the lr
grid's choice and checkpoint files against a scripted loop, a resumed run against the
uninterrupted one (the real loop, a linear model), the timing against the module's own output.
< 5 s."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import eads
from eads._errors import DataError
from eads.bench.adapters import FlatFunction, ModeByGrad, Standardizer, TensorStateDict
from eads.bench.budget import Budget
from eads.bench.cells import Cell
from eads.bench.training import (
    BuiltModel,
    discard_partial,
    from_selection,
    partial_dir,
    save_predictions,
    time_inference,
    train_and_test,
    train_lr_grid,
    train_one,
)

CELL = Cell("toy", "set", "lin", {"resolution": 4}, seed=3)


def _splits(n=16, shape=(4,), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, *shape, generator=g)
    y = 0.5 * x + 0.1 * torch.randn(2 * n, *shape, generator=g)
    return x[:n], y[:n], x[n:], y[n:]


# ----------------------------------------------------------------------------- adapters


def test_standardizer_uses_the_pointwise_statistics_and_inverts():
    v = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0]])  # column 1 is constant
    s = Standardizer(v)
    np.testing.assert_allclose(s.mean, [2.0, 5.0, 3.0])
    np.testing.assert_allclose(s.std, [1.0, 1e-6, 1.0])  # population std, floored
    z = s.encode(v)
    assert z.dtype == torch.float32
    np.testing.assert_allclose(z.numpy(), [[-1.0, 0.0, -1.0], [1.0, 0.0, 1.0]])
    back = s.decode(z)
    assert back.dtype == np.float64
    np.testing.assert_allclose(back, v)


def test_flat_function_is_the_inner_model_on_the_flattened_grid():
    inner = nn.Linear(6, 6)
    flat = FlatFunction(inner, (2, 3))
    x = torch.randn(5, 2, 3)
    expected = inner(x.reshape(5, 6)).reshape(5, 2, 3)
    assert torch.equal(flat(x), expected)
    assert list(flat.state_dict()) == ["inner.weight", "inner.bias"]  # the checkpoints' keys


def test_mode_by_grad_uses_batch_statistics_only_while_training():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3)
    wrapped = ModeByGrad(bn)
    x = 2.0 + 3.0 * torch.randn(64, 3)
    out = wrapped(x)  # grad on: batch statistics (and a running-statistics update)
    assert torch.allclose(out.mean(0), torch.zeros(3), atol=1e-5)
    with torch.no_grad():
        evaluated = wrapped(x)
        bn.eval()
        expected = bn(x)  # the running statistics
    assert torch.equal(evaluated, expected) and not torch.allclose(evaluated, out)


def test_tensor_state_dict_drops_non_tensor_entries():
    class WithMetadata(nn.Linear):
        def state_dict(self, *args, **kwargs):
            sd = super().state_dict(*args, **kwargs)
            sd["_metadata_dict"] = {"name": "fno"}
            return sd

    plain = WithMetadata(2, 2)
    assert "_metadata_dict" in plain.state_dict()
    wrapped = TensorStateDict(plain)
    sd = wrapped.state_dict()
    assert set(sd) == {"inner.weight", "inner.bias"}
    x = torch.randn(3, 2)
    assert torch.equal(wrapped(x), plain(x))


# ----------------------------------------------------------------------------- training


class ScriptedFit:
    """A stand-in for eads.fit: records its calls and returns the next scripted best_val."""

    def __init__(self, best_vals, stop_reason="patience"):
        self.best_vals = list(best_vals)
        self.stop_reason = stop_reason
        self.calls = []

    def __call__(
        self, model, trainer, train, val, config, *, checkpoint, resume, progress, on_epoch=None
    ):
        self.calls.append(SimpleNamespace(**locals()))
        return SimpleNamespace(
            best_val=self.best_vals[len(self.calls) - 1],
            epochs_run=7,
            best_epoch=4,
            train_time_s=0.5,
            stop_reason=self.stop_reason,
            val_loss=[1.0],
        )


def _built():
    return BuiltModel(nn.Linear(4, 4), eads.Backprop(), {"width": 4})


def test_lr_grid_keeps_the_lowest_validation_loss_first_on_ties(tmp_path):
    budget = Budget(epochs=10, lr_grid=(1e-2, 1e-3, 3e-4, 1e-4), patience=2)
    fit = ScriptedFit([0.5, 0.2, 0.2, 0.3])
    built = []
    best, rows = train_lr_grid(
        lambda: built.append(_built()) or built[-1], _splits(), budget, 3, fit, tmp_path / "p"
    )
    assert best.lr == 1e-3 and best.module is built[1].module  # 0.2 first at 1e-3, not 3e-4
    assert len({id(b.module) for b in built}) == 4  # a fresh model per learning rate
    assert [r["lr"] for r in rows] == list(budget.lr_grid)
    assert [r["val_mse"] for r in rows] == [0.5, 0.2, 0.2, 0.3]
    assert rows[0] == {
        "lr": 1e-2, "val_mse": 0.5, "epochs": 7, "train_time_s": 0.5,
        "stopped_by": "early stopping",
    }  # fmt: skip
    # each run: the budget's TrainConfig at its lr and the cell's seed, its own checkpoint file
    for call, lr in zip(fit.calls, budget.lr_grid, strict=True):
        assert (call.config.lr, call.config.seed, call.config.epochs) == (lr, 3, 10)
        assert call.config.trainer == "backprop" and call.config.patience == 2
        assert call.checkpoint == tmp_path / "p" / f"lr{lr:g}.ckpt"
        assert call.resume is False and call.progress is False
    assert [c.checkpoint.name for c in fit.calls] == [
        "lr0.01.ckpt", "lr0.001.ckpt", "lr0.0003.ckpt", "lr0.0001.ckpt",
    ]  # fmt: skip
    rec = best.record()
    assert (rec["stopped_by"], rec["stop_reason"], rec["lr"], rec["val_mse"]) == (
        "early stopping", "patience", 1e-3, 0.2,
    )  # fmt: skip
    assert rec["n_parameters"] == 4 * 4 + 4 and rec["model_info"] == {"width": 4}


def test_a_flat_function_trains_its_inner_model_on_flat_splits(tmp_path):
    fit = ScriptedFit([1.0], stop_reason="epoch_cap")
    circuit = nn.Linear(6, 6)
    built = BuiltModel(FlatFunction(circuit, (2, 3)), eads.ECTrain())
    splits = _splits(shape=(2, 3))
    ckpt = tmp_path / "lr.ckpt"
    ckpt.write_bytes(b"")  # an existing checkpoint: the run resumes from it
    run = train_one(built, splits, Budget(epochs=3), 1e-3, 0, fit, ckpt)
    (call,) = fit.calls
    assert call.model is circuit and call.config.trainer == "ectrain" and call.resume is True
    assert call.train[0].shape == (16, 6) and call.val[1].shape == (16, 6)
    assert torch.equal(call.train[0], splits[0].reshape(16, 6))
    assert run.module is built.module and run.stopped_by == "epoch budget"


def test_a_resumed_run_ends_where_the_uninterrupted_one_does(tmp_path):
    """The real loop on a linear model: 2 epochs, then resumed to 4 from the checkpoint, gives
    the parameters of a straight 4-epoch run bit for bit (the oracle: that run)."""
    splits = _splits()
    short = Budget(epochs=2, lr_grid=(1e-2,), patience=0, batch_size=4)
    long = dataclasses.replace(short, epochs=4)

    def built():
        torch.manual_seed(0)
        return BuiltModel(nn.Linear(4, 4), eads.Backprop())

    ckpt = tmp_path / "partial" / "lr0.01.ckpt"
    assert train_one(built(), splits, short, 1e-2, 0, eads.fit, ckpt).history.epochs_run == 2
    resumed = train_one(built(), splits, long, 1e-2, 0, eads.fit, ckpt)
    straight = train_one(built(), splits, long, 1e-2, 0, eads.fit)
    assert resumed.history.epochs_run == 4 and resumed.history.val_loss == (
        straight.history.val_loss
    )
    for p, q in zip(resumed.module.parameters(), straight.module.parameters(), strict=True):
        assert torch.equal(p, q)
    short_only = train_one(built(), splits, short, 1e-2, 0, eads.fit)
    assert not torch.equal(short_only.module.weight, straight.module.weight)  # it moved on
    # the epoch log beside the checkpoint: one line per epoch, the resumed run continuing it
    lines = ckpt.with_suffix(".log").read_text().splitlines()
    assert [line.split()[1] for line in lines] == ["1/2", "2/2", "3/4", "4/4"]
    logged = [float(line.split()[5]) for line in lines]
    assert logged == pytest.approx(straight.history.val_loss, rel=1e-5)


def test_partial_checkpoints_live_under_the_cell_id_and_are_discarded(tmp_path):
    folder = partial_dir(tmp_path, CELL)
    assert folder == tmp_path / "partial" / CELL.id
    folder.mkdir(parents=True)
    (folder / "lr0.001.ckpt").write_bytes(b"x")
    discard_partial(tmp_path, CELL)
    assert not folder.exists() and (tmp_path / "partial").is_dir()
    discard_partial(tmp_path, CELL)  # nothing left to remove: no error


def test_train_and_test_runs_the_search_it_is_given_instead_of_the_grid(tmp_path):
    module = nn.Linear(4, 4)
    history = SimpleNamespace(best_val=0.1, epochs_run=3, best_epoch=2, train_time_s=1.0)
    selection = SimpleNamespace(
        payload=(module, history),
        best_trial=1,
        params={"lr": 2e-3, "duration": 1.0},
        table=lambda: [
            {"number": 0, "stop_reason": "wall_time", "score": 0.4},
            {"number": 1, "stop_reason": "patience", "score": 0.1},
            {"number": 2, "stop_reason": "pruned", "score": 0.3},
        ],
        summary=lambda trials: {"n_trials": 3, "with_trials": trials},
    )
    wrapped, folders = [], []

    def select(partial):
        folders.append(partial)  # where the search's trials keep their checkpoints
        return from_selection(selection, lambda m: wrapped.append(m) or m, {"n_hidden": 4})

    def no_grid():
        raise AssertionError("the lr grid ran beside the search")

    x_test = torch.randn(5, 4)
    record, out = train_and_test(
        CELL, tmp_path, no_grid, _splits(), x_test, Budget(epochs=3), ScriptedFit([]), select
    )
    assert wrapped == [module] and folders == [partial_dir(tmp_path, CELL)]
    with torch.no_grad():
        assert torch.equal(out, module(x_test))
    assert [t["stopped_by"] for t in record["candidates"]] == [
        "time budget", "early stopping", "pruned",
    ]  # fmt: skip
    assert record["selection"] == {"n_trials": 3, "with_trials": False}
    assert (record["lr"], record["stopped_by"], record["epochs"]) == (2e-3, "early stopping", 3)
    assert record["model_info"] == {"n_hidden": 4} and record["selection_time_s"] >= 0
    assert record["latency_s_per_sample"] > 0 and record["batch_time_s_per_sample"] > 0
    assert not (tmp_path / "partial").exists()


def test_train_and_test_without_a_search_trains_the_grid_with_checkpoints(tmp_path):
    fit = ScriptedFit([0.3, 0.1])
    budget = Budget(epochs=3, lr_grid=(1e-3, 1e-4))
    record, out = train_and_test(CELL, tmp_path, _built, _splits(), torch.randn(5, 4), budget, fit)
    assert [c.checkpoint.parent for c in fit.calls] == [partial_dir(tmp_path, CELL)] * 2
    assert record["lr"] == 1e-4 and record["selection"] is None and out.shape == (5, 4)
    assert [c["val_mse"] for c in record["candidates"]] == [0.3, 0.1]


# ----------------------------------------------------------------------------- timing, outputs


def test_time_inference_returns_the_modules_output_and_counts_its_calls():
    calls = []

    class Counted(nn.Linear):
        def forward(self, x):
            calls.append(len(x))
            assert not torch.is_grad_enabled()
            return super().forward(x)

    module = Counted(4, 2)
    x = torch.randn(30, 4)
    timed = time_inference(module, x, n_single=5)
    with torch.no_grad():
        assert torch.equal(timed.output, nn.functional.linear(x, module.weight, module.bias))
    assert calls == [1, 30] + [1] * 5  # warm-up, the batch, the singles
    assert timed.batch_s_per_sample > 0 and timed.latency_s_per_sample > 0
    calls.clear()
    time_inference(module, x[:3])  # fewer samples than n_single: each once
    assert calls == [1, 3, 1, 1, 1]


def test_save_predictions_writes_the_arrays_under_the_cell_id(tmp_path):
    x, pred = np.arange(6.0).reshape(2, 3), np.ones((2, 3), np.float32)
    rel = save_predictions(tmp_path, CELL, x=x, pred=pred)
    assert rel == f"predictions/{CELL.id}.npz"
    with np.load(tmp_path / rel) as f:
        assert sorted(f.files) == ["pred", "x"]
        assert np.array_equal(f["x"], x) and f["pred"].dtype == np.float32


def test_time_inference_refuses_an_empty_test_set_in_one_sentence():
    with pytest.raises(DataError, match=r"shape \(0, 2\)") as info:
        time_inference(nn.Linear(2, 2), torch.randn(0, 2))
    assert str(info.value).endswith(".") and ". " not in str(info.value)
