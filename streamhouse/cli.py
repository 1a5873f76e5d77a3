"""The ``streamhouse`` command line: the embedded stack, the platform's processes, the demo.

Settings are read here, once, and passed down. Errors a user can cause end
in one sentence saying what to do, never in a traceback.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Column

from core.errors import UserFacingError
from core.settings import Settings
from streamhouse import rendering
from streamhouse.cli_common import console, guarded, load_settings, out, report
from streamhouse.cli_load import app as load_app
from streamhouse.cli_load import bench_app
from streamhouse.cli_marts import app as marts_app
from streamhouse.cli_marts import bench_marts
from streamhouse.cli_monitoring import alerting_app, console_url, dashboard_app
from streamhouse.cli_orchestration import airflow_app, docs_location, quality_app

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

app = typer.Typer(
    help="streamhouse: a streaming-first lakehouse on one machine or a cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="Start, stop and inspect the embedded services.", no_args_is_help=True)
stream_app = typer.Typer(help="Spark Structured Streaming jobs.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(stream_app, name="stream")
app.add_typer(load_app)  # `loadgen` and `bench loadgen`
app.add_typer(marts_app, name="marts")
app.add_typer(dashboard_app, name="dashboard")
app.add_typer(alerting_app, name="alerting")
app.add_typer(airflow_app, name="airflow")
app.add_typer(quality_app, name="quality")


@app.command("docs")
def docs() -> None:
    """Print where the one docs site is (GX Data Docs and dbt docs); it opens nothing."""
    guarded(lambda: out.print(docs_location(load_settings()), markup=False, highlight=False))


bench_app.command("marts")(bench_marts)


@stack_app.command("up")
def stack_up(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to start (default: all).")
    ] = None,
) -> None:
    """Start the services (and what they depend on); running ones are left alone."""
    from streamhouse.runtime import stack

    def action() -> None:
        settings = load_settings()
        began = time.monotonic()
        started = stack.up(settings, services or (), report=report)
        console.print(
            f"[green]stack up[/] in {time.monotonic() - began:.1f} s; "
            f"started {', '.join(started) if started else 'nothing (all running)'}"
        )

    guarded(action)


@stack_app.command("down")
def stack_down(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to stop (default: all).")
    ] = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete their data.")] = False,
) -> None:
    """Stop the services this runtime started; data is kept unless --purge."""
    from streamhouse.runtime import stack

    guarded(lambda: stack.down(load_settings(), services or (), purge=purge, report=report))


@stack_app.command("status")
def stack_status() -> None:
    """Each service with its pid, port, health and memory."""
    from streamhouse.runtime import stack
    from streamhouse.runtime.services import SERVICE_NAMES

    def action() -> None:
        rows = stack.status(load_settings())
        # The service name is what a user types next (`stack logs <name>`): never cut it.
        service = Column("service", no_wrap=True, min_width=len(max(SERVICE_NAMES, key=len)))
        table = rendering.table(service, "pid", "port", "health", "memory", "log", "detail")
        for row in rows:
            health = (
                "[green]ready[/]"
                if row.healthy
                else ("[yellow]starting/unhealthy[/]" if row.pid else "[dim]stopped[/]")
            )
            memory = f"{row.rss_bytes / 2**20:.0f} MiB" if row.pid else "-"
            detail = f"[red]{row.detail}[/]" if row.pid and not row.healthy else row.detail
            table.add_row(
                row.name,
                str(row.pid or "-"),
                str(row.port or "-"),
                health,
                memory,
                str(row.log),
                detail,
            )
        out.print(table)
        total = sum(r.rss_bytes for r in rows)
        out.print(f"total resident memory: {total / 2**20:.0f} MiB")
        settings = load_settings()
        prometheus_up = any(row.name == "prometheus" and row.healthy for row in rows)
        out.print(
            f"dashboards: {console_url(settings)}"
            + ("" if prometheus_up else " (Prometheus is not running)"),
            markup=False,
            highlight=False,
        )

    guarded(action)


@stack_app.command("logs")
def stack_logs(
    service: Annotated[str, typer.Argument(help="Service whose log to show.")],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1)] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
) -> None:
    """Show the end of a service's log."""
    from streamhouse.runtime import stack

    def action() -> None:
        path = stack.log_path(load_settings(), service)
        if not path.exists():
            raise UserFacingError(f"{service} has no log yet ({path}): start it with `stack up`.")
        for line in _tail(path, lines):
            out.print(line, markup=False, highlight=False)
        if follow:
            _follow(path)

    guarded(action)


