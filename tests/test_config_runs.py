"""Configs (TOML, validation), atomic writes, checkpoints and run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import eads
from eads._io import atomic_write_json, atomic_write_text, atomic_write_with
from eads.config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_toml
from eads.runs import RunDir, load_checkpoint, save_checkpoint


def to_toml(cfg: RunConfig) -> str:
    """A minimal TOML writer for the three flat tables (tomllib only reads)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(i) for i in v) + "]"
        return repr(v)

    lines = []
    for table, entries in cfg.to_dict().items():
        lines.append(f"[{table}]")
        # TOML has no null: a setting left out takes its default, which is what None means
        lines += [f"{k} = {value(v)}" for k, v in entries.items() if v is not None]
    return "\n".join(lines) + "\n"


def test_toml_round_trip(tmp_path):
    cfg = RunConfig(
        model=ModelConfig(
            kind="eads",
            n_hidden=12,
            duration=0.5,
            solver="euler",
            n_steps=3,
            stages="transient",
            coupling_init=0.25,
        ),
        train=TrainConfig(
            trainer="backprop",
            epochs=7,
            batch_size=1,
            lr=1e-3,
            optimizer="sgd",
            patience=0,
            seed=42,
        ),
        data=DataConfig(
            path="d.csv",
            inputs=("a", "b"),
            outputs=("c",),
            val_fraction=0.2,
            test_fraction=0.1,
            seed=3,
        ),
    )
    path = tmp_path / "run.toml"
    path.write_text(to_toml(cfg))
    assert load_toml(path) == cfg
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_partial_toml_takes_defaults(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[model]\nn_hidden = 5\n[train]\nepochs = 2\n")
    cfg = load_toml(path)
    assert cfg.model.n_hidden == 5 and cfg.train.epochs == 2
    assert cfg.model.solver == ModelConfig().solver and cfg.data == DataConfig()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[model]\nn_hiden = 5\n", r"n_hiden.*valid ones are"),
        ("[optim]\nlr = 1\n", "Unknown config table"),
        ("[model]\nn_hidden = 0\n", "n_hidden"),
        ("[model]\nkind = 'transformer'\n", "kind"),
        ("[model]\nduration = -1.0\n", "duration"),
        ("[train]\nlr = 0.0\n", "lr"),
        ("[train]\noptimizer = 'lbfgs'\n", "optimizer"),
        ("[train]\nbatch_size = 0\n", "batch_size"),
        ("[train]\npatience = -1\n", "patience"),
        ("[data]\nval_fraction = 1.5\n", "val_fraction"),
        ("[data]\nval_fraction = 0.5\ntest_fraction = 0.5\n", "below 1"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_bad_settings_raise_config_error(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(eads.ConfigError, match=match):
        load_toml(path)


def test_missing_config_file():
    with pytest.raises(eads.ConfigError, match="does not exist"):
        load_toml("/nonexistent/run.toml")


def test_configs_are_frozen_and_replace_overrides():
    cfg = RunConfig()
    with pytest.raises(AttributeError):
        cfg.model.n_hidden = 3  # type: ignore[misc]
    new = cfg.replace(model={"n_hidden": 7, "duration": None}, train={"epochs": 3})
    assert new.model.n_hidden == 7 and new.model.duration == cfg.model.duration
    assert new.train.epochs == 3 and cfg.train.epochs == TrainConfig().epochs
    with pytest.raises(eads.ConfigError, match="valid ones"):
        cfg.replace(model={"width": 3})


# -- atomic writes ---------------------------------------------------------------------------------
def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def test_an_atomic_write_keeps_the_mode_of_the_file_it_replaces_or_the_umasks(tmp_path):
    import os

    new = tmp_path / "new.json"
    umask = os.umask(0o022)
    try:
        atomic_write_json(new, {})
    finally:
        os.umask(umask)
    assert new.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600
    old = tmp_path / "old.txt"
    old.write_text("x")
    old.chmod(0o640)
    atomic_write_text(old, "y")
    assert old.read_text() == "y" and old.stat().st_mode & 0o777 == 0o640


def test_atomic_write_leaves_nothing_when_the_writer_raises(tmp_path):
    target = tmp_path / "out.bin"

    def half_then_fail(tmp):
        tmp.write_bytes(b"half of it")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_with(target, half_then_fail)
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_atomic_write_keeps_the_old_file_when_the_writer_raises(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"mse": 1.0})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})  # not JSON-able: fails mid-write
    assert json.loads(target.read_text()) == {"mse": 1.0}
    assert leftovers(tmp_path) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a" / "b.txt"  # parent folders are created
    atomic_write_text(target, "first version, long")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    atomic_write_json(tmp_path / "t.json", {"x": torch.tensor(2.5), "v": torch.arange(2)})
    assert json.loads((tmp_path / "t.json").read_text()) == {"x": 2.5, "v": [0, 1]}


# -- checkpoints -----------------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
    tensors = {"w": torch.randn(3, 4, dtype=torch.float64), "b": torch.arange(5)}
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"epoch": 3, "note": "x"})
    loaded, state = load_checkpoint(tmp_path / "c.safetensors")
    assert state == {"epoch": 3, "note": "x"}
    assert set(loaded) == {"w", "b"}
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)


