"""``streamhouse marts build|test|docs|verify-idempotent``: the dbt marts on the stack's Spark.

dbt runs in this process on a SparkSession built from the settings (the
shared metastore, the cached jars), so the streaming job may keep running.
The steps themselves are in ``marts.build``; this module parses options and
shows progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from core.errors import UserFacingError
from core.settings import Settings
from streamhouse import rendering
from streamhouse.cli_common import console, guarded, load_settings, out, report

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from marts.runner import DbtRun

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


def _window(settings: Settings, start: str | None, end: str | None) -> dict[str, Any]:
    from marts.profiles import interval_vars

    today = datetime.now(UTC).date()
    return interval_vars(settings, _date(start, "--start"), _date(end, "--end"), today)


def _spark(settings: Settings) -> SparkSession:
    from marts.runner import marts_spark

    with console.status("starting Spark on the shared catalog"):
        return marts_spark(settings)


@contextmanager
def node_progress(title: str, shown_on: Console = console) -> Iterator[Callable[[str, str], None]]:
    """A live line naming the dbt node running and counting the ones done."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} done"),
        TimeElapsedColumn(),
        console=shown_on,
    ) as progress:
        task = progress.add_task(title, total=None)

        def on_node(event: str, node: str) -> None:
            if event == "NodeStart":
                progress.update(task, description=f"{title}: {node}")
            elif event == "NodeFinished":
                progress.advance(task)

        yield on_node


def _summary(run: DbtRun) -> None:
    """The failed nodes, or the slowest, and the count of each status."""
    counts: dict[str, int] = {}
    for node in run.nodes:
        counts[node.status] = counts.get(node.status, 0) + 1
    slowest = sorted(run.nodes, key=lambda n: n.seconds, reverse=True)[:5]
    shown = [n for n in run.nodes if n.status not in ("pass", "success")] or slowest
    table = rendering.table("node", "status", "seconds", title=f"dbt {' '.join(run.command[:2])}")
    for node in shown:
        table.add_row(f"{node.resource_type} {node.name}", node.status, f"{node.seconds:.1f}")
    out.print(table)
    out.print(", ".join(f"{count} {status}" for status, count in sorted(counts.items())))


def _on_step(_event: str, message: str) -> None:
    report(message)


StartOption = Annotated[
    str | None, typer.Option("--start", help="First event date (ISO); default: today (UTC).")
]
EndOption = Annotated[
    str | None, typer.Option("--end", help="Event date after the last (ISO); default: tomorrow.")
]


@app.command("build")
def build(
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild every mart from scratch.")
    ] = False,
    start: StartOption = None,
    end: EndOption = None,
    select: Annotated[
        list[str] | None,
        typer.Option("--select", help="dbt node selection (repeat), e.g. fct_quakes+."),
    ] = None,
    unit_tests: Annotated[
        bool,
        typer.Option(
            "--unit-tests",
            help="Run dbt's unit tests in this build too (default: marts.unit_tests_in_build; "
            "`marts test` runs them).",
        ),
    ] = False,
) -> None:
    """Seed, build and test the marts for an interval of event dates and its lookback."""
    from marts import build as steps

    def action() -> None:
        settings = load_settings()
        window = _window(settings, start, end)
        report(
            f"interval [{window['start_date']}, {window['end_date']}) plus "
            f"{window['lookback_days']} days of lookback"
            + (" (full refresh: every date)" if full_refresh else "")
        )
        spark = _spark(settings)
        try:
            with node_progress("dbt build") as on_node:
                result = steps.build(
                    spark,
                    settings,
                    window,
                    full_refresh=full_refresh,
                    select=select,
                    progress=on_node,
                    on_step=_on_step,
                    unit_tests=True if unit_tests else None,
                )
        finally:
            _show_last_run()
        report(f"dbt build done in {result.seconds:.1f} s")

    guarded(action)


def _show_last_run() -> None:
    from marts.runner import last_run

    run = last_run()
    if run is not None:
        _summary(run)


@app.command("test")
def test(
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select", help="dbt node selection (repeat), e.g. test_type:unit or fct_quakes."
        ),
    ] = None,
) -> None:
    """Run the marts' data and unit tests, and the sources' freshness."""
    from marts.runner import require_success, run_dbt

    def action() -> None:
        settings = load_settings()
        window = _window(settings, None, None)
        _spark(settings)
        tests = ["test", *(["--select", *select] if select else [])]
        for args, title in ((["source", "freshness"], "freshness"), (tests, "dbt test")):
            with node_progress(title) as on_node:
                run = run_dbt(settings, args, window, on_node)
            _summary(run)
            require_success(run)

    guarded(action)


