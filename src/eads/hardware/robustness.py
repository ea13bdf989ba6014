"""Robustness study: accuracy of a trained EADS circuit against device non-idealities.

For each non-ideality axis (conductance bits, device-to-device variation sigma, thermal-noise
amplitude) and each level on it, a circuit trained on the ideal simulator is

* **deployed as is** on a chip with that non-ideality (``post_hoc``): its programmed conductances
  are the ideal ones (trained ``epochs + finetune_epochs`` on the ideal simulator, so it sees as
  many epochs as the hardware-aware circuit), the circuit realises them imperfectly;
* **trained hardware-aware** on that chip (``hardware_aware``): starting from the ideal weights,
  ``finetune_epochs`` of :class:`eads.hardware.HardwareAwareECTrain` in the loop of the same chip
  (same variation factors: in-situ training, the self-adaptation the seed paper argues for).

Accuracy is the mean test relative L2 error in original units (lower is better). Tasks: the
core's demo (viscous Burgers map, 32 points, :mod:`eads.data.demo`) and, when the PDE data module
is present, the FNO-setting Burgers benchmark at 256 points (:mod:`eads.data.pde`, Cole-Hopf
solver, a reduced training set). Results go to ``robustness.json`` and one PNG per task in the
run directory.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from eads._errors import ConfigError, EADSError
from eads.circuit.nonideal import NonIdealEADS, NonIdealities
from eads.config import ModelConfig, TrainConfig
from eads.hardware.training import HardwareAwareECTrain
from eads.learn.loop import fit
from eads.learn.registry import build_model, make_trainer
from eads.runs import RunDir

log = logging.getLogger(__name__)

TASKS = ("demo", "burgers-fno")


@dataclass(frozen=True)
class RobustnessConfig:
    """What the study sweeps and how much it trains (defaults: the full study)."""

    tasks: tuple[str, ...] = TASKS
    n_samples: int = 1200  #: demo instances (train/val/test split 73/10/17 %)
    n_hidden: int = 64
    epochs: int = 30  #: ideal EC-Train epochs
    finetune_epochs: int = 4  #: hardware-aware EC-Train epochs per level
    lr: float = 3e-3
    batch_size: int = 32
    bits: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
    sigmas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3)
    noises: tuple[float, ...] = (0.0, 0.03, 0.1, 0.3)
    benchmark_train: int = 500  #: Burgers-FNO training instances (the paper uses 1000)
    benchmark_test: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        bad = set(self.tasks) - set(TASKS)
        if bad:
            raise ConfigError(f"robustness tasks must be among {TASKS}, got {sorted(bad)}.")
        for name in ("n_samples", "n_hidden", "epochs", "batch_size", "benchmark_train",
                     "benchmark_test"):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"RobustnessConfig.{name} must be a positive integer, got {v!r}.")
        if any(b < 1 for b in self.bits):
            raise ConfigError(f"RobustnessConfig.bits must all be >= 1, got {self.bits!r}.")

    @classmethod
    def quick(cls) -> RobustnessConfig:
        """A smoke-test setting: demo task only, small data, three levels per axis."""
        return cls(tasks=("demo",), n_samples=300, n_hidden=32, epochs=8, finetune_epochs=2,
                   bits=(2, 4, 8), sigmas=(0.0, 0.1, 0.3), noises=(0.0, 0.1, 0.3))  # fmt: skip


def _relative_l2(model, x: np.ndarray, y_true: np.ndarray, y_scaler) -> float:
    with torch.no_grad():
        pred = y_scaler.inverse(model(torch.from_numpy(x)).numpy())
    num = np.linalg.norm(pred - y_true, axis=1)
    den = np.maximum(np.linalg.norm(y_true, axis=1), 1e-12)
    return float(np.mean(num / den))


def _task_data(task: str, cfg: RobustnessConfig):
    from eads.data.tabular import split_and_standardize

    if task == "demo":
        from eads.data.demo import burgers_demo

        x, y = burgers_demo(cfg.n_samples, seed=cfg.seed)
        return split_and_standardize(x, y, val_fraction=0.1, test_fraction=1 / 6, seed=cfg.seed)
    from eads.data.pde import BurgersConfig, load_pde_dataset

    ds = load_pde_dataset(
        "burgers", 256, n_train=cfg.benchmark_train, n_test=cfg.benchmark_test, seed=cfg.seed,
        config=BurgersConfig(solver="cole_hopf", fine_points=4096), progress=False,
    )  # fmt: skip
    x = np.concatenate([ds.x_train, ds.x_test]).astype(np.float32)
    y = np.concatenate([ds.y_train, ds.y_test]).astype(np.float32)
    test_fraction = cfg.benchmark_test / len(x)
    return split_and_standardize(x, y, val_fraction=0.1, test_fraction=test_fraction, seed=cfg.seed)


def _levels(cfg: RobustnessConfig) -> list[tuple[str, float, NonIdealities]]:
    out = [("bits", float(b), NonIdealities(conductance_bits=b, seed=cfg.seed)) for b in cfg.bits]
    out += [("sigma", s, NonIdealities(variation_sigma=s, seed=cfg.seed)) for s in cfg.sigmas]
    out += [("noise", n, NonIdealities(noise_std=n, seed=cfg.seed)) for n in cfg.noises]
    return out


def study_task(task: str, cfg: RobustnessConfig, *, progress: bool = False) -> dict:
    """Train the ideal circuit on ``task``, then sweep every non-ideality level (see module doc)."""
    s = _task_data(task, cfg)
    tr = (torch.from_numpy(s.x_train), torch.from_numpy(s.y_train))
    va = (torch.from_numpy(s.x_val), torch.from_numpy(s.y_val)) if len(s.x_val) else None
    y_test = s.y_scaler.inverse(s.y_test)
    tcfg = TrainConfig(trainer="ectrain", epochs=cfg.epochs, lr=cfg.lr,
                       batch_size=cfg.batch_size, seed=cfg.seed, patience=0)  # fmt: skip
    ideal = build_model(ModelConfig(kind="eads", n_hidden=cfg.n_hidden), s.x_train.shape[1],
                        s.y_train.shape[1], seed=cfg.seed)  # fmt: skip
    t0 = time.perf_counter()
    fit(ideal, make_trainer("ectrain"), tr, va, tcfg, progress=progress)
    train_s = time.perf_counter() - t0
    base = _relative_l2(ideal, s.x_test, y_test, s.y_scaler)
    ft = replace(tcfg, epochs=cfg.finetune_epochs)
    # The deployed circuit gets as many epochs as the hardware-aware one, on the ideal simulator,
    # so the comparison isolates training through the non-ideality from training longer.
    deployed = copy.deepcopy(ideal)
    if cfg.finetune_epochs > 0:
        fit(deployed, make_trainer("ectrain"), tr, va, ft, progress=False)
    base_long = _relative_l2(deployed, s.x_test, y_test, s.y_scaler)
    rows = []
    for axis, level, ni in _levels(cfg):
        chip = NonIdealEADS.from_model(deployed, ni)
        post = _relative_l2(chip, s.x_test, y_test, s.y_scaler)
        aware = post
        if cfg.finetune_epochs > 0 and not ni.ideal:
            tuned = NonIdealEADS.from_model(copy.deepcopy(ideal), ni)
            try:
                fit(tuned, HardwareAwareECTrain(), tr, va, ft, progress=False)
                aware = _relative_l2(tuned, s.x_test, y_test, s.y_scaler)
            except EADSError as exc:  # a level so harsh that training diverges is a result too
                log.warning("%s %s=%g: hardware-aware training failed: %s", task, axis, level, exc)
                aware = float("nan")
        rows.append({"axis": axis, "level": level, "post_hoc": post, "hardware_aware": aware})
        log.info("%s %s=%g: post-hoc %.4f, hardware-aware %.4f", task, axis, level, post, aware)
    return {
        "task": task,
        "n_inputs": int(s.x_train.shape[1]),
        "n_train": len(s.x_train),
        "n_test": len(s.x_test),
        "ideal_relative_l2": base_long,
        "ideal_relative_l2_before_finetune": base,
        "ideal_train_time_s": train_s,
        "rows": rows,
    }


def plot_task(result: dict, path: str | Path) -> Path:
    """Three panels (bits, sigma, noise): test relative L2 vs level, post-hoc vs hardware-aware."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eads._io import atomic_write_with

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), constrained_layout=True)
    labels = {"bits": "conductance bits", "sigma": "variation sigma (lognormal)",
              "noise": "thermal noise amplitude"}  # fmt: skip
    for ax, axis in zip(axes, ("bits", "sigma", "noise"), strict=True):
        rows = [r for r in result["rows"] if r["axis"] == axis]
        lv = [r["level"] for r in rows]
        ax.plot(lv, [r["post_hoc"] for r in rows], "o-", label="trained ideal, deployed")
        ax.plot(lv, [r["hardware_aware"] for r in rows], "s--", label="hardware-aware EC-Train")
        ax.axhline(result["ideal_relative_l2"], color="gray", lw=0.8, label="ideal circuit")
        ax.set_xlabel(labels[axis])
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test relative L2 error")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"EADS robustness: {result['task']} (N={result['n_inputs']})", fontsize=10)
    path = Path(path)
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)
    return path