def _tail(path: Path, lines: int) -> list[str]:
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 256 * lines))
        return handle.read().decode(errors="replace").splitlines()[-lines:]


def _follow(path: Path) -> None:
    with path.open("r", errors="replace") as handle:
        handle.seek(0, 2)
        while True:
            line = handle.readline()
            if line:
                out.print(line.rstrip("\n"), markup=False, highlight=False)
            else:
                time.sleep(0.5)


@app.command("jars")
def resolve_jars(
    jmx_agent_to: Annotated[
        Path | None,
        typer.Option(
            help="Only copy the Kafka broker's JMX exporter agent and its configuration into "
            "this folder (for a broker that does not run from the jar cache: compose's).",
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Resolve every jar the platform runs (Kafka, registry, Spark connectors) into the cache,
    and build the Spark drivers' class archive."""
    from streamhouse.runtime.services import (
        build_services,
        copy_jmx_exporter_agent,
        resolve_spark_jars,
    )

    def action() -> None:
        settings = load_settings()
        if jmx_agent_to is not None:
            for copied in copy_jmx_exporter_agent(settings, jmx_agent_to):
                report(f"wrote {copied}")
            return
        with console.status("resolving Spark connector jars"):
            folders = resolve_spark_jars(settings)
        jars = [jar for folder in folders for jar in folder.glob("*.jar")]
        report(f"Spark connectors: {len(jars)} jars in {', '.join(map(str, folders))}")
        specs = build_services(settings)
        for name in ("kafka", "registry"):
            with console.status(f"resolving {name} jars"):
                specs[name].resolve()
            report(f"{name}: jars ready")
        # Needs the connector jars: the archive is of the class path drivers run with.
        from spark_jobs import class_archive

        with console.status("Spark class archive: a short job writes the driver's classes"):
            class_archive.ensure(settings, report)

    guarded(action)


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # One line per HTTP request or py4j callback drowns what matters.
    for noisy in ("httpx", "httpx2", "py4j"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@app.command("poll")
def poll(
    interval_s: Annotated[float, typer.Option(help="Seconds between polls.", min=0.1)] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="Poll once and exit.")] = False,
) -> None:
    """Poll the HTTP source and publish its changes to Kafka (metrics on the poller port)."""
    from prometheus_client import start_http_server

    from producers import poller
    from producers.errors import ProducerFencedError, PublishError, SourceError

    def action() -> None:
        settings = load_settings()
        _configure_logging()
        try:
            if once:
                out.print(poller.poll_once(settings))
                return
            start_http_server(settings.runtime.ports.poller_metrics, addr=settings.runtime.host)
            stop = threading.Event()
            _stop_on_signals(stop)
            # The poller logs each poll itself: INFO when it did something, DEBUG when idle.
            poller.run(settings, interval_s, stop)
        except ProducerFencedError as error:
            raise UserFacingError(
                f"The poller stopped: {error}. Another poller of source {settings.source.name} "
                "took over (one per source); stop it, or give this one another source name."
            ) from None
        except PublishError as error:
            raise UserFacingError(
                f"The poller cannot publish to Kafka at {settings.kafka.bootstrap_servers} with "
                f"the registry at {settings.registry.url} ({error}): start them "
                "(`streamhouse stack up kafka registry`) or fix STREAMHOUSE_KAFKA__* / "
                "STREAMHOUSE_REGISTRY__*."
            ) from None
        except SourceError as error:
            raise UserFacingError(
                f"The source cannot be read ({error}): start the simulator "
                "(`streamhouse stack up simulator`) or fix STREAMHOUSE_SOURCE__BASE_URL."
            ) from None

    guarded(action)


@stream_app.command("run")
def stream_run(
    jobs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Jobs to run (default: all): bronze (Kafka -> bronze + quarantine), late, "
            "silver, windows (1 minute), rollup (1 hour); aggregates = windows rollup."
        ),
    ] = None,
    available_now: Annotated[
        bool, typer.Option("--available-now", help="Process what is there, then stop.")
    ] = False,
    background: Annotated[
        bool,
        typer.Option(
            "--background",
            help="A lower-priority driver (spark.background_nice) with its own metrics port.",
        ),
    ] = False,
) -> None:
    """Run streaming jobs in one Spark driver, exactly once into Delta."""
    from spark_jobs import streams
    from streamhouse.runtime.process import lower_cpu_priority

    def action() -> None:
        settings = load_settings()
        _configure_logging()
        stop = threading.Event()
        _stop_on_signals(stop)
        metrics_port = settings.runtime.ports.stream_metrics
        if background:
            metrics_port = settings.runtime.ports.stream_background_metrics
            lower_cpu_priority(settings.spark.background_nice)
        streams.run(
            settings,
            tuple(jobs or ()),
            stop,
            available_now=available_now,
            metrics_port=metrics_port,
        )

    guarded(action)


