"""Shared test helpers: float64 oracles, seeded generators, one CPU thread.

The suite runs on 2 shared CPU cores; torch is pinned to one thread so that timings stay
predictable and seeded runs repeat bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

F64 = torch.float64


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``|a - b| / |b|`` in the Frobenius norm (float64)."""
    a, b = a.detach().to(F64), b.detach().to(F64)
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def max_rel_err(grads: dict, ref: dict, keys=None) -> float:
    """The worst relative error over a dict of gradients (default: every key of ``ref``)."""
    assert keys is not None or set(grads) == set(ref), (sorted(grads), sorted(ref))
    return max(rel_err(grads[k], ref[k]) for k in (keys or ref))


def fitted_order(steps, errors) -> float:
    """Slope of log(error) against log(dt) with dt proportional to 1 / steps."""
    dt = 1.0 / np.asarray(steps, dtype=float)
    return float(np.polyfit(np.log(dt), np.log(np.asarray(errors, dtype=float)), 1)[0])


@pytest.fixture
def gen():
    """A seeded torch generator (seed 1234)."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def rng():
    """A seeded numpy generator (seed 1234)."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


def shared_data_or_skip():
    """The shared real-data folder, or skip the test where this checkout has none beside it."""
    from eads._errors import DataError
    from eads.data.paths import shared_data_dir

    try:
        return shared_data_dir()
    except DataError as exc:
        pytest.skip(f"shared data folder not available: {exc}")


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``eads <args>`` in this process: ``(exit code, stdout, stderr)``."""
    import sys

    from eads import cli

    monkeypatch.setattr(sys, "argv", ["eads", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def word_tokenizer(words):
    """A whitespace word-level Hugging Face tokenizer over ``words`` (``[UNK]``, ``[PAD]`` among
    them), built in memory: the language-model tests need no downloaded vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def tiny_llama(vocab_size: int, n_layers: int = 2, *, tied: bool = True):
    """A randomly initialised Llama (SmolLM2's architecture at toy size: hidden 32, 2 query and
    1 key-value head), seeded 0, in eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config).eval()
