"""The attention suite's machinery (eads.tasks._attention_kernels) on synthetic captures.

Oracles: closed forms (R2 of exact and of mean predictions, standardisation undone), the
feature layout of :func:`eads.baselines.lm.causal_windows`, and hand-built row masks. The
tiny-LM pipeline tests are in test_attention_bench.py. < 5 s.
"""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from eads.baselines.lm import causal_windows
from eads.tasks import _attention_kernels as ak
from eads.tasks.attention import AttentionSettings


def _capture(n_texts: int = 20, per_text: int = 6, d: int = 3, window: int = 2, seed: int = 0):
    """A KernelCapture-like sample: windowed features of random inputs, ``y`` linear in them."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(n_texts, per_text, d, generator=gen)
    x = causal_windows(u, window).reshape(-1, window * d + 1)  # (n, w*d+1)
    w = torch.randn(window * d + 1, d, generator=gen)
    y = x @ w + 0.5  # (n, d)
    text_index = torch.arange(n_texts).repeat_interleave(per_text)
    return SimpleNamespace(inputs=x, outputs=y, text_index=text_index)


def test_r2_is_one_for_exact_and_zero_for_the_mean_prediction():
    y = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    assert ak.r2(y, y) == 1.0
    assert ak.r2(y.mean(0).expand_as(y), y) == pytest.approx(0.0, abs=1e-6)
    # SSE equal to SST: R2 = 0; twice SST: R2 = -1
    sst = float(((y - y.mean(0)) ** 2).sum())
    assert ak.r2(y + math.sqrt(2 * sst / y.numel()), y) == pytest.approx(-1.0, rel=1e-5)
    assert math.isnan(ak.r2(torch.zeros(3, 2), torch.ones(3, 2)))


def test_column_stats_keep_scale_one_for_a_constant_column():
    a = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    mean, std = ak.column_stats(a)
    assert torch.equal(mean, torch.tensor([3.0, 5.0]))
    assert torch.equal(std, torch.tensor([2.0, 1.0]))


def test_npgl_columns_select_the_current_token_and_the_position():
    u = torch.randn(1, 5, 3)
    f = causal_windows(u, 4)[0]  # (5, 4*3+1)
    cols = ak.npgl_columns(4, 3)
    t = torch.arange(5, dtype=u.dtype)
    expected = torch.cat([u[0], (torch.log1p(t) / math.log1p(1024))[:, None]], dim=1)
    assert torch.allclose(f[:, cols], expected)


def test_train_val_rows_hold_out_every_nth_passage():
    cap = SimpleNamespace(text_index=torch.tensor([0, 0, 1, 2, 2, 3, 4, 5]))
    tr, va = ak.train_val_rows(cap, 3)
    assert va.tolist() == [False, False, False, True, True, False, False, True]
    assert torch.equal(tr, ~va)
    # one passage only: no n-th passage exists, so the last tenth (at least one row) validates
    tr, va = ak.train_val_rows(SimpleNamespace(text_index=torch.zeros(20, dtype=torch.long)), 3)
    assert va.tolist() == [False] * 18 + [True] * 2


def test_mean_kernel_predicts_the_training_mean():
    cap = _capture()
    kernel, record = ak.fit_kernel("mean", cap, AttentionSettings(val_every_nth_text=4))
    tr, va = ak.train_val_rows(cap, 4)
    y_mean = cap.outputs[tr].mean(0)
    assert torch.allclose(kernel(cap.inputs[:7]), y_mean.expand(7, -1))
    assert record["epochs"] == 0
    assert record["kernel_val_r2"] == pytest.approx(ak.r2(y_mean.expand(int(va.sum()), -1),
                                                          cap.outputs[va]))  # fmt: skip


@pytest.mark.parametrize("name", ["eads", "npgl"])
def test_fitted_kernels_record_their_inputs_and_undo_the_standardisation(name):
    cap = _capture()
    s = AttentionSettings(window=2, hidden=4, epochs=2, npgl_epochs=2, hardware_probe=4)
    kernel, record = ak.fit_kernel(name, cap, s)
    d = cap.outputs.shape[1]
    assert record["n_inputs"] == (2 * d + 1 if name == "eads" else d + 1)
    tr, va = ak.train_val_rows(cap, s.val_every_nth_text)
    assert (record["n_train_pairs"], record["n_val_pairs"]) == (int(tr.sum()), int(va.sum()))
    assert 1 <= record["epochs"] <= 2 and math.isfinite(record["kernel_val_r2"])
    assert ("hardware" in record) == (name == "eads")
    if name == "eads":
        assert record["hardware"]["latency_s_per_token"] > 0
        assert record["hardware"]["train_time_s"] > 0
    with torch.no_grad():  # the map is the model between the training pairs' standardisations
        x = cap.inputs[:5]
        z = kernel.model(kernel.standardise(x))
        assert torch.allclose(kernel(x), z * kernel.y_std + kernel.y_mean)
        assert torch.allclose(kernel.y_mean, cap.outputs[tr].mean(0))


def test_fit_kernel_repeats_exactly_with_its_seed():
    cap = _capture()
    s = AttentionSettings(window=2, hidden=4, epochs=2, hardware_probe=4)
    a, ra = ak.fit_kernel("eads", cap, s)
    b, rb = ak.fit_kernel("eads", cap, s)
    with torch.no_grad():
        assert torch.equal(a(cap.inputs), b(cap.inputs))
    assert ra["kernel_val_r2"] == rb["kernel_val_r2"]


@pytest.mark.parametrize("name", ["eads", "npgl"])
def test_a_kernel_resumed_from_its_checkpoint_ends_where_an_unbroken_run_does(name, tmp_path):
    """Oracle: the same kernel trained 4 epochs in one go. Trained 2 epochs with a checkpoint,
    then resumed to 4 from it, it must give the same map bit for bit, with one log line an epoch."""
    cap = _capture()
    two = AttentionSettings(window=2, hidden=4, epochs=2, npgl_epochs=2, hardware_probe=4,
                            improvement_threshold=0.0)  # fmt: skip
    four = replace(two, epochs=4, npgl_epochs=4)
    ckpt = tmp_path / "partial" / "cell" / "kernel.ckpt"
    _, first = ak.fit_kernel(name, cap, two, ckpt)
    assert first["epochs"] == 2 and ckpt.is_file()
    resumed, record = ak.fit_kernel(name, cap, four, ckpt)
    straight, record_straight = ak.fit_kernel(name, cap, four)
    assert record["epochs"] == record_straight["epochs"] == 4
    with torch.no_grad():
        assert torch.equal(resumed(cap.inputs), straight(cap.inputs))
        assert not torch.equal(ak.fit_kernel(name, cap, two)[0](cap.inputs), straight(cap.inputs))
    lines = ckpt.with_suffix(".log").read_text().splitlines()
    assert [line.split()[1] for line in lines] == ["1/2", "2/2", "3/4", "4/4"]


def test_run_context_refuses_more_passages_than_there_are():
    from eads import ConfigError

    s = AttentionSettings(n_eval=3, n_train=4)
    ctx = ak.RunContext(None, None, ["a b"] * 6, [0], s, max_positions=1024, capture_group=5)
    with pytest.raises(ConfigError, match=r"n_eval=3 \+ n_train=4 exceeds the 6"):
        ctx.split  # noqa: B018


def test_run_context_pickles_without_its_caches_and_rebuilds_the_same_split():
    """Ray ships the context to its workers: the caches stay behind, the split is rebuilt."""
    import pickle

    s = AttentionSettings(n_eval=2, n_train=3, split_seed=4)
    passages = [f"passage {i} ends here" for i in range(8)]
    ctx = ak.RunContext(None, None, passages, [0], s, max_positions=1024, capture_group=5)
    split = ctx.split
    clone = pickle.loads(pickle.dumps(ctx))
    assert clone._split is None and clone._lm is None and clone._captures is None
    assert (clone.split.eval, clone.split.train) == (split.eval, split.train)
    assert (clone.max_positions, clone.capture_group) == (1024, 5)
