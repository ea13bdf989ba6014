"""``eads fit``, ``eads predict``, ``eads demo``."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def _split(names: str | None) -> list[str] | None:
    return [n.strip() for n in names.split(",") if n.strip()] if names else None


def register(app: typer.Typer) -> None:
    @app.command()
    def fit(
        data: Path = typer.Argument(..., help="CSV (with a header) or NPZ file."),
        inputs: str | None = typer.Option(None, help="Input columns/keys, comma-separated."),
        outputs: str | None = typer.Option(None, help="Output columns/keys, comma-separated."),
        model: str | None = typer.Option(None, help="eads, npgl or mlp."),
        trainer: str | None = typer.Option(None, help="ectrain, backprop or likelihood."),
        hidden: int | None = typer.Option(None, help="Hidden nodes (EADS) / width (MLP)."),
        duration: float | None = typer.Option(None, help="Coupling duration T."),
        reference: bool | None = typer.Option(
            None,
            "--reference/--no-reference",
            help="The reference node (default on); --no-reference: the paper's equations.",
        ),
        reference_voltage: float | None = typer.Option(
            None, help="The reference node's voltage (state units, default 1)."
        ),
        solver: str | None = typer.Option(
            None,
            help="rk38 (default), switching-heun (fastest EC-Train at equal gradient error), "
            "euler, midpoint, rk4 or dopri5.",
        ),
        steps: int | None = typer.Option(None, help="Fixed solver steps over [0, T]."),
        epochs: int | None = typer.Option(None, help="Epoch cap (patience ends most runs first)."),
        batch_size: int | None = typer.Option(None, help="1 = per-sample updates."),
        lr: float | None = typer.Option(None),
        optimizer: str | None = typer.Option(None, help="sgd or adam."),
        patience: int | None = typer.Option(None, help="Early-stopping patience (0: off)."),
        schedule: str | None = typer.Option(
            None, help="Learning-rate schedule: none, plateau (default), cosine or step."
        ),
        max_time: float | None = typer.Option(
            None, help="Wall-time limit of training in seconds (checked after each epoch)."
        ),
        val_fraction: float | None = typer.Option(None),
        test_fraction: float | None = typer.Option(None),
        seed: int | None = typer.Option(None),
        config: Path | None = typer.Option(None, help="TOML file with [model] [train] [data]."),
        run_dir: Path | None = typer.Option(None, help="Default: runs/fit-<time>."),
        resume: bool = typer.Option(
            False, help="Finish an interrupted run in --run-dir (its own settings by default)."
        ),
        online: bool = typer.Option(False, help="Streaming: predict each sample, then learn."),
        quiet: bool = typer.Option(False, help="No progress bar."),
        nproc: int = typer.Option(1, help="Data-parallel processes on this machine (gloo)."),
        select: int | None = typer.Option(
            None,
            "--select",
            help="First choose T, coupling_init, n_hidden and lr (EADS; NP-GL: lr; MLP: "
            "n_hidden, lr) on the validation split with N trials (selection.json); --hidden, "
            "--duration or --lr given fix that value.",
        ),
    ):
        """Train a circuit on a CSV/NPZ file; writes a run directory."""
        from eads.config import RunConfig, load_toml
        from eads.learn.registry import default_trainer_for
        from eads.tasks.fit import fit_run, resume_base

        # --resume: the run directory's own settings with the options given applied (None where
        # it holds no config.json: the run starts from scratch, from the defaults)
        saved = resume_base(run_dir, config) if resume and run_dir is not None else None
        base = saved if saved is not None else (load_toml(config) if config else RunConfig())
        kind = model or base.model.kind
        from_file = config is not None or saved is not None
        default_trainer = base.train.trainer if from_file else default_trainer_for(kind)
        cfg = base.replace(
            model={
                "kind": kind,
                "n_hidden": hidden,
                "duration": duration,
                "reference": reference,
                "reference_voltage": reference_voltage,
                "solver": solver,
                "n_steps": steps,
            },
            train={
                "trainer": trainer or default_trainer,
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "optimizer": optimizer,
                "patience": patience,
                "schedule": schedule,
                "max_time_s": max_time,
                "seed": seed,
            },
            data={
                "path": str(data),
                "inputs": _split(inputs),
                "outputs": _split(outputs),
                "val_fraction": val_fraction,
                "test_fraction": test_fraction,
                "seed": seed,
            },
        )
        if resume and run_dir is None:
            from eads._errors import ConfigError

            raise ConfigError("--resume needs the --run-dir of the interrupted run.")
        run_dir = run_dir or Path("runs") / time.strftime("fit-%Y%m%d-%H%M%S")
        if select is not None:
            from eads._errors import ConfigError
            from eads.tasks.select import SPACES, format_selection, select_run

            if online:
                raise ConfigError("--select chooses by fits on a validation split; drop --online.")
            flags = {"n_hidden": hidden, "duration": duration, "lr": lr}
            fix = [k for k, v in flags.items() if v is not None and k in SPACES[cfg.model.kind]]
            cfg = select_run(cfg, run_dir, select, fix=fix, resume=resume, progress=not quiet)
            typer.echo(format_selection(run_dir))
            # a selection interrupted before the training began: the training starts afresh
            resume = resume and (run_dir / "config.json").is_file()
        metrics = fit_run(
            cfg, run_dir, resume=resume, online=online, progress=not quiet, nproc=nproc
        )
        if not metrics:
            return  # a torchrun rank other than 0: rank 0 reports
        if online:
            typer.echo(
                f"online: final running MSE {metrics['online_final_running_mse']:.4g} "
                "(standardised units)"
            )
        for split in ("train", "val", "test"):
            if split in metrics:
                m = metrics[split]
                typer.echo(
                    f"{split:>5}: MAE {m['mae']:.4g}  RMSE {m['rmse']:.4g}  "
                    f"relative MSE {m['relative_mse']:.4g}  (n={m['n']})"
                )
        stop = metrics.get("stop_reason")
        if stop in ("epoch_cap", "wall_time"):
            limit = "the epoch cap" if stop == "epoch_cap" else "the wall-time limit"
            typer.echo(
                f"note: training stopped on {limit} ({metrics['epochs_run']} epochs), not on "
                "validation patience; the model may not have converged."
            )
        typer.echo(f"run directory: {run_dir}")

    @app.command()
    def predict(
        run_dir: Path = typer.Argument(..., help="A run directory written by `eads fit`."),
        data: Path = typer.Argument(..., help="CSV/NPZ holding the input columns/keys."),
        out: Path | None = typer.Option(None, help="Write predictions to this CSV."),
    ):
        """Predict outputs for new inputs with a trained run."""
        from eads.tasks.fit import predict_run

        pred = predict_run(run_dir, data, out)
        if out is None:
            for row in pred:
                typer.echo(",".join(f"{v:.6g}" for v in row))
        else:
            typer.echo(f"wrote {len(pred)} predictions to {out}")

    @app.command()
    def demo(
        run_dir: Path | None = typer.Option(None, help="Default: runs/demo-<time>."),
        epochs: int | None = typer.Option(None, help="Override every model's epoch budget."),
        seed: int = typer.Option(0),
        quiet: bool = typer.Option(False),
    ):
        """Burgers map: EADS (EC-Train) vs NP-GL vs MLP, test error and time."""
        import torch

        from eads.tasks.demo import format_table, run_demo

        run_dir = run_dir or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
        typer.echo(
            "Task: viscous Burgers map u0 -> u(t=0.2), nu=0.02, 32 points (Cole-Hopf); "
            "1000 train / 200 test."
        )
        rows = run_demo(run_dir, seed=seed, epochs=epochs, progress=not quiet)
        typer.echo(format_table(rows))
        typer.echo(f"(CPU, {torch.get_num_threads()} threads; run directory: {run_dir})")
