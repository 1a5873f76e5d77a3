"""``streamhouse airflow …``, ``streamhouse quality run`` and ``streamhouse docs``.

Airflow's account and address, a DAG run from the command line, Great
Expectations outside Airflow, and where the one docs site is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from core.errors import UserFacingError
from core.settings import Settings
from streamhouse import rendering
from streamhouse.cli_common import console, guarded, load_settings, out, report

airflow_app = typer.Typer(
    help="Airflow on the stack: its UI, account and DAG runs.", no_args_is_help=True
)
quality_app = typer.Typer(help="Great Expectations suites of the lake.", no_args_is_help=True)

LAYERS = ("bronze", "silver", "marts")


@airflow_app.command("password")
def airflow_password() -> None:
    """Show the UI's administrator account and password (generated at the first start)."""
    from streamhouse.runtime.airflow import shown_password

    def action() -> None:
        settings = load_settings()
        out.print(f"user: {settings.airflow.admin_user}", markup=False, highlight=False)
        out.print(
            f"password: {shown_password(settings).get_secret_value()}",
            markup=False,
            highlight=False,
        )

    guarded(action)


@airflow_app.command("url")
def airflow_url() -> None:
    """Print the address of Airflow's UI (it opens nothing)."""
    guarded(lambda: out.print(load_settings().airflow_url, markup=False, highlight=False))


@airflow_app.command("graph")
def airflow_graph(
    dag_id: Annotated[str, typer.Argument(help="The DAG to draw.")] = "lakehouse_daily",
    out_file: Annotated[
        Path, typer.Option("--out", help="The image to write (png, svg or pdf: its suffix).")
    ] = Path("docs") / "img" / "lakehouse_daily.png",
) -> None:
    """Draw a DAG's graph with Airflow's own renderer, from the DAG files (no stack needed)."""
    from streamhouse.runtime.airflow import airflow_env

    def action() -> None:
        settings = load_settings()
        # Airflow's modules read its configuration at import: run them in its environment.
        command = [sys.executable, "-m", "orchestration.graph", dag_id, str(out_file)]
        result = subprocess.run(command, env=airflow_env(settings), check=False)
        if result.returncode != 0:
            raise UserFacingError(f"the graph of {dag_id} was not drawn (output above).")
        report(f"{dag_id}: {out_file}")

    guarded(action)


@airflow_app.command(
    "cli", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def airflow_cli(ctx: typer.Context) -> None:
    """Run Airflow's own command line against the stack's Airflow (e.g. `-- dags list`)."""
    from streamhouse.runtime.airflow import airflow_command, airflow_env

    def action() -> None:
        settings = load_settings()
        command = airflow_command(*ctx.args)
        sys.stdout.flush()
        os.execvpe(command[0], command, airflow_env(settings))

    guarded(action)


def _day(text: str | None) -> date:
    if text is None:
        return (datetime.now(UTC) - timedelta(days=1)).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserFacingError(f"--date {text!r} is not a date: write it like 2019-02-15.") from None


@airflow_app.command("run-daily")
def airflow_run_daily(
    day: Annotated[str, typer.Option("--date", help="The UTC day to process (YYYY-MM-DD).")],
    timeout_s: Annotated[float, typer.Option(help="How long to wait for the run.")] = 3600,
    prove: Annotated[
        bool,
        typer.Option(
            "--prove/--no-prove",
            help="Compare every table the run committed to with its version before "
            "(Delta time travel): a rerun of a day must change no row.",
        ),
    ] = True,
) -> None:
    """Trigger lakehouse_daily for a day on the stack's scheduler, follow it, prove it."""
    from streamhouse.daily_run import airflow_api, require_success, run_day, show_run

    def action() -> None:
        settings = load_settings()
        the_day = _day(day)
        api = airflow_api(settings)
        api.health()  # Airflow down is told before a JVM starts for the proof
        spark = None
        if prove:
            from spark_jobs.session import build_spark, spark_log_file

            with console.status("starting Spark (for the time-travel proof)"):
                spark = build_spark(
                    settings, "streamhouse-proof", spark_log_file(settings, "streamhouse-proof")
                )
        try:
            run = run_day(
                settings,
                api,
                the_day,
                timeout_s=timeout_s,
                console=console,
                spark=spark,
            )
        finally:
            if spark is not None:
                spark.stop()
        show_run(run, out)
        require_success(run)

    guarded(action)


@quality_app.command("run")
def quality_run(
    table: Annotated[
        str | None, typer.Option("--table", help="bronze, silver or marts (default: all three).")
    ] = None,
    day: Annotated[
        str | None, typer.Option("--date", help="The UTC day (default: yesterday).")
    ] = None,
) -> None:
    """Validate a layer of the lake for a day with its GX suites; exit 1 on a failure."""

    def action() -> None:
        from core.intervals import Interval
        from monitoring.notify import Origin
        from quality.run import validate_layer
        from spark_jobs.session import build_spark, spark_log_file

        layers = [table] if table else list(LAYERS)
        unknown = [name for name in layers if name not in LAYERS]
        if unknown:
            raise UserFacingError(
                f"Unknown table {', '.join(unknown)}: choose from {', '.join(LAYERS)}."
            )
        settings = load_settings()
        interval = Interval.of_day(_day(day))
        with console.status("starting Spark"):
            spark = build_spark(
                settings, "streamhouse-quality", spark_log_file(settings, "streamhouse-quality")
            )
        origin = Origin(command=f"streamhouse quality run --date {interval.label()}")
        failed = []
        for layer in layers:
            with console.status(f"validating {layer} for {interval.label()}"):
                result = validate_layer(spark, settings, layer, interval, origin=origin)
            summary = rendering.table("suite", "result", "expectations", "failures", title=layer)
            for outcome in result.outcomes:
                summary.add_row(
                    outcome.suite,
                    "[green]pass[/]" if outcome.success else "[red]fail[/]",
                    f"{outcome.passed}/{outcome.evaluated}",
                    "\n".join(outcome.failures[:5]),
                )
            out.print(summary)
            if not result.success:
                failed.append(layer)
        report(f"Data Docs: {settings.docs_site_dir / 'gx' / 'index.html'}")
        if failed:
            raise UserFacingError(
                f"{', '.join(failed)} failed validation for {interval.label()}: see the "
                "failures above and the Data Docs."
            )

    guarded(action)


def docs_location(settings: Settings) -> str:
    """Where the one docs site is, and how to open it."""
    index = settings.docs_site_dir / "index.html"
    state = "" if index.exists() else " (not published yet: run lakehouse_daily)"
    return f"docs site: {index}{state}"
