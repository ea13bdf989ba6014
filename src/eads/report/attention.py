"""The attention benchmark's table and plots (seed paper Table 3, Figure 6), from run directories
only.

:func:`rows_of` turns the cells' results into the per-layer rows (the original model first);
:func:`write_report` writes ``results.json``, ``results.csv`` (:data:`CSV_FIELDS`),
``table.txt`` (:func:`format_table`), ``results.md`` (:func:`format_markdown`, a kernel that a
cap stopped marked :data:`eads.bench.budget.CAP_MARK`), ``summary.json`` (the small file
committed under ``benchmarks/results/attention/``) and ``plots/``; :func:`summary_table` renders
a ``summary.json``. Nothing here trains.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from eads.bench.bootstrap import LEVEL, N_BOOT, paired_bootstrap
from eads.bench.budget import CAP_MARK, CAP_NOTE, STOP_LABELS, stop_mark
from eads.bench.tables import fmt, group_rows, markdown_table, write_csv, write_json, write_text

#: Display names, in table order (the suite's models, :mod:`eads.tasks.attention`, and the
#: original model).
MODEL_LABELS = {"original": "original", "eads": "EADS", "npgl": "NP-GL", "mean": "mean output"}


def _stopped_by(model: str, training: dict) -> str:
    """A kernel's stop label: the loop's reason where the cell recorded it."""
    if model == "mean":
        return "no training"
    reason = training.get("stop_reason")
    if not reason:
        reason = "patience" if training.get("stopped_early") else "epoch_cap"
    return STOP_LABELS.get(reason, reason)


CSV_FIELDS = (
    "layer", "model", "status", "perplexity", "ppl_ratio", "delta_perplexity", "token_perplexity",
    "accuracy", "delta_accuracy", "kernel_val_r2", "train_time_s", "epochs", "hw_train_time_s",
    "attention_ms_per_token", "sim_ms_per_token", "hw_us_per_token", "n_inputs", "n_train_pairs",
    "n_passages", "error",
)  # fmt: skip


def rows_of(results: list[dict]) -> list[dict]:
    """One row per cell: the original model first, then by layer and model."""
    orig = next(
        (r for r in results if r["cell"]["model"] == "original" and r.get("status") == "ok"), None
    )
    base = orig["lambada"] if orig else None
    rows = []
    for r in results:
        cell = r["cell"]
        row: dict[str, Any] = {
            "layer": cell["params"].get("layer"),
            "model": cell["model"],
            "status": r.get("status"),
            "error": r.get("error", ""),
        }
        if r.get("status") == "ok":
            lb = r["lambada"]
            row.update(
                perplexity=lb["perplexity"],
                token_perplexity=lb["token_perplexity"],
                accuracy=lb["accuracy"],
                n_passages=lb["n_passages"],
            )
            if base is not None:
                row.update(
                    ppl_ratio=lb["perplexity"] / base["perplexity"],
                    delta_perplexity=lb["perplexity"] - base["perplexity"],
                    delta_accuracy=lb["accuracy"] - base["accuracy"],
                )
            if cell["model"] != "original":
                tr, lat = r["training"], r["latency"]
                hw = tr.get("hardware", {})
                row.update(
                    stopped_by=_stopped_by(cell["model"], tr),
                    kernel_val_r2=tr.get("kernel_val_r2"),
                    train_time_s=tr.get("train_time_s"),
                    epochs=tr.get("epochs"),
                    hw_train_time_s=hw.get("train_time_s"),
                    attention_ms_per_token=1e3 * lat["attention_s_per_token"],
                    sim_ms_per_token=1e3 * lat["kernel_sim_s_per_token"],
                    hw_us_per_token=1e6 * hw["latency_s_per_token"] if hw else None,
                    n_inputs=tr.get("n_inputs"),
                    n_train_pairs=tr.get("n_train_pairs"),
                )
        rows.append(row)
    order = {"original": 0, "eads": 1, "npgl": 2, "mean": 3}
    rows.sort(key=lambda x: (x["layer"] is not None, x["layer"] or 0, order.get(x["model"], 9)))
    return rows


def _key(model: str, layer: int | None) -> str:
    return model if layer is None else f"{model}_{layer}"


def intervals_of(results: list[dict], *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Paired bootstrap 95 % intervals of every perplexity and perplexity difference.

    Every cell scored the same evaluation passages, in the same order, and kept each passage's
    last-word NLL; one set of ``n_boot`` passage resamples (:func:`eads.bench.bootstrap.
    paired_bootstrap`) serves every figure, so a difference's interval is the paired one.
    Figures (perplexity = ``exp(mean NLL)``):

    * ``cells[<model>_<layer>]``: ``ppl`` and ``dppl`` (minus the original's perplexity);
    * ``layers[<layer>]``: ``npgl_minus_eads``, ``eads_minus_mean``, ``npgl_minus_mean``
      (where both cells exist);
    * ``overall``: over the layers where EADS and NP-GL both ran, the mean ``dppl`` of each
      kernel and the mean ``npgl_minus_eads`` (the seed paper's "NP-GL about 1.49 points
      worse than EADS on average"), and the number of those layers.

    Cells with another passage count than the original's are left out (and listed in
    ``skipped``). Returns ``{}`` when the original's cell is missing.
    """
    ok = [r for r in results if r.get("status") == "ok" and r.get("lambada", {}).get("word_nll")]
    orig = next((r for r in ok if r["cell"]["model"] == "original"), None)
    if orig is None:
        return {}
    n = len(orig["lambada"]["word_nll"])
    rows, skipped = {"original": np.asarray(orig["lambada"]["word_nll"])}, []
    for r in ok:
        model, layer = r["cell"]["model"], r["cell"]["params"].get("layer")
        if model == "original":
            continue
        if len(r["lambada"]["word_nll"]) != n:
            skipped.append(_key(model, layer))
            continue
        rows[_key(model, layer)] = np.asarray(r["lambada"]["word_nll"])
    stats: dict = {}
    for key in rows:
        if key == "original":
            stats["original.ppl"] = lambda m: np.exp(m["original"])
            continue
        stats[f"{key}.ppl"] = lambda m, k=key: np.exp(m[k])
        stats[f"{key}.dppl"] = lambda m, k=key: np.exp(m[k]) - np.exp(m["original"])
    layers = sorted({int(k.rsplit("_", 1)[1]) for k in rows if k != "original"})
    pairs = (("npgl", "eads"), ("eads", "mean"), ("npgl", "mean"))
    for layer in layers:
        for a, b in pairs:
            ka, kb = _key(a, layer), _key(b, layer)
            if ka in rows and kb in rows:
                stats[f"L{layer}.{a}_minus_{b}"] = lambda m, x=ka, y=kb: np.exp(m[x]) - np.exp(m[y])
    both = [
        layer for layer in layers if _key("eads", layer) in rows and _key("npgl", layer) in rows
    ]
    if both:

        def avg(m, model):
            return sum(np.exp(m[_key(model, la)]) for la in both) / len(both) - np.exp(
                m["original"]
            )

        def median(m, fn):  # scalars (the point value) or (n_boot,) arrays (the resamples)
            return np.median(np.stack([fn(m, la) for la in both]), axis=0)

        def dppl(m, layer, model):
            return np.exp(m[_key(model, layer)]) - np.exp(m["original"])

        stats["overall.eads_dppl"] = lambda m: avg(m, "eads")
        stats["overall.npgl_dppl"] = lambda m: avg(m, "npgl")
        stats["overall.npgl_minus_eads"] = lambda m: avg(m, "npgl") - avg(m, "eads")
        stats["overall.eads_dppl_median"] = lambda m: median(m, lambda m, la: dppl(m, la, "eads"))
        stats["overall.npgl_dppl_median"] = lambda m: median(m, lambda m, la: dppl(m, la, "npgl"))
        stats["overall.npgl_minus_eads_median"] = lambda m: median(
            m, lambda m, la: dppl(m, la, "npgl") - dppl(m, la, "eads")
        )
    boot = paired_bootstrap(rows, stats, n_boot=n_boot, seed=seed)
    out: dict = {
        "n_passages": n, "n_boot": n_boot, "seed": seed, "level": LEVEL, "cells": {},
        "layers": {}, "overall": {"n_layers": len(both), "layers": both}, "skipped": skipped,
    }  # fmt: skip
    for name, value in boot.items():
        group, figure = name.split(".", 1)
        if group == "original":
            out["original"] = {figure: value}
        elif group == "overall":
            out["overall"][figure] = value
        elif group.startswith("L") and group[1:].isdigit():
            out["layers"].setdefault(group[1:], {})[figure] = value
        else:
            out["cells"].setdefault(group, {})[figure] = value
    if both:
        out["overall"]["signs"] = {
            "eads_dppl": _signs(out["cells"][_key("eads", la)]["dppl"] for la in both),
            "npgl_dppl": _signs(out["cells"][_key("npgl", la)]["dppl"] for la in both),
            "npgl_minus_eads": _signs(out["layers"][str(la)]["npgl_minus_eads"] for la in both),
        }
    return out


