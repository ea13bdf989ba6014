"""``eads bench pde|spatiotemporal|attention``: the paper's benchmark tables."""

from __future__ import annotations

import time
from pathlib import Path

import typer

bench = typer.Typer(no_args_is_help=True, help="Run a benchmark table into a run directory.")

_RUN_DIR = typer.Option(None, help="Default: runs/bench-<task>-<time>; rerun to resume.")
_QUICK = typer.Option(False, help="Small version of the same pipeline (minutes, CPU).")
_EXECUTOR = typer.Option("local", help="local (default, no Ray) or ray.")
_ADDRESS = typer.Option(None, help="Ray cluster address (with --executor ray).")


def _run_dir(run_dir: Path | None, task: str) -> Path:
    return run_dir or Path("runs") / time.strftime(f"bench-{task}-%Y%m%d-%H%M%S")


@bench.command()
def pde(
    run_dir: Path | None = _RUN_DIR,
    quick: bool = _QUICK,
    executor: str = _EXECUTOR,
    address: str | None = _ADDRESS,
    datasets: str | None = typer.Option(
        None,
        help="Comma-separated: burgers (nu = 0.1, paper text), darcy (default both), "
        "burgers_released (the FNO authors' released script, nu = 1e-3).",
    ),
    models: str | None = typer.Option(None, help="Comma-separated model names."),
    resolutions: str | None = typer.Option(None, help="Comma-separated resolutions."),
    n_train: int = typer.Option(1000, help="Training instances (validation carved from them)."),
    n_test: int = typer.Option(200, help="Test instances."),
    burgers_solver: str = typer.Option(
        "split_step", help="split_step (ETDRK4) or cole_hopf; burgers only."
    ),
    darcy_fine_intervals: int | None = typer.Option(None, help="Darcy fine grid (default 256)."),
    seeds: int | None = typer.Option(
        None, help="Model seeds per cell, tables show mean +- std (default 3; 1 with --quick)."
    ),
):
    """PDE operator learning (seed paper Table 2): Burgers and Darcy at three resolutions."""
    from eads.tasks.pde import PDEBenchmarkConfig, run_benchmark

    d = _run_dir(run_dir, "pde")
    data = PDEBenchmarkConfig(
        n_train=n_train,
        n_test=n_test,
        burgers_solver=burgers_solver,
        darcy_fine_intervals=darcy_fine_intervals,
    )
    typer.echo(
        run_benchmark(
            d,
            quick=quick,
            executor=executor,
            address=address,
            datasets=datasets,
            models=models,
            resolutions=resolutions,
            data=None if quick else data,  # --quick uses its own small data settings
            seeds=seeds,
        )
    )
    typer.echo(f"run directory: {d}")


@bench.command("pde-plots")
def pde_plots(
    run_dirs: list[Path] = typer.Argument(..., help="PDE benchmark run directories."),
    out: Path = typer.Option(..., help="Folder for the plots."),
):
    """Plots of several PDE runs together (e.g. one run per resolution pass)."""
    from eads.report.pde import plot_runs

    for path in plot_runs(run_dirs, out):
        typer.echo(str(path))


@bench.command("pde-report")
def pde_report(
    run_dir: Path = typer.Argument(..., help="A PDE benchmark run directory."),
    plots: bool = typer.Option(True, help="Redraw plots/ too (default on)."),
):
    """Tables (results.md/csv/json) and plots of a PDE run from its finished cells; trains
    nothing. Prints the path of results.md."""
    from eads.report.pde import report_run

    typer.echo(str(report_run(run_dir, plots=plots)))


@bench.command("pde-references")
def pde_references(run_dir: Path = typer.Argument(..., help="A PDE benchmark run directory.")):
    """Scores of predictors that learn nothing, on the run's data (into references.json)."""
    from eads.tasks.pde import reference_scores

    for r in reference_scores(run_dir):
        typer.echo(
            f"{r['dataset']:8} {r['resolution']:>5} {r['predictor']:15} "
            f"MAE {r['test_mae']:.3e}  rel L2 {r['test_rel_l2']:.4f}"
        )


