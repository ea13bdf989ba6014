"""The efficiency report of a trained run: modeled circuit cost beside measured digital baselines.

:func:`cost_report` reads a run directory written by ``eads fit`` (it trains nothing): the trained
EADS circuit, its configuration and ``metrics.json`` (wall time of the training run and per-sample
inference latency of the simulator on the machine that ran it). It simulates the circuit's stages
as transients on a probe batch of the run's own inputs to get the settle times, and returns

* ``modeled``: the circuit's latency per inference, training time per sample and per run, energy
  per inference and per run (:class:`eads.hardware.cost.CostModel`);
* ``measured``: each digital baseline's wall time (this run's simulator on its device, and any
  ``baselines`` run directories, e.g. an MLP fitted with ``eads fit --model mlp``), with energy
  = the stated average power of the measured device x the measured time (the device power is a
  constant, :class:`eads.hardware.constants.PowerConstants`, not a measurement);
* ``ratios``: measured / modeled for each baseline, beside the seed paper's claims.

Every number carries a ``source`` of ``"modeled"``, ``"measured"`` or ``"paper"``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from eads._errors import CheckpointError, ConfigError, EADSError
from eads.circuit.eads import EADS
from eads.hardware.constants import HardwareConstants, PaperClaims
from eads.hardware.cost import CircuitSize, CostModel, StageTimesTau, as_dict
from eads.runs import RunDir

log = logging.getLogger(__name__)


def _probe_inputs(model: EADS, config, x_scaler, n_probe: int) -> tuple[torch.Tensor, str]:
    """Up to ``n_probe`` standardised inputs of the run's own data, else N(0, 1) inputs."""
    try:
        from eads.data.tabular import read_table

        table = read_table(config.data.path, config.data.inputs, config.data.outputs)
        x = torch.from_numpy(x_scaler.transform(table.x[:n_probe]))
        return x.to(model.P.dtype), f"first {len(x)} rows of {config.data.path}"
    except (EADSError, OSError) as exc:
        log.info("probe data unavailable (%s); using standard normal inputs", exc)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(n_probe, model.n_inputs, generator=gen, dtype=torch.float64)
        return x.to(model.P.dtype), f"{n_probe} standard-normal inputs (data file not readable)"


def simulated_stage_times(model: EADS, x: torch.Tensor) -> tuple[StageTimesTau, dict]:
    """Mean stage times (time constants) over a probe batch, and their maxima."""
    st = model.stage_times(x)
    mean = StageTimesTau(float(st.projection.mean()), float(st.coupling), float(st.readout.mean()))
    worst = {"projection": float(st.projection.max()), "readout": float(st.readout.max())}
    return mean, worst


def _device_power(device: str, constants: HardwareConstants) -> tuple[str, float]:
    if device.startswith("cuda"):
        return "gpu", constants.power.gpu_power_w
    return "cpu", constants.power.cpu_power_w


def _baseline_rows(path: Path, constants: HardwareConstants) -> list[dict]:
    """Measured rows of a run directory: an ``eads fit`` run or an ``eads demo`` run."""
    run = RunDir(path)
    metrics = run.read_json("metrics.json")
    try:
        device = run.read_json("meta.json").get("device", "cpu")
    except CheckpointError:
        device = "cpu"
    kind, power = _device_power(device, constants)
    rows = []
    if "rows" in metrics:  # eads demo: one row per model on the same split
        n_train = int(run.config().get("n_samples", 1200) * (1 - 0.1 - 1 / 6))
        for r in metrics["rows"]:
            samples = max(int(r["epochs"]) * n_train, 1)
            rows.append(_measured(r["model"], device, kind, power, r["train_time_s"], samples,
                                  r["inference_us_per_sample"] * 1e-6, str(path)))  # fmt: skip
        return rows
    cfg = run.config()
    label = f"{cfg.get('model', {}).get('kind', '?')} ({cfg.get('train', {}).get('trainer', '?')})"
    samples = _samples_seen(metrics)
    rows.append(_measured(label, device, kind, power, metrics["train_time_s"], samples,
                          _latency(metrics), str(path)))  # fmt: skip
    return rows


def _latency(metrics: dict) -> float:
    for split in ("test", "val", "train"):
        if split in metrics:
            return float(metrics[split]["inference_s_per_sample"])
    raise CheckpointError("metrics.json holds no per-sample inference latency.")


def _samples_seen(metrics: dict) -> int:
    n_train = int(metrics.get("train", {}).get("n", 0))
    return max(int(metrics.get("epochs_run", 1)) * n_train, 1)


def _measured(label, device, kind, power, train_s, samples, latency_s, path) -> dict:
    return {
        "source": "measured",
        "model": label,
        "device": device,
        "device_power_w": power,
        "device_power_source": f"stated {kind} power (PowerConstants.{kind}_power_w), not measured",
        "run_dir": path,
        "train_time_s": float(train_s),
        "train_samples": int(samples),
        "train_time_per_sample_s": float(train_s) / samples,
        "train_energy_j": power * float(train_s),
        "train_energy_per_sample_j": power * float(train_s) / samples,
        "inference_s_per_sample": float(latency_s),
        "inference_energy_j": power * float(latency_s),
    }