def _signs(records) -> dict[str, int]:
    """How many interval records lie wholly above 0, wholly below 0, or include 0."""
    records = list(records)
    above = sum(r["lo"] > 0 for r in records)
    below = sum(r["hi"] < 0 for r in records)
    return {"above": above, "below": below, "include_0": len(records) - above - below}


def _ci(d: dict | None, spec: str) -> str:
    """``"v [lo, hi]"`` of an interval record, or "-"."""
    if not d:
        return "-"
    return f"{fmt(d['value'], spec)} [{fmt(d['lo'], spec)}, {fmt(d['hi'], spec)}]"


def format_table(rows: list[dict]) -> str:
    """The text table ``run_benchmark`` returns (and writes to ``table.txt``)."""
    head = (
        f"{'layer':>5} {'model':<12} {'ppl':>9} {'x orig':>7} {'acc':>6} {'d acc':>7} "
        f"{'R2':>6} {'train s':>8} {'attn ms/t':>9} {'sim ms/t':>9} {'hw us/t':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        layer = "-" if r["layer"] is None else str(r["layer"])
        label = MODEL_LABELS.get(r["model"], r["model"])
        if r.get("status") != "ok":
            lines.append(f"{layer:>5} {label:<12} FAILED: {r.get('error', '')[:70]}")
            continue
        lines.append(
            f"{layer:>5} {label:<12} {fmt(r.get('perplexity'), '9.2f')} "
            f"{fmt(r.get('ppl_ratio'), '7.2f')} {fmt(r.get('accuracy'), '6.3f')} "
            f"{fmt(r.get('delta_accuracy'), '+7.3f')} {fmt(r.get('kernel_val_r2'), '6.3f')} "
            f"{fmt(r.get('train_time_s'), '8.1f')} "
            f"{fmt(r.get('attention_ms_per_token'), '9.3f')} "
            f"{fmt(r.get('sim_ms_per_token'), '9.3f')} {fmt(r.get('hw_us_per_token'), '8.3f')}"
        )
    lines += [
        "ppl: LAMBADA last-word perplexity on the evaluation passages; x orig: ratio to the "
        "original model; acc: last-word accuracy; R2: kernel fit on held-out training pairs.",
        "attn / sim ms/t: wall time per token of the original attention / the simulated kernel "
        "on this CPU; hw us/t: modeled EADS hardware latency per token (eads.hardware).",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Plots (read the run directory only)
# --------------------------------------------------------------------------------------------


def plot_results(run_dir: str | Path) -> list[Path]:
    """Draw ``plots/degradation.png`` and ``plots/cost.png`` from ``results.json``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    ok = [r for r in rows if r.get("status") == "ok"]
    orig = next((r for r in ok if r["model"] == "original"), None)
    models = [m for m in MODEL_LABELS if m != "original" and any(r["model"] == m for r in ok)]
    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    iv_path = run_dir / "intervals.json"
    cells_iv = json.loads(iv_path.read_text()).get("cells", {}) if iv_path.exists() else {}
    if models and orig is not None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        for m in models:
            rs = sorted((r for r in ok if r["model"] == m), key=lambda r: r["layer"])
            layers = [r["layer"] for r in rs]
            ivs = [cells_iv.get(_key(m, r["layer"]), {}).get("dppl") for r in rs]
            if all(ivs):  # the paired interval of the difference to the original
                d = np.array([v["value"] for v in ivs])
                yerr = [d - np.array([v["lo"] for v in ivs]), np.array([v["hi"] for v in ivs]) - d]
                axes[0].errorbar(layers, d, yerr=yerr, fmt="o-", ms=3, capsize=2,
                                 label=MODEL_LABELS[m])  # fmt: skip
            else:
                d = np.array([r["delta_perplexity"] for r in rs])
                axes[0].plot(layers, d, "o-", ms=3, label=MODEL_LABELS[m])
            axes[1].plot(layers, [r["accuracy"] for r in rs], "o-", ms=3, label=MODEL_LABELS[m])
        axes[0].axhline(0.0, color="k", lw=0.8, ls="--", label="original")
        axes[1].axhline(orig["accuracy"], color="k", lw=0.8, ls="--", label="original")
        axes[0].set_yscale("symlog", linthresh=2.0)
        axes[0].set_ylabel("perplexity - original (points)", fontsize=8)
        axes[1].set_ylabel("last-word accuracy", fontsize=8)
        axes[0].set_title(
            f"LAMBADA perplexity change, one layer replaced (original {orig['perplexity']:.1f};"
            "\nbars: paired bootstrap 95 %)",
            fontsize=9,
        )
        axes[1].set_title("LAMBADA last-word accuracy, one layer replaced", fontsize=9)
        for ax in axes:
            ax.set_xlabel("replaced layer", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "degradation.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    layer_rows = [r for r in ok if r["model"] == "eads"]
    if layer_rows:

        def mean(rs, key, scale=1.0):
            vals = [r[key] * scale for r in rs if r.get(key) is not None]
            return float(np.mean(vals)) if vals else math.nan

        npgl = [r for r in ok if r["model"] == "npgl"]
        lat_labels = ["attention\n(CPU)", "EADS sim\n(CPU)", "EADS\nmodeled hw"]
        lat = [
            mean(layer_rows, "attention_ms_per_token", 1e-3),
            mean(layer_rows, "sim_ms_per_token", 1e-3),
            mean(layer_rows, "hw_us_per_token", 1e-6),
        ]
        tr_labels = ["EADS sim\n(CPU)", "EADS\nmodeled hw"]
        tr = [mean(layer_rows, "train_time_s"), mean(layer_rows, "hw_train_time_s")]
        if npgl:
            lat_labels.append("NP-GL sim\n(CPU)")
            lat.append(mean(npgl, "sim_ms_per_token", 1e-3))
            tr_labels.append("NP-GL sim\n(CPU)")
            tr.append(mean(npgl, "train_time_s"))
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        axes[0].bar(range(len(tr)), tr, color="C0")
        axes[0].set_xticks(range(len(tr)), tr_labels, fontsize=7)
        axes[0].set_title("training time per layer kernel (s)", fontsize=9)
        axes[1].bar(range(len(lat)), lat, color="C1")
        axes[1].set_xticks(range(len(lat)), lat_labels, fontsize=7)
        axes[1].set_title("inference latency per token, one layer (s)", fontsize=9)
        for ax in axes:
            ax.set_yscale("log")
            ax.tick_params(labelsize=7)
        fig.tight_layout()
        path = out_dir / "cost.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def format_markdown(rows: list[dict], intervals: dict | None = None) -> str:
    """The per-layer table in Markdown; a kernel that a cap stopped is marked :data:`CAP_MARK`.

    With ``intervals`` (:func:`intervals_of`) the perplexity and its difference to the original
    carry their paired bootstrap 95 % intervals, and a second table compares the kernels per
    layer (NP-GL minus EADS, each minus the constant output) and on average.
    """
    cells = (intervals or {}).get("cells", {})
    body = []
    for r in rows:
        layer = "-" if r["layer"] is None else str(r["layer"])
        label = MODEL_LABELS.get(r["model"], r["model"])
        if r.get("status") != "ok":
            body.append([layer, label, "failed"] + [""] * (6 if intervals else 4))
            continue
        mark = CAP_MARK if r["model"] != "original" and stop_mark(r.get("stopped_by")) else ""
        ci = cells.get(_key(r["model"], r["layer"]), {})
        if r["model"] == "original" and intervals:
            ci = {"ppl": intervals.get("original", {}).get("ppl")}
        ppl = _ci(ci.get("ppl"), ".2f") if intervals else fmt(r.get("perplexity"), ".2f")
        row = [layer, label, ppl + mark]
        if intervals:
            row.append(_ci(ci.get("dppl"), "+.2f") if r["model"] != "original" else "-")
        row += [
            fmt(r.get("ppl_ratio"), ".2f"),
            fmt(r.get("accuracy"), ".3f"),
            fmt(r.get("kernel_val_r2"), ".3f"),
            fmt(r.get("train_time_s"), ".1f"),
        ]
        if intervals:
            row.append(r.get("stopped_by") or "-")
        body.append(row)
    head = ["layer", "model", "perplexity", "x original", "accuracy", "kernel R2", "train s"]
    align = "rlrrrrr"
    if intervals:
        head = head[:3] + ["d perplexity"] + head[3:] + ["stopped by"]
        align = "rlrrrrrrl"
    text = markdown_table(head, body, align=align) + "\n\n" + CAP_NOTE
    if intervals:
        text += "\n\n" + _comparison_markdown(intervals)
    return text


def _comparison_markdown(intervals: dict) -> str:
    """Per-layer and average kernel differences with their intervals (perplexity points)."""
    body = [
        [
            layer,
            _ci(v.get("npgl_minus_eads"), "+.2f"),
            _ci(v.get("eads_minus_mean"), "+.2f"),
            _ci(v.get("npgl_minus_mean"), "+.2f"),
        ]
        for layer, v in sorted(intervals["layers"].items(), key=lambda kv: int(kv[0]))
    ]
    o = intervals["overall"]
    if o.get("n_layers"):
        body.append([f"mean of {o['n_layers']} layers", _ci(o.get("npgl_minus_eads"), "+.2f"),
                     "-", "-"])  # fmt: skip
    head = ["layer", "NP-GL - EADS", "EADS - mean output", "NP-GL - mean output"]
    note = (
        f"Perplexity points, with paired bootstrap {100 * intervals['level']:.0f} % intervals "
        f"({intervals['n_boot']} resamples of the {intervals['n_passages']} evaluation passages, "
        "the same resamples for every kernel). A positive NP-GL - EADS: EADS is better."
    )
    if o.get("n_layers"):
        note += (
            f" Mean degradation over those layers: EADS {_ci(o.get('eads_dppl'), '+.2f')}, "
            f"NP-GL {_ci(o.get('npgl_dppl'), '+.2f')}."
        )
    if o.get("eads_dppl_median"):
        note += "\n\n" + _overall_markdown(o)
    return markdown_table(head, body, align="rrrr") + "\n\n" + note


def _overall_markdown(o: dict) -> str:
    """Mean and median over the layers, and how many layers' intervals lie above, below or
    across 0: the per-layer means are dominated by the few layers where a kernel fails, the
    medians and counts are not."""
    signs = o.get("signs", {})
    rows = [
        ("EADS - original", "eads_dppl"),
        ("NP-GL - original", "npgl_dppl"),
        ("NP-GL - EADS", "npgl_minus_eads"),
    ]
    body = []
    for label, key in rows:
        s = signs.get(key, {})
        counts = [s.get(k, "-") for k in ("above", "below", "include_0")]
        body.append([label, _ci(o.get(key), "+.2f"), _ci(o.get(f"{key}_median"), "+.2f"), *counts])
    head = ["over the layers", "mean", "median", "layers > 0", "layers < 0", "layers incl. 0"]
    return (
        markdown_table(head, body, align="lrrrrr")
        + f"\n\nOver the {o['n_layers']} layers where EADS and NP-GL both ran; a layer counts as"
        " > 0 or < 0 when its 95 % interval lies wholly on that side."
    )


def summary_table(summary: str | Path | dict[str, Any]) -> str:
    """The text table of a run's ``summary.json`` (a path or its parsed content)."""
    if not isinstance(summary, dict):
        summary = json.loads(Path(summary).read_text())
    return format_table(summary["rows"])


def _read_run(run_dir: Path) -> tuple[dict, list[dict]]:
    """An attention run's ``config.json`` and readable cell results; ConfigError if it is none."""
    from eads.bench.cells import load_results, read_run_config

    config = read_run_config(run_dir, "attention", "an attention")
    return config, [r for r in load_results(run_dir) if r["cell"].get("task") == "attention"]


def report_run(run_dir: str | Path, plots: bool = True) -> str:
    """Rebuild a run's tables, intervals and plots from its ``config.json`` and finished cells
    (a run in progress included: its finished layers only); nothing is trained or scored.
    ``eads bench attention-report``. Returns the text table.

    Raises:
        ConfigError: ``run_dir`` is not an attention benchmark run.
    """
    run_dir = Path(run_dir)
    config, results = _read_run(run_dir)
    return write_report(run_dir, results, config, wall_s=0.0, plots=plots)


def compare_runs(
    base_dir: str | Path, other_dir: str | Path, *, n_boot: int = N_BOOT, seed: int = 0
) -> str:
    """Markdown: each kernel (model x layer) finished in both runs, ``other - base`` perplexity
    with its paired bootstrap 95 % interval, and both held-out R2s and pair counts.

    For an ablation run on the same evaluation passages as a base run (``eads bench attention
    --window 8`` or ``--max-pairs 40000`` against the full run): every passage's NLL is paired
    across the two runs, so the interval is that of the paired difference. ``eads bench
    attention-compare``.

    Raises:
        ConfigError: either directory is not an attention run, or the two runs did not score
            the same evaluation passages (``config.json``'s ``split.eval_index``).
    """
    base_dir, other_dir = Path(base_dir), Path(other_dir)
    (cb, rb), (co, ro) = _read_run(base_dir), _read_run(other_dir)
    _same_passages([base_dir, other_dir], [cb, co])

    def kernels(results):
        return {
            (r["cell"]["model"], r["cell"]["params"]["layer"]): r
            for r in results
            if r.get("status") == "ok" and r["cell"]["model"] != "original"
        }

    kb, ko = kernels(rb), kernels(ro)
    both = sorted(set(kb) & set(ko), key=lambda k: (k[1], list(MODEL_LABELS).index(k[0])))
    rows = {}
    for m, la in both:
        rows[f"b_{m}_{la}"] = np.asarray(kb[m, la]["lambada"]["word_nll"])
        rows[f"o_{m}_{la}"] = np.asarray(ko[m, la]["lambada"]["word_nll"])
    stats = {
        f"{m}_{la}": (lambda mm, k=f"{m}_{la}": np.exp(mm[f"o_{k}"]) - np.exp(mm[f"b_{k}"]))
        for m, la in both
    }
    boot = paired_bootstrap(rows, stats, n_boot=n_boot, seed=seed) if both else {}
    body = []
    for m, la in both:
        b, o = kb[m, la], ko[m, la]
        body.append([
            la, MODEL_LABELS.get(m, m),
            fmt(b["lambada"]["perplexity"], ".2f"), fmt(o["lambada"]["perplexity"], ".2f"),
            _ci(boot[f"{m}_{la}"], "+.2f"),
            fmt(b["training"].get("kernel_val_r2"), ".3f"),
            fmt(o["training"].get("kernel_val_r2"), ".3f"),
            b["training"].get("n_train_pairs", "-"), o["training"].get("n_train_pairs", "-"),
            f"{b['window']} / {o['window']}" if "window" in b and "window" in o else "-",
        ])  # fmt: skip
    head = ["layer", "model", "base ppl", "other ppl", "other - base", "base R2", "other R2",
            "base pairs", "other pairs", "window"]  # fmt: skip
    note = (
        f"base: `{base_dir}`, other: `{other_dir}`; perplexity points, paired bootstrap "
        f"{100 * LEVEL:.0f} % intervals ({n_boot} resamples of the same evaluation passages)."
    )
    return markdown_table(head, body, align="rlrrrrrrrl") + "\n\n" + note


def _same_passages(dirs: list[Path], configs: list[dict]) -> None:
    """ConfigError unless every run scored the evaluation passages of the first."""
    from eads._errors import ConfigError

    first = configs[0].get("split", {}).get("eval_index")
    for d, c in zip(dirs[1:], configs[1:], strict=True):
        if c.get("split", {}).get("eval_index") != first:
            raise ConfigError(
                f"{str(d)!r} scored other evaluation passages than {str(dirs[0])!r}; "
                "a paired comparison needs the same passages (the same n_eval and split_seed)."
            )


def data_curve(run_dirs: list[str | Path], *, n_boot: int = N_BOOT, seed: int = 0) -> list[dict]:
    """How each kernel (model x layer) changes with its training pairs, over several runs that
    differ in ``--max-pairs`` / ``--n-train`` only: one row per kernel and run, for the kernels
    found in two runs or more, sorted by model, layer and pairs, with the held-out R2 and the
    perplexity change against the original model of the same run (paired bootstrap 95 %
    interval; :func:`intervals_of`). ``eads bench attention-data``.

    Raises:
        ConfigError: a directory is not an attention run, the runs scored other evaluation
            passages, or one model's kernels saw other windows in different runs (a window
            ablation is not a data curve).
    """
    from eads._errors import ConfigError

    dirs = [Path(d) for d in run_dirs]
    runs = [_read_run(d) for d in dirs]
    _same_passages(dirs, [c for c, _ in runs])
    rows = []
    for d, (_, results) in zip(dirs, runs, strict=True):
        cells = intervals_of(results, n_boot=n_boot, seed=seed).get("cells", {})
        for r in results:
            m = r["cell"]["model"]
            if r.get("status") != "ok" or m == "original":
                continue
            layer = r["cell"]["params"]["layer"]
            rows.append({
                "run": str(d), "model": m, "layer": layer, "window": r.get("window"),
                "pairs": r["training"].get("n_train_pairs"),
                "r2": r["training"].get("kernel_val_r2"),
                "dppl": cells.get(_key(m, layer), {}).get("dppl"),
            })  # fmt: skip
    for m in {r["model"] for r in rows}:
        windows = sorted({str(r["window"]) for r in rows if r["model"] == m})
        if len(windows) > 1:
            raise ConfigError(
                f"the runs' {MODEL_LABELS.get(m, m)} kernels saw windows of {', '.join(windows)} "
                "tokens; a data curve needs one window per model."
            )
    runs_of = group_rows(rows, lambda r: (r["model"], r["layer"]))
    rows = [r for r in rows if len(runs_of[r["model"], r["layer"]]) > 1]  # curves, not points
    order = list(MODEL_LABELS)
    return sorted(rows, key=lambda r: (order.index(r["model"]), r["layer"], r["pairs"] or 0))


def format_data_curve(rows: list[dict]) -> str:
    """Markdown of :func:`data_curve`: per kernel and pair count, R2, its gain over the previous
    count of the same kernel, and the perplexity change with its interval."""
    body, prev = [], {}
    for r in rows:
        k = (r["model"], r["layer"])
        gain = "-" if k not in prev or r["r2"] is None else f"{r['r2'] - prev[k]:+.3f}"
        prev[k] = r["r2"]
        body.append([
            r["layer"], MODEL_LABELS.get(r["model"], r["model"]), r["pairs"],
            fmt(r["r2"], ".3f"), gain, _ci(r["dppl"], "+.2f"),
        ])  # fmt: skip
    head = ["layer", "kernel", "training pairs", "held-out R2", "R2 gain", "ppl - original"]
    return markdown_table(head, body, align="rlrrrr") + (
        "\n\nR2 gain: over the next smaller pair count of the same kernel. ppl - original: "
        f"perplexity points against the original model of the same run, paired bootstrap "
        f"{100 * LEVEL:.0f} % interval."
    )


def plot_data_curve(rows: list[dict], path: str | Path) -> Path:
    """Held-out R2 (left) and perplexity change with its interval (right) against training
    pairs, one line per kernel, from :func:`data_curve` rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    layers = sorted({r["layer"] for r in rows})
    for (m, layer), group in group_rows(rows, lambda r: (r["model"], r["layer"])).items():
        x = np.array([r["pairs"] for r in group], dtype=float)
        style = dict(
            marker="o", ms=3, ls="-" if m == "eads" else "--", color=f"C{layers.index(layer)}"
        )
        label = f"{MODEL_LABELS.get(m, m)}, layer {layer}"
        axes[0].plot(x, [r["r2"] for r in group], label=label, **style)
        if all(r["dppl"] for r in group):
            d = np.array([r["dppl"]["value"] for r in group])
            lo, hi = (np.array([r["dppl"][k] for r in group]) for k in ("lo", "hi"))
            axes[1].errorbar(x, d, yerr=[d - lo, hi - d], capsize=2, label=label, **style)
    axes[1].axhline(0.0, color="k", lw=0.8, ls=":")
    axes[0].set_ylabel("kernel R2 on held-out pairs", fontsize=8)
    axes[1].set_ylabel("perplexity - original (points)", fontsize=8)
    axes[0].set_title("held-out R2 against training pairs", fontsize=9)
    axes[1].set_title("LAMBADA perplexity change (bars: paired bootstrap 95 %)", fontsize=9)
    ticks = sorted({r["pairs"] for r in rows})
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("training pairs (log scale)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6, ncol=2, loc="center right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_report(
    run_dir: str | Path, results: list[dict], config: dict, wall_s: float, plots: bool = True
) -> str:
    """Write the run's table files (module docstring) from ``results``; returns the text table."""
    run_dir = Path(run_dir)
    rows = rows_of(results)
    table = format_table(rows)
    write_json(run_dir / "results.json", {"rows": rows, "wall_s_this_call": wall_s})
    write_csv(run_dir / "results.csv", rows, CSV_FIELDS)
    write_text(run_dir / "table.txt", table)
    intervals = intervals_of(results)
    write_json(run_dir / "intervals.json", intervals)
    write_text(run_dir / "results.md", format_markdown(rows, intervals or None))
    summary_config = {k: v for k, v in config.items() if k != "split"}
    summary_config["split"] = {k: v for k, v in config["split"].items() if k != "train_index"}
    timings = {
        r["cell"]["model"] + ("" if r["cell"]["model"] == "original" else f"_{r.get('layer')}"): {
            "train_time_s": r.get("training", {}).get("train_time_s"),
            "eval_time_s": r.get("eval_time_s"),
            "hardware": r.get("training", {}).get("hardware"),
            "latency": r.get("latency"),
        }
        for r in results
        if r.get("status") == "ok"
    }
    write_json(
        run_dir / "summary.json",
        {
            "config": summary_config,
            "meta": json.loads((run_dir / "meta.json").read_text()),
            "rows": rows,
            "intervals": intervals,
            "timings": timings,
            "wall_s_this_call": wall_s,
        },
    )
    if plots:
        plot_results(run_dir)
    return table
