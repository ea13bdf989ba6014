"""Ablation of the reference node: on/off x trainer, on three tasks, 3 seeds each.

Tasks (all real data or exact physics):

* ``burgers`` -- the demo task (:mod:`eads.data.demo`): the viscous Burgers map u0 -> u(t = 0.2),
  32 points in and out, 1200 instances (Cole-Hopf, exact);
* ``diabetes`` -- scikit-learn's bundled diabetes regression (Efron et al. 2004): 442 patients,
  10 baseline variables -> disease progression after one year;
* ``beijing_air`` -- UCI Beijing multi-site air quality, station Aotizhongxin
  (``../shared/data/spatiotemporal/beijing_air``): the same hour's SO2, NO2, CO, O3, TEMP, PRES,
  DEWP, RAIN and WSPM -> PM2.5 and PM10; rows with a missing value dropped, then 6000 rows drawn
  at random with a fixed seed (0).

Models: EADS trained by EC-Train and by backprop (autograd through the same solver), and NP-GL
by conditional likelihood, each with and without the reference node. Every fit is a
``tasks.fit``-style split (70 / 15 / 15, standardised on the training split, the split drawn by
the cell's seed) and stops on validation patience (20 epochs, plateau schedule, cap 1000
epochs); the test split is scored once, at the end. Hyperparameters are the library's defaults
(H = 64, T = 1, lr 3e-3 for EADS, 1e-2 for NP-GL), the same for both settings of the reference.

Cells run through :func:`eads.tasks.executor.run_cells` (local, or Ray with ``--executor ray``),
each written to ``<run-dir>/cells/<id>.json`` when done, so an interrupted run resumes. The table
(mean +- std over seeds) goes to ``<run-dir>/table.md`` and ``results.json``.

    OMP_NUM_THREADS=1 python benchmarks/ablation_reference.py \
        --run-dir benchmarks/results/reference_ablation
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from eads._io import atomic_write_json, atomic_write_text
from eads.config import ModelConfig, TrainConfig
from eads.data.tabular import split_and_standardize
from eads.learn.loop import fit
from eads.learn.registry import build_model, make_trainer
from eads.runs import run_metadata
from eads.tasks.executor import Cell, run_cells

TASKS = ("burgers", "diabetes", "beijing_air")
MODELS = {  # name -> (model kind, trainer, lr)
    "eads-ectrain": ("eads", "ectrain", 3e-3),
    "eads-backprop": ("eads", "backprop", 3e-3),
    "npgl-likelihood": ("npgl", "likelihood", 1e-2),
}
SEEDS = (0, 1, 2)
TRAIN = TrainConfig(epochs=1000, patience=20, schedule="plateau", schedule_patience=5)
BEIJING_INPUTS = ("SO2", "NO2", "CO", "O3", "TEMP", "PRES", "DEWP", "RAIN", "WSPM")
BEIJING_OUTPUTS = ("PM2.5", "PM10")


def load_task(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "burgers":
        from eads.data.demo import burgers_demo

        return burgers_demo(1200, seed=0)
    if name == "diabetes":
        from sklearn.datasets import load_diabetes

        d = load_diabetes()
        return d.data.astype(np.float64), d.target.astype(np.float64)[:, None]
    if name == "beijing_air":
        import pandas as pd

        from eads.data.paths import shared_data_dir

        path = (
            shared_data_dir()
            / "spatiotemporal/beijing_air/PRSA_Data_Aotizhongxin_20130301-20170228.csv.gz"
        )
        frame = pd.read_csv(path)[list(BEIJING_INPUTS + BEIJING_OUTPUTS)].dropna()
        rows = np.random.default_rng(0).choice(len(frame), 6000, replace=False)
        a = frame.to_numpy(np.float64)[np.sort(rows)]
        return a[:, : len(BEIJING_INPUTS)], a[:, len(BEIJING_INPUTS) :]
    raise ValueError(f"unknown task {name!r}; tasks are {TASKS}")


def run_cell(cell: Cell, run_dir: Path) -> dict:
    torch.set_num_threads(1)
    kind, trainer, lr = MODELS[cell.model]
    x, y = load_task(cell.dataset)
    s = split_and_standardize(x, y, val_fraction=0.15, test_fraction=0.15, seed=cell.seed)
    mcfg = ModelConfig(kind=kind, n_hidden=64, reference=cell.params["reference"])
    tcfg = dataclasses.replace(TRAIN, trainer=trainer, lr=lr, seed=cell.seed)
    model = build_model(mcfg, x.shape[1], y.shape[1], seed=cell.seed)
    t0 = time.perf_counter()
    hist = fit(
        model,
        make_trainer(trainer),
        (torch.from_numpy(s.x_train), torch.from_numpy(s.y_train)),
        (torch.from_numpy(s.x_val), torch.from_numpy(s.y_val)),
        tcfg,
        progress=False,
    )
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        pred = s.y_scaler.inverse(model(torch.from_numpy(s.x_test)).numpy())
    truth = s.y_scaler.inverse(s.y_test)
    var = truth.var(axis=0)
    return {
        "test_mae": float(np.abs(pred - truth).mean()),
        "test_r2": float(np.mean(1 - ((pred - truth) ** 2).mean(axis=0) / var)),
        "best_val_mse": hist.best_val,
        "epochs": hist.epochs_run,
        "best_epoch": hist.best_epoch,
        "stop_reason": hist.stop_reason,
        "train_time_s": train_s,
        "n_train": len(s.x_train),
    }


def cells() -> list[Cell]:
    return [
        Cell("reference_ablation", task, model, {"reference": ref}, seed)
        for task in TASKS
        for model in MODELS
        for ref in (True, False)
        for seed in SEEDS
    ]


def table(results: list[dict]) -> tuple[str, list[dict]]:
    rows = []
    for task in TASKS:
        for model in MODELS:
            for ref in (True, False):
                done = [
                    r
                    for r in results
                    if r.get("status") == "ok"
                    and r["cell"]["dataset"] == task
                    and r["cell"]["model"] == model
                    and r["cell"]["params"]["reference"] == ref
                ]
                if not done:
                    continue
                mae = np.array([r["test_mae"] for r in done])
                r2 = np.array([r["test_r2"] for r in done])
                rows.append(
                    {
                        "task": task,
                        "model": model,
                        "reference": ref,
                        "seeds": len(done),
                        "test_mae_mean": float(mae.mean()),
                        "test_mae_std": float(mae.std(ddof=1)) if len(done) > 1 else 0.0,
                        "test_r2_mean": float(r2.mean()),
                        "test_r2_std": float(r2.std(ddof=1)) if len(done) > 1 else 0.0,
                        "epochs": [r["epochs"] for r in done],
                        "stop_reasons": sorted({r["stop_reason"] for r in done}),
                        "train_s_mean": float(np.mean([r["train_time_s"] for r in done])),
                    }
                )
    lines = [
        "| task | model | ref. node | test MAE (mean +- std) | test R2 | epochs | stopped by "
        "| train s |",
        "|---|---|---|---:|---:|---|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['model']} | {'on' if r['reference'] else 'off'} | "
            f"{r['test_mae_mean']:.4g} +- {r['test_mae_std']:.2g} | "
            f"{r['test_r2_mean']:.3f} +- {r['test_r2_std']:.3f} | "
            f"{min(r['epochs'])}-{max(r['epochs'])} | {', '.join(r['stop_reasons'])} | "
            f"{r['train_s_mean']:.1f} |"
        )
    return "\n".join(lines) + "\n", rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", default="benchmarks/results/reference_ablation")
    ap.add_argument("--executor", default="local", choices=("local", "ray"))
    ap.add_argument("--address", default=None)
    args = ap.parse_args()
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = run_metadata(0)
    config = {
        "tasks": TASKS,
        "models": MODELS,
        "seeds": SEEDS,
        "train": dataclasses.asdict(TRAIN),
        "split": [0.70, 0.15, 0.15],
    }
    atomic_write_json(run_dir / "config.json", config)
    if not (run_dir / "meta.json").is_file():
        atomic_write_json(run_dir / "meta.json", meta)
    results = run_cells(
        cells(), run_cell, run_dir, executor=args.executor, address=args.address, progress=True
    )
    text, rows = table(results)
    atomic_write_text(run_dir / "table.md", text)
    atomic_write_json(run_dir / "results.json", {"rows": rows, "meta": meta})
    print(text)
    failed = [r["id"] for r in results if r.get("status") != "ok"]
    if failed:
        print(f"{len(failed)} cell(s) failed: {failed}")
    print(json.dumps({"cells": len(results), "failed": len(failed)}))


if __name__ == "__main__":
    main()
