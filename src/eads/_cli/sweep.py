"""``eads sweep SPEC``: a hyperparameter / seed sweep of ``eads fit`` runs, on Ray by default."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def sweep(
        spec: Path = typer.Argument(
            ..., help="Sweep spec (.toml or .yaml); see docs/scale-out.md."
        ),
        sweep_dir: Path | None = typer.Option(
            None, help="Default: runs/sweep-<spec name>; rerun to finish an interrupted sweep."
        ),
        executor: str = typer.Option("ray", help="ray (default) or local (no Ray, one by one)."),
        address: str | None = typer.Option(
            None, help="Join the Ray cluster at host:port (default: start Ray on this machine)."
        ),
        quiet: bool = typer.Option(False, help="No progress bar."),
    ):
        """Grid, random or Optuna (TPE) search over fit settings and seeds; one run dir a trial."""
        from eads.tasks.sweep import format_summary, run_sweep

        out = sweep_dir or Path("runs") / f"sweep-{spec.stem}"
        summary = run_sweep(spec, out, executor=executor, address=address, progress=not quiet)
        typer.echo(format_summary(summary))
        typer.echo(f"sweep directory: {out} (results.csv, metric.png, best.json)")
