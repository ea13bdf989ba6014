"""``eads spice export`` / ``eads spice verify``: the trained circuit as an ngspice netlist."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    spice = typer.Typer(
        no_args_is_help=True,
        help="Export a trained circuit as an ngspice netlist and check the simulator against it.",
    )
    app.add_typer(spice, name="spice")

    @spice.command()
    def export(
        run_dir: Path = typer.Argument(..., help="A run directory written by `eads fit`."),
        out: Path = typer.Option(..., "--out", help="The netlist to write (e.g. circuit.cir)."),
        npgl: bool = typer.Option(False, "--npgl", help="Insist that the run is an NP-GL model."),
        samples: int = typer.Option(1, help="Test inputs (copies of the circuit) in the netlist."),
        seed: int = typer.Option(0, help="Which of the run's inputs are drawn."),
    ):
        """Write the trained circuit, in physical units, as an ngspice netlist."""
        from eads.spice.netlist import export_run

        net = export_run(run_dir, out, samples=samples, seed=seed, npgl=npgl)
        c = net.constants
        typer.echo(
            f"wrote {net.kind} netlist to {out} ({samples} test input(s); C = "
            f"{c.capacitance_f:g} F, g = {c.unit_conductance_s:g} S, {c.volts_per_unit:g} V per "
            f"unit, transient {net.schedule.stop_s:.3g} s)"
        )

    @spice.command()
    def verify(
        run_dir: Path = typer.Argument(..., help="A run directory written by `eads fit`."),
        samples: int = typer.Option(3, help="Test inputs to compare."),
        seed: int = typer.Option(0, help="Which of the run's inputs are drawn."),
        timeout: float = typer.Option(300.0, help="Seconds ngspice may take."),
    ):
        """Run ngspice on the trained circuit and compare it with the simulator."""
        from eads.spice.verify import verify_run

        rep = verify_run(run_dir, samples=samples, seed=seed, timeout_s=timeout)
        typer.echo(
            f"largest relative difference (outputs, ngspice vs simulator): "
            f"{rep.output_rel_diff:.3g}"
        )
        if rep.trajectory_rel_diff is not None:
            typer.echo(
                f"largest relative difference (hidden nodes during coupling): "
                f"{rep.trajectory_rel_diff:.3g}"
            )
            typer.echo(f"ngspice vs a float64 Dopri5 reference: {rep.reference_rel_diff:.3g}")
        typer.echo(
            f"time: ngspice {rep.spice_s:.3g} s, simulator {rep.simulator_s:.3g} s "
            f"(ratio {rep.ratio:.3g}); all-transient simulator {rep.simulator_transient_s:.3g} s "
            f"(ratio {rep.transient_ratio:.3g}); {rep.n_samples} sample(s)"
        )
        if rep.peak_v > rep.supply_rail_v:
            typer.echo(
                f"note: node voltages reach {rep.peak_v:.3g} V, beyond the "
                f"{rep.supply_rail_v:g} V supply rail (the netlist's sources are ideal)"
            )
