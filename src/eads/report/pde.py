"""The PDE benchmark's table and plots (seed paper Table 2, Figure 5), from run directories only.

The rows come from the cells a run wrote (``cells/<id>.json``, read through
:func:`eads.bench.cells.load_results`, which leaves corrupt files out with a warning); nothing
here trains. :func:`write_report` writes ``results.csv`` / ``results.json`` (one row per cell,
:data:`COLUMNS`), ``results.md`` (one row per data set x resolution x model: ``mean +- std``
over the seeds, a cell that a cap stopped marked :data:`eads.bench.budget.CAP_MARK`) and
``plots/``; :func:`format_table` is the plain-text table ``eads bench pde`` prints;
:func:`plot_runs` draws several runs together (``eads bench pde-plots``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eads._errors import ConfigError
from eads.bench.budget import CAP_MARK, CAP_NOTE, stop_mark
from eads.bench.cells import Cell, load_results, read_run_config
from eads.bench.tables import (
    cpu_hours_table,
    fmt_mean_std,
    group_rows,
    markdown_table,
    mean_std,
    write_csv,
    write_json,
    write_text,
)

log = logging.getLogger(__name__)

#: The PDE suite's models in table order (:mod:`eads.tasks.pde` imports them from here).
MODELS: tuple[str, ...] = ("eads", "eads_backprop", "npgl", "nn", "fcn", "gno", "fno")

COLUMNS = (
    "dataset",
    "resolution",
    "model",
    "seed",
    "status",
    "test_mae",
    "test_rel_l2",
    "train_time_s",
    "selection_time_s",
    "train_cost_s",
    "latency_s_per_sample",
    "batch_time_s_per_sample",
    "epochs",
    "stopped_by",
    "lr",
    "n_parameters",
    "device",
)


def _read_cells(run_dir: Path, cells: list[Cell] | None) -> list[dict]:
    return load_results(run_dir, cells)


def _row(r: dict) -> dict:
    """A table row from a cell's result."""
    row = {k: r.get(k) for k in COLUMNS}
    row.update(
        dataset=r["cell"]["dataset"],
        model=r["cell"]["model"],
        seed=r["cell"].get("seed", 0),
        resolution=r["cell"]["params"]["resolution"],
        status=r["status"],
    )
    if r["status"] != "ok":
        row["error"] = r.get("error")
    else:
        row["train_cost_s"] = _train_cost(r)
    return row


def _train_cost(r: dict) -> float:
    """Seconds of training the cell took in all: every candidate (learning rate or search trial)
    its selection trained, the chosen one included. Each candidate's time counts its epochs
    before a restart too, which ``selection_time_s`` (this process's wall time) does not."""
    candidates = r.get("candidates") or []
    if not candidates:
        return float(r["train_time_s"])
    return float(sum(c.get("train_time_s", c.get("seconds")) or 0.0 for c in candidates))


def _sort_rows(rows: list[dict]) -> list[dict]:
    order = {m: i for i, m in enumerate(MODELS)}
    return sorted(
        rows,
        key=lambda r: (r["dataset"], r["resolution"], order.get(r["model"], 99), r.get("seed", 0)),
    )


def listed_cells(run_dir: str | Path) -> list[Cell] | None:
    """The cells ``run_dir/config.json`` lists (the whole run), or None without a config."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return None
    return [Cell(**c) for c in json.loads(path.read_text())["cells"]]


def write_report(run_dir: str | Path, cells: list[Cell] | None = None, plots: bool = True):
    """Write ``results.csv``/``results.json``/``results.md`` (and ``plots/``) from the cells of
    ``run_dir`` (``cells``: default every cell its ``config.json`` lists); returns the rows."""
    run_dir = Path(run_dir)
    if cells is None:
        cells = listed_cells(run_dir)
    rows = _sort_rows([_row(r) for r in _read_cells(run_dir, cells)])
    write_json(run_dir / "results.json", {"columns": list(COLUMNS), "rows": rows})
    write_csv(run_dir / "results.csv", rows, COLUMNS)
    write_text(run_dir / "results.md", format_markdown(rows))
    if plots:
        plot_results(run_dir)
    return rows


def report_run(run_dir: str | Path, plots: bool = True) -> Path:
    """Rebuild a run's tables (and plots) from its finished cells, a run in progress included;
    nothing is trained (``eads bench pde-report``). Returns the path of ``results.md``.

    The cells are those ``config.json`` lists, or, for an older run whose config lists none,
    every PDE cell file in ``cells/``.

    Raises:
        ConfigError: ``run_dir`` holds no PDE ``config.json`` and ``cells/``.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir, "pde", "a PDE")
    if "cells" in config:
        cells = listed_cells(run_dir)
    else:
        cells = [Cell(**r["cell"]) for r in load_results(run_dir) if r["cell"].get("task") == "pde"]
    write_report(run_dir, cells, plots=plots)
    return run_dir / "results.md"


