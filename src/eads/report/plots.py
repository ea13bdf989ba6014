"""Plots of a run directory: training curves and the online (prequential) error."""

from __future__ import annotations

import json
from pathlib import Path


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draw ``loss.png`` (from history.json) and ``online.png`` (from online.json) if present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    written = []
    hist = run_dir / "history.json"
    if hist.is_file():
        h = json.loads(hist.read_text())
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.semilogy(h["train_loss"], label="train loss")
        if h["val_loss"]:
            ax.semilogy(h["val_loss"], label="validation MSE")
        ax.set_xlabel("epoch")
        ax.legend()
        fig.tight_layout()
        fig.savefig(run_dir / "loss.png", dpi=120)
        plt.close(fig)
        written.append(run_dir / "loss.png")
    online = run_dir / "online.json"
    if online.is_file():
        o = json.loads(online.read_text())
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.semilogy(o["errors"], lw=0.4, alpha=0.5, label="prequential error")
        ax.semilogy(o["running"], label="running mean")
        ax.set_xlabel("sample")
        ax.legend()
        fig.tight_layout()
        fig.savefig(run_dir / "online.png", dpi=120)
        plt.close(fig)
        written.append(run_dir / "online.png")
    return written
