"""A linear reference for EADS in the spatio-temporal suite: ridge regression on EADS's inputs.

EADS maps the flattened, z-scored history window (every node and feature) to the whole horizon
of every node (``eads.tasks._forecasters``). The simplest learned map on the very same inputs
is linear; a physical learner that does not beat it has not used its dynamics. This script fits
scikit-learn's ``Ridge`` on each data set's training windows (the suite's stride), chooses the
penalty on the suite's validation subset by the masked validation MAE (the quantity every model
of the suite stops on), and scores the test split with the suite's metrics
(``eads.bench.metrics.forecast_metrics_report``; the headline is the observed-zeros MAE).
Missing training targets are filled with the training mean (z = 0); the test metrics mask them.
Nothing is tuned on the test split.

    .venv/bin/python benchmarks/spatiotemporal_ridge.py            # the offline data sets
    .venv/bin/python benchmarks/spatiotemporal_ridge.py --datasets sz_taxi

Writes ``benchmarks/results/spatiotemporal/ridge.json`` (atomic) and prints a table. A few
CPU minutes on one thread (texas_covid's 3,556 inputs are the largest).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "spatiotemporal" / "ridge.json"
OFFLINE = ("beijing_pm25", "beijing_pm10", "sz_taxi", "texas_covid", "nyc_taxi")
ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-4, 7))


def ridge_reference(dataset: str, alphas=ALPHAS) -> dict:
    """The validation-chosen ridge of ``dataset`` and its test metrics (both zero conventions)."""
    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import Ridge

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

    trials = []
    warnings.filterwarnings("ignore", category=LinAlgWarning)  # the smallest penalties, unchosen
    for alpha in alphas:
        t0 = time.perf_counter()
        model = Ridge(alpha=alpha).fit(flat(sp.train.x[ti]), flat(y_train))
        val = masked_mae(predict(model, sp.val.x[vi]), sp.val.y[vi], sp.val.y_mask[vi])
        trials.append({"alpha": alpha, "val_mae": val, "fit_s": time.perf_counter() - t0})
        if val == min(t["val_mae"] for t in trials):
            best = model
    chosen = min(trials, key=lambda t: t["val_mae"])
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
        "alpha": chosen["alpha"],
        "val_mae": chosen["val_mae"],
        "trials": trials,
        "metrics": metrics,
    }


def _revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                             capture_output=True, check=True)  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    import torch

    from eads._io import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(OFFLINE))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = [ridge_reference(d) for d in args.datasets.split(",") if d]
    atomic_write_json(
        args.out,
        {
            "command": " ".join(["python benchmarks/spatiotemporal_ridge.py", *sys.argv[1:]]),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "revision": _revision(),
            "alphas": list(ALPHAS),
            "rows": rows,
        },
    )
    print("| data set | inputs | train windows | alpha (val) | val MAE | test MAE |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        mae = r["metrics"]["observed"]["mae"]
        print(f"| {r['dataset']} | {r['n_inputs']:,} | {r['n_train_windows']:,} | "
              f"{r['alpha']:g} | {r['val_mae']:.3f} | {mae:.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
