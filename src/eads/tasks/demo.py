"""``eads demo``: the main job on the embedded default task.

Generates the viscous Burgers map (:mod:`eads.data.demo`: 1000 training, 200 test instances on
32 grid points), trains EADS with EC-Train, NP-GL with conditional likelihood and a small MLP with
backprop on the same standardised split, and reports test error and time for each.
"""

from __future__ import annotations

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

#: (label, model config, train config) of each demo entry; budgets fixed and stated.
DEMO_MODELS = (
    (
        "EADS (EC-Train)",
        ModelConfig(kind="eads", n_hidden=64),
        TrainConfig(trainer="ectrain", epochs=40, lr=3e-3),
    ),
    (
        "NP-GL (cond. likelihood)",
        ModelConfig(kind="npgl"),
        TrainConfig(trainer="likelihood", epochs=40, lr=1e-2),
    ),
    (
        "MLP (backprop)",
        ModelConfig(kind="mlp", n_hidden=64),
        TrainConfig(trainer="backprop", epochs=40, lr=3e-3),
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
    """Run the demo into ``run_dir``; returns one row per model."""
    x, y = burgers_demo(n_samples, seed=seed)
    s = split_and_standardize(x, y, val_fraction=0.1, test_fraction=1 / 6, seed=seed)
    run = RunDir.create(run_dir, {"task": "demo", "n_samples": n_samples, "epochs": epochs}, seed)
    tr = (torch.from_numpy(s.x_train), torch.from_numpy(s.y_train))
    va = (torch.from_numpy(s.x_val), torch.from_numpy(s.y_val))
    y_true = s.y_scaler.inverse(s.y_test)
    rows = []
    for label, mcfg, tcfg in DEMO_MODELS:
        if epochs is not None:
            tcfg = TrainConfig(**{**tcfg.__dict__, "epochs": epochs, "seed": seed})
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
                "train_time_s": train_s,
                "inference_us_per_sample": 1e6 * infer_s,
            }
        )
    run.write_json("metrics.json", {"rows": rows})
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'model':<26}{'test MAE':>10}{'rel. L2':>9}{'epochs':>8}{'train s':>9}{'infer us':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<26}{r['test_mae']:>10.4f}{r['test_relative_l2']:>9.3f}{r['epochs']:>8d}"
            f"{r['train_time_s']:>9.1f}{r['inference_us_per_sample']:>10.1f}"
        )
    return "\n".join(lines)