def robustness_study(
    run_dir: str | Path, config: RobustnessConfig | None = None, *, progress: bool = False
) -> dict:
    """Run the study into ``run_dir`` (``robustness.json`` and ``robustness_<task>.png``)."""
    cfg = config or RobustnessConfig()
    run = RunDir.create(run_dir, {"robustness": asdict(cfg)}, cfg.seed)
    results, skipped = [], {}
    for task in cfg.tasks:
        try:
            result = study_task(task, cfg, progress=progress)
        except (ImportError, EADSError, OSError) as exc:
            if task == "demo":
                raise
            skipped[task] = f"{type(exc).__name__}: {exc}"
            log.warning("robustness task %s skipped: %s", task, exc)
            continue
        result["plot"] = plot_task(result, run.path / f"robustness_{task}.png").name
        results.append(result)
    out = {"config": asdict(cfg), "results": results, "skipped": skipped}
    run.write_json("robustness.json", out)
    return out


def format_robustness(out: dict) -> str:
    lines = []
    for res in out["results"]:
        lines.append(f"{res['task']}: ideal circuit test relative L2 {res['ideal_relative_l2']:.4f}"
                     f" (n_train={res['n_train']}, n_test={res['n_test']})")  # fmt: skip
        lines.append(f"  {'axis':<6}{'level':>8}{'deployed':>11}{'hw-aware':>11}")
        for r in res["rows"]:
            lines.append(f"  {r['axis']:<6}{r['level']:>8g}{r['post_hoc']:>11.4f}"
                         f"{r['hardware_aware']:>11.4f}")  # fmt: skip
    for task, why in out.get("skipped", {}).items():
        lines.append(f"{task}: skipped ({why})")
    return "\n".join(lines)


__all__ = ["RobustnessConfig", "format_robustness", "plot_task", "robustness_study", "study_task"]
