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
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from streamhouse.errors import UserFacingError
from streamhouse.settings import Settings

app = typer.Typer(
    help="streamhouse: a streaming-first lakehouse on one machine or a cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="Start, stop and inspect the embedded services.", no_args_is_help=True)
stream_app = typer.Typer(help="Spark Structured Streaming jobs.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(stream_app, name="stream")

# soft_wrap: a path or a sentence is never broken across lines (copy-paste, grep).
console = Console(stderr=True, soft_wrap=True)
out = Console()
T = TypeVar("T")


def load_settings() -> Settings:
    """Read the settings, turning a bad value into one sentence."""
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        where = "__".join(str(p).upper() for p in first["loc"])
        raise UserFacingError(
            f"Setting STREAMHOUSE_{where} is invalid ({first['msg']}): fix it in the "
            "environment or .env."
        ) from None


def guarded(action: Callable[[], T]) -> T:
    """Run ``action``; print a user-facing error as one red sentence and exit 1."""
    try:
        return action()
    except UserFacingError as error:
        console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("interrupted")
        raise typer.Exit(130) from None


def _report(message: str) -> None:
    console.print(f"[cyan]•[/] {message}")


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
        started = stack.up(settings, services or (), report=_report)
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

    guarded(lambda: stack.down(load_settings(), services or (), purge=purge, report=_report))


@stack_app.command("status")
def stack_status() -> None:
    """Each service with its pid, port, health and memory."""
    from streamhouse.runtime import stack

    def action() -> None:
        rows = stack.status(load_settings())
        table = Table("service", "pid", "port", "health", "memory", "log")
        for row in rows:
            health = (
                "[green]ready[/]"
                if row.healthy
                else ("[yellow]starting/unhealthy[/]" if row.pid else "[dim]stopped[/]")
            )
            memory = f"{row.rss_bytes / 2**20:.0f} MiB" if row.pid else "-"
            table.add_row(
                row.name, str(row.pid or "-"), str(row.port), health, memory, str(row.log)
            )
        out.print(table)
        total = sum(r.rss_bytes for r in rows)
        out.print(f"total resident memory: {total / 2**20:.0f} MiB")

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
def resolve_jars() -> None:
    """Resolve every jar the platform runs (Kafka, registry, Spark connectors) into the cache."""
    from spark_jobs.session import connector_jars
    from streamhouse.runtime.services import build_services
    from streamhouse.runtime.stack import service_paths

    def action() -> None:
        settings = load_settings()
        with console.status("resolving Spark connector jars"):
            jars = connector_jars(settings)
        _report(f"Spark connectors: {len(jars)} jars in {jars[0].parent}")
        specs = build_services(settings)
        for name in ("kafka", "registry"):
            with console.status(f"resolving {name} jars"):
                # prepare() resolves jars and writes configs; it starts nothing.
                specs[name].prepare(service_paths(settings, name))
            _report(f"{name}: jars ready")

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

    def action() -> None:
        settings = load_settings()
        _configure_logging()
        if once:
            summary = poller.poll_once(settings)
            out.print(summary)
            return
        start_http_server(settings.runtime.ports.poller_metrics, addr=settings.runtime.host)
        stop = threading.Event()
        _stop_on_signals(stop)
        poller.run(settings, interval_s, stop, on_poll=lambda s: logging.info("poll: %s", s))

    guarded(action)


@stream_app.command("bronze")
def stream_bronze(
    available_now: Annotated[
        bool, typer.Option("--available-now", help="Process what Kafka holds, then stop.")
    ] = False,
) -> None:
    """Kafka change events -> bronze Delta table (and quarantine), exactly once."""
    from prometheus_client import start_http_server

    from monitoring.stream_metrics import PrometheusListener
    from spark_jobs import bronze_stream
    from spark_jobs.session import build_spark

    def action() -> None:
        settings = load_settings()
        _configure_logging()
        start_http_server(settings.runtime.ports.stream_metrics, addr=settings.runtime.host)
        spark = build_spark(settings, "streamhouse-bronze")
        spark.streams.addListener(PrometheusListener())
        query = bronze_stream.start(spark, settings, available_now=available_now)
        stop = threading.Event()
        _stop_on_signals(stop)
        while query.isActive and not stop.is_set():
            stop.wait(1.0)
        if query.isActive:
            query.stop()  # ends after the running batch; the checkpoint stays consistent
        if query.exception() is not None:
            raise UserFacingError(f"the bronze query failed: {query.exception()}")

    guarded(action)


@app.command("demo")
def demo(
    timeout_s: Annotated[float, typer.Option(help="How long to wait for the flow.", min=1)] = 600,
) -> None:
    """Run the platform end to end on the embedded defaults and show each hop."""
    from streamhouse import demo as demo_flow

    guarded(lambda: demo_flow.run(load_settings(), timeout_s, console, out))


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings as the environment variables that set them."""
    from streamhouse.settings import settings_env

    def action() -> None:
        env = settings_env(load_settings())
        for key in sorted(k for k in env if k.startswith("STREAMHOUSE_")):
            out.print(f"{key}={env[key]}", markup=False, highlight=False)

    guarded(action)


def main() -> None:
    """Entry point of ``python -m streamhouse.cli``."""
    app()


if __name__ == "__main__":
    main()