def _seeds(text: str) -> int | list[int]:
    """``--seeds``: ``"3"`` is a count (seeds 0, 1, 2), ``"0,1,2"`` the seeds themselves, ``"4,"``
    seed 4 alone; the library checks the values."""
    from eads._errors import ConfigError

    items = text.split(",")
    if len(items) > 1 and items[-1].strip() == "":
        items = items[:-1]  # "4,": a list of one seed
    try:
        values = [int(v) for v in items]
    except ValueError:
        raise ConfigError(
            f"--seeds {text!r} must be a count such as 3 or comma-separated seeds such as 0,1,2."
        ) from None
    if "," in text:
        return values
    if values[0] < 1:
        raise ConfigError(
            f"--seeds {text!r} is a count of seeds, which must be at least 1 (one seed alone is "
            "written with a trailing comma, as in '0,')."
        )
    return values[0]


@bench.command()
def spatiotemporal(
    run_dir: Path | None = _RUN_DIR,
    quick: bool = _QUICK,
    executor: str = _EXECUTOR,
    address: str | None = _ADDRESS,
    datasets: str | None = typer.Option(None, help="Comma-separated data set names."),
    models: str | None = typer.Option(None, help="Comma-separated model names."),
    pems04: Path | None = typer.Option(None, help="Path of pems04.npz (key 'data')."),
    pems08: Path | None = typer.Option(None, help="Path of pems08.npz (key 'data')."),
    custom: Path | None = typer.Option(
        None, help="Your own data set: an .npz holding a (time, nodes, features) array."
    ),
    key: str | None = typer.Option(None, help="--custom: the array's key in the .npz."),
    target_feature: int = typer.Option(0, help="--custom: index of the forecast feature."),
    adjacency: Path | None = typer.Option(
        None, help="--custom: N x N edge-weight CSV (no header)."
    ),
    distances: Path | None = typer.Option(
        None, help="--custom: distance edge list CSV 'from,to,cost' (0-based ids)."
    ),
    step_minutes: float | None = typer.Option(None, help="--custom: minutes per time step."),
    in_steps: int = typer.Option(12, help="--custom: history window (steps)."),
    out_steps: int = typer.Option(12, help="--custom: forecast horizon (steps)."),
    seeds: str | None = typer.Option(
        None,
        help="Model seeds: a count n (seeds 0..n-1) or comma-separated seeds, one alone as '4,' "
        "(default 3; 1 with --quick).",
    ),
    widths: str | None = typer.Option(
        None, help="GNN widths: paper, reduced or tiny (default paper; tiny with --quick)."
    ),
    train_stride: int | None = typer.Option(
        None,
        help="Train on every k-th training window of every data set (default: each data set's "
        "own stride; 1 with --quick).",
    ),
    progress: bool = typer.Option(True, help="Show the progress bar over cells (default on)."),
):
    """Spatio-temporal graph forecasting (seed paper Table 1), or your own data (--custom)."""
    from eads._errors import ConfigError
    from eads.tasks.spatiotemporal import CustomData, run_benchmark

    spec = None
    if custom is not None:
        if key is None or step_minutes is None:
            raise ConfigError(
                f"--custom {custom} also needs --key (the array's name in the .npz) and "
                "--step-minutes (the sampling interval)."
            )
        spec = CustomData(
            path=str(custom),
            key=key,
            step_minutes=step_minutes,
            target_feature=target_feature,
            adjacency=None if adjacency is None else str(adjacency),
            distances=None if distances is None else str(distances),
            in_steps=in_steps,
            out_steps=out_steps,
        )
    d = _run_dir(run_dir, "spatiotemporal")
    typer.echo(
        run_benchmark(
            d,
            quick=quick,
            executor=executor,
            address=address,
            datasets=datasets,
            models=models,
            pems04=pems04,
            pems08=pems08,
            custom=spec,
            seeds=None if seeds is None else _seeds(seeds),
            widths=widths,
            train_stride=train_stride,
            progress=progress,
        )
    )
    typer.echo(f"run directory: {d}")


