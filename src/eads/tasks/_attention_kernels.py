"""The machinery behind :mod:`eads.tasks.attention`: the run's shared context, the kernels, their
training, their modeled hardware cost and the timing of one layer's attention.

* :class:`RunContext` -- what every cell of a run shares: the LM, the passage split, the
  captured kernel pairs (a group of layers per pass) and LAMBADA scoring, resumed from the
  hidden states entering the replaced layer where the architecture allows it
  (:func:`lambada_record` is what a cell keeps of a score).
* :class:`StandardisedMap` / :class:`ConstantKernel` -- the vector maps a
  :class:`eads.baselines.lm.WindowedKernel` wraps: a trained circuit between the training pairs'
  standardisations, or the training mean of the output (the ``mean`` reference).
* :func:`fit_kernel` -- EADS by EC-Train or NP-GL by its conditional likelihood on the pairs of
  every passage but the validation ones, to patience (:class:`eads.bench.budget.Budget`), with
  the record a cell keeps (held-out R2, epochs, stop reason and, for EADS,
  :func:`hardware_cost`).
* :func:`attention_seconds_per_token` -- wall time per token of one layer's attention module.

It lives here, not in :mod:`eads.bench` (floor 1), because it trains circuits through
:mod:`eads.learn` and prices them through :mod:`eads.hardware`. Nothing here chooses sizes or
budgets: the suite passes its :class:`eads.tasks.attention.AttentionSettings` and constants.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from eads._errors import ConfigError
from eads.bench.budget import Budget
from eads.bench.training import epoch_log

if TYPE_CHECKING:
    from eads.tasks.attention import AttentionSettings

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# The shared context of a run: the model, the split, the captured pairs (lazy, cached)
# --------------------------------------------------------------------------------------------


class RunContext:
    """What every cell of one run shares; built lazily, so a finished rerun only loads the LM.

    Holds the LM (given, or loaded from ``source``), the passage split and the captured kernel
    pairs of every requested layer: a layer's first use captures it together with the next
    ``capture_group - 1`` requested layers above it, in one pass, replacing the group held
    before. Pickling (Ray) drops the caches unless the LM was passed in, so a worker rebuilds
    them.

    ``capture_dir``: where each captured layer is also written (``layer<L>.safetensors``, with
    what it was captured from), so a run killed and started again loads its group from disk
    instead of running the LM over the training passages again (43-60 CPU minutes per group
    of SmolLM2 at 160,000 pairs in the ``pairs160k`` cells, docs/attention.md). A file
    captured from other settings, passages or model, or one that does not read, is captured
    again. Moving on to a group drops the files
    of the layers below it: cells run layer by layer, so those are done (on Ray, a worker that
    still needs one captures it again). The caller removes the folder when the run is complete.
    """

    def __init__(
        self,
        source,
        lm,
        passages,
        layers,
        settings: AttentionSettings,
        *,
        max_positions: int,
        capture_group: int,
        capture_dir: Path | None = None,
    ):
        self.source, self.passages, self.layers, self.settings = source, passages, layers, settings
        self.max_positions, self.capture_group = max_positions, capture_group
        self.capture_dir = None if capture_dir is None else Path(capture_dir)
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
            todo = later[: self.capture_group]  # replaces the group held before
            self._captures = None
            key = self._capture_key()
            held = {la: c for la in todo if (c := _read_capture(self.capture_dir, la, key))}
            missing = [la for la in todo if la not in held]
            if missing:
                log.info("capturing layers %s on %d passages", missing, len(self.split.train))
                captured = capture_attention(
                    model,
                    tokenizer,
                    self.split.train,
                    missing,
                    max_tokens_per_layer=s.max_tokens_per_layer,
                    window=s.window,
                    max_positions=self.max_positions,
                    seed=s.seed,
                )
                for c in captured.values():
                    _write_capture(self.capture_dir, c, key)
                held.update(captured)
            _drop_captures_below(self.capture_dir, layer)
            self._captures = held
        return self._captures[layer]

    def _capture_key(self) -> dict:
        """What a layer's captured sample depends on (a file written under another key is
        captured again): the model, the training passages and the capture's settings."""
        s = self.settings
        texts = hashlib.sha1("\x00".join(self.split.train).encode()).hexdigest()
        return {
            "source": "given" if self._given_lm is not None else str(self.source),
            "train_passages_sha1": texts,
            "max_tokens_per_layer": s.max_tokens_per_layer,
            "window": s.window,
            "max_positions": self.max_positions,
            "seed": s.seed,
        }

    def score(self, layer: int | None = None, kernel=None):
        """LAMBADA figures on the evaluation passages with ``kernel`` in place of ``layer``'s
        attention (``None``: the original model). Llama-family models are resumed from the
        hidden states entering ``layer`` (:class:`eads.baselines.lm.LayerwiseLambada`, checked
        against a full forward at the first layer past 0 that a run scores: at layer 0 both
        paths start from the embeddings, so a check there proves nothing); others are scored
        from the tokens."""
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
                if not self._checked and layer > 0:
                    ev.check()
                    self._checked = True
            if kernel is not None:
                stack.enter_context(replace_attention(model, layer, kernel))
            if ev is not None:
                return ev.score()
            return lambada_perplexity(
                model, tokenizer, self.split.eval, batch_size=s.eval_batch_size
            )


