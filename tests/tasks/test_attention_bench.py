"""The attention-kernel benchmark pipeline (eads.tasks.attention) on a tiny random Llama model.

CI needs no model wheel: the test builds a randomly initialised Llama-architecture model (2
layers, hidden 32; SmolLM2's architecture at toy size) and a word-level tokenizer in memory, and
passes them to ``run_benchmark(lm=...)`` with synthetic LAMBADA-style passages.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("transformers", reason="the llm extra (pip install eads[llm]) is missing")
pytest.importorskip("tokenizers", reason="the llm extra (pip install eads[llm]) is missing")
pytest.importorskip("matplotlib", reason="matplotlib draws the benchmark's plots")


from conftest import tiny_llama, word_tokenizer  # noqa: E402

from eads import ConfigError  # noqa: E402
from eads.baselines.lm import LoadedLM  # noqa: E402
from eads.tasks import attention as at  # noqa: E402

WORDS = [
    "[UNK]", "[PAD]", "the", "cat", "sat", "on", "mat", "dog", "ran", "to", "a", "big", "red",
    "house", "and", "then", "it", "was", "end", ".", ",", "she", "said", "he", "saw", "bird",
]  # fmt: skip


def _tiny_lm() -> LoadedLM:
    return LoadedLM(tiny_llama(len(WORDS)), word_tokenizer(WORDS))


def _passages(n: int = 40) -> list[str]:
    gen = torch.Generator().manual_seed(1)
    words = WORDS[2:]
    out = []
    for _ in range(n):
        k = int(torch.randint(8, 20, (1,), generator=gen))
        idx = torch.randint(len(words), (k,), generator=gen).tolist()
        out.append(" ".join(words[i] for i in idx))
    return out


TINY = dict(n_eval=6, n_train=24, max_tokens_per_layer=300, epochs=2, npgl_epochs=2, hidden=16)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("bench") / "run"
    lm, passages = _tiny_lm(), _passages()
    table = at.run_benchmark(run_dir, quick=True, lm=lm, passages=passages, progress=False, **TINY)
    return run_dir, table, lm, passages


def test_quick_run_writes_the_table_with_the_original_row(quick_run):
    run_dir, table, _, _ = quick_run
    assert not (run_dir / "partial" / "captures").exists()  # removed once the run is complete
    for name in ("config.json", "meta.json", "results.json", "results.csv", "summary.json",
                 "table.txt", "plots/degradation.png", "plots/cost.png"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert [(r["layer"], r["model"]) for r in rows] == [
        (None, "original"), (0, "eads"), (0, "npgl"), (1, "eads"), (1, "npgl"),
    ]  # fmt: skip
    assert all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows]
    orig = rows[0]
    assert orig["ppl_ratio"] == pytest.approx(1.0) and orig["delta_accuracy"] == 0
    for r in rows:
        assert math.isfinite(r["perplexity"]) and r["perplexity"] > 1
        assert 0 <= r["accuracy"] <= 1
        assert r["ppl_ratio"] == pytest.approx(r["perplexity"] / orig["perplexity"])
    for r in rows[1:]:
        assert r["train_time_s"] > 0 and r["sim_ms_per_token"] > 0
        assert r["attention_ms_per_token"] > 0
    eads_rows = [r for r in rows if r["model"] == "eads"]
    assert all(r["hw_us_per_token"] > 0 and r["hw_train_time_s"] > 0 for r in eads_rows)
    assert eads_rows[0]["n_inputs"] == at.WINDOW * 32 + 1
    assert [r for r in rows if r["model"] == "npgl"][0]["n_inputs"] == 32 + 1
    assert "original" in table and "EADS" in table and "NP-GL" in table
    config = json.loads((run_dir / "config.json").read_text())
    split = config["split"]
    assert not set(split["eval_index"]) & set(split["train_index"])
    assert (split["n_eval"], split["n_train"]) == (6, 24)


def test_the_cell_files_are_the_cells_config_json_plans(quick_run):
    """A rerun rebuilds its cells from what it writes to config.json (at.plan_cells), so the
    cells a run wrote must be exactly those its config plans."""
    run_dir = quick_run[0]
    config = json.loads((run_dir / "config.json").read_text())
    planned = {c.id for c in at.plan_cells(config)}
    assert {p.stem for p in (run_dir / "cells").glob("*.json")} == planned
    assert len(planned) == 5


def test_original_row_matches_the_unreplaced_model(quick_run):
    from eads.baselines.lm import lambada_perplexity, split_passages

    run_dir, _, lm, passages = quick_run
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    split = split_passages(passages, n_eval=6, n_train=24, seed=0)
    res = lambada_perplexity(lm.model, lm.tokenizer, split.eval)
    assert rows[0]["perplexity"] == pytest.approx(res.perplexity, rel=1e-5)


def test_finished_cells_leave_no_checkpoints_behind(quick_run):
    run_dir = quick_run[0]
    assert list((run_dir / "cells").glob("*eads*.json"))  # an EADS kernel cell did finish
    assert not list(run_dir.glob("partial/*/kernel.ckpt"))


def test_rerun_skips_finished_cells(quick_run):
    run_dir, table, lm, passages = quick_run
    stamps = {p.name: p.stat().st_mtime_ns for p in (run_dir / "cells").glob("*.json")}
    again = at.run_benchmark(run_dir, quick=True, lm=lm, passages=passages, progress=False, **TINY)
    assert again == table
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "cells").glob("*.json")} == stamps


def test_bad_layer_index_is_a_one_sentence_error(tmp_path):
    lm = _tiny_lm()
    for bad in ("2", "0,-1", "x"):
        with pytest.raises(ConfigError, match=r"layer"):
            at.run_benchmark(tmp_path / "r", lm=lm, passages=_passages(), layers=bad, **TINY)
    with pytest.raises(ConfigError, match=r"2 attention layers.*0\.\.1"):
        at.run_benchmark(tmp_path / "r", lm=lm, passages=_passages(), layers=[5], **TINY)
    assert not (tmp_path / "r").exists()


def test_bad_checkpoint_dir_and_settings_are_one_sentence_errors(tmp_path):
    from eads import DataError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no causal language model"):
        at.run_benchmark(tmp_path / "r", checkpoint=tmp_path / "empty")
    with pytest.raises(ConfigError, match="Unknown settings"):
        at.run_benchmark(tmp_path / "r", lm=_tiny_lm(), passages=_passages(), n_evals=3)
    with pytest.raises(ConfigError, match="unknown models"):
        at.run_benchmark(tmp_path / "r", lm=_tiny_lm(), passages=_passages(), models="gpt")


def test_standardised_map_undoes_the_scaling():
    model = torch.nn.Identity()
    xm, xs = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0])
    ym, ys = torch.tensor([10.0, -1.0]), torch.tensor([3.0, 0.5])
    f = at.StandardisedMap(model, xm, xs, ym, ys)
    x = torch.tensor([[3.0, 6.0]])
    assert torch.allclose(f(x), torch.tensor([[13.0, -0.5]]))


def test_layer_resumed_scores_equal_full_forwards_and_intervals_are_written(
    quick_run, tmp_path, monkeypatch
):
    """The run resumes each layer from its hidden states (LayerwiseLambada); the same run with
    that path switched off scores every passage from the tokens: the NLLs must agree."""
    import eads.baselines.lm as lm_mod

    run_dir, _, lm, passages = quick_run
    monkeypatch.setattr(lm_mod, "layerwise_supported", lambda model: False)
    full_dir = tmp_path / "full"
    at.run_benchmark(full_dir, quick=True, lm=lm, passages=passages, progress=False, **TINY)

    def nll(d):
        out = {}
        for p in (d / "cells").glob("*.json"):
            r = json.loads(p.read_text())
            out[(r["cell"]["model"], r["cell"]["params"].get("layer"))] = r["lambada"]["word_nll"]
        return out

    resumed, full = nll(run_dir), nll(full_dir)
    assert resumed.keys() == full.keys() and len(resumed) == 5
    for key in resumed:
        assert resumed[key] == pytest.approx(full[key], abs=2e-4), key
    cells = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    assert all(c["cpu_time_s"] > 0 for c in cells)
    iv = json.loads((run_dir / "intervals.json").read_text())
    assert iv["n_passages"] == 6 and set(iv["layers"]) == {"0", "1"}
    for key, figures in iv["cells"].items():
        row = next(r for r in cells if f"{r['cell']['model']}_{r.get('layer')}" == key)
        ppl = math.exp(sum(row["lambada"]["word_nll"]) / 6)
        assert figures["ppl"]["lo"] <= figures["ppl"]["value"] <= figures["ppl"]["hi"]
        assert figures["ppl"]["value"] == pytest.approx(ppl, rel=1e-4)
    assert iv["overall"]["n_layers"] == 2
    assert "NP-GL - EADS" in (run_dir / "results.md").read_text()


def test_captured_pairs_are_read_back_from_disk_after_a_kill(tmp_path, monkeypatch):
    """A restarted run loads its layer group from ``capture_dir`` instead of running the LM
    again; the oracle is the capture itself (the same tensors), and a file captured under other
    settings, or corrupt, is captured again."""
    import dataclasses

    import eads.baselines.lm as lm_module
    from eads.tasks import _attention_kernels as ak

    real, calls = lm_module.capture_attention, []

    def counting(*args, **kwargs):
        calls.append(list(args[3]))  # the layers captured in this pass
        return real(*args, **kwargs)

    monkeypatch.setattr(lm_module, "capture_attention", counting)
    lm, passages, folder = _tiny_lm(), _passages(), tmp_path / "captures"
    s = at.AttentionSettings(**TINY)

    def context(settings=s, group=1):
        return ak.RunContext(None, lm, passages, [0, 1], settings, max_positions=1024,
                             capture_group=group, capture_dir=folder)  # fmt: skip

    first = context().capture(0)
    assert calls == [[0]] and (folder / "layer0.safetensors").is_file()
    again = context().capture(0)  # a restarted run: read, not captured
    assert calls == [[0]]
    for name in ("inputs", "outputs", "text_index", "position"):
        assert torch.equal(getattr(again, name), getattr(first, name)), name
    assert (again.window, again.tokens_seen) == (first.window, first.tokens_seen)
    other = dataclasses.replace(s, max_tokens_per_layer=200)
    assert context(other).capture(0).inputs.shape[0] == 200 and calls[-1] == [0]
    (folder / "layer0.safetensors").write_bytes(b"not a capture")
    assert torch.equal(context().capture(0).inputs, first.inputs) and len(calls) == 3
    ctx = context(group=2)  # the next group drops the files of the layers below it
    ctx.capture(1)
    assert calls[-1] == [1] and not (folder / "layer0.safetensors").exists()
    together = ak.RunContext(None, lm, passages, [0, 1], s, max_positions=1024, capture_group=2)
    assert torch.equal(together.capture(0).inputs, first.inputs)  # grouping changes no sample
    assert torch.equal(together.capture(1).inputs, ctx.capture(1).inputs)