@bench.command("spatiotemporal-report")
def spatiotemporal_report(
    run_dir: Path = typer.Argument(..., help="A spatio-temporal benchmark run directory."),
    plots: bool = typer.Option(True, help="Redraw plots/ too (default on)."),
):
    """Tables (results.md/csv/json, table.txt, relative.json) and plots of a spatio-temporal
    run from its finished cells; trains nothing. Prints the path of results.md."""
    from eads.report.spatiotemporal import report_run

    typer.echo(str(report_run(run_dir, plots=plots)))


@bench.command("attention-report")
def attention_report(
    run_dir: Path = typer.Argument(..., help="An attention benchmark run directory."),
):
    """Tables, bootstrap intervals and plots of an attention run from its finished cells."""
    from eads.report.attention import report_run

    typer.echo(report_run(run_dir))


@bench.command("attention-data")
def attention_data(
    run_dirs: list[Path] = typer.Argument(..., help="Attention runs differing in pairs only."),
    plot: Path | None = typer.Option(None, help="Also draw R2 and perplexity vs pairs here."),
):
    """Each kernel's held-out R2 and perplexity change against its training pairs, over runs
    that differ only in --max-pairs / --n-train (the same passages and window)."""
    from eads.report.attention import data_curve, format_data_curve, plot_data_curve

    rows = data_curve(run_dirs)
    typer.echo(format_data_curve(rows))
    if plot is not None:
        typer.echo(f"plot: {plot_data_curve(rows, plot)}")


@bench.command("attention-compare")
def attention_compare(
    base: Path = typer.Argument(..., help="The base attention run (e.g. the full run)."),
    other: Path = typer.Argument(..., help="A run on the same passages (e.g. an ablation)."),
):
    """Kernels finished in both runs: other - base perplexity with paired bootstrap intervals."""
    from eads.report.attention import compare_runs

    typer.echo(compare_runs(base, other))


@bench.command()
def attention(
    run_dir: Path | None = _RUN_DIR,
    quick: bool = _QUICK,
    executor: str = _EXECUTOR,
    address: str | None = _ADDRESS,
    checkpoint: Path | None = typer.Option(
        None, help="Local Hugging Face causal-LM directory (e.g. GPT-2); default SmolLM2 GGUF."
    ),
    layers: str | None = typer.Option(None, help="Comma-separated layer indices."),
    models: str | None = typer.Option(None, help="Comma-separated: eads,npgl,mean."),
    n_eval: int | None = typer.Option(None, help="LAMBADA evaluation passages."),
    n_train: int | None = typer.Option(None, help="LAMBADA passages for training pairs."),
    epochs: int | None = typer.Option(None, help="EADS epoch cap per layer (patience ends runs)."),
    window: int | None = typer.Option(None, help="Tokens each EADS kernel sees (default 4)."),
    max_pairs: int | None = typer.Option(None, help="Training pairs per layer (default 20000)."),
):
    """Attention kernels replaced by EADS: LAMBADA perplexity per layer (seed paper Table 3)."""
    from eads.tasks.attention import run_benchmark

    d = _run_dir(run_dir, "attention")
    overrides = {
        k: v
        for k, v in {
            "n_eval": n_eval,
            "n_train": n_train,
            "epochs": epochs,
            "window": window,
            "max_tokens_per_layer": max_pairs,
        }.items()
        if v is not None
    }
    typer.echo(
        run_benchmark(
            d,
            quick=quick,
            executor=executor,
            address=address,
            checkpoint=checkpoint,
            layers=layers,
            models=models,
            **overrides,
        )
    )
    typer.echo(f"run directory: {d}")


def register(app: typer.Typer) -> None:
    app.add_typer(bench, name="bench")