@app.command("docs")
def docs(
    diagram_copy: Annotated[
        Path | None,
        typer.Option(
            "--diagram", help="Also write the star schema page here (e.g. dbt/star_schema.md)."
        ),
    ] = None,
) -> None:
    """Generate dbt's documentation site and the star schema diagram from its manifest."""
    import json

    from marts.diagram import mermaid_er, star_schema_page
    from marts.profiles import dbt_work_dir
    from marts.runner import require_success, run_dbt

    def action() -> None:
        settings = load_settings()
        window = _window(settings, None, None)
        _spark(settings)
        with console.status("dbt docs generate"):
            run = run_dbt(settings, ["docs", "generate"], window)
        require_success(run)
        target = dbt_work_dir(settings) / "target"
        diagram = mermaid_er(
            json.loads((target / "manifest.json").read_text()),
            json.loads((target / "catalog.json").read_text()),
        )
        page = star_schema_page(diagram)
        (target / "star_schema.md").write_text(page)
        report(f"static site: {target / 'index.html'} (open it, or serve {target})")
        report(f"star schema: {target / 'star_schema.md'}")
        if diagram_copy is not None:
            diagram_copy.write_text(page)
            report(f"star schema: {diagram_copy}")

    guarded(action)


@app.command("verify-idempotent")
def verify_idempotent(start: StartOption = None, end: EndOption = None) -> None:
    """Rebuild an interval and prove with Delta time travel that no mart changed."""
    from marts.build import run_models
    from marts.idempotency import verify_idempotent as verify

    def action() -> None:
        settings = load_settings()
        window = _window(settings, start, end)
        spark = _spark(settings)
        began = time.monotonic()

        def rebuild() -> None:
            with node_progress("dbt run (the rebuild)") as on_node:
                run_models(settings, window, on_node)

        checks = verify(spark, settings, rebuild)
        show_idempotency(checks)
        report(f"rebuilt and compared in {time.monotonic() - began:.1f} s")
        changed = [c.name for c in checks if not c.unchanged]
        if changed:
            raise UserFacingError(f"Rebuilding changed {', '.join(changed)}: not idempotent.")

    guarded(action)


def show_idempotency(checks: list[Any]) -> None:
    """The versions before and after a rebuild, the differences, the new history lines."""
    table = rendering.table("mart", "version before", "after", "only before", "only after")
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
    if all(c.unchanged for c in checks):
        committed = [c.name for c in checks if c.new_version]
        out.print(
            "[green]idempotent[/]: every mart equals its version before the rebuild"
            + (
                f"; new versions with equal rows: {', '.join(committed)}"
                if committed
                else "; the rebuild committed no version (every MERGE was empty)"
            )
        )


def bench_marts(
    days: Annotated[int, typer.Option("--days", min=5, help="Days of history.")] = 30,
    events_per_day: Annotated[
        int, typer.Option("--events-per-day", min=100, help="Events of each day.")
    ] = 20_000,
    runs: Annotated[
        int, typer.Option("--runs", min=1, help="Full refresh + daily run pairs, alternated.")
    ] = 2,
    output: Annotated[Path, typer.Option(help="Where to save the JSON (and PNG) report.")] = (
        Path("benchmarks") / "results" / "marts.json"
    ),
) -> None:
    """Full refresh against one daily incremental run at N days of history, side by side."""
    from marts import bench

    def action() -> None:
        settings = load_settings()
        command = (
            f"streamhouse bench marts --days {days} --events-per-day {events_per_day} --runs {runs}"
        )
        result = bench.run_benchmark(
            settings,
            days=days,
            events_per_day=events_per_day,
            runs=runs,
            output=output,
            command=command,
            report=report,
        )
        show_bench(result)
        out.print(f"report {output}, plot {output.with_suffix('.png')}")

    guarded(action)


def show_bench(result: Any) -> None:
    """The benchmark's figures, and each target met or missed."""
    from marts.bench import EMPTY_DAY

    table = rendering.table(
        "run", "seconds", "rows written", "files written", "files read", "rows read",
        title=f"marts at {result.days} days ({result.bronze_rows:,} bronze rows)",
    )  # fmt: skip
    for run in result.runs:
        table.add_row(
            run.kind,
            f"{run.seconds:.1f}",
            f"{sum(run.rows_written.values()):,}",
            f"{sum(run.files_written.values()):,}",
            f"{sum(run.files_read.values()):,}",
            f"{sum(run.rows_read.values()):,}",
        )
    out.print(table)
    share = result.incremental_share
    out.print(
        f"daily run / full refresh (medians): {share:.1%} (target <= 5 %: "
        f"{'met' if share <= 0.05 else 'missed'}); equal to the full refresh: "
        f"{result.equal_to_full_refresh}"
    )
    if result.median(EMPTY_DAY):
        out.print(
            f"a day with no rows (the fixed cost of a run) / full refresh: "
            f"{result.floor_share:.1%}; the daily run above it: "
            f"{result.incremental_share - result.floor_share:.1%}"
        )
    for query in result.one_day:
        out.print(
            f"one day of {query.mart}: {query.files_read} of {query.files_in_table} files "
            f"({query.share:.1%}; target <= 5 %: {'met' if query.share <= 0.05 else 'missed'})"
        )
