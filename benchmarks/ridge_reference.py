"""A linear reference for EADS: ridge regression on exactly EADS's inputs and outputs.

EADS maps a flattened input (a forecasting window, a sampled function) to a flattened output;
the simplest learned map between the very same vectors is linear, and a physical learner that
does not beat it has not used its dynamics. This script fits scikit-learn's ``Ridge`` on a
suite's training split, chooses the penalty (``ALPHAS``) on the suite's validation split, and
scores the test split with the suite's metrics. Nothing is tuned on the test split.

* ``spatiotemporal``: the forecasting framing of ``eads.tasks._forecasters`` (the z-scored
  history window of every node and feature in, the whole horizon of every node out), on the
  suite's strided training windows; the penalty by the masked validation MAE (what every model
  of the suite stops on); the test split scored by ``forecast_metrics_report`` (the headline is
  the observed-zeros MAE). Missing training targets are filled with the training mean (z = 0).
  Writes ``benchmarks/results/spatiotemporal/ridge.json``; about two CPU minutes.
* ``pde``: the released-Burgers operator of ``eads.tasks.pde`` (the standardised initial
  condition in, the solution out, the suite's fit / validation / test split of 900 / 100 / 200
  instances at each resolution); the penalty by the validation relative L2, the test by
  ``error_metrics`` (MAE and relative L2, as the PDE table). Writes
  ``benchmarks/results/pde/released/ridge.json``; a few CPU minutes.

    .venv/bin/python benchmarks/ridge_reference.py spatiotemporal
    .venv/bin/python benchmarks/ridge_reference.py spatiotemporal --datasets sz_taxi
    .venv/bin/python benchmarks/ridge_reference.py pde

Each writes its JSON atomically (the command, machine and code revision with it) and prints a
table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = {"spatiotemporal": RESULTS / "spatiotemporal" / "ridge.json",
       "pde": RESULTS / "pde" / "released" / "ridge.json"}  # fmt: skip
OFFLINE = ("beijing_pm25", "beijing_pm10", "sz_taxi", "texas_covid", "nyc_taxi", "nyc_taxi_2019")
PDE_RESOLUTIONS = (256, 1024, 4096)
ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-4, 7))


def _fit_on_validation(x_fit, y_fit, score, alphas):
    """The ridges of every penalty, scored by ``score(model)`` on validation: the best model
    and every trial."""
    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import Ridge

    trials, best = [], None
    for alpha in alphas:
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # the smallest penalties on singular systems (unchosen)
            warnings.filterwarnings("ignore", category=LinAlgWarning)
            warnings.filterwarnings("ignore", message="Singular matrix in solving dual problem")
            model = Ridge(alpha=alpha).fit(x_fit, y_fit)
        val = score(model)
        trials.append({"alpha": alpha, "val": val, "fit_s": time.perf_counter() - t0})
        if best is None or val < best[0]:
            best = (val, alpha, model)
    return best, trials


def forecasting_reference(dataset: str, alphas=ALPHAS) -> dict:
    """The validation-chosen ridge of ``dataset`` and its test metrics (both zero conventions)."""
    from eads.bench.forecasting import subset_indices, train_indices
    from eads.bench.metrics import forecast_metrics_report, masked_mae
    from eads.tasks.spatiotemporal import PROTOCOLS, _splits

    _, sp = _splits(dataset, None, None)
    protocol, f, scaler = PROTOCOLS[dataset], sp.target_feature, sp.scaler
    ti = train_indices(len(sp.train), protocol.train_stride)
    vi = subset_indices(len(sp.val), protocol.max_val_windows)
    te = subset_indices(len(sp.test), protocol.max_test_windows)

    def flat(x):
        return x.reshape(len(x), -1)

    y_train = np.where(sp.train.y_mask[ti], scaler.target_transform(sp.train.y[ti], f), 0.0)
    shape = (sp.horizon, sp.train.y.shape[2])

    def predict(model, x):
        z = model.predict(flat(x)).reshape(len(x), *shape)
        return scaler.target_inverse(z, f)

    def val_mae(model):
        return masked_mae(predict(model, sp.val.x[vi]), sp.val.y[vi], sp.val.y_mask[vi])

    (val, alpha, best), trials = _fit_on_validation(
        flat(sp.train.x[ti]), flat(y_train), val_mae, alphas
    )
    metrics = forecast_metrics_report(
        predict(best, sp.test.x[te]),
        sp.test.y[te],
        sp.test.y_mask[te],
        mape_floor=protocol.mape_tolerance,
    )
    return {
        "dataset": dataset,
        "n_inputs": int(np.prod(sp.train.x.shape[1:])),
        "n_train_windows": len(ti),
        "n_val_windows": len(vi),
        "n_test_windows": len(te),
        "alpha": alpha,
        "val_mae": val,
        "trials": trials,
        "metrics": metrics,
    }


def operator_reference(resolution: int, alphas=ALPHAS) -> dict:
    """The validation-chosen ridge of released Burgers at ``resolution``: test MAE, rel. L2."""
    import torch

    from eads.bench.adapters import Standardizer
    from eads.bench.metrics import error_metrics
    from eads.tasks.pde import PDEBenchmarkConfig, _load_data

    data = PDEBenchmarkConfig()  # the released run's data settings (its config.json)
    ds = _load_data("burgers_released", resolution, data, progress=False)
    n_val = data.n_val
    x_fit, y_fit = ds.x_train[:-n_val], ds.y_train[:-n_val]
    sx, sy = Standardizer(x_fit), Standardizer(y_fit)  # as every model of the suite sees them
    x_val, y_val = ds.x_train[-n_val:], ds.y_train[-n_val:]

    def z(v):  # (n, *grid) -> (n, points), standardised
        return sx.encode(v).numpy().reshape(len(v), -1)

    def predict(model, x):
        out = torch.from_numpy(model.predict(z(x)).astype(np.float32)).reshape(x.shape)
        return sy.decode(out)

    def val_rel_l2(model):
        return error_metrics(predict(model, x_val), y_val.astype(np.float64))[1]

    y_z = sy.encode(y_fit).numpy().reshape(len(y_fit), -1)
    (val, alpha, best), trials = _fit_on_validation(z(x_fit), y_z, val_rel_l2, alphas)
    mae, rel_l2 = error_metrics(predict(best, ds.x_test), ds.y_test.astype(np.float64))
    return {
        "dataset": "burgers_released",
        "resolution": resolution,
        "n_fit": len(x_fit),
        "n_val": n_val,
        "n_test": len(ds.x_test),
        "alpha": alpha,
        "val_rel_l2": val,
        "trials": trials,
        "mae": mae,
        "rel_l2": rel_l2,
    }


def _tables(suite: str, rows: list[dict]) -> str:
    if suite == "pde":
        head = "| resolution | ridge penalty (val) | val rel. L2 | test MAE | test rel. L2 |"
        lines = [f"| {r['resolution']} | {r['alpha']:g} | {r['val_rel_l2']:.4f} | "
                 f"{r['mae']:.4f} | {r['rel_l2']:.4f} |" for r in rows]  # fmt: skip
        return "\n".join([head, "|---:|---:|---:|---:|---:|", *lines])
    head = "| data set | inputs | train windows | ridge penalty (val) | val MAE | test MAE |"
    lines = [f"| {r['dataset']} | {r['n_inputs']:,} | {r['n_train_windows']:,} | "
             f"{r['alpha']:g} | {r['val_mae']:.3f} | {r['metrics']['observed']['mae']:.3f} |"
             for r in rows]  # fmt: skip
    return "\n".join([head, "|---|---:|---:|---:|---:|---:|", *lines])


def main(argv=None) -> int:
    import torch

    from eads._io import atomic_write_json
    from eads.runs import git_revision

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("suite", choices=sorted(OUT))
    ap.add_argument("--datasets", default=",".join(OFFLINE), help="spatiotemporal: data sets")
    ap.add_argument("--resolutions", default=",".join(map(str, PDE_RESOLUTIONS)), help="pde")
    ap.add_argument("--out", type=Path, default=None, help="default: the suite's ridge.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.suite == "pde":
        rows = [operator_reference(int(r)) for r in args.resolutions.split(",") if r]
    else:
        rows = [forecasting_reference(d) for d in args.datasets.split(",") if d]
    atomic_write_json(
        args.out or OUT[args.suite],
        {
            "command": " ".join(["python benchmarks/ridge_reference.py", *sys.argv[1:]]),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "revision": git_revision(),
            "alphas": list(ALPHAS),
            "rows": rows,
        },
    )
    print(_tables(args.suite, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
