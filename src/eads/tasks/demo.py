"""``eads demo``: the main job on the embedded default task.

Generates the viscous Burgers map (:mod:`eads.data.demo`: 1000 training, 200 test instances on
32 grid points), trains EADS with EC-Train and NP-GL with conditional likelihood, each with and
without the reference node, and a small MLP with backprop, on the same standardised split, and
reports test error, time and what stopped each run. Every model trains to convergence: it stops
on validation patience (20 epochs) under a plateau learning-rate schedule, with an epoch cap
that patience ends first (a row that hit the cap or the wall time says so).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from eads.config import ModelConfig, TrainConfig
from eads.data.demo import burgers_demo
from eads.data.tabular import split_and_standardize
from eads.learn.loop import fit
from eads.learn.registry import build_model, make_trainer
from eads.runs import RunDir

#: The demo's stopping protocol: validation patience under a plateau schedule, capped high.
DEMO_TRAIN = TrainConfig(epochs=1000, patience=20, schedule="plateau", schedule_patience=5)

#: (label, model config, train config) of each demo entry.
DEMO_MODELS = (
    (
        "EADS (EC-Train, ref.)",
        ModelConfig(kind="eads", n_hidden=64),
        dataclasses.replace(DEMO_TRAIN, trainer="ectrain", lr=3e-3),
    ),
    (
        "EADS (EC-Train, no ref.)",
        ModelConfig(kind="eads", n_hidden=64, reference=False),
        dataclasses.replace(DEMO_TRAIN, trainer="ectrain", lr=3e-3),
    ),
    (
        "NP-GL (cond. lik., ref.)",
        ModelConfig(kind="npgl"),
        dataclasses.replace(DEMO_TRAIN, trainer="likelihood", lr=1e-2),
    ),
    (
        "NP-GL (cond. lik., no ref.)",
        ModelConfig(kind="npgl", reference=False),
        dataclasses.replace(DEMO_TRAIN, trainer="likelihood", lr=1e-2),
    ),
    (
        "MLP (backprop, 2 x 64)",
        ModelConfig(kind="mlp", n_hidden=64),
        dataclasses.replace(DEMO_TRAIN, trainer="backprop", lr=3e-3),
    ),
)


def run_demo(
    run_dir: str | Path,
    *,
    seed: int = 0,
    epochs: int | None = None,
    n_samples: int = 1200,
    progress: bool = True,
) -> list[dict]:
    """Run the demo into ``run_dir``; returns one row per model.

    ``epochs`` overrides every model's epoch cap (a smaller cap may then stop runs before
    patience does; the rows say so).
    """
    x, y = burgers_demo(n_samples, seed=seed)
    s = split_and_standardize(x, y, val_fraction=0.1, test_fraction=1 / 6, seed=seed)
    resolved = {
        "task": "demo",
        "n_samples": n_samples,
        "models": [
            {"label": label, "model": dataclasses.asdict(m), "train": dataclasses.asdict(t)}
            for label, m, t in DEMO_MODELS
        ],
        "epochs_override": epochs,
    }
    run = RunDir.create(run_dir, resolved, seed)
    tr = (torch.from_numpy(s.x_train), torch.from_numpy(s.y_train))
    va = (torch.from_numpy(s.x_val), torch.from_numpy(s.y_val))
    y_true = s.y_scaler.inverse(s.y_test)
    rows = []
    for label, mcfg, tcfg in DEMO_MODELS:
        tcfg = dataclasses.replace(tcfg, seed=seed)
        if epochs is not None:
            tcfg = dataclasses.replace(tcfg, epochs=epochs)
        model = build_model(mcfg, x.shape[1], y.shape[1], seed=seed)
        t0 = time.perf_counter()
        hist = fit(model, make_trainer(tcfg.trainer), tr, va, tcfg, progress=progress)
        train_s = time.perf_counter() - t0
        with torch.no_grad():
            t0 = time.perf_counter()
            pred = model(torch.from_numpy(s.x_test)).numpy()
            infer_s = (time.perf_counter() - t0) / len(pred)
        p = s.y_scaler.inverse(pred)
        rel_l2 = np.linalg.norm(p - y_true, axis=1) / np.linalg.norm(y_true, axis=1)
        rows.append(
            {
                "model": label,
                "test_mae": float(np.abs(p - y_true).mean()),
                "test_relative_l2": float(rel_l2.mean()),
                "epochs": hist.epochs_run,
                "best_epoch": hist.best_epoch,
                "stop_reason": hist.stop_reason,
                "train_time_s": train_s,
                "inference_us_per_sample": 1e6 * infer_s,
            }
        )
    run.write_json("metrics.json", {"rows": rows})
    return rows


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'model':<29}{'test MAE':>10}{'rel. L2':>9}{'epochs':>8}{'stopped by':>12}"
        f"{'train s':>9}{'infer us':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<29}{r['test_mae']:>10.4f}{r['test_relative_l2']:>9.3f}{r['epochs']:>8d}"
            f"{r['stop_reason']:>12}{r['train_time_s']:>9.1f}{r['inference_us_per_sample']:>10.1f}"
        )
    capped = [r["model"] for r in rows if r["stop_reason"] != "patience"]
    if capped:
        lines.append(
            f"note: {', '.join(capped)} stopped before validation patience ran out (not converged)."
        )
    return "\n".join(lines)