replay_app = typer.Typer(
    help="Replay a range through the stream's own transforms.", no_args_is_help=True
)
app.add_typer(replay_app, name="replay")


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UserFacingError(
            f"Time {text!r} is not ISO 8601: write it like 2026-11-26T12:00:00 (UTC)."
        ) from None
    return value.replace(tzinfo=None) if value.tzinfo is None else value


def _timed_replay(
    title: str, replay_with: Callable[[SparkSession], dict[str, int]], settings: Settings
) -> None:
    from spark_jobs.session import build_spark, spark_log_file

    log_file = spark_log_file(settings, "streamhouse-replay")
    report(f"Spark's log: {log_file}")
    spark = build_spark(settings, "streamhouse-replay", log_file)
    began = time.monotonic()
    with console.status("replaying"):
        counts = replay_with(spark)
    table = rendering.table("table", "rows", title=f"{title} in {time.monotonic() - began:.1f} s")
    for name, value in counts.items():
        table.add_row(name, str(value))
    out.print(table)


@replay_app.command("kafka")
def replay_kafka(
    from_offsets: Annotated[str | None, typer.Option(help="earliest or offsets JSON.")] = None,
    to_offsets: Annotated[
        str | None, typer.Option(help="latest or offsets JSON (exclusive).")
    ] = None,
    from_time: Annotated[str | None, typer.Option(help="ISO time: first record timestamp.")] = None,
    to_time: Annotated[str | None, typer.Option(help="ISO time (exclusive).")] = None,
    live: Annotated[
        bool, typer.Option("--live", help="Write the live tables, not side ones.")
    ] = False,
) -> None:
    """Replay a Kafka range (offsets or timestamps) into bronze, silver and the windows."""
    from spark_jobs import replay

    def action() -> None:
        settings = load_settings()
        start, end = _parse_time(from_time), _parse_time(to_time)
        span = replay.KafkaRange(
            starting_offsets=from_offsets,
            ending_offsets=to_offsets,
            starting_timestamp_ms=int(start.timestamp() * 1000) if start else None,
            ending_timestamp_ms=int(end.timestamp() * 1000) if end else None,
        )
        _timed_replay(
            "replay of a Kafka range",
            lambda spark: replay.replay_kafka(spark, settings, span, to_live=live),
            settings,
        )

    guarded(action)


