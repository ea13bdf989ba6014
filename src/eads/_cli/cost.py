"""``eads cost`` (the efficiency report of a trained run) and ``eads robustness``."""

from __future__ import annotations

from pathlib import Path

import typer


def _constants(path: Path | None, capacitance_f: float | None,
               unit_conductance_s: float | None):  # fmt: skip
    import dataclasses
    import tomllib

    from eads._errors import ConfigError
    from eads.hardware.constants import HardwareConstants

    data: dict = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"Constants file {str(path)!r} does not exist.")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Constants file {str(path)!r} is not valid TOML ({exc}).") from None
        data = data.get("hardware", data)
    constants = HardwareConstants.from_dict(data)
    overrides = {
        k: v
        for k, v in (("capacitance_f", capacitance_f), ("unit_conductance_s", unit_conductance_s))
        if v is not None
    }
    if overrides:
        circuit = dataclasses.replace(constants.circuit, **overrides)
        constants = dataclasses.replace(constants, circuit=circuit)
    return constants


def register(app: typer.Typer) -> None:
    @app.command()
    def cost(
        run_dir: Path = typer.Argument(..., help="A run directory written by `eads fit` (EADS)."),
        json_out: Path | None = typer.Option(None, "--json", help="Also write the report here."),
        preset: str = typer.Option("paper", help="Analog power: 'paper' (1.8 W / 352 mW) or "
                                                 "'bottom-up' (component counts)."),
        baseline: list[Path] | None = typer.Option(
            None, help="Run directories of digital baselines to compare (repeatable)."),
        constants: Path | None = typer.Option(
            None, help="TOML with [circuit] [converters] [programming] [power] overrides."),
        capacitance_f: float | None = typer.Option(None, help="Node capacitance (F)."),
        unit_conductance_s: float | None = typer.Option(None, help="Unit conductance (S)."),
    ):  # fmt: skip
        """Modeled time and energy of a trained circuit beside measured digital baselines."""
        from eads._io import atomic_write_json
        from eads.hardware.report import cost_report, format_cost_table

        consts = _constants(constants, capacitance_f, unit_conductance_s)
        report = cost_report(run_dir, constants=consts, power=preset,
                             baselines=tuple(baseline or ()))  # fmt: skip
        typer.echo(format_cost_table(report))
        if json_out is not None:
            atomic_write_json(json_out, report)
            typer.echo(f"report: {json_out}")

    @app.command()
    def robustness(
        run_dir: Path | None = typer.Option(None, help="Default: runs/robustness-<time>."),
        quick: bool = typer.Option(False, help="Smoke-test size: demo task, 3 levels per axis."),
        tasks: str | None = typer.Option(None, help="Comma-separated: demo, burgers-fno."),
        seed: int = typer.Option(0),
        quiet: bool = typer.Option(False, help="No progress bar."),
    ):
        """Accuracy vs conductance bits, variation and noise, with and without hw-aware training."""
        import dataclasses
        import time

        from eads.hardware.robustness import RobustnessConfig, format_robustness, robustness_study

        cfg = RobustnessConfig.quick() if quick else RobustnessConfig()
        changes: dict = {"seed": seed}
        if tasks:
            changes["tasks"] = tuple(t.strip() for t in tasks.split(",") if t.strip())
        cfg = dataclasses.replace(cfg, **changes)
        run_dir = run_dir or Path("runs") / time.strftime("robustness-%Y%m%d-%H%M%S")
        out = robustness_study(run_dir, cfg, progress=not quiet)
        typer.echo(format_robustness(out))
        typer.echo(f"run directory: {run_dir}")
