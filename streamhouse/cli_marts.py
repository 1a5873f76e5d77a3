"""``streamhouse marts build|test|docs|verify-idempotent``: the dbt marts on the stack's Spark.

dbt runs in this process on a SparkSession built from the settings (the
shared metastore, the cached jars), so the streaming job may keep running.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.errors import UserFacingError
from core.settings import Settings
from streamhouse.cli_common import console, guarded, load_settings, out, report

app = typer.Typer(
    help="The dbt marts: a star schema on the lake's Delta tables.", no_args_is_help=True
)


def _date(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserFacingError(
            f"{option} {text!r} is not a date: write it like 2026-11-26."
        ) from None


def _run(args: list[str], start: str | None = None, end: str | None = None) -> None:
    from marts.profiles import interval_vars
    from marts.runner import marts_spark

    settings = load_settings()
    window = interval_vars(_date(start, "--start"), _date(end, "--end"))
    began = time.monotonic()
    with console.status("starting Spark on the shared catalog"):
        spark = marts_spark(settings)
    if args[0] in ("build", "run") and not all(
        spark.catalog.tableExists(f"{settings.catalog.marts_schema}.{name}")
        for name in INCREMENTAL_MARTS
    ):
        # Unit tests of incremental models read the columns of the existing table
        # (`this`): create the marts empty first, as dbt's docs advise.
        report("first build: creating the marts empty (dbt build --empty)")
        _run_nodes(settings, [*EMPTY_BUILD], {})
    _run_nodes(settings, args, window)
    report(f"dbt {args[0]} done in {time.monotonic() - began:.1f} s")


INCREMENTAL_MARTS = ("fct_quake_revisions", "fct_quakes", "fct_network_activity_daily")
EMPTY_BUILD = (
    "build",
    "--empty",
    "--exclude-resource-type",
    "unit_test",
    "--exclude-resource-type",
    "test",
)


def _run_nodes(settings: Settings, args: list[str], window: dict[str, str]) -> None:
    from marts.runner import require_success, run_dbt

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} done"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"dbt {args[0]}", total=None)

        def on_node(event: str, node: str) -> None:
            if event == "NodeStart":
                progress.update(task, description=f"dbt {args[0]}: {node}")
            else:
                progress.advance(task)

        run = run_dbt(settings, args, window, on_node)
    counts: dict[str, int] = {}
    for node in run.nodes:
        counts[node.status] = counts.get(node.status, 0) + 1
    slowest = sorted(run.nodes, key=lambda n: n.seconds, reverse=True)[:5]
    shown = [n for n in run.nodes if n.status not in ("pass", "success")] or slowest
    table = Table("node", "status", "seconds", title=f"dbt {' '.join(args)}")
    for node in shown:
        table.add_row(f"{node.resource_type} {node.name}", node.status, f"{node.seconds:.1f}")
    out.print(table)
    out.print(", ".join(f"{count} {status}" for status, count in sorted(counts.items())))
    require_success(run)


StartOption = Annotated[str | None, typer.Option("--start", help="First event date (ISO).")]
EndOption = Annotated[str | None, typer.Option("--end", help="Event date after the last (ISO).")]


@app.command("build")
def build(
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild every mart from scratch.")
    ] = False,
    start: StartOption = None,
    end: EndOption = None,
) -> None:
    """Seed, build and test the marts for an interval of event dates (default: the last days)."""
    guarded(lambda: _run(["build", *(["--full-refresh"] if full_refresh else [])], start, end))


@app.command("test")
def test() -> None:
    """Run the marts' data and unit tests, and the sources' freshness."""

    def action() -> None:
        _run(["source", "freshness"])
        _run(["test"])

    guarded(action)


@app.command("docs")
def docs() -> None:
    """Generate dbt's documentation site (catalog.json, manifest.json, index.html)."""
    from marts.profiles import dbt_work_dir

    def action() -> None:
        _run(["docs", "generate"])
        target = dbt_work_dir(load_settings()) / "target"
        report(f"static site: {target / 'index.html'} (open it, or serve {target})")

    guarded(action)


@app.command("verify-idempotent")
def verify_idempotent(start: StartOption = None, end: EndOption = None) -> None:
    """Rebuild an interval and prove with Delta time travel that no mart changed."""
    from marts.idempotency import verify_idempotent as verify
    from marts.runner import marts_spark

    def action() -> None:
        settings = load_settings()
        with console.status("starting Spark on the shared catalog"):
            spark = marts_spark(settings)
        checks = verify(spark, settings, lambda: _run(["run"], start, end))
        table = Table("mart", "version before", "after", "only before", "only after")
        for check in checks:
            after = str(check.version_after) if check.new_version else "(no new version)"
            table.add_row(
                check.name,
                str(check.version_before),
                after,
                str(check.only_before),
                str(check.only_after),
            )
        out.print(table)
        for check in checks:
            for line in check.history:
                out.print(f"{check.name} {line}", markup=False, highlight=False)
        changed = [c.name for c in checks if not c.unchanged]
        if changed:
            raise UserFacingError(f"Rebuilding changed {', '.join(changed)}: not idempotent.")
        out.print("[green]idempotent[/]: every mart equals its version before the rebuild")

    guarded(action)
