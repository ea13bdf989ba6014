"""The spatio-temporal benchmark's table, relative claims and plots (seed paper Table 1, Figure 4),
from run directories only.

:func:`rows_of` turns the cells' results into table rows (:data:`CSV_FIELDS`, plus
:data:`PROTOCOL_FIELDS` for cells written under the convergence protocol: the train stride, the
windows used, the best epoch, the MAPE tolerance);
:func:`relative_claims` compares EADS with NP-GL and with the best other model;
:func:`write_report` writes ``results.json``, ``relative.json``, ``results.csv``, ``table.txt``
(:func:`format_table`), ``results.md`` (:func:`format_markdown`: ``mean +- std`` over seeds, a
cell that a cap stopped marked :data:`eads.bench.budget.CAP_MARK`) and ``plots/``
(:func:`plot_results`); :func:`report_run` rebuilds all of them from a run directory alone
(``eads bench spatiotemporal-report``). Cells of the earlier CPU-minute protocol (wall caps, no
stride) render as they did. Nothing here trains.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from eads.bench.budget import CAP_MARK, CAP_NOTE, stop_mark
from eads.bench.cells import load_results, read_run_config
from eads.bench.tables import (
    cpu_hours_table,
    fmt,
    fmt_mean_std,
    group_rows,
    markdown_table,
    write_csv,
    write_json,
    write_text,
)

#: The suite's models in table order (:mod:`eads.tasks.spatiotemporal` imports them from here).
MODEL_NAMES = (
    "eads",
    "npgl",
    "graph_wavenet",
    "mtgnn",
    "ddgcrn",
    "megacrn",
    "historical_average",
    "last_value",
)
MODEL_LABELS = {
    "eads": "EADS",
    "npgl": "NP-GL",
    "graph_wavenet": "Graph WaveNet",
    "mtgnn": "MTGNN",
    "ddgcrn": "DDGCRN",
    "megacrn": "MegaCRN",
    "historical_average": "HA",
    "last_value": "Last value",
}


CSV_FIELDS = (
    "dataset",
    "model",
    "seed",
    "status",
    "mae",
    "rmse",
    "mape",
    "mae_zeros_missing",
    "rmse_zeros_missing",
    "mape_zeros_missing",
    "conventions_differ",
    "train_time_s",
    "train_cost_s",
    "epochs",
    "updates",
    "stopped_by",
    "latency_ms_batch1",
    "latency_ms_batch64",
    "n_parameters",
    "n_test_windows",
    "device",
    "max_epochs",
    "max_train_s",
    "error",
)
#: Columns a cell of the convergence protocol adds (earlier cells have none of them).
PROTOCOL_FIELDS = (
    "stop_reason",
    "best_epoch",
    "train_stride",
    "n_train_windows",
    "n_train_windows_total",
    "n_test_windows_total",
    "mape_tolerance",
    "units",
)


def csv_fields(rows: list[dict]) -> tuple[str, ...]:
    """:data:`CSV_FIELDS`, then the :data:`PROTOCOL_FIELDS` that some row has."""
    return CSV_FIELDS + tuple(f for f in PROTOCOL_FIELDS if any(f in r for r in rows))


def _train_cost(result: dict) -> float:
    """Seconds of training the cell took in all: every trial of its validation search (the
    chosen run is one of them), or every lr of its grid (``training.train_cost_s``; cells
    written before it was recorded trained one lr, their ``train_time_s``)."""
    trials = (result.get("selection") or {}).get("trials")
    if trials:
        return float(sum(t.get("seconds") or 0.0 for t in trials))
    training = result["training"]
    return float(training.get("train_cost_s", training["train_time_s"]))


def _row(result: dict) -> dict:
    cell = result["cell"]
    row = {
        "dataset": cell["dataset"],
        "model": cell["model"],
        "seed": cell["seed"],
        "status": result.get("status"),
        "error": result.get("error", ""),
    }
    if result.get("status") != "ok":
        return row
    met = result["metrics"]
    obs, zm = met["observed"], met["zeros_as_missing"]
    tr = result["training"]
    budget = result.get("budget") or {}
    row.update(
        mae=obs["mae"],
        rmse=obs["rmse"],
        mape=obs["mape"],
        mae_per_step=obs["mae_per_step"],
        rmse_per_step=obs["rmse_per_step"],
        mape_per_step=obs["mape_per_step"],
        mae_zeros_missing=zm["mae"],
        rmse_zeros_missing=zm["rmse"],
        mape_zeros_missing=zm["mape"],
        mae_per_step_zeros_missing=zm["mae_per_step"],
        conventions_differ=met["conventions_differ"],
        train_time_s=tr["train_time_s"],
        train_cost_s=_train_cost(result),
        epochs=tr["epochs"],
        updates=tr["updates"],
        stopped_by=tr["stopped_by"],
        latency_ms_batch1=1e3 * result["latency_s_per_sample_batch1"],
        latency_ms_batch64=1e3 * result["latency_s_per_sample_batch64"],
        n_parameters=result["n_parameters"],
        n_test_windows=result["n_test_windows"],
        device=result["device"],
        # the earlier protocol's budget fields, or the core Budget's (None: no training)
        max_epochs=budget.get("max_epochs", budget.get("epochs", 0)),
        max_train_s=budget.get("max_train_s", budget.get("max_time_s")),
    )
    if "protocol" in result:  # a cell of the convergence protocol
        row.update(
            stop_reason=tr.get("stop_reason"),
            best_epoch=tr.get("best_epoch"),
            train_stride=result["protocol"]["train_stride"],
            n_train_windows=result.get("n_train_windows"),
            n_train_windows_total=result.get("n_train_windows_total"),
            n_test_windows_total=result.get("n_test_windows_total"),
            mape_tolerance=met.get("mape_tolerance"),
            units=met.get("units"),
        )
    return row


def _mean_by_model(rows: list[dict], key: str = "mae") -> dict[str, dict[str, float]]:
    """``{dataset: {model: mean over seeds of key}}`` over the finished rows."""
    acc: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get(key) is not None and math.isfinite(r[key]):
            acc.setdefault(r["dataset"], {}).setdefault(r["model"], []).append(r[key])
    return {d: {m: float(np.mean(v)) for m, v in ms.items()} for d, ms in acc.items()}


def relative_claims(rows: list[dict], key: str = "mae") -> list[dict]:
    """EADS against NP-GL and against the best other model, per data set, in percent ``key``.

    ``improvement_pct = 100 * (other - eads) / other``: positive when EADS has the lower error,
    negative when it has the higher. The best other model is the one with the lowest ``key``
    among all models except EADS (NP-GL and the simple references included); a data set without
    an EADS result is left out, and a missing NP-GL gives ``None``.
    """
    out = []
    for dataset, by_model in _mean_by_model(rows, key).items():
        if "eads" not in by_model:
            continue
        e = by_model["eads"]
        others = {m: v for m, v in by_model.items() if m != "eads"}
        entry = {
            "dataset": dataset,
            "metric": key,
            "eads": e,
            "npgl": others.get("npgl"),
            "vs_npgl_pct": None,
            "best_baseline": None,
            "best_baseline_value": None,
            "vs_best_baseline_pct": None,
        }
        if "npgl" in others and others["npgl"] > 0:
            entry["vs_npgl_pct"] = 100.0 * (others["npgl"] - e) / others["npgl"]
        if others:
            best = min(others, key=others.get)
            entry.update(best_baseline=best, best_baseline_value=others[best])
            if others[best] > 0:
                entry["vs_best_baseline_pct"] = 100.0 * (others[best] - e) / others[best]
        out.append(entry)
    return out


def format_table(rows: list[dict], claims: list[dict], skipped: dict[str, str]) -> str:
    """The text table ``run_benchmark`` returns (and writes to ``table.txt``)."""
    lines = []
    head = (
        f"{'dataset':<13} {'model':<14} {'MAE':>9} {'RMSE':>9} {'MAPE%':>8} {'MAE z0':>9} "
        f"{'train s':>8} {'epochs':>7} {'stop':<15} {'lat ms':>9}"
    )
    lines += [head, "-" * len(head)]
    for r in rows:
        label = MODEL_LABELS.get(r["model"], r["model"])
        if r.get("status") != "ok":
            lines.append(f"{r['dataset']:<13} {label:<14} FAILED: {r.get('error', '')[:60]}")
            continue
        z0 = fmt(r["mae_zeros_missing"], "9.3f") if r["conventions_differ"] else "="
        lines.append(
            f"{r['dataset']:<13} {label:<14} {fmt(r['mae'], '9.3f')} {fmt(r['rmse'], '9.3f')} "
            f"{fmt(r['mape'], '8.2f')} {z0:>9} {r['train_time_s']:8.1f} {r['epochs']:7.2f} "
            f"{r['stopped_by']:<15} {r['latency_ms_batch1']:9.3f}"
        )
    lines.append("MAE z0: MAE with true zeros counted as missing ('=' where it equals MAE).")
    lines.append("lat ms: inference wall time for one window (batch 1) on this CPU.")
    if claims:
        lines.append("")
        lines.append("EADS MAE vs NP-GL and vs the best other model (positive = EADS lower):")
        for c in claims:
            npgl = fmt(c["vs_npgl_pct"], "+.1f")
            best = MODEL_LABELS.get(c["best_baseline"], c["best_baseline"])
            lines.append(
                f"  {c['dataset']:<13} vs NP-GL {npgl:>7}%   vs best ({best}) "
                f"{fmt(c['vs_best_baseline_pct'], '+.1f'):>7}%"
            )
    for name, why in skipped.items():
        lines.append(f"skipped {name}: {why}")
    notes = protocol_notes(rows)
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def protocol_notes(rows: list[dict]) -> list[str]:
    """One line per data set of the convergence protocol's rows: the train stride and windows
    used, the test windows, and the MAPE tolerance with its unit (nothing for earlier rows)."""
    out = []
    for dataset, rs in group_rows(rows, lambda r: (r["dataset"],)).items():
        r = next((x for x in rs if x.get("train_stride") is not None), None)
        if r is None:
            continue
        out.append(
            f"{dataset[0]}: train stride {r['train_stride']} ({r['n_train_windows']} of "
            f"{r['n_train_windows_total']} training windows), {r['n_test_windows']} of "
            f"{r['n_test_windows_total']} test windows; MAPE treats |y| < "
            f"{r['mape_tolerance']:g} {r['units']} as zero."
        )
    return out


# --------------------------------------------------------------------------------------------
# Plots (read the run directory only)
# --------------------------------------------------------------------------------------------


def _learning_curve(training: dict) -> tuple[np.ndarray, np.ndarray, str]:
    """``(x, validation MAE, x label)`` of a cell's training record: by epoch for cells of the
    convergence protocol (their curve rows are ``[update, seconds, val_mae, epoch]``), by update
    for earlier ones (``[update, seconds, val_mae]``)."""
    curve = training.get("val_curve") or []
    if not curve:
        return np.empty(0), np.empty(0), "epoch"
    new = all(len(c) >= 4 for c in curve)
    x = np.asarray([c[3] if new else c[0] for c in curve], dtype=float)
    y = np.asarray([np.nan if c[2] is None else c[2] for c in curve], dtype=float)
    return x, y, "epoch" if new else "update"


def plot_results(run_dir: str | Path) -> list[Path]:
    """Draw ``plots/predictions_<dataset>.png``, ``plots/learning_<dataset>.png`` (validation
    MAE against epochs of each trained model, lowest seed, the best epoch marked, beside the
    validation MAE of HA and last value) and ``plots/cost.png`` from the cell results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    results = [r for r in load_results(run_dir) if r.get("status") == "ok"]
    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    datasets = list(dict.fromkeys(r["cell"]["dataset"] for r in results))
    show = ("eads", "npgl", "graph_wavenet", "last_value")
    for d in datasets:
        rs = {
            r["cell"]["model"]: r
            for r in results
            if r["cell"]["dataset"] == d
            and r["cell"]["seed"] == min(x["cell"]["seed"] for x in results)
        }
        if not rs:
            continue
        any_r = next(iter(rs.values()))
        nodes = any_r["plot"]["nodes"]
        fig, axes = plt.subplots(len(nodes), 1, figsize=(7, 1.8 * len(nodes)), sharex=True)
        axes = np.atleast_1d(axes)
        t = np.asarray(any_r["plot"]["start"]) + any_r["plot"]["history"]
        truth = np.asarray(any_r["plot"]["truth_first"], dtype=float)
        for j, node in enumerate(nodes):
            ax = axes[j]
            ax.plot(t, truth[:, j], color="k", lw=1.2, label="truth")
            for m in show:
                if m in rs:
                    ax.plot(
                        t,
                        np.asarray(rs[m]["plot"]["pred_first"])[:, j],
                        lw=0.9,
                        label=MODEL_LABELS[m],
                    )
            ax.set_ylabel(f"node {node}", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0].set_title(f"{d}: one-step-ahead forecasts on the test split", fontsize=9)
        axes[0].legend(fontsize=7, ncol=len(show) + 1, loc="upper right")
        axes[-1].set_xlabel("time step (series index)", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"predictions_{d}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
        curves = {m: _learning_curve(r["training"]) for m, r in rs.items()}
        curves = {m: c for m, c in curves.items() if len(c[0])}
        if curves:
            fig, ax = plt.subplots(figsize=(7, 3.2))
            for m in MODEL_NAMES:
                if m not in curves:
                    continue
                x, y, label = curves[m]
                (line,) = ax.plot(x, y, lw=1.0, label=MODEL_LABELS[m])
                if np.isfinite(y).any():
                    b = int(np.nanargmin(y))
                    ax.plot(x[b], y[b], "o", ms=4, color=line.get_color())
            for m, name in (("historical_average", "HA"), ("last_value", "Last value")):
                mae = rs[m]["training"].get("best_val_mae") if m in rs else None
                if mae is not None:  # the references' validation MAE (earlier cells: none)
                    ax.axhline(mae, ls=":", lw=0.8, color="k")
                    ax.annotate(
                        name,
                        (0.01, mae),
                        xycoords=("axes fraction", "data"),
                        fontsize=6,
                        va="bottom",
                    )
            ax.set_xlabel(label, fontsize=8)
            ax.set_ylabel("validation MAE", fontsize=8)
            ax.set_yscale("log")
            ax.tick_params(labelsize=7)
            ax.set_title(f"{d}: learning curves (dot: best validation state)", fontsize=9)
            ax.legend(fontsize=7, ncol=3)
            fig.tight_layout()
            path = out_dir / f"learning_{d}.png"
            fig.savefig(path, dpi=80)
            plt.close(fig)
            written.append(path)
    if results:
        models = [m for m in MODEL_NAMES if any(r["cell"]["model"] == m for r in results)]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        width = 0.8 / max(len(datasets), 1)
        for k, d in enumerate(datasets):
            tr, lat = [], []
            for m in models:
                rr = [r for r in results if r["cell"]["dataset"] == d and r["cell"]["model"] == m]
                tr.append(np.mean([r["training"]["train_time_s"] for r in rr]) if rr else np.nan)
                lat.append(
                    np.mean([1e3 * r["latency_s_per_sample_batch1"] for r in rr]) if rr else np.nan
                )
            xs = np.arange(len(models)) + k * width
            axes[0].bar(xs, np.maximum(tr, 1e-3), width, label=d)
            axes[1].bar(xs, lat, width, label=d)
        for ax, title in zip(
            axes, ("training wall time (s)", "inference latency, 1 window (ms)"), strict=True
        ):
            ax.set_yscale("log")
            ax.set_title(title, fontsize=9)
            ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2)
            ax.set_xticklabels(
                [MODEL_LABELS[m] for m in models], rotation=35, ha="right", fontsize=7
            )
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "cost.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def results_in_order(run_dir: str | Path) -> list[dict]:
    """The cells' results of ``run_dir`` in the run's order (data set, model, seed as listed in
    ``config.json``; cells of other names after them), corrupt files left out."""
    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    order = {
        k: {v: i for i, v in enumerate(cfg.get(k, []))} for k in ("datasets", "models", "seeds")
    }

    def key(r):
        c = r["cell"]
        return (
            order["datasets"].get(c["dataset"], 99),
            order["models"].get(c["model"], 99),
            order["seeds"].get(c["seed"], 99),
            r["id"],
        )

    return sorted(load_results(run_dir), key=key)


