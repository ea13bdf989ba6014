"""The ``eads`` command line: fit / predict / online / resume write what they say, and every bad
input ends with exit code 2, a one-line ``error: ...`` and no traceback, with nothing
half-written. Commands run in-process through ``eads.cli.main`` (fast); one runs as a real
subprocess to check the process-level behaviour."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from eads.runs import load_checkpoint

RUN_FILES = {
    "config.json",
    "meta.json",
    "metrics.json",
    "checkpoint.safetensors",
    "model.safetensors",
}
TINY = ["--hidden", "4", "--epochs", "2", "--quiet"]


def assert_user_error(code, err, *words):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture
def data_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1]
    path = tmp_path / "data.csv"
    rows = ["u,v,target"] + [f"{a:.6f},{b:.6f},{c:.6f}" for (a, b), c in zip(x, y, strict=True)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def fitted(tmp_path, data_csv, monkeypatch, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(monkeypatch, capsys, "fit", data_csv, "--run-dir", run, *TINY)
    assert code == 0, err
    return run, out


def test_fit_writes_run_directory(fitted):
    run, out = fitted
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    assert "run directory" in out and "test:" in out
    meta = json.loads((run / "meta.json").read_text())
    assert {"seed", "revision", "device"} <= set(meta)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and {"train", "val", "test"} <= set(metrics)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["n_hidden"] == 4 and cfg["data"]["outputs"] == ["target"]
    assert cfg["train"]["trainer"] == "ectrain"


def test_predict_writes_predictions(fitted, data_csv, tmp_path, monkeypatch, capsys):
    run, _ = fitted
    out_csv = tmp_path / "pred.csv"
    code, out, err = run_cli(monkeypatch, capsys, "predict", run, data_csv, "--out", out_csv)
    assert code == 0, err
    lines = out_csv.read_text().strip().splitlines()
    assert lines[0] == "target" and len(lines) == 81
    assert all(np.isfinite(float(v)) for v in lines[1:])
    code, out, _ = run_cli(monkeypatch, capsys, "predict", run, data_csv)  # to stdout
    assert code == 0 and len(out.strip().splitlines()) == 80
    assert np.allclose([float(v) for v in out.split()], [float(v) for v in lines[1:]], atol=1e-4)


def test_fit_online_reports_running_error(tmp_path, data_csv, monkeypatch, capsys):
    run = tmp_path / "online"
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "fit",
        data_csv,
        "--online",
        "--run-dir",
        run,
        "--batch-size",
        "4",
        *TINY,
    )
    assert code == 0, err
    assert "running MSE" in out
    online = json.loads((run / "online.json").read_text())
    assert len(online["errors"]) == len(online["running"]) > 0
    assert "online_final_running_mse" in json.loads((run / "metrics.json").read_text())


def test_fit_npgl_and_backprop(tmp_path, data_csv, monkeypatch, capsys):
    for model, trainer in (("npgl", "likelihood"), ("eads", "backprop")):
        run = tmp_path / model
        code, _, err = run_cli(
            monkeypatch,
            capsys,
            "fit",
            data_csv,
            "--model",
            model,
            "--trainer",
            trainer,
            "--run-dir",
            run,
            *TINY,
        )
        assert code == 0, err
        assert json.loads((run / "config.json").read_text())["train"]["trainer"] == trainer


def _interrupting_fit(fit_task):
    real_fit = fit_task.fit

    def interrupted_fit(*a, **kw):
        def stop(epoch, history):
            if epoch == 1:  # Ctrl-C after the second epoch's checkpoint
                raise KeyboardInterrupt

        return real_fit(*a, **kw, on_epoch=stop)

    return interrupted_fit


def test_interrupted_fit_resumes_to_same_parameters(tmp_path, data_csv, monkeypatch, capsys):
    import eads.tasks.fit as fit_task

    args = ["--hidden", "4", "--epochs", "4", "--patience", "0", "--quiet"]
    full = tmp_path / "full"
    assert run_cli(monkeypatch, capsys, "fit", data_csv, "--run-dir", full, *args)[0] == 0

    cut = tmp_path / "cut"
    with monkeypatch.context() as m:
        m.setattr(fit_task, "fit", _interrupting_fit(fit_task))
        run_cli(monkeypatch, capsys, "fit", data_csv, "--run-dir", cut, *args)
    assert not (cut / "model.safetensors").exists()  # nothing half-written
    assert not (cut / "metrics.json").exists()
    assert (cut / "checkpoint.safetensors").exists()

    code, _, err = run_cli(
        monkeypatch, capsys, "fit", data_csv, "--resume", "--run-dir", cut, "--quiet"
    )
    assert code == 0, err
    a, _ = load_checkpoint(full / "model.safetensors")
    b, _ = load_checkpoint(cut / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert json.loads((cut / "metrics.json").read_text())["epochs_run"] == 4


def test_interrupted_fit_exits_130(tmp_path, data_csv, monkeypatch, capsys):
    """Ctrl-C must not look like success. KNOWN BUG (src/eads/cli.py, main): with
    standalone_mode=False typer turns KeyboardInterrupt into Exit(130) and *returns* 130 from
    app(); main() drops the return value, so the process exits 0 and prints nothing."""
    import eads.tasks.fit as fit_task

    with monkeypatch.context() as m:
        m.setattr(fit_task, "fit", _interrupting_fit(fit_task))
        code, _, err = run_cli(
            monkeypatch,
            capsys,
            "fit",
            data_csv,
            "--run-dir",
            tmp_path / "c",
            "--hidden",
            "4",
            "--epochs",
            "4",
            "--quiet",
        )
    assert code == 130
    assert "interrupted" in err


# -- bad input -------------------------------------------------------------------------------------
def test_missing_data_file(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(
        monkeypatch, capsys, "fit", tmp_path / "nope.csv", "--run-dir", tmp_path / "r", *TINY
    )
    assert_user_error(code, err, "does not exist")
    assert not (tmp_path / "r").exists()


def test_nan_in_data(tmp_path, monkeypatch, capsys):
    path = tmp_path / "nan.csv"
    path.write_text("a,b\n1,2\n3,nan\n5,6\n")
    code, _, err = run_cli(monkeypatch, capsys, "fit", path, "--run-dir", tmp_path / "r", *TINY)
    assert_user_error(code, err, "NaN", "row 1")
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_unknown_column(data_csv, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(
        monkeypatch, capsys, "fit", data_csv, "--inputs", "u,w", "--run-dir", tmp_path / "r", *TINY
    )
    assert_user_error(code, err, "'w'", "'u', 'v', 'target'")


@pytest.mark.parametrize(
    "flag",
    [
        ["--hidden", "0"],
        ["--epochs", "0"],
        ["--steps", "-1"],
        ["--batch-size", "0"],
        ["--duration", "0"],
    ],
)
def test_non_positive_sizes(data_csv, tmp_path, monkeypatch, capsys, flag):
    args = ["fit", data_csv, "--run-dir", tmp_path / "r", "--quiet", *flag]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert_user_error(
        code,
        err,
        flag[0]
        .lstrip("-")
        .replace("-", "_")
        .replace("hidden", "n_hidden")
        .replace("steps", "n_steps"),
    )
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_bad_nproc_fails_before_spawning(data_csv, tmp_path, monkeypatch, capsys):
    for flags, words in (
        (["--nproc", "0"], ("nproc", "positive")),
        (["--nproc", "2", "--online"], ("--online", "--nproc")),
    ):
        args = ["fit", data_csv, "--run-dir", tmp_path / "r", "--quiet", *flags]
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert_user_error(code, err, *words)
        assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_fit_nproc_2_writes_a_data_parallel_run(tmp_path, data_csv, monkeypatch, capsys):
    """``eads fit --nproc 2``: 2 spawned gloo ranks, ~20 s."""
    run = tmp_path / "dp"
    args = ["fit", data_csv, "--run-dir", run, "--nproc", "2", *TINY]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    assert "test:" in out and out.count("run directory") == 1
    assert json.loads((run / "metrics.json").read_text())["world_size"] == 2
    meta = json.loads((run / "meta.json").read_text())
    assert meta["data_parallel"] == {"world_size": 2, "backend": "gloo"}


def test_unknown_solver_and_model(data_csv, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "fit",
        data_csv,
        "--solver",
        "leapfrog",
        "--run-dir",
        tmp_path / "r",
        *TINY,
    )
    assert_user_error(code, err, "leapfrog")
    # regression: an unknown --model raised KeyError in default_trainer_for (a traceback)
    code, _, err = run_cli(
        monkeypatch, capsys, "fit", data_csv, "--model", "gpt", "--run-dir", tmp_path / "r", *TINY
    )
    assert_user_error(code, err, "'gpt'")


def test_predict_with_missing_or_corrupt_model(fitted, data_csv, tmp_path, monkeypatch, capsys):
    run, _ = fitted
    code, _, err = run_cli(monkeypatch, capsys, "predict", tmp_path / "nowhere", data_csv)
    assert_user_error(code, err, "does not exist")
    model = run / "model.safetensors"
    model.write_bytes(model.read_bytes()[:50])
    code, _, err = run_cli(
        monkeypatch, capsys, "predict", run, data_csv, "--out", tmp_path / "p.csv"
    )
    assert_user_error(code, err, "corrupt")
    assert not (tmp_path / "p.csv").exists()
    model.unlink()
    code, _, err = run_cli(monkeypatch, capsys, "predict", run, data_csv)
    assert_user_error(code, err, "model.safetensors")


def test_resume_without_a_run_or_with_a_corrupt_checkpoint(
    fitted, data_csv, tmp_path, monkeypatch, capsys, caplog
):
    never = tmp_path / "never"  # killed before the run directory was made: start from scratch
    with caplog.at_level(logging.WARNING, logger="eads.tasks.fit"):
        code, _, err = run_cli(
            monkeypatch, capsys, "fit", data_csv, "--resume", "--run-dir", never, *TINY
        )
    assert code == 0, err
    assert [r.getMessage() for r in caplog.records] == [
        f"{never} does not exist yet; starting the run from scratch."
    ]
    assert RUN_FILES <= {p.name for p in never.iterdir()}
    code, _, err = run_cli(monkeypatch, capsys, "fit", data_csv, "--resume", "--quiet")
    assert_user_error(code, err, "--run-dir")
    run, _ = fitted
    (run / "model.safetensors").unlink()  # as if interrupted
    ckpt = run / "checkpoint.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    code, _, err = run_cli(
        monkeypatch, capsys, "fit", data_csv, "--resume", "--run-dir", run, "--quiet"
    )
    assert_user_error(code, err, "corrupt")
    assert not (run / "model.safetensors").exists()


def test_resume_refuses_other_settings_or_other_data(fitted, data_csv, monkeypatch, capsys):
    run, _ = fitted
    lr = json.loads((run / "config.json").read_text())["train"]["lr"]
    args = ("fit", data_csv, "--resume", "--run-dir", run, "--quiet")
    code, _, err = run_cli(monkeypatch, capsys, *args, "--hidden", "5", "--lr", "0.5")
    assert_user_error(code, err, "model.n_hidden 4 -> 5", f"train.lr {lr!r} -> 0.5")
    code, _, err = run_cli(monkeypatch, capsys, *args, "--hidden", "4")  # its own: accepted
    assert code == 0, err
    lines = data_csv.read_text().splitlines()
    data_csv.write_text("\n".join([*lines[:-1], lines[1]]) + "\n")  # the last row changed
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert_user_error(code, err, "not the data file the run was created with", "sha256")


def test_refuses_to_overwrite_a_trained_run(fitted, data_csv, monkeypatch, capsys):
    run, _ = fitted
    code, _, err = run_cli(monkeypatch, capsys, "fit", data_csv, "--run-dir", run, *TINY)
    assert_user_error(code, err, "already holds a trained model")


@pytest.mark.parametrize("n_rows", [1, 3])
def test_too_few_rows_to_split(tmp_path, monkeypatch, capsys, n_rows):
    """Regression: a one-row CSV trained a model on it and exited 0. With the fractions 0.15,
    3 rows give no validation sample (round(0.45) = 0); 4 rows give 2 / 1 / 1."""
    path = tmp_path / "few.csv"
    path.write_text("a,b\n" + "".join(f"{i},{2 * i}\n" for i in range(n_rows)))
    fractions = ("--val-fraction", "0.15", "--test-fraction", "0.15")
    code, _, err = run_cli(
        monkeypatch, capsys, "fit", path, *fractions, "--run-dir", tmp_path / "r", *TINY
    )
    assert_user_error(code, err, "Too few samples", f"{n_rows} give", "at least 4 samples")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kind", ["eads", "npgl"])
def test_fit_without_the_reference_node(data_csv, tmp_path, monkeypatch, capsys, kind):
    run = tmp_path / kind
    code, _, err = run_cli(
        monkeypatch, capsys, "fit", data_csv, "--model", kind, "--no-reference", "--epochs", "2",
        "--run-dir", run, "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["model"]["reference"] is False
    from eads.learn.registry import load_trained

    model = load_trained(run)[0]
    assert not model.reference and not any("ref" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("voltage", ["nan", "0", "1e9"])
def test_bad_reference_voltage(data_csv, tmp_path, monkeypatch, capsys, voltage):
    code, _, err = run_cli(
        monkeypatch, capsys, "fit", data_csv, "--reference-voltage", voltage, "--epochs", "1",
        "--run-dir", tmp_path / "r", "--quiet",
    )  # fmt: skip
    assert_user_error(code, err, "reference_voltage")
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_blowing_up_circuit(data_csv, tmp_path, monkeypatch, capsys):
    config = tmp_path / "big.toml"
    config.write_text("[model]\nduration = 200.0\ncoupling_init = 5.0\nn_hidden = 8\n")
    run = tmp_path / "r"
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "fit",
        data_csv,
        "--config",
        config,
        "--run-dir",
        run,
        "--epochs",
        "2",
        "--quiet",
    )
    assert_user_error(code, err, "blew up")
    assert not (run / "model.safetensors").exists()
    assert not (run / "metrics.json").exists()


def test_bad_config_file(data_csv, tmp_path, monkeypatch, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[model]\nwidth = 3\n")
    code, _, err = run_cli(monkeypatch, capsys, "fit", data_csv, "--config", config, "--quiet")
    assert_user_error(code, err, "width")


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    bad = tmp_path / "nan.csv"
    bad.write_text("a,b\n1,inf\n")
    proc = subprocess.run(
        [sys.executable, "-m", "eads.cli", "fit", str(bad), "--run-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_demo_runs(tmp_path, monkeypatch, capsys):
    """``eads demo --epochs 1``: ~4 s on one thread. A cap of one epoch stops every model before
    patience does, and the table says so."""
    code, out, err = run_cli(
        monkeypatch, capsys, "demo", "--epochs", "1", "--quiet", "--run-dir", tmp_path / "demo"
    )
    assert code == 0, err
    for label in ("EADS (EC-Train, ref.)", "EADS (EC-Train, no ref.)", "NP-GL (cond. lik., ref.)"):
        assert label in out
    assert "NP-GL (cond. lik., no ref.)" in out and "MLP" in out
    assert "stopped before validation patience ran out" in out
    rows = json.loads((tmp_path / "demo" / "metrics.json").read_text())["rows"]
    assert len(rows) == 5 and all(np.isfinite(r["test_mae"]) for r in rows)
    assert {r["stop_reason"] for r in rows} == {"epoch_cap"}
    config = json.loads((tmp_path / "demo" / "config.json").read_text())
    assert [m["model"]["reference"] for m in config["models"][:4]] == [True, False, True, False]


def test_pde_plots_of_a_folder_that_is_no_run_is_a_user_error(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(
        monkeypatch, capsys, "bench", "pde-plots", tmp_path, "--out", tmp_path / "plots"
    )
    assert_user_error(code, err, "not a PDE benchmark run")


NONIDEAL_TOML = """
[model]
n_hidden = 6
solver = "euler"
[model.nonideal]
conductance_bits = 4
variation_sigma = 0.1
noise_std = 0.01
diode = "softplus"
seed = 3
[train]
trainer = "hw-ectrain"
"""


def test_fit_and_predict_a_non_ideal_circuit_with_hw_ectrain(
    data_csv, tmp_path, monkeypatch, capsys
):
    """``[model.nonideal]`` trains through the imperfect circuit, and predict rebuilds that same
    circuit: its predictions equal those of the ideal circuit with the same programmed
    conductances made non-ideal by hand."""
    import torch

    from eads.circuit.eads import EADS
    from eads.circuit.nonideal import NonIdealEADS, NonIdealities
    from eads.solve import make_solver
    from eads.tasks.fit import load_trained

    config = tmp_path / "chip.toml"
    config.write_text(NONIDEAL_TOML)
    run = tmp_path / "chip"
    args = ("fit", data_csv, "--config", config, "--run-dir", run, "--epochs", "2", "--quiet")
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["trainer"] == "hw-ectrain"
    assert cfg["model"]["nonideal"]["conductance_bits"] == 4

    model, _, xs, _ = load_trained(run)
    assert isinstance(model, NonIdealEADS) and model.nonideal.conductance_bits == 4
    ideal = EADS(2, 6, 1, solver=make_solver("euler", n_steps=8))
    ideal.load_state_dict(model.state_dict())
    by_hand = NonIdealEADS.from_model(
        ideal,
        NonIdealities(
            conductance_bits=4, variation_sigma=0.1, noise_std=0.01, diode="softplus", seed=3
        ),
    )
    x = torch.from_numpy(xs.transform(np.random.default_rng(0).normal(size=(5, 2))))
    torch.testing.assert_close(model(x.to(model.P.dtype)), by_hand(x.to(model.P.dtype)))

    code, out, err = run_cli(monkeypatch, capsys, "predict", run, data_csv)
    assert code == 0, err
    assert len(out.strip().splitlines()) == 80


def test_non_ideal_circuit_settings_are_checked(data_csv, tmp_path, monkeypatch, capsys):
    config = tmp_path / "chip.toml"
    config.write_text("[model]\nn_hidden = 4\n[model.nonideal]\nbits = 4\n")
    code, _, err = run_cli(monkeypatch, capsys, "fit", data_csv, "--config", config, "--quiet")
    assert_user_error(code, err, "Unknown non-ideality setting(s) ['bits']", "conductance_bits")
    config.write_text("[model]\nn_hidden = 4\n[model.nonideal]\nconductance_bits = 4\n")
    code, _, err = run_cli(monkeypatch, capsys, "fit", data_csv, "--config", config, "--quiet")
    assert_user_error(code, err, "hw-ectrain")  # plain EC-Train is refused on an imperfect chip
    config.write_text('[model]\nkind = "mlp"\n[model.nonideal]\nnoise_std = 0.1\n')
    code, _, err = run_cli(monkeypatch, capsys, "fit", data_csv, "--config", config, "--quiet")
    assert_user_error(code, err, "model.nonideal")