@pytest.mark.parametrize("cut", [1, 8, 100, -10])
def test_truncated_checkpoint_raises_checkpoint_error(tmp_path, cut):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.randn(64, 64)}, {"epoch": 1})
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut > 0 else data[:cut])
    with pytest.raises(eads.CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_garbage_and_missing_checkpoint(tmp_path):
    path = tmp_path / "c.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(eads.CheckpointError, match="corrupt"):
        load_checkpoint(path)
    with pytest.raises(eads.CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


# -- run directories -------------------------------------------------------------------------------
def test_run_directory_holds_config_and_meta(tmp_path):
    cfg = RunConfig(train=TrainConfig(seed=11))
    run = RunDir.create(tmp_path / "run", cfg.to_dict(), seed=11)
    assert RunConfig.from_dict(run.config()) == cfg
    meta = run.read_json("meta.json")
    assert meta["seed"] == 11
    assert isinstance(meta["revision"], str) and meta["revision"]
    assert meta["device"].startswith("cpu")
    assert meta["torch"] == torch.__version__ and meta["eads"] == eads.__version__
    run.write_json("metrics.json", {"mse": 0.5})
    assert run.read_json("metrics.json") == {"mse": 0.5}
    assert run.checkpoint.name == "checkpoint.safetensors"


def test_run_directory_missing_or_corrupt_json(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(eads.CheckpointError, match="holds no config.json"):
        run.config()
    (tmp_path / "config.json").write_text('{"model": ')
    with pytest.raises(eads.CheckpointError, match="corrupt"):
        run.config()


def test_fit_run_writes_a_complete_run_directory(tmp_path):
    from eads.tasks.fit import fit_run

    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=g)
    csv = tmp_path / "d.csv"
    rows = ["a,b,c"] + [f"{a:.6f},{b:.6f},{a - 0.5 * b:.6f}" for a, b in x.tolist()]
    csv.write_text("\n".join(rows) + "\n")
    cfg = RunConfig(
        model=ModelConfig(n_hidden=4),
        train=TrainConfig(epochs=2, seed=5),
        data=DataConfig(path=str(csv)),
    )
    metrics = fit_run(cfg, tmp_path / "run", progress=False)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {
        "config.json",
        "meta.json",
        "metrics.json",
        "checkpoint.safetensors",
        "model.safetensors",
        "standardizer.json",
        "history.json",
    } <= names
    assert not [n for n in names if n.startswith(".tmp-")]
    run = RunDir(tmp_path / "run")
    assert run.read_json("meta.json")["seed"] == 5
    assert run.read_json("metrics.json") == json.loads(json.dumps(metrics))
    saved = RunConfig.from_dict(run.config())
    assert saved.data.inputs == ("a", "b") and saved.data.outputs == ("c",)  # resolved


def test_atomic_json_writes_arrays_and_scalars(tmp_path):
    """Regression: multi-element numpy arrays went through ``.item()`` and raised ValueError,
    which broke ``eads fit --online`` (it writes the error arrays to online.json)."""
    import numpy as np

    obj = {"a": np.arange(3.0), "s": np.float32(1.5), "t": torch.ones(2, 2), "z": torch.tensor(3)}
    atomic_write_json(tmp_path / "o.json", obj)
    assert json.loads((tmp_path / "o.json").read_text()) == {
        "a": [0.0, 1.0, 2.0],
        "s": 1.5,
        "t": [[1.0, 1.0], [1.0, 1.0]],
        "z": 3,
    }


@pytest.mark.parametrize("kind", ["eads", "npgl"])
def test_a_run_from_before_the_reference_node_loads_as_it_was(tmp_path, kind):
    """config.json of runs written before the reference node existed has no ``reference`` key:
    load_trained builds the circuit without one (the default today is with one), so the saved
    parameters fit and the predictions are those of the circuit that was trained."""
    from eads.learn.registry import load_trained
    from eads.tasks.fit import fit_run

    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=g)
    csv = tmp_path / "d.csv"
    rows = ["a,b,c"] + [f"{a:.6f},{b:.6f},{a - 0.5 * b:.6f}" for a, b in x.tolist()]
    csv.write_text("\n".join(rows) + "\n")
    trainer = "ectrain" if kind == "eads" else "likelihood"
    cfg = RunConfig(
        model=ModelConfig(kind=kind, n_hidden=4, reference=False),
        train=TrainConfig(trainer=trainer, epochs=2),
        data=DataConfig(path=str(csv)),
    )
    fit_run(cfg, tmp_path / "old", progress=False)
    run = RunDir(tmp_path / "old")
    before, *_ = load_trained(run.path)
    raw = run.config()
    del raw["model"]["reference"], raw["model"]["reference_voltage"]
    run.write_json("config.json", raw)
    model, config, xs, _ = load_trained(run.path)
    assert config.model.reference is False and model.reference is False
    probe = torch.from_numpy(xs.transform(x.numpy().astype("float64")))
    with torch.no_grad():
        assert torch.equal(model(probe), before(probe))