def rows_of(results: list[dict]) -> list[dict]:
    """The table rows of the cells' results (one per cell, in the given order)."""
    return [_row(r) for r in results]


def format_markdown(rows: list[dict]) -> str:
    """One line per data set x model: ``mean +- std`` over its finished seeds; a value some of
    whose seeds a cap stopped is marked :data:`CAP_MARK`; models that do not train never are."""
    groups = group_rows(rows, lambda r: (r["dataset"], r["model"]))
    body = []
    for (dataset, model), rs in groups.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        mark = CAP_MARK if any(stop_mark(r.get("stopped_by")) for r in ok) else ""
        body.append(
            [
                dataset,
                MODEL_LABELS.get(model, model),
                str(len(ok)),
                str(len(rs) - len(ok)),
                fmt_mean_std([r["mae"] for r in ok], ".3f") + mark,
                fmt_mean_std([r["rmse"] for r in ok], ".3f"),
                fmt_mean_std([r["mape"] for r in ok], ".2f"),
                fmt_mean_std([r["train_time_s"] for r in ok], ".1f"),
                fmt_mean_std([r["epochs"] for r in ok], ".1f"),
                _stop_counts(ok),
            ]
        )
    head = ["data set", "model", "seeds", "failed", "MAE", "RMSE", "MAPE %", "train s"]
    head += ["epochs", "stopped by"]
    table = markdown_table(head, body, align="llrrrrrrrl")
    notes = protocol_notes(rows)
    hours = cpu_hours_table(rows, lambda r: (r["dataset"],), ["data set"], MODEL_LABELS)
    return (
        table
        + "\n\n"
        + "mean \u00b1 std over seeds (sample std). "
        + CAP_NOTE
        + "".join(f"\n{n}" for n in notes)
        + "\n\n"
        + hours
    )


