"""SPICE export and verification: ngspice is the oracle for the simulated circuit.

The EADS under test is *trained* here (EC-Train, 32 hidden nodes, 4 epochs on a small smooth
map, about 5 s); its ngspice outputs must agree with the simulator's to 1e-3 relative (ten times
tighter than the 1 % the issue asks for; we measure about 1e-4, the simulator's RK4(8) error).
Tests that need ngspice skip, with that reason, where it is not installed; CI installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import eads
from eads._errors import CheckpointError, ConfigError
from eads.config import RunConfig
from eads.spice.netlist import (
    IdealRectifier,
    SmoothRectifier,
    eads_netlist,
    export_run,
    netlist_for,
    npgl_netlist,
    run_inputs,
)
from eads.spice.runner import SpiceError, read_raw, run_ngspice
from eads.spice.verify import relative_difference, verify_model, verify_run
from eads.tasks.fit import fit_run, load_trained

HAVE_NGSPICE = shutil.which("ngspice") is not None
needs_ngspice = pytest.mark.skipif(
    not HAVE_NGSPICE, reason="ngspice is not installed (apt-get install ngspice); CI has it"
)
PASS = 1e-3  # the agreement asked of a trained model (the issue asks for 1e-2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 3))
    y = np.stack([np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2], np.cos(x[:, 1]) - 0.3 * x[:, 0]], 1)
    path = folder / "data.csv"
    rows = ["a,b,c,u,v"] + [",".join(f"{v:.6f}" for v in r) for r in np.concatenate([x, y], 1)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A trained EADS run (H = 32, EC-Train) and a trained NP-GL run on the same data."""
    folder = tmp_path_factory.mktemp("spice")
    data = _data(folder)
    base = RunConfig().replace(
        data={"path": str(data), "outputs": ["u", "v"]}, train={"epochs": 4, "patience": 0}
    )
    fit_run(base.replace(model={"n_hidden": 32}), folder / "eads", progress=False)
    fit_run(
        base.replace(model={"kind": "npgl"}, train={"trainer": "likelihood"}),
        folder / "npgl",
        progress=False,
    )
    return {"eads": folder / "eads", "npgl": folder / "npgl", "folder": folder}


