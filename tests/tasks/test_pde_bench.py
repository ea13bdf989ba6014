"""Smoke test of the PDE benchmark pipeline: a tiny grid end to end, resume, bad names."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import eads
from eads._errors import ConfigError
from eads.bench.cells import Cell, read_cell, run_cells
from eads.tasks import pde
from eads.tasks.pde import PDEBenchmarkConfig, build_cells, npgl_local_mask, run_benchmark

TINY_DATA = PDEBenchmarkConfig(n_train=24, n_test=6, quick_data=True, burgers_solver="cole_hopf")
TINY_BUDGETS = {m: dataclasses.replace(b, epochs=2) for m, b in pde.QUICK_BUDGETS.items()}
MODELS = "eads,eads_backprop,npgl,nn"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EADS_CACHE_DIR", str(tmp_path / "cache"))


def test_tiny_benchmark_writes_a_complete_table_and_resumes(tmp_path, cache):
    run_dir = tmp_path / "run"
    kwargs = dict(quick=True, models=MODELS, data=TINY_DATA, budgets=TINY_BUDGETS, progress=False)
    text = run_benchmark(run_dir, **kwargs)

    for name in ("config.json", "meta.json", "results.csv", "results.json"):
        assert (run_dir / name).is_file(), name
    for name in ("predictions_burgers", "predictions_darcy", "error_vs_resolution", "cost"):
        assert (run_dir / "plots" / f"{name}.png").is_file(), name
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    expected = {(d, r, m) for d, r in pde.QUICK_RESOLUTIONS.items() for m in MODELS.split(",")}
    assert {(r["dataset"], r["resolution"], r["model"]) for r in rows} == expected
    for row in rows:
        assert row["status"] == "ok", row
        for key in ("test_mae", "test_rel_l2", "train_time_s", "latency_s_per_sample"):
            assert math.isfinite(row[key]) and row[key] >= 0, (key, row)
        assert row["epochs"] == 2
        assert row["device"].startswith("cpu")
    with open(run_dir / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(expected)
    assert "eads" in text and "darcy" in text

    # Rerunning into the same directory skips every finished cell (their files stay untouched).
    cells = sorted((run_dir / "cells").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in cells}
    run_benchmark(run_dir, **kwargs)
    assert {p: p.stat().st_mtime_ns for p in cells} == stamps

    # Extending the run with another model keeps the whole run in the table.
    run_benchmark(run_dir, **{**kwargs, "models": "gno"})
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    gno = {(d, r, "gno") for d, r in pde.QUICK_RESOLUTIONS.items()}
    assert {(r["dataset"], r["resolution"], r["model"]) for r in rows} == expected | gno
    cell = json.loads(next((run_dir / "cells").glob("darcy_16_gno_*.json")).read_text())
    assert cell["model_info"]["n_sampled"] == 256 and cell["model_info"]["eval_subgrids"] == 1

    # The plots of several runs together (a later run's cell replaces an earlier one's).
    other = tmp_path / "other"
    run_benchmark(other, **{**kwargs, "models": "nn"}, plots=False)
    written = pde.plot_runs([run_dir, other], tmp_path / "together")
    assert sorted(p.name for p in written) == sorted(
        f"{n}.png"
        for n in ("predictions_burgers", "predictions_darcy", "error_vs_resolution", "cost")
    )
    with pytest.raises(ConfigError, match="not a PDE benchmark run"):
        pde.plot_runs([tmp_path / "nowhere"], tmp_path / "x")

    # Predictors that learn nothing, on the same data.
    refs = pde.reference_scores(run_dir)
    assert {(r["dataset"], r["predictor"]) for r in refs} == {
        ("burgers", "fit-split mean"),
        ("burgers", "mean(u0)"),
        ("darcy", "fit-split mean"),
    }
    assert json.loads((run_dir / "references.json").read_text())["rows"] == refs
    assert len(pde.plot_runs([run_dir], tmp_path / "with-references")) == 4
    with pytest.raises(ConfigError, match="not a PDE benchmark run"):
        pde.reference_scores(tmp_path / "nowhere")


def test_error_metrics_against_hand_computed_values():
    import numpy as np

    truth = np.array([[3.0, 4.0], [0.0, 1.0]])  # norms 5 and 1
    mae, rel = pde.error_metrics(2 * truth, truth)  # errors equal the truth
    assert mae == pytest.approx(8 / 4) and rel == pytest.approx(1.0)
    mae, rel = pde.error_metrics(truth + np.array([[0.0, 0.5], [0.0, 0.0]]), truth)
    assert mae == pytest.approx(0.5 / 4) and rel == pytest.approx((0.5 / 5 + 0) / 2)


def test_ectrain_and_backprop_see_the_same_data(tmp_path, cache):
    """Both EADS trainers compute the same gradient, so on the same splits they agree."""
    run_benchmark(
        tmp_path / "run",
        quick=True,
        datasets="burgers",
        models="eads,eads_backprop",
        data=TINY_DATA,
        budgets=TINY_BUDGETS,
        progress=False,
        plots=False,
    )
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    a, b = (r["test_mae"] for r in rows)
    assert a == pytest.approx(b, rel=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "valid"),
    [
        ({"datasets": "burgers,navier_stokes"}, "darcy"),
        ({"models": "eads,transformer"}, "fno"),
        ({"resolutions": "256,512"}, "1024"),
        ({"resolutions": "256,abc"}, "4096"),
    ],
)
def test_unknown_names_raise_listing_the_valid_ones(kwargs, valid):
    with pytest.raises(ConfigError, match=valid):
        build_cells(**kwargs)


def test_unknown_model_in_budgets_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="valid models"):
        run_benchmark(tmp_path, budgets={"mlp": TINY_BUDGETS["nn"]}, progress=False)


def test_grid_and_cell_ids():
    full = build_cells()
    assert len(full) == 2 * 3 * len(pde.MODELS) * pde.FULL_SEEDS
    quick = build_cells(quick=True)
    assert {c.params["resolution"] for c in quick} == set(pde.QUICK_RESOLUTIONS.values())
    assert len({c.id for c in full}) == len(full)
    # A changed budget is a different cell, never a stale result.
    other = build_cells(budgets={**pde.FULL_BUDGETS, "eads": TINY_BUDGETS["eads"]})
    assert full[0].id != other[0].id


def test_npgl_local_mask_is_symmetric_and_local():
    m1 = npgl_local_mask(1, 16, radius=2)  # (32, 32)
    assert m1.shape == (32, 32) and bool((m1 == m1.T).all())
    assert m1[16 + 0, 15] == 1 and m1[16 + 0, 3] == 0  # periodic: 0 and 15 are neighbours
    m2 = npgl_local_mask(2, 8, radius=1)  # (128, 128)
    assert m2.shape == (128, 128) and bool((m2 == m2.T).all())
    assert int(m2[0, :64].sum()) == 4  # corner: itself, right, above, diagonal


# ----------------------------------------------------------------------------- the core's protocol


def test_full_budgets_train_to_patience_without_a_wall_cap():
    for name, b in pde.FULL_BUDGETS.items():
        assert b.patience > 0 and b.max_time_s is None, name
        assert b.epochs >= 10 * b.patience, name  # the cap is not what should end a run
    fno = pde.FULL_BUDGETS["fno"]
    cfg = fno.train_config("backprop")
    # the FNO paper's script: Adam 1e-3, halved every 100 epochs, batch 20, at most 500 epochs
    assert (cfg.optimizer, cfg.lr, cfg.schedule, cfg.schedule_factor, cfg.schedule_step) == (
        "adam", 1e-3, "step", 0.5, 100,
    )  # fmt: skip
    assert (cfg.batch_size, cfg.epochs, cfg.max_time_s) == (20, 500, None)
    assert fno.hyperparameters == {"n_layers": 4}


def test_seeds_multiply_the_grid_and_keep_seed_zeros_ids():
    one = build_cells(datasets="burgers", models="nn", seeds=1)
    three = build_cells(datasets="burgers", models="nn")  # a full run: 3 seeds
    assert len(three) == 3 * len(one) and pde.FULL_SEEDS == 3
    assert [c.seed for c in three[:3]] == [0, 1, 2]
    assert {c.id for c in three if c.seed == 0} == {c.id for c in one}
    assert len({c.id for c in three}) == len(three)
    assert {c.seed for c in build_cells(quick=True)} == {0}
    assert [
        c.seed for c in build_cells(datasets="darcy", models="nn", seeds=[4, 2], quick=True)
    ] == [4, 2]


@pytest.mark.parametrize("bad", [0, -1, True, [], [1, -2], ["a"]])
def test_bad_seeds_are_one_sentence_errors(bad):
    with pytest.raises(ConfigError, match="seeds=") as info:
        build_cells(models="nn", seeds=bad)
    assert str(info.value).endswith(".") and ". " not in str(info.value)


def test_a_fine_grid_the_resolutions_do_not_divide_is_refused_before_any_cell(tmp_path):
    bad = PDEBenchmarkConfig(darcy_fine_intervals=100)
    with pytest.raises(ConfigError, match=r"fine_intervals=100 must be a multiple of 128"):
        build_cells(datasets="darcy", data=bad)
    with pytest.raises(ConfigError, match=r"fine_intervals=100"):
        run_benchmark(tmp_path / "run", datasets="darcy", data=bad, progress=False)
    assert not (tmp_path / "run").exists()


def test_seeds_give_mean_and_std_and_caps_are_marked(tmp_path, cache):
    import statistics

    run_dir = tmp_path / "run"
    run_benchmark(
        run_dir, quick=True, datasets="burgers", models="nn", data=TINY_DATA, budgets=TINY_BUDGETS,
        seeds=2, progress=False,
    )  # fmt: skip
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert [r["seed"] for r in rows] == [0, 1]
    assert all(r["stopped_by"] == "epoch budget" for r in rows)  # quick: 2 epochs, patience 0
    maes = [r["test_mae"] for r in rows]
    assert maes[0] != maes[1]  # two seeds, two different models
    cells = [json.loads(p.read_text()) for p in sorted((run_dir / "cells").glob("*.json"))]
    assert {c["stop_reason"] for c in cells} == {"epoch_cap"}
    table, _, hours = (run_dir / "results.md").read_text().partition("\n\n")
    (line,) = [ln for ln in table.splitlines() if "| nn |" in ln]
    cols = [c.strip() for c in line.strip("|").split("|")]
    mean, std = statistics.mean(maes), statistics.stdev(maes)
    assert cols[3:5] == ["2", "0"]
    assert cols[5] == f"{mean:.3e} \u00b1 {std:.3e}"
    assert cols[6].endswith("\u2020")  # stopped by the cap: marked
    cost = sum(c["train_time_s"] for cell in cells for c in cell["candidates"]) / 3600
    (hline,) = [ln for ln in hours.splitlines() if ln.startswith("| burgers |")]
    assert [c.strip() for c in hline.split("|")[3:5]] == [f"{cost:.2f}"] * 2  # nn, all models
    text = pde.format_table(rows)
    assert "nn s0" in text and "nn s1" in text
    names = {p.name for p in (run_dir / "plots").glob("*.png")}  # drawn over both seeds
    assert names == {"predictions_burgers.png", "error_vs_resolution.png", "cost.png"}


@pytest.mark.parametrize("model", ["nn", "fno"])
def test_a_cell_killed_mid_training_resumes_from_its_checkpoint(tmp_path, model, monkeypatch):
    """A cell's training writes a checkpoint after every epoch: stopped after 2 epochs (the cap),
    the same candidate resumed under a cap of 4 ends with the parameters of a straight 4-epoch
    run, bit for bit (the oracle: the uninterrupted run)."""
    from eads.bench.training import train_one
    from eads.tasks.pde import QUICK_BUDGETS, _build

    g = torch.Generator().manual_seed(0)
    data_t = tuple(torch.randn(24, 16, generator=g) for _ in range(4))
    short = dataclasses.replace(QUICK_BUDGETS[model], epochs=2, patience=0)
    long = dataclasses.replace(short, epochs=4)
    steps = []
    real = eads.Backprop.loss_and_gradients
    monkeypatch.setattr(
        eads.Backprop,
        "loss_and_gradients",
        lambda self, *a: steps.append(1) or real(self, *a),
    )

    def train(budget, ckpt=None):
        return train_one(_build(model, 1, 16, budget, 0), data_t, budget, 1e-3, 0, eads.fit, ckpt)

    ckpt = tmp_path / "partial" / "lr.ckpt"
    assert train(short, ckpt).history.epochs_run == 2 and ckpt.is_file()
    first = len(steps)
    resumed = train(long, ckpt)
    assert len(steps) == 2 * first  # it trained epochs 2 and 3 only: it did resume
    straight = train(long)
    assert resumed.history.epochs_run == straight.history.epochs_run == 4
    assert resumed.history.val_loss == straight.history.val_loss
    for (name, p), q in zip(
        resumed.module.state_dict().items(), straight.module.state_dict().values(), strict=True
    ):
        if torch.is_tensor(p):
            assert torch.equal(p, q), name


@pytest.mark.parametrize("model", pde.MODELS)
def test_the_trained_modules_keep_the_checkpoints_parameter_names(model):
    """A killed cell resumes from ``partial/<cell>/lr<lr>.ckpt``, whose ``model.*`` tensors are
    the trained module's ``state_dict``: the circuits' own names (the loop trains the circuit
    inside the grid adapter), the bare operator's names under ``inner.`` for the wrapped FCN and
    FNO, the bare names for NN and GNO. The oracle: the bare models built alike."""
    from eads.baselines.operators import build_operator
    from eads.bench.adapters import FlatFunction
    from eads.tasks.pde import QUICK_BUDGETS, _build

    budget = QUICK_BUDGETS[model]
    dim = 2 if model == "fcn" else 1
    built = _build(model, dim, 8, budget, 0)
    if model in ("eads", "eads_backprop", "npgl"):
        assert isinstance(built.module, FlatFunction)
        bare = (
            eads.EADS(8, pde.EADS_HIDDEN, 8) if model != "npgl" else eads.NPGL(8, 8)
        ).state_dict()
        assert list(built.module.inner.state_dict()) == list(bare)
        return
    bare = [
        k
        for k, v in build_operator(model, dim, 8, **budget.hyperparameters).state_dict().items()
        if torch.is_tensor(v)
    ]
    prefix = "inner." if model in ("fcn", "fno") else ""
    assert list(built.module.state_dict()) == [prefix + k for k in bare]


# ----------------------------------------------------------------------------- committed runs

COMMITTED = sorted(
    p.parent
    for p in (Path(__file__).resolve().parents[2] / "benchmarks/results/pde").glob("*/config.json")
)


def _listed(run_dir: Path) -> dict[str, Cell]:
    config = json.loads((run_dir / "config.json").read_text())
    return {Cell(**c).id: Cell(**c) for c in config["cells"]}


@pytest.mark.parametrize("run_dir", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_cell_files_are_the_ids_of_the_cells_their_run_lists(run_dir, tmp_path):
    """Every committed ``cells/<id>.json`` is named by the id today's :class:`Cell` gives a cell
    its run's config.json lists, and the executor takes each as done (it would recompute one it
    does not recognise: the function here fails the test instead). The oracle: the file names
    the code that ran them wrote."""
    listed = _listed(run_dir)
    files = sorted((run_dir / "cells").glob("*.json"))
    assert files
    for path in files:
        assert path.stem in listed, f"{path.name} is no cell of {run_dir.name}/config.json"
        result = read_cell(path, listed[path.stem])
        assert result is not None and result["status"] == "ok", path.name
    copy = tmp_path / "run"
    shutil.copytree(run_dir / "cells", copy / "cells")

    def recompute(cell, _run_dir):
        raise AssertionError(f"cell {cell.id} was not taken as done")

    done = [listed[p.stem] for p in files]
    results = run_cells(done, recompute, copy, progress=False)
    assert [r["id"] for r in results] == [c.id for c in done]


def test_todays_grid_rebuilds_the_released_run_cell_for_cell():
    """The released-setting run (still growing: a background run keeps adding cells) lists
    cells that today's :func:`build_cells` makes again with the same ids, so its finished cells
    stay finished and its unfinished ones resume; each committed cell file is one of them."""
    run_dir = next(p for p in COMMITTED if p.name == "released")
    config = json.loads((run_dir / "config.json").read_text())
    data = PDEBenchmarkConfig(**config["data"])
    listed = _listed(run_dir)
    groups: dict[tuple, list[int]] = {}
    for c in listed.values():
        groups.setdefault((c.dataset, c.params["resolution"], c.model), []).append(c.seed)
    rebuilt = set()
    for (dataset, res, model), seeds in groups.items():
        cells = build_cells(dataset, model, str(res), data=data, seeds=seeds)
        rebuilt |= {c.id for c in cells}
    assert rebuilt == set(listed)
    assert {p.stem for p in (run_dir / "cells").glob("*.json")} <= rebuilt
