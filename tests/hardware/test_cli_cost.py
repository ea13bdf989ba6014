"""``eads cost`` and ``eads robustness`` end to end on tiny run directories."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from eads.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from eads.hardware import cost_report, format_cost_table
from eads.tasks.fit import fit_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cost")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = np.stack([np.sin(x[:, 0]) + x[:, 1], x[:, 2] ** 2], axis=1)
    csv = root / "data.csv"
    table = np.hstack([x, y])
    rows = ["a,b,c,u,v"] + [",".join(f"{v:.6f}" for v in row) for row in table]
    csv.write_text("\n".join(rows) + "\n")
    cfg = RunConfig(
        model=ModelConfig(kind="eads", n_hidden=8, n_steps=4),
        train=TrainConfig(epochs=2, batch_size=16),
        data=DataConfig(path=str(csv), outputs=("u", "v")),
    )
    fit_run(cfg, root / "run", progress=False)
    mlp = cfg.replace(model={"kind": "mlp"}, train={"trainer": "backprop"})
    fit_run(mlp, root / "mlp", progress=False)
    return root


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``eads ARGS`` in-process (the real ``main``: error printing and exit codes)."""
    from eads.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["eads", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return _Result(code, captured.out, captured.err)

    return run


def test_cost_report_structure(tiny_run):
    rep = cost_report(tiny_run / "run", baselines=(tiny_run / "mlp",))
    inf = rep["modeled"]["inference"]
    assert rep["modeled"]["source"] == "modeled" and rep["paper"]["source"] == "paper"
    assert inf["time_s"] == pytest.approx(
        inf["dac_s"] + inf["projection_s"] + inf["coupling_s"] + inf["readout_s"] + inf["adc_s"]
    )
    assert inf["coupling_s"] == pytest.approx(1.0 * rep["node_time_constant_s"])
    assert [m["source"] for m in rep["measured"]] == ["measured", "measured"]
    assert rep["modeled"]["training"]["n_samples"] == rep["measured"][0]["train_samples"]
    assert "latency per inference" in format_cost_table(rep)
    bottom = cost_report(tiny_run / "run", power="bottom-up")
    assert bottom["modeled"]["inference"]["power_w"] == pytest.approx(
        bottom["modeled"]["bottom_up_power_w"]["inference"]
    )


def test_cli_cost_prints_table_and_json(tiny_run, tmp_path, cli):
    out = tmp_path / "cost.json"
    res = cli("cost", str(tiny_run / "run"), "--json", str(out), "--baseline",
               str(tiny_run / "mlp"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "modeled" in res.stdout and "measured" in res.stdout
    assert json.loads(out.read_text())["modeled"]["inference"]["time_s"] > 0


def test_cli_cost_errors_exit_2(tiny_run, tmp_path, cli):
    res = cli("cost", str(tmp_path))
    assert res.returncode == 2 and "holds no trained model" in res.stderr
    assert "Traceback" not in res.stderr
    res = cli("cost", str(tiny_run / "run"), "--capacitance-f", "-1e-12")
    assert res.returncode == 2 and "capacitance_f" in res.stderr and "-1e-12" in res.stderr
    res = cli("cost", str(tiny_run / "mlp"))
    assert res.returncode == 2 and "EADS" in res.stderr


@pytest.mark.slow
def test_cli_robustness_quick(tmp_path, cli):
    res = cli("robustness", "--quick", "--quiet", "--run-dir", str(tmp_path / "rob"))
    assert res.returncode == 0, res.stderr
    out = json.loads((tmp_path / "rob" / "robustness.json").read_text())
    assert (tmp_path / "rob" / "robustness_demo.png").is_file()
    assert {r["axis"] for r in out["results"][0]["rows"]} == {"bits", "sigma", "noise"}