def format_markdown(rows: list[dict]) -> str:
    """One line per data set x resolution x model: ``mean +- std`` over its finished seeds.

    A value is marked :data:`CAP_MARK` when any of its seeds was stopped by a cap rather than by
    validation patience (the footnote says so); failed seeds are counted in their own column.
    """
    groups = group_rows(rows, lambda r: (r["dataset"], r["resolution"], r["model"]))
    body = []
    for (dataset, res, model), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        mark = CAP_MARK if any(stop_mark(r.get("stopped_by")) for r in ok) else ""
        body.append(
            [
                dataset,
                str(res),
                model,
                str(len(ok)),
                str(len(rs) - len(ok)),
                fmt_mean_std([r["test_mae"] for r in ok], ".3e"),
                fmt_mean_std([r["test_rel_l2"] for r in ok], ".4f") + mark,
                fmt_mean_std([r["epochs"] for r in ok], ".0f"),
                fmt_mean_std([r["train_time_s"] for r in ok], ".1f"),
            ]
        )
    head = ["data set", "res", "model", "seeds", "failed", "MAE", "rel L2", "epochs", "train s"]
    table = markdown_table(head, body, align="lrlrrrrrr")
    hours = cpu_hours_table(
        rows, lambda r: (r["dataset"], str(r["resolution"])), ["data set", "res"]
    )
    return table + "\n\n" + "mean \u00b1 std over seeds (sample std). " + CAP_NOTE + "\n\n" + hours


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the results, one line per cell (with a seed column when the rows
    hold any seed but 0)."""
    seeds = any(r.get("seed", 0) for r in rows)
    model_w = 18 if seeds else 14

    def name(r):
        return f"{r['model']} s{r.get('seed', 0)}" if seeds else r["model"]

    head = (
        f"{'dataset':8} {'res':>5} {'model':{model_w}} {'MAE':>10} {'rel L2':>9} {'train s':>8} "
        f"{'latency ms':>10} {'epochs':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(
                f"{r['dataset']:8} {r['resolution']:>5} {name(r):{model_w}} "
                f"FAILED: {r.get('error')}"
            )
            continue
        lines.append(
            f"{r['dataset']:8} {r['resolution']:>5} {name(r):{model_w}} {r['test_mae']:10.3e} "
            f"{r['test_rel_l2']:9.4f} {r['train_time_s']:8.1f} "
            f"{1e3 * r['latency_s_per_sample']:10.3f} {r['epochs']:6d}"
        )
    return "\n".join(lines)


def _mean_row(rows: list[dict]) -> dict:
    """The first row, its plotted numbers replaced by their mean over ``rows`` (the seeds)."""
    out = dict(rows[0])
    for key in ("test_mae", "test_rel_l2", "train_time_s", "latency_s_per_sample"):
        out[key] = float(np.mean([r[key] for r in rows]))
    return out


def plot_results(run_dir: str | Path) -> list[Path]:
    """The plots of one run, into ``run_dir/plots``: see :func:`plot_runs`."""
    return plot_runs([run_dir], Path(run_dir) / "plots")


def plot_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Predictions against truth (at each data set's highest resolution), error against
    resolution per model (with the runs' ``references.json``, if written), and training time
    and latency per model (the seed paper's Figure 5), drawn from the finished cells of one or
    more runs (e.g. one run per resolution pass; where two runs hold the same cell, the later
    one counts). Errors and costs are means over the seeds; predictions are the lowest seed's.
    ``eads bench pde-plots``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_seed = {}
    for run_dir in map(Path, run_dirs):
        if not (run_dir / "cells").is_dir():
            raise ConfigError(f"{str(run_dir)!r} is not a PDE benchmark run (no cells/ in it).")
        for r in _read_cells(run_dir, listed_cells(run_dir)):
            if r["status"] == "ok":
                c = r["cell"]
                key = (c["dataset"], c["params"]["resolution"], c["model"], c.get("seed", 0))
                by_seed[key] = (r, run_dir)
    results, where = {}, {}  # per data set, resolution and model: its lowest seed's cell
    for key in sorted(by_seed, key=lambda k: k[3], reverse=True):
        results[key[:3]], where[key[:3]] = by_seed[key]
    groups = group_rows(
        [_row(r) for r, _ in by_seed.values()],
        lambda r: (r["dataset"], r["resolution"], r["model"]),
    )
    ok = _sort_rows([_mean_row(rs) for rs in groups.values()])  # the mean over seeds
    references = [  # eads bench pde-references, where it was run
        r
        for run_dir in map(Path, run_dirs)
        if (run_dir / "references.json").is_file()
        for r in json.loads((run_dir / "references.json").read_text())["rows"]
    ]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    colors = {m: f"C{i}" for i, m in enumerate(MODELS)}

    for dataset in sorted({r["dataset"] for r in ok}):
        res = max(r["resolution"] for r in ok if r["dataset"] == dataset)
        models = [m for m in MODELS if (dataset, res, m) in results]
        files = {
            m: where[(dataset, res, m)] / results[(dataset, res, m)]["predictions"] for m in models
        }
        models = [m for m in models if files[m].is_file()]  # committed runs keep no predictions
        if not models:
            log.info("no predictions of %s at resolution %d: its plot is left out", dataset, res)
            continue
        preds = {m: np.load(files[m]) for m in models}
        first = preds[models[0]]
        k = len(first["y"])
        if dataset in ("burgers", "burgers_released"):
            fig, axes = plt.subplots(1, k, figsize=(4 * k, 3), squeeze=False)
            xs = np.arange(res) / res
            for j in range(k):
                ax = axes[0, j]
                ax.plot(xs, first["y"][j], "k-", lw=2.5, label="truth")
                for m in models:
                    ax.plot(xs, preds[m]["pred"][j], lw=1, color=colors[m], label=m)
                ax.set_title(f"test sample {j}")
                ax.set_xlabel("x")
            axes[0, 0].set_ylabel("u(x, 1)")
            axes[0, -1].legend(fontsize=7)
        else:
            cols = len(models) + 2
            fig, axes = plt.subplots(1, cols, figsize=(2.2 * cols, 2.6), squeeze=False)
            y0 = first["y"][0]
            panels = [("input a", first["x"][0]), ("truth u", y0)]
            panels += [(m, preds[m]["pred"][0]) for m in models]
            for ax, (title, img) in zip(axes[0], panels, strict=True):
                vmin, vmax = (None, None) if title == "input a" else (y0.min(), y0.max())
                ax.imshow(img, vmin=vmin, vmax=vmax, origin="lower", cmap="viridis")
                ax.set_title(title, fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
        fig.suptitle(f"{dataset}, resolution {res}: test predictions")
        fig.tight_layout()
        path = out / f"predictions_{dataset}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)

    dsets = sorted({r["dataset"] for r in ok})
    if dsets:
        fig, axes = plt.subplots(1, len(dsets), figsize=(5 * len(dsets), 3.5), squeeze=False)
        for ax, dataset in zip(axes[0], dsets, strict=True):
            for m in MODELS:
                pts = sorted(  # (resolution, mean, sample std) over the seeds
                    (key[1], *mean_std([r["test_rel_l2"] for r in rs]), len(rs))
                    for key, rs in groups.items()
                    if key[0] == dataset and key[2] == m
                )
                if pts:
                    xs, mu, sd, n = zip(*pts, strict=True)
                    count = f"{min(n)}-{max(n)}" if min(n) != max(n) else f"{n[0]}"
                    seeds = f" ({count} seeds)"
                    ax.errorbar(xs, mu, yerr=sd, fmt="o-", ms=3, capsize=3, color=colors[m],
                                label=m + seeds)  # fmt: skip
            for style, name in zip(("k--", "k:"), ("mean(u0)", "fit-split mean"), strict=True):
                pts = sorted(
                    (r["resolution"], r["test_rel_l2"])
                    for r in references
                    if r["dataset"] == dataset and r["predictor"] == name
                )
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, lw=1, label=f"{name} (no learning)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("resolution")
            ax.set_ylabel("test relative L2 error")
            ax.set_title(dataset)
            ax.legend(fontsize=6)
        fig.tight_layout()
        path = out / "error_vs_resolution.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)

        groups = [(d, max(r["resolution"] for r in ok if r["dataset"] == d)) for d in dsets]
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
        width = 0.8 / len(groups)
        for g, (dataset, res) in enumerate(groups):
            sel = {r["model"]: r for r in ok if r["dataset"] == dataset and r["resolution"] == res}
            ms = [m for m in MODELS if m in sel]
            pos = np.array([MODELS.index(m) for m in ms]) + g * width
            for ax, key in zip(axes, ("train_time_s", "latency_s_per_sample"), strict=True):
                ax.bar(pos, [sel[m][key] for m in ms], width, label=f"{dataset} {res}")
        for ax, label in zip(
            axes,
            ("training wall time (s)", "inference latency per sample (s, batch 1)"),
            strict=True,
        ):
            ax.set_xticks(np.arange(len(MODELS)) + 0.4 - width / 2)
            ax.set_xticklabels(MODELS, rotation=30, fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel(label)
            ax.legend(fontsize=7)
        fig.suptitle("cost per model (digital simulation on CPU, not analog hardware)")
        fig.tight_layout()
        path = out / "cost.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written