def lambada_record(result) -> dict:
    """A cell's record of a :class:`eads.baselines.lm.LambadaResult`."""
    return {
        "perplexity": result.perplexity,
        "token_perplexity": result.token_perplexity,
        "accuracy": result.accuracy,
        "n_passages": result.n_passages,
        "n_target_tokens": result.n_target_tokens,
        # per passage, in evaluation order: paired comparisons between cells need them
        "word_nll": [round(v, 5) for v in result.word_nll],
    }


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


class ConstantKernel(nn.Module):
    """The ``mean`` reference kernel: the training mean of the kernel output for every token."""

    def __init__(self, y_mean: torch.Tensor):
        super().__init__()
        self.register_buffer("y_mean", y_mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.y_mean.expand(x.shape[0], -1)


def column_stats(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and sample std of ``a (n, F)``; a std at or below 1e-8 becomes 1."""
    mean, std = a.mean(0), a.std(0)
    return mean, torch.where(std > 1e-8, std, torch.ones_like(std))


def npgl_columns(window: int, d: int) -> torch.Tensor:
    """Columns of the current token ``u_t`` and of ``p_t`` in the ``window * d + 1`` features."""
    return torch.cat([torch.arange(d), torch.tensor([window * d])])


def _capture_path(folder: Path, layer: int) -> Path:
    return folder / f"layer{layer}.safetensors"


def _write_capture(folder: Path | None, capture, key: dict) -> None:
    """One layer's captured sample, atomically, with the key it was captured under."""
    if folder is None:
        return
    from eads.runs import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        "inputs": capture.inputs,
        "outputs": capture.outputs,
        "text_index": capture.text_index,
        "position": capture.position,
    }
    state = {
        "key": key,
        "layer": capture.layer,
        "window": capture.window,
        "tokens_seen": capture.tokens_seen,
    }
    save_checkpoint(_capture_path(folder, capture.layer), tensors, state)


def _read_capture(folder: Path | None, layer: int, key: dict):
    """The capture :func:`_write_capture` wrote for ``layer`` under ``key``; None when there is
    none, it was written under another key, or it does not read (it is captured again)."""
    path = None if folder is None else _capture_path(folder, layer)
    if path is None or not path.is_file():
        return None
    from eads._errors import CheckpointError
    from eads.baselines.lm import KernelCapture
    from eads.runs import load_checkpoint

    try:
        tensors, state = load_checkpoint(path)
    except CheckpointError as exc:
        log.warning("%s; capturing layer %d again", exc, layer)
        return None
    if state.get("key") != key or state.get("layer") != layer:
        log.info("%s was captured from other settings; capturing layer %d again", path, layer)
        return None
    log.info("layer %d's pairs read from %s", layer, path)
    return KernelCapture(
        layer=layer,
        inputs=tensors["inputs"],
        outputs=tensors["outputs"],
        text_index=tensors["text_index"],
        position=tensors["position"],
        window=state["window"],
        tokens_seen=int(state["tokens_seen"]),
    )


def _drop_captures_below(folder: Path | None, layer: int) -> None:
    """Remove the written captures of the layers below ``layer`` (their cells are done)."""
    if folder is None or not folder.is_dir():
        return
    for path in folder.glob("layer*.safetensors"):
        index = path.stem.removeprefix("layer")
        if index.isdigit() and int(index) < layer:
            path.unlink(missing_ok=True)


def train_val_rows(capture, nth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row masks: pairs of every ``nth`` training passage validate, the rest train."""
    val = capture.text_index % nth == nth - 1
    if not bool(val.any()) or bool(val.all()):  # too few passages: hold out the last tenth
        val = torch.zeros_like(val)
        val[-max(1, len(val) // 10) :] = True
    return ~val, val


def r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    """``1 - SSE / SST`` over all output coordinates (SST about each coordinate's mean)."""
    sst = float(((y - y.mean(0)) ** 2).sum())
    return 1.0 - float(((pred - y) ** 2).sum()) / sst if sst > 0 else math.nan


def fit_kernel(
    name: str, capture, s: AttentionSettings, checkpoint: Path | None = None
) -> tuple[nn.Module, dict]:
    """Train the vector map of kernel ``name`` (``eads``, ``npgl`` or ``mean``) on one layer's
    captured pairs; returns the standardised map and its training record.

    EADS sees all ``window * d + 1`` features (``s.hidden`` hidden nodes, EC-Train, ``s.epochs``
    and ``s.lr``); NP-GL the current token and the position (:func:`npgl_columns`,
    ``s.npgl_epochs``, ``s.npgl_lr``). Both train in z-units under
    ``Budget(patience=s.patience)`` with ``s.improvement_threshold``, seeded by ``s.seed``.

    ``checkpoint``: the training state written after every epoch and resumed from when the file
    exists (a cell killed mid-training continues where it stopped, to the same parameters as an
    unbroken run), with one line per epoch in ``checkpoint.with_suffix(".log")``
    (:func:`eads.bench.training.epoch_log`).
    """
    from eads.circuit import EADS, NPGL
    from eads.learn import ConditionalLikelihood, ECTrain, fit

    x_all, y_all = capture.inputs.float(), capture.outputs.float()  # (n, w*d+1), (n, d)
    d = y_all.shape[1]
    tr, va = train_val_rows(capture, s.val_every_nth_text)
    if name == "mean":
        y_mean = y_all[tr].mean(0)
        kernel = ConstantKernel(y_mean)
        pred = y_mean.expand_as(y_all[va])
        return kernel, {"train_time_s": 0.0, "epochs": 0, "kernel_val_r2": r2(pred, y_all[va])}
    columns = npgl_columns(s.window, d) if name == "npgl" else None
    x_sel = x_all[:, columns] if columns is not None else x_all
    x_mean, x_std = column_stats(x_sel[tr])
    y_mean, y_std = column_stats(y_all[tr])
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
    history = fit(
        model,
        trainer,
        (xz[tr], yz[tr]),
        (xz[va], yz[va]),
        config,
        progress=False,
        checkpoint=checkpoint,
        resume=checkpoint is not None and checkpoint.is_file(),
        on_epoch=epoch_log(checkpoint, epochs),
    )
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
        "kernel_val_r2": r2(pred, y_all[va]),
        "n_inputs": int(x_sel.shape[1]),
        "n_outputs": d,
        "n_train_pairs": int(tr.sum()),
        "n_val_pairs": int(va.sum()),
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    if name == "eads":
        record["hardware"] = hardware_cost(model, xz[tr][: s.hardware_probe], record, s.batch_size)
    return kernel, record


def hardware_cost(model, probe: torch.Tensor, record: dict, batch_size: int) -> dict:
    """Modeled EADS hardware (:class:`eads.hardware.CostModel`, paper power): one circuit
    inference per token, and the EC-Train run of ``record["epochs"]`` epochs over
    ``record["n_train_pairs"]`` pairs in batches of ``batch_size``, each epoch followed by
    ``record["n_val_pairs"]`` validation inferences. Stage times are simulated on ``probe``."""
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
        batch_size=batch_size,
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


def attention_seconds_per_token(
    model: nn.Module, tokenizer, texts: Sequence[str], layer: int, *, max_positions: int = 1024
):
    """Wall time per token of layer ``layer``'s attention module (whatever is installed).

    Each text runs alone (batch 1, no padding, its last ``max_positions`` tokens) through the
    base model, stopped right after the layer; hooks time the module's call. Returns
    ``(seconds per token, tokens timed)``. A wall-clock figure of this machine: compare it only
    with figures timed in the same process.
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
                ids = torch.as_tensor(_encode(tokenizer, text)[-max_positions:])[None]  # (1, S)
                try:
                    base(input_ids=ids, use_cache=False)
                except _Stop:
                    pass
                tokens += ids.shape[1]
    finally:
        for h in handles:
            h.remove()
    return spent[0] / max(tokens, 1), tokens


__all__ = [
    "ConstantKernel",
    "RunContext",
    "StandardisedMap",
    "attention_seconds_per_token",
    "column_stats",
    "fit_kernel",
    "hardware_cost",
    "lambada_record",
    "npgl_columns",
    "r2",
    "train_val_rows",
]