def _stop_counts(rows: list[dict]) -> str:
    """``"patience 2, epoch_cap 1"``: how many seeds each stop reason ended."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r.get("stopped_by"))] = counts.get(str(r.get("stopped_by")), 0) + 1
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def write_report(
    run_dir: str | Path,
    results: list[dict],
    skipped: dict[str, str],
    wall_s: float | None = None,
    plots: bool = True,
) -> str:
    """Write the run's table files (module docstring) from ``results``; returns the text table."""
    run_dir = Path(run_dir)
    rows = rows_of(results)
    claims = relative_claims(rows)
    table = format_table(rows, claims, skipped)
    write_json(
        run_dir / "results.json",
        {"rows": rows, "relative": claims, "skipped": skipped, "wall_s_this_call": wall_s},
    )
    write_json(run_dir / "relative.json", claims)
    write_csv(run_dir / "results.csv", rows, csv_fields(rows))
    write_text(run_dir / "table.txt", table)
    write_text(run_dir / "results.md", format_markdown(rows))
    if plots:
        plot_results(run_dir)
    return table


def report_run(run_dir: str | Path, plots: bool = True) -> Path:
    """Rebuild a run's tables (and plots) from its ``config.json`` and finished cells, a run in
    progress included; nothing is trained (``eads bench spatiotemporal-report``). The files are
    those the benchmark writes after each invocation (:func:`write_report`), so a rebuild of a
    run whose cells have not changed reproduces its ``results.md`` byte for byte. Returns the
    path of ``results.md``.

    Raises:
        ConfigError: ``run_dir`` holds no spatio-temporal ``config.json`` and ``cells/``.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir, "spatiotemporal", "a spatio-temporal")
    write_report(run_dir, results_in_order(run_dir), config.get("skipped", {}), plots=plots)
    return run_dir / "results.md"