@replay_app.command("bronze")
def replay_bronze(
    from_time: Annotated[str | None, typer.Option(help="ISO ingestion time (inclusive).")] = None,
    to_time: Annotated[str | None, typer.Option(help="ISO ingestion time (exclusive).")] = None,
    live: Annotated[
        bool, typer.Option("--live", help="Write the live tables, not side ones.")
    ] = False,
) -> None:
    """Recompute silver and the windows from the bronze rows ingested in a time range."""
    from spark_jobs import replay

    def action() -> None:
        settings = load_settings()
        start, end = _parse_time(from_time), _parse_time(to_time)
        _timed_replay(
            "replay of bronze",
            lambda spark: replay.replay_bronze(spark, settings, start, end, to_live=live),
            settings,
        )

    guarded(action)


@app.command("reconcile")
def reconcile_tables(
    closed_before: Annotated[
        str | None, typer.Option(help="Compare only windows ending at or before this ISO time.")
    ] = None,
) -> None:
    """Compare the live silver and window tables with the last replay; print every difference."""
    from spark_jobs import reconcile
    from spark_jobs.session import build_spark, spark_log_file

    def action() -> None:
        settings = load_settings()
        log_file = spark_log_file(settings, "streamhouse-reconcile")
        report(f"Spark's log: {log_file}")
        spark = build_spark(settings, "streamhouse-reconcile", log_file)
        differences = reconcile.reconcile(spark, settings, closed_before=_parse_time(closed_before))
        for diff in differences:
            out.print(f"{diff.table} {diff.key}: live={diff.live} replay={diff.replay}")
        if differences:
            raise UserFacingError(f"{len(differences)} differences between live and replay.")
        out.print("[green]live and replay agree[/]")

    guarded(action)


@app.command("demo")
def demo(
    timeout_s: Annotated[float, typer.Option(help="How long to wait for the flow.", min=1)] = 600,
) -> None:
    """Run the platform end to end on the embedded defaults and show each hop."""
    from streamhouse import demo as demo_flow

    guarded(lambda: demo_flow.run(load_settings(), timeout_s, console, out))


catalog_app = typer.Typer(
    help="The shared catalog: the lake's tables by name (schema lake), the marts (schema marts).",
    no_args_is_help=True,
)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("register")
def catalog_register() -> None:
    """Create the metastore's database if needed and register the lake's tables (idempotent)."""
    from spark_jobs import catalog
    from spark_jobs.session import build_spark
    from streamhouse.runtime import postgres

    def action() -> None:
        settings = load_settings()
        if settings.catalog.kind == "hive":
            postgres.ensure_database(settings, settings.catalog.database, settings.catalog.password)
        with console.status("starting Spark and registering the lake's tables"):
            spark = build_spark(settings, "streamhouse-catalog")
            registered = catalog.register_lake_tables(spark, settings)
        for name, present in registered.items():
            report(f"{name}: {'registered' if present else 'no table at its location yet'}")

    guarded(action)


@catalog_app.command("tables")
def catalog_tables(
    count: Annotated[
        bool, typer.Option("--count/--no-count", help="Count each table's rows.")
    ] = True,
) -> None:
    """Every table of the lake and marts schemas, read by name: location and rows."""
    from spark_jobs import catalog
    from spark_jobs.session import build_spark

    def action() -> None:
        settings = load_settings()
        catalog.require_metastore(settings)
        with console.status("reading the catalog"):
            spark = build_spark(settings, "streamhouse-catalog")
            rows = catalog.describe_tables(spark, settings, count=count)
        table = rendering.table("table", "rows", "location")
        for row in rows:
            table.add_row(row.name, "-" if row.rows is None else str(row.rows), row.location)
        out.print(table)

    guarded(action)


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings as the environment variables that set them (secrets hidden)."""
    from core.settings import redacted_variables

    def action() -> None:
        variables = redacted_variables(load_settings())
        for key in sorted(variables):
            out.print(f"{key}={variables[key]}", markup=False, highlight=False)

    guarded(action)


def main() -> None:
    """Entry point of ``python -m streamhouse.cli``."""
    app()


if __name__ == "__main__":
    main()
