"""Hyperparameter selection on the validation split (:mod:`eads.tasks.select`).

Oracles: a seeded search repeats exactly and another seed proposes otherwise; the chosen trial
is the argmin of the recorded validation scores; poisoning the test rows changes nothing (the
test split is never read); the retrained chosen config reproduces the chosen trial's validation
MSE; a search continued from k trials equals the uninterrupted one and retrains none of the k
(fits counted). Synthetic objectives (no training) keep the search tests instant; the run
directory tests train EADS with 4 hidden nodes for 2-3 epochs (about 1 s each).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import run_cli

import eads
from eads._errors import ConfigError, DataError, UnstableCircuitError
from eads.config import RunConfig
from eads.tasks import select as sel
from eads.tasks.select import (
    SELECTION_FILE,
    TrialOutcome,
    eads_space,
    run_search,
    select_hyperparameters,
    select_run,
)

pytest.importorskip("optuna")


def _csv(path, x, y):
    rows = ["u,v,target"] + [f"{a:.9g},{b:.9g},{c:.9g}" for (a, b), c in zip(x, y, strict=True)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return x, np.sin(x[:, 0]) + 0.5 * x[:, 1]


@pytest.fixture
def data_csv(tmp_path):
    return _csv(tmp_path / "data.csv", *_data())


def _config(path, epochs=2, **model) -> RunConfig:
    return RunConfig().replace(
        model={"n_hidden": 4, **model},
        train={"epochs": epochs, "batch_size": 16, "patience": 2},
        data={"path": str(path)},
    )


def _quadratic(calls=None):
    """A synthetic objective: its minimum at lr = 1e-3, duration = 1 (no training)."""

    def objective(params, report):
        if calls is not None:
            calls.append(dict(params))
        score = math.log(params["lr"] / 1e-3) ** 2 + math.log(params["duration"]) ** 2
        return TrialOutcome(score=score, epochs=1, stop_reason="patience")

    return objective


SPACE2 = {"lr": {"log_uniform": [1e-4, 1e-1]}, "duration": {"log_uniform": [0.25, 4.0]}}


def _strip(records):
    return [{k: v for k, v in r.to_dict().items() if k != "seconds"} for r in records]


# ----------------------------------------------------------------------------- the search


def test_seeded_search_repeats_chooses_the_argmin_and_resumes_as_uninterrupted():  # < 1 s
    a = run_search(_quadratic(), SPACE2, 9, seed=3)
    b = run_search(_quadratic(), SPACE2, 9, seed=3)
    assert _strip(a.trials) == _strip(b.trials)
    assert len({tuple(t.params.values()) for t in a.trials}) == 9  # nine different proposals
    other = run_search(_quadratic(), SPACE2, 9, seed=4)
    assert [t.params for t in other.trials] != [t.params for t in a.trials]
    scores = [t.score for t in a.trials]
    assert a.best_trial == int(np.argmin(scores)) and a.score == min(scores)
    assert a.params == a.trials[a.best_trial].params
    # trials 5.. are TPE's (after 5 random ones): continuing from 4 finished trials proposes
    # exactly what the uninterrupted search did, and calls the objective only for the rest
    calls = []
    c = run_search(_quadratic(calls), SPACE2, 9, seed=3, previous=a.trials[:4])
    assert len(calls) == 5 and _strip(c.trials) == _strip(a.trials)
    with pytest.raises(ConfigError, match="more than n_trials"):
        run_search(_quadratic(), SPACE2, 3, seed=3, previous=a.trials)


def test_failed_trials_are_recorded_and_the_search_goes_on():  # < 1 s
    def objective(params, report):
        if params["duration"] > 2.0:
            raise UnstableCircuitError("The coupling stage blew up (non-finite node voltages).")
        if params["lr"] > 1e-2:
            raise DataError("The training loss became nan at epoch 0; lower the learning rate.")
        return _quadratic()(params, report)

    s = run_search(objective, SPACE2, 12, seed=0)
    assert len(s.trials) == 12
    failed = [t for t in s.trials if t.state == "failed"]
    assert failed and s.n_failed == len(failed)
    for t in failed:
        assert t.score is None and t.error.endswith(".")
        assert t.params["duration"] > 2.0 or t.params["lr"] > 1e-2
    complete = [t for t in s.trials if t.state == "complete"]
    assert complete and all(
        t.params["duration"] <= 2.0 and t.params["lr"] <= 1e-2 for t in complete
    )
    assert s.best_trial == min(complete, key=lambda t: t.score).number

    def always(params, report):
        raise UnstableCircuitError("The coupling stage blew up.")

    with pytest.raises(ConfigError, match="Every one of the 2 selection trials failed"):
        run_search(always, SPACE2, 2, seed=0)


def test_median_pruning_is_deterministic_and_never_chooses_a_pruned_trial():  # < 1 s
    def objective(params, report):
        final = _quadratic()(params, report).score
        curve = []
        for epoch in range(10):
            curve.append(final + 1.0 / (1 + epoch))
            if report(epoch, curve[-1]):
                return TrialOutcome(curve[-1], epoch + 1, val_curve=curve, pruned=True)
        return TrialOutcome(min(curve), 10, val_curve=curve)

    a = run_search(objective, SPACE2, 14, seed=1, prune=True)
    b = run_search(objective, SPACE2, 14, seed=1, prune=True)
    assert _strip(a.trials) == _strip(b.trials)
    pruned = [t for t in a.trials if t.state == "pruned"]
    assert pruned and all(t.epochs > sel.PRUNE_WARMUP_EPOCHS for t in pruned)
    assert a.trials[a.best_trial].state == "complete"
    unpruned = run_search(objective, SPACE2, 14, seed=1)
    assert not any(t.state == "pruned" for t in unpruned.trials)


@pytest.mark.parametrize(
    ("space", "n_trials", "match"),
    [
        (SPACE2, 0, "n_trials must be an integer >= 1"),
        ({"durration": {"log_uniform": [0.5, 2.0]}}, 2, r"Unknown parameter\(s\) \['durration'\]"),
        ({"lr": {"log_uniform": [1e-3, 1e-3]}}, 2, "low < high"),
        ({"n_hidden": {"choice": []}}, 2, "non-empty list"),
        ({"duration": {"uniform": [-1.0, 1.0]}}, 2, "positive numbers, got -1.0"),
        ({"n_hidden": {"choice": [8, 0]}}, 2, "integers >= 1, got 0"),
        ({"lr": {"normal": [0, 1]}}, 2, "kind in"),
        ({"lr": 1e-3, "n_hidden": 8}, 2, "nothing to search"),
        ({}, 2, "at least one parameter"),
    ],
)
def test_bad_arguments_raise_one_sentence_config_errors(space, n_trials, match):  # < 1 s
    calls = []
    with pytest.raises(ConfigError, match=match) as info:
        run_search(_quadratic(calls), space, n_trials, seed=0)
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith(".") and not calls


def test_space_helpers_fix_values_and_replace_ranges():
    space = eads_space(n_hidden=128, lr={"log_uniform": [1e-3, 1e-2]})
    searched, fixed = sel.resolve_space(space)
    assert fixed == {"n_hidden": 128}
    assert set(searched) == {"duration", "coupling_init", "lr"}
    assert searched["lr"] == {"log_uniform": [1e-3, 1e-2]}


# ----------------------------------------------------------------------------- tensors


def test_select_hyperparameters_trains_each_trial_to_patience_and_keeps_the_best_model():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = torch.sin(x[:, :1]) + 0.3 * x[:, 1:2]
    train, val = (x[:48], y[:48]), (x[48:], y[48:])
    built = []

    def build(p):
        built.append(p)
        return eads.EADS(3, p["n_hidden"], 1, duration=p["duration"], seed=0)

    cfg = eads.TrainConfig(epochs=3, batch_size=16, patience=1)
    space = {"n_hidden": 4, "duration": {"log_uniform": [0.5, 2.0]}, "lr": {"choice": [1e-3, 3e-2]}}
    s = select_hyperparameters(build, eads.ECTrain(), train, val, cfg, space, 3, seed=0)
    assert len(built) == 3 and all(p["n_hidden"] == 4 for p in built)
    for t in s.trials:  # trained with the caller's config: the cap or patience ended it
        assert t.stop_reason in ("epoch_cap", "patience") and 1 <= t.epochs <= 3
        assert t.score == min(t.val_curve)
    model, history = s.payload
    assert history.best_val == s.score
    assert eads.learn.loop.evaluate_mse(model, *val) == pytest.approx(s.score, rel=1e-6)
    with pytest.raises(DataError, match="empty"):
        select_hyperparameters(build, eads.ECTrain(), train, (x[:0], y[:0]), cfg, space, 2)


def test_select_hyperparameters_killed_mid_trial_resumes_to_the_unbroken_result(tmp_path):
    # the oracle: the same search run unbroken, without checkpoints
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g)
    y = torch.sin(x[:, :1]) + 0.3 * x[:, 1:2]
    train, val = (x[:48], y[:48]), (x[48:], y[48:])

    def build(p):
        return eads.EADS(3, 4, 1, duration=p["duration"], seed=0)

    class Killed(Exception):
        pass

    class KilledAfter(eads.ECTrain):
        """EC-Train that dies at its ``n``-th batch (a process killed mid-trial)."""

        def __init__(self, n):
            super().__init__()
            self.n = n

        def loss_and_gradients(self, model, xb, yb):
            self.n -= 1
            if self.n == 0:
                raise Killed
            return super().loss_and_gradients(model, xb, yb)

    cfg = eads.TrainConfig(epochs=6, batch_size=16, patience=2)
    space = {"duration": {"log_uniform": [0.5, 2.0]}, "lr": {"log_uniform": [1e-3, 3e-2]}}
    whole = select_hyperparameters(build, eads.ECTrain(), train, val, cfg, space, 3, seed=0)
    folder = tmp_path / "partial"
    with pytest.raises(Killed):  # 3 batches per epoch: dies in trial 1 or 2, after epochs
        select_hyperparameters(build, KilledAfter(3 * 9 + 2), train, val, cfg, space, 3, 0,
                               checkpoint_dir=folder)  # fmt: skip
    written = sorted(p.name for p in folder.glob("trial*.pt"))
    assert written[0].startswith("trial0-") and len(written) >= 2  # one finished, one cut
    assert all((folder / n).with_suffix(".log").is_file() for n in written)
    calls = KilledAfter(-1)  # never dies; counts the batches it trains
    again = select_hyperparameters(build, calls, train, val, cfg, space, 3, 0,
                                   checkpoint_dir=folder)  # fmt: skip
    assert _strip(again.trials) == _strip(whole.trials) and again.params == whole.params
    n_unbroken = sum(t.epochs for t in whole.trials) * 3
    assert -1 - calls.n == n_unbroken - 3 * 9  # only the 9 checkpointed epochs are not retrained
    model, history = again.payload
    for a, b in zip(model.parameters(), whole.payload[0].parameters(), strict=True):
        torch.testing.assert_close(a, b)  # the chosen trial's parameters, not a retraining
    assert history.best_val == whole.score
    # a trial's seconds count the training of both calls, not just the resumed remainder
    pairs = zip(again.trials, whole.trials, strict=True)
    assert all(t.seconds >= 0.5 * w.seconds for t, w in pairs)


# ----------------------------------------------------------------------------- run directories


def test_select_run_never_reads_the_test_split(tmp_path):
    x, y = _data()
    n = len(x)
    n_test = int(round(0.15 * n))
    order = np.random.default_rng(0).permutation(n)  # as split_and_standardize shuffles
    test = order[n - n_test :]
    xp, yp = x.copy(), y.copy()
    xp[test], yp[test] = 1e6, -1e6  # poisoned test rows
    clean = _csv(tmp_path / "clean.csv", x, y)
    poisoned = _csv(tmp_path / "poisoned.csv", xp, yp)
    a = select_run(_config(clean), tmp_path / "a", 3, progress=False)
    b = select_run(_config(poisoned), tmp_path / "b", 3, progress=False)
    ja = json.loads((tmp_path / "a" / SELECTION_FILE).read_text())
    jb = json.loads((tmp_path / "b" / SELECTION_FILE).read_text())
    assert [t["score"] for t in ja["trials"]] == [t["score"] for t in jb["trials"]]
    assert ja["chosen"] == jb["chosen"] and ja["data"] == jb["data"]
    assert a.model == b.model and a.train == b.train
    # the poison itself would be visible: the full files differ
    assert clean.read_text() != poisoned.read_text()


def test_interrupted_selection_continues_without_retraining(tmp_path, data_csv, monkeypatch):
    import eads.learn.loop as loop

    real_fit, fits = loop.fit, []

    def counting_fit(*args, **kwargs):
        fits.append(1)
        if len(fits) == kill_at[0]:
            raise KeyboardInterrupt  # the process is killed during this trial
        return real_fit(*args, **kwargs)

    kill_at = [3]
    monkeypatch.setattr(loop, "fit", counting_fit)
    cfg = _config(data_csv)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        select_run(cfg, run, 4, progress=False)
    partial = json.loads((run / SELECTION_FILE).read_text())
    assert not partial["complete"] and len(partial["trials"]) == 2

    fits.clear()
    kill_at[0] = 0
    select_run(cfg, run, 4, progress=False)  # the same budget: trials 2 and 3 only
    assert len(fits) == 2
    fits.clear()
    chosen = select_run(cfg, run, 6, progress=False)  # a larger budget: trials 4 and 5
    assert len(fits) == 2
    fits.clear()
    assert select_run(cfg, run, 6, progress=False) == chosen and not fits  # complete: reused

    fresh = select_run(cfg, tmp_path / "fresh", 6, progress=False)
    assert len(fits) == 6 and fresh == chosen
    done = json.loads((run / SELECTION_FILE).read_text())
    whole = json.loads((tmp_path / "fresh" / SELECTION_FILE).read_text())
    assert [t["params"] for t in done["trials"]] == [t["params"] for t in whole["trials"]]
    assert [t["score"] for t in done["trials"]] == [t["score"] for t in whole["trials"]]
    scores = [t["score"] for t in done["trials"]]
    assert done["best_trial"] == int(np.argmin(scores)) and done["val_score"] == min(scores)
    for key in ("duration", "coupling_init"):
        assert getattr(chosen.model, key) == done["chosen"][key]
    assert (
        chosen.train.lr == done["chosen"]["lr"]
        and chosen.model.n_hidden == done["chosen"]["n_hidden"]
    )

    with pytest.raises(ConfigError, match="more than --select 5"):
        select_run(cfg, run, 5, progress=False)
    with pytest.raises(ConfigError, match="another config.train.epochs"):
        select_run(_config(data_csv, epochs=3), run, 6, progress=False)


def test_select_run_checks_its_arguments(tmp_path, data_csv):
    cfg = _config(data_csv)
    with pytest.raises(ConfigError, match=r"--select \(the number of trials\) must be"):
        select_run(cfg, tmp_path / "r", 0)
    with pytest.raises(ConfigError, match="data.val_fraction must be > 0"):
        select_run(cfg.replace(data={"val_fraction": 0.0}), tmp_path / "r", 2)
    npgl = cfg.replace(model={"kind": "npgl"}, train={"trainer": "likelihood"})
    with pytest.raises(ConfigError, match=r"Unknown parameter\(s\) \['duration'\]"):
        select_run(npgl, tmp_path / "r", 2, space={"duration": {"uniform": [0.5, 1.0]}})
    with pytest.raises(ConfigError, match="Cannot fix 'n_hidden' for a 'npgl' model"):
        select_run(npgl, tmp_path / "r", 2, fix=["n_hidden"])
    assert not (tmp_path / "r").exists()
    (tmp_path / "fitted").mkdir()
    (tmp_path / "fitted" / "config.json").write_text("{}")  # a run begun without a selection
    with pytest.raises(ConfigError, match="no selection chose"):
        select_run(cfg, tmp_path / "fitted", 2)


def test_select_run_chooses_the_mlp_width_and_lr(tmp_path, data_csv):
    cfg = _config(data_csv).replace(model={"kind": "mlp"}, train={"trainer": "backprop"})
    chosen = select_run(cfg, tmp_path / "r", 2, progress=False)
    d = json.loads((tmp_path / "r" / SELECTION_FILE).read_text())
    assert set(d["chosen"]) == {"n_hidden", "lr"}
    assert chosen.model.n_hidden == d["chosen"]["n_hidden"] and chosen.train.lr == d["chosen"]["lr"]


# ----------------------------------------------------------------------------- the CLI


def test_cli_fit_select_writes_the_chosen_values(tmp_path, data_csv, monkeypatch, capsys):
    run = tmp_path / "run"
    args = ["fit", data_csv, "--select", 3, "--hidden", 4, "--epochs", 3, "--quiet"]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--run-dir", run)
    assert code == 0, err
    assert "selected on validation" in out and "budget of 3" in out
    s = json.loads((run / SELECTION_FILE).read_text())
    config = json.loads((run / "config.json").read_text())
    assert s["complete"] and len(s["trials"]) == 3 and s["fixed"] == {"n_hidden": 4}
    for key in ("duration", "coupling_init", "n_hidden"):
        assert config["model"][key] == s["chosen"][key]
    assert config["train"]["lr"] == s["chosen"]["lr"]
    # fit_run retrained the chosen setting from the same seed: the same validation MSE
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val"]["mse_standardized"] == pytest.approx(s["val_score"], rel=1e-9)

    stamp = (run / SELECTION_FILE).stat().st_mtime_ns
    code, out, err = run_cli(monkeypatch, capsys, *args, "--run-dir", run, "--resume")
    assert code == 0, err
    assert (run / SELECTION_FILE).stat().st_mtime_ns == stamp  # reused, nothing retrained
    # --resume without --hidden: the selection's own space (n_hidden fixed at 4), still reused
    code, out, err = run_cli(monkeypatch, capsys, *args[:4], "--run-dir", run, "--resume")
    assert code == 0, err
    assert "budget of 3" in out
    assert (run / SELECTION_FILE).stat().st_mtime_ns == stamp
    # without --resume the request's space differs from the selection's: refused
    code, out, err = run_cli(monkeypatch, capsys, *args[:4], "--epochs", 3, "--run-dir", run)
    assert code == 2 and "another space" in err, err

    code, out, err = run_cli(monkeypatch, capsys, *args[:3], 0, "--run-dir", tmp_path / "x")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- the pipelines


def test_pde_eads_cells_record_their_selection(tmp_path, monkeypatch):  # ~2 s
    import dataclasses

    from eads.tasks import pde

    monkeypatch.setenv("EADS_CACHE_DIR", str(tmp_path / "cache"))
    data = pde.PDEBenchmarkConfig(n_train=24, n_test=6, quick_data=True, burgers_solver="cole_hopf")
    budgets = {m: dataclasses.replace(b, epochs=2) for m, b in pde.QUICK_BUDGETS.items()}
    assert budgets["eads"].select_trials == 2 and budgets["nn"].select_trials == 0
    run = tmp_path / "run"
    pde.run_benchmark(
        run,
        quick=True,
        datasets="burgers",
        models="eads,nn",
        data=data,
        budgets=budgets,
        progress=False,
        plots=False,
    )
    cells = {
        json.loads(p.read_text())["cell"]["model"]: json.loads(p.read_text())
        for p in (run / "cells").glob("*.json")
    }
    r = cells["eads"]
    s = r["selection"]
    assert s["n_trials"] == 2 and s["fixed"] == {"n_hidden": pde.EADS_HIDDEN}
    assert len(r["candidates"]) == 2
    scores = [t["score"] for t in r["candidates"]]
    assert s["best_trial"] == int(np.argmin(scores)) and r["val_mse"] == min(scores)
    assert r["lr"] == s["params"]["lr"]
    for key in ("duration", "coupling_init"):
        assert r["model_info"][key] == s["params"][key]
    assert cells["nn"]["selection"] is None and cells["nn"]["candidates"][0]["lr"] == 1e-3


def test_spatiotemporal_eads_cell_records_its_selection(tmp_path):  # ~2 s
    from conftest import shared_data_or_skip

    from eads.tasks import spatiotemporal as st

    shared_data_or_skip()
    assert st.QUICK_BUDGETS["eads"].select_trials == 2
    st.run_benchmark(
        tmp_path / "run",
        quick=True,
        datasets="beijing_pm25",
        models="eads",
        max_epochs=1,
        max_train_s=2.0,
        quick_steps=300,
        progress=False,
    )
    r = json.loads(next((tmp_path / "run" / "cells").glob("*.json")).read_text())
    s = r["selection"]
    scores = [t["score"] for t in s["trials"]]
    assert len(scores) == 2 and s["best_trial"] == int(np.argmin(scores))
    assert r["training"]["best_val_mae"] == min(scores)
    assert set(s["params"]) == {"duration", "coupling_init", "lr", "n_hidden", "weight_decay"}
    assert r["cell"]["params"]["space"] == st.EADS_SPACE
    assert s["space"] == {k: v for k, v in st.EADS_SPACE.items() if isinstance(v, dict)}