def cost_report(
    run_dir: str | Path,
    *,
    constants: HardwareConstants | None = None,
    power: str = "paper",
    baselines: tuple[str | Path, ...] = (),
    n_probe: int = 64,
) -> dict:
    """The efficiency report of a trained EADS run directory (see the module docstring)."""
    from eads.learn.registry import load_trained

    constants = constants if constants is not None else HardwareConstants()
    cost = CostModel(constants, power)
    model, config, xs, _ = load_trained(run_dir)
    if not isinstance(model, EADS):
        raise ConfigError(
            f"eads cost models EADS circuits; run directory {str(run_dir)!r} holds a "
            f"{config.model.kind!r} model (use it as --baseline instead)."
        )
    run = RunDir(run_dir)
    metrics = run.read_json("metrics.json")
    x, probe = _probe_inputs(model, config, xs, n_probe)
    stages, worst = simulated_stage_times(model, x)
    size = CircuitSize.of(model)
    n_samples = _samples_seen(metrics)
    n_val = int(metrics.get("val", {}).get("n", 0)) * int(metrics.get("epochs_run", 1))
    inf = cost.inference(size, stages)
    train = cost.training(
        size, stages, n_samples=n_samples, batch_size=config.train.batch_size, n_inferences=n_val
    )
    measured = _baseline_rows(run.path, constants)
    measured[0]["model"] = f"EADS simulator ({config.train.trainer}, this run)"
    for b in baselines:
        measured.extend(_baseline_rows(Path(b), constants))
    ratios = []
    for m in measured:
        ratios.append({
            "model": m["model"],
            "inference_speedup": m["inference_s_per_sample"] / inf.time_s,
            "training_speedup": m["train_time_per_sample_s"] / train.time_per_sample_s,
            "inference_energy_gain": m["inference_energy_j"] / inf.energy_j,
            "training_energy_gain": m["train_energy_per_sample_j"] / train.energy_per_sample_j,
        })  # fmt: skip
    paper = PaperClaims()
    return {
        "run_dir": str(run.path),
        "circuit": as_dict(size)
        | {"duration_tau": model.duration, "settle_tolerance": model.settle_tolerance},
        "power_mode": power,
        "constants": constants.to_dict(),
        "node_time_constant_s": constants.circuit.node_time_constant_s,
        "probe": probe,
        "stage_times_tau": as_dict(stages)
        | {"projection_max": worst["projection"], "readout_max": worst["readout"]},
        "modeled": {
            "source": "modeled",
            "inference": as_dict(inf),
            "training": as_dict(train),
            "bottom_up_power_w": {
                "inference": cost.bottom_up_power_w(size, training=False),
                "training": cost.bottom_up_power_w(size, training=True),
            },
        },
        "measured": measured,
        "ratios": ratios,
        "paper": {
            "source": "paper",
            "training_speedup": paper.training_speedup,
            "inference_speedup": paper.inference_speedup,
            "energy_gain": paper.energy_gain,
            "baseline": "GPU (A100, 250 W) in the seed paper's setting",
        },
    }


def _si(value: float, unit: str) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    prefixes = [(1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "u"), (1e-3, "m"), (1.0, ""),
                (1e3, "k")]  # fmt: skip
    scale, prefix = prefixes[0]
    for s, p in prefixes:
        if abs(value) >= s:
            scale, prefix = s, p
    return f"{value / scale:.3g} {prefix}{unit}"


def format_cost_table(report: dict) -> str:
    """The report as a text table: modeled circuit beside each measured baseline."""
    inf = report["modeled"]["inference"]
    tr = report["modeled"]["training"]
    st = report["stage_times_tau"]
    c = report["circuit"]
    lines = [
        f"EADS circuit N={c['n_inputs']} H={c['n_hidden']} M={c['n_outputs']}, "
        f"T={c['duration_tau']:g} tau, tau={_si(report['node_time_constant_s'], 's')}, "
        f"power preset: {report['power_mode']}",
        f"stage times (tau, mean over {report['probe']}): projection {st['projection']:.3g}, "
        f"coupling {st['coupling']:.3g}, readout {st['readout']:.3g}",
        "",
    ]
    head = f"{'quantity':<34}{'source':<10}{'value':>14}"
    rows = [
        ("latency per inference", inf["time_s"], "s"),
        ("energy per inference", inf["energy_j"], "J"),
        ("training time per sample", tr["time_per_sample_s"], "s"),
        ("training time, whole run", tr["run_time_s"], "s"),
        ("training energy per sample", tr["energy_per_sample_j"], "J"),
        ("training energy, whole run", tr["run_energy_j"], "J"),
        ("analog power, inference", inf["power_w"], "W"),
        ("analog power, training", tr["power_w"], "W"),
    ]
    lines += [head, "-" * len(head)]
    lines += [f"{name:<34}{'modeled':<10}{_si(v, u):>14}" for name, v, u in rows]
    for m, r in zip(report["measured"], report["ratios"], strict=True):
        lines += ["", f"{m['model']} on {m['device']} ({m['device_power_w']:g} W stated):"]
        mrows = [
            ("latency per inference", m["inference_s_per_sample"], "s", r["inference_speedup"]),
            ("energy per inference", m["inference_energy_j"], "J", r["inference_energy_gain"]),
            ("training time per sample", m["train_time_per_sample_s"], "s",
             r["training_speedup"]),
            ("training time, whole run", m["train_time_s"], "s", None),
            ("training energy per sample", m["train_energy_per_sample_j"], "J",
             r["training_energy_gain"]),
            ("training energy, whole run", m["train_energy_j"], "J", None),
        ]  # fmt: skip
        for name, v, u, ratio in mrows:
            extra = f"   {ratio:.3g}x the circuit" if ratio is not None else ""
            lines.append(f"{name:<34}{'measured':<10}{_si(v, u):>14}{extra}")
    p = report["paper"]
    lines += [
        "",
        f"seed paper (vs {p['baseline']}): training ~{p['training_speedup']:g}x, inference "
        f"~{p['inference_speedup']:g}x faster, ~{p['energy_gain']:.0e} better energy  [paper]",
    ]
    return "\n".join(lines)


__all__ = ["cost_report", "format_cost_table", "simulated_stage_times"]