def _cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    from eads.cli import main

    monkeypatch.setattr(sys, "argv", ["eads", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


# -- ngspice vs the simulator ------------------------------------------------------------------
@needs_ngspice
def test_trained_eads_matches_ngspice_and_refines(runs):
    model, *_ = load_trained(runs["eads"])
    assert model.n_hidden >= 32
    solvers = [eads.Euler(4), eads.Euler(16), eads.Euler(64)]
    rep = verify_run(runs["eads"], samples=3, solvers=solvers)
    assert rep.kind == "eads" and rep.n_samples == 3
    assert rep.output_rel_diff < PASS, rep
    assert rep.trajectory_rel_diff < PASS, rep
    assert rep.reference_rel_diff < 1e-4, rep  # ngspice's own error: the refinement floor
    diffs = [rep.solver_rel_diff[repr(s)] for s in solvers]
    # Euler is first order: 4x the steps, about 4x closer to ngspice, down to its floor.
    assert diffs[0] > diffs[1] > diffs[2] > rep.reference_rel_diff, diffs
    assert diffs[0] / diffs[1] > 2.5 and diffs[1] / diffs[2] > 2.5, diffs
    assert rep.spice_s > 0 and rep.simulator_s > 0 and rep.ratio > 0


@needs_ngspice
@pytest.mark.parametrize("kind", ["eads", "npgl"])
def test_reference_node_is_wired_and_its_conductances_matter(runs, kind):
    """The trained circuits have a reference node (the default): the netlist carries its source
    and one G element per hidden node (EADS) or output (NP-GL), and ngspice agrees with the
    simulator with it. The same circuit with its reference conductances zeroed also agrees
    with its own simulation, while the two simulations differ by far more than the agreement:
    so ngspice's outputs do carry the reference's current."""
    model, *_ = load_trained(runs[kind])
    assert model.reference
    x = run_inputs(runs[kind], 2)
    text = netlist_for(model, x).text
    element = "Gpr_0_" if kind == "eads" else "Gr_0_"
    width = model.n_hidden if kind == "eads" else model.n_outputs
    assert "\nVref ref 0 " in text and text.count(element) == width
    assert verify_model(model, x, timing=False).output_rel_diff < PASS
    xt = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        y_with = model(xt)
        getattr(model, "P_ref" if kind == "eads" else "J_ref").zero_()
        y_without = model(xt)
    assert verify_model(model, x, timing=False).output_rel_diff < PASS
    assert relative_difference(y_without.numpy(), y_with.numpy()) > 10 * PASS


@needs_ngspice
def test_miswired_coupling_is_caught(runs):
    model, *_ = load_trained(runs["eads"])
    x = run_inputs(runs["eads"], 2)
    with torch.no_grad():
        h0 = model.project(torch.as_tensor(x, dtype=torch.float32)).abs().amax(0)  # (H,)
    # flip the coupling that carries the most current into its node
    i, j = np.unravel_index(int((model.J.detach().abs() * h0).argmax()), tuple(model.J.shape))
    rep = verify_model(model, x, flip_coupling=(int(i), int(j)), timing=False)
    assert rep.output_rel_diff > 10 * PASS, rep


@needs_ngspice
def test_trained_npgl_matches_ngspice_and_miswiring_is_caught(runs):
    model, *_ = load_trained(runs["npgl"])
    assert isinstance(model, eads.NPGL)
    rep = verify_run(runs["npgl"], samples=3)
    assert rep.kind == "npgl" and rep.output_rel_diff < 1e-5, rep
    x = run_inputs(runs["npgl"], 3)
    with torch.no_grad():
        W = model.coupling()
    N = model.n_inputs
    k, j = np.unravel_index(int(W[N:].abs().argmax()), (model.n_outputs, model.n_nodes))
    bad = verify_model(model, x, flip_coupling=(N + int(k), int(j)), timing=False)
    assert bad.output_rel_diff > 10 * PASS, bad


@needs_ngspice
@pytest.mark.slow
def test_h128_seeded_circuit_matches_ngspice():
    model = eads.EADS(4, 128, 2, seed=3)
    x = np.random.default_rng(3).normal(size=(1, 4))
    rep = verify_model(model, x, timing=False)
    assert rep.output_rel_diff < PASS and rep.trajectory_rel_diff < PASS, rep


def test_netlist_scaling_and_schedule():
    """Values in the netlist are the model's, times the hardware scale; T is the gate's area."""
    from eads.hardware.constants import CircuitConstants

    c = CircuitConstants(capacitance_f=2e-12, unit_conductance_s=1e-6, volts_per_unit=0.05)
    model = eads.EADS(2, 3, 1, seed=0, duration=0.7)
    net = eads_netlist(model, np.array([[0.5, -1.0]]), constants=c)
    tau = 2e-6
    assert net.tau_s == pytest.approx(tau)
    line = next(ln for ln in net.text.splitlines() if ln.startswith("Gj_0_1_2 "))
    assert float(line.split()[-1]) == pytest.approx(float(model.J[1, 2].detach()) * 1e-6)
    line = next(ln for ln in net.text.splitlines() if ln.startswith("Vin_0_1 "))
    assert "-5.000000000000e-02" in line
    s = net.schedule
    gate_area = (s.coupling_end_s - s.coupling_start_s) - s.ramp_s
    assert gate_area == pytest.approx(0.7 * tau, rel=1e-12)
    t = net.coupling_time_s(np.array([0.0, 0.35, 0.7]))
    assert t[0] == pytest.approx(s.coupling_start_s) and t[-1] == pytest.approx(s.coupling_end_s)
    assert np.all(np.diff(t) > 0)
    assert "max(V(s0_z0), 0)" in net.text
    assert IdealRectifier().expression("v") == "max(v, 0)"
    assert "ln(1 + exp(-abs(v)/" in SmoothRectifier(1e-3).expression("v")
    with pytest.raises(ConfigError, match="width_v"):
        SmoothRectifier(0.0)
    with pytest.raises(eads.DataError, match="shape"):
        eads_netlist(model, np.zeros((1, 3)))
    with pytest.raises(ConfigError, match="flip_coupling"):
        eads_netlist(model, np.zeros((1, 2)), flip_coupling=(3, 0))
    npgl = npgl_netlist(eads.NPGL(2, 2, seed=0), np.ones((1, 2)))
    assert npgl.kind == "npgl" and npgl.output_nodes == [["s0_y0", "s0_y1"]]


def test_relative_difference():
    e = np.array([[1.0, -2.0], [0.0, 0.5]])
    assert relative_difference(e, e) == 0.0
    assert relative_difference(e + np.array([[0.02, 0.0], [0.0, 0.0]]), e) == pytest.approx(0.01)
    assert relative_difference(e + np.array([[0.0, 0.0], [0.05, 0.0]]), e) == pytest.approx(0.1)


# -- the runner and bad input ------------------------------------------------------------------
@needs_ngspice
def test_raw_files_binary_and_ascii(tmp_path, monkeypatch):
    text = (
        "rc\n.options reltol=1e-7\nV1 a 0 DC 1\nR1 a b 1k\nC1 b 0 1n IC=0\n"
        ".tran 10n 5u 0 10n uic\n.end\n"
    )
    res = run_ngspice(text)
    expected = 1 - np.exp(-res.time / 1e-6)  # RC = 1 us, the closed form
    assert np.abs(res.voltage("b") - expected).max() < 1e-4
    (tmp_path / "c.cir").write_text(text)
    env = {**os.environ, "SPICE_ASCIIRAWFILE": "1"}
    subprocess.run(
        ["ngspice", "-b", "-r", "a.raw", "c.cir"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert b"Values:" in (tmp_path / "a.raw").read_bytes()
    t, vec = read_raw(tmp_path / "a.raw")
    np.testing.assert_allclose(t, res.time)
    np.testing.assert_allclose(vec["v(b)"], res.voltage("b"))


@needs_ngspice
def test_ngspice_errors_show_its_message():
    with pytest.raises(SpiceError, match="no such function 'nosuch'"):
        run_ngspice("bad\nV1 a 0 DC 1\nB1 a 0 I = 1e-3*nosuch(V(a))\n.tran 1n 1u\n.end\n")
    diverge = "div\nB1 0 a I = exp(1000*V(a))*1e-3\nC1 a 0 1p IC=0\n.tran 1n 1u 0 1n uic\n.end\n"
    with pytest.raises(SpiceError, match="(?i)timestep too small"):
        run_ngspice(diverge)
    with pytest.raises(SpiceError, match="did not finish within"):
        run_ngspice(eads_netlist(eads.EADS(2, 8, 1, seed=0), np.ones((4, 2))).text, timeout_s=0.01)


def test_ngspice_absent(runs, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(SpiceError, match="ngspice is not installed"):
        run_ngspice("t\n.end\n")
    code, _, err = _cli(["spice", "verify", runs["eads"]], monkeypatch, capsys)
    assert code == 2 and "ngspice is not installed" in err and "Traceback" not in err


def test_no_trained_model_no_partial_netlist(runs, tmp_path, monkeypatch, capsys):
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    (empty_run / "config.json").write_text("{}")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(CheckpointError, match="holds no trained model"):
        export_run(empty_run, out_dir / "c.cir")
    for args in (
        ["spice", "export", empty_run, "--out", out_dir / "c.cir"],
        ["spice", "export", tmp_path / "missing", "--out", out_dir / "c.cir"],
        ["spice", "export", runs["eads"], "--out", out_dir / "c.cir", "--npgl"],
        ["spice", "export", runs["eads"], "--out", out_dir / "c.cir", "--samples", "0"],
        ["spice", "verify", empty_run],
    ):
        code, _, err = _cli(args, monkeypatch, capsys)
        assert code == 2 and err.startswith("error: ") and "Traceback" not in err, (args, err)
    assert list(out_dir.iterdir()) == []  # no netlist, no temporary file

    def disk_full(fd):  # a failure while writing must not leave half a netlist
        raise OSError("disk full")

    monkeypatch.setattr("eads._io.os.fsync", disk_full)
    with pytest.raises(OSError, match="disk full"):
        export_run(runs["eads"], out_dir / "c.cir")
    assert list(out_dir.iterdir()) == []


def test_cli_export_and_verify(runs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "circuit.cir"
    code, text, err = _cli(["spice", "export", runs["eads"], "--out", out], monkeypatch, capsys)
    assert code == 0, err
    netlist = out.read_text()
    assert ".tran" in netlist and "Vphi_c" in netlist and netlist.count("\nGj_0_") == 32 * 32
    code, text, err = _cli(
        ["spice", "export", runs["npgl"], "--out", tmp_path / "n.cir", "--npgl"],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    if HAVE_NGSPICE:
        code, text, err = _cli(
            ["spice", "verify", runs["npgl"], "--samples", "2"], monkeypatch, capsys
        )
        assert code == 0, err
        assert "largest relative difference" in text
        value = float(text.split("simulator): ")[1].split()[0])
        assert value < PASS
