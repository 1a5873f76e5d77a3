"""``streamhouse dashboard`` and ``streamhouse alerting``: where to look, and what tells people.

``dashboard`` prints the console dashboards' address (it opens nothing);
``dashboard generate`` rewrites the files compose mounts from the
definitions; ``dashboard screenshot`` photographs the latency page under load
from the load generator (the README's image). ``alerting config`` writes
Alertmanager's configuration from the settings (compose runs it once before
Alertmanager starts; the embedded runtime does the same at ``stack up``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from core.errors import UserFacingError
from core.settings import PROJECT_ROOT, Settings
from streamhouse.cli_common import console, guarded, load_settings, out, report

dashboard_app = typer.Typer(
    help="The dashboards: print their address, regenerate their files, photograph them.",
    invoke_without_command=True,
)
alerting_app = typer.Typer(help="Alerting: Alertmanager's configuration.", no_args_is_help=True)

DEFAULT_SCREENSHOT = PROJECT_ROOT / "docs" / "images" / "latency-panels.png"
# A 5-minute quantile window filled with the load, plus a minute of margin.
DEFAULT_WARMUP_S = 360.0


def console_url(settings: Settings, page: str = "index.html") -> str:
    """Address of a console page of the Prometheus the settings point at."""
    return f"{settings.prometheus_url}/consoles/{page}"


def _prometheus_ready(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.prometheus_url}/-/ready", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


@dashboard_app.callback()
def dashboard(ctx: typer.Context) -> None:
    """Print the address of the console dashboards (nothing is opened)."""
    if ctx.invoked_subcommand is not None:
        return

    def action() -> None:
        from monitoring.dashboards import consoles
        from monitoring.dashboards.definitions import DASHBOARDS

        settings = load_settings()
        out.print(console_url(settings), markup=False, highlight=False)
        for dashboard in DASHBOARDS:
            for row in dashboard.rows:
                page = consoles.page_name(row)
                console.print(f"  {row.title}: {console_url(settings, page)}", highlight=False)
        if not _prometheus_ready(settings):
            console.print(
                f"[yellow]Prometheus does not answer at {settings.prometheus_url}:[/] start it "
                "with `streamhouse stack up prometheus`."
            )

    guarded(action)


@dashboard_app.command("generate")
def generate(
    check: Annotated[
        bool, typer.Option("--check", help="Only report generated files that are out of date.")
    ] = False,
) -> None:
    """Rewrite Grafana's dashboard JSON and the recording rules from their definitions."""
    from monitoring.dashboards import generate as generated

    def action() -> None:
        if check:
            stale = generated.stale_files()
            if stale:
                raise UserFacingError(
                    f"{', '.join(str(p.relative_to(PROJECT_ROOT)) for p in stale)} differ from "
                    "the definitions: run `streamhouse dashboard generate`."
                )
            report("generated files are up to date")
            return
        written = generated.write_files()
        for path in written:
            report(f"wrote {path.relative_to(PROJECT_ROOT)}")
        if not written:
            report("nothing to write: the files match the definitions")

    guarded(action)


def _query(settings: Settings, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{settings.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10
    ).json()
    if answer.get("status") != "success":
        raise UserFacingError(f"Prometheus refused {expr!r}: {answer.get('error')}")
    result = answer["data"]["result"]
    assert isinstance(result, list)
    return result


def _latency_figures(settings: Settings) -> dict[str, dict[str, float]]:
    from monitoring.dashboards import rules

    figures: dict[str, dict[str, float]] = {}
    for sample in _query(settings, rules.LATENCY_QUANTILES[0].record):
        value = float(sample["value"][1])
        if not math.isnan(value):  # NaN: no record reached that sink in the window
            sink, quantile = sample["metric"]["sink"], sample["metric"]["quantile"]
            figures.setdefault(sink, {})[f"p{round(float(quantile) * 100)}"] = round(value, 3)
    return figures


def _start_load(settings: Settings, rate: float, duration_s: float, processes: int) -> Any:
    log = settings.state_dir / "dashboard-screenshot-loadgen.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "streamhouse.cli", "loadgen", "--rate", f"{rate:g}",
        "--duration", f"{duration_s:g}", "--processes", str(processes),
    ]  # fmt: skip
    with log.open("w") as handle:
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, env=dict(os.environ)
        )
    return process, log


@dashboard_app.command("screenshot")
def screenshot(
    rate: Annotated[
        float, typer.Option(help="Load generator events/s during the shot.", min=1)
    ] = 1000,
    warmup_s: Annotated[
        float, typer.Option("--warmup", help="Seconds of load before the shot.", min=30)
    ] = DEFAULT_WARMUP_S,
    processes: Annotated[int, typer.Option(help="Load generator processes.", min=1)] = 1,
    output: Annotated[Path, typer.Option(help="PNG to write.")] = DEFAULT_SCREENSHOT,
) -> None:
    """Photograph the latency page under load: the README's image, with its figures in JSON."""
    from monitoring.dashboards import browser

    def action() -> None:
        settings = load_settings()
        if not _prometheus_ready(settings):
            raise UserFacingError(
                f"Prometheus does not answer at {settings.prometheus_url}: start the stack with "
                "`streamhouse stack up`."
            )
        if not any(float(s["value"][1]) == 1 for s in _query(settings, 'up{job="streaming"}')):
            raise UserFacingError(
                "the streaming job is not up, so no latency would be drawn: start it with "
                "`streamhouse stack up streaming`."
            )
        started = datetime.now(UTC)
        process, log = _start_load(settings, rate, warmup_s + 120, processes)
        report(f"load generator at {rate:g} events/s (log: {log})")
        try:
            with Progress(
                TextColumn("[bold]warming up[/] {task.description}"),
                BarColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as progress:
                task = progress.add_task(f"{warmup_s:.0f} s of load", total=warmup_s)
                began = time.monotonic()
                while (elapsed := time.monotonic() - began) < warmup_s:
                    if process.poll() is not None:
                        raise UserFacingError(
                            f"the load generator stopped early (exit {process.returncode}); "
                            f"see {log}."
                        )
                    progress.update(task, completed=elapsed)
                    time.sleep(1.0)
            hash_ = "#pctc" + json.dumps({"duration": 900, "endTime": 0}, separators=(",", ":"))
            url = console_url(settings, "latency.html") + hash_
            try:
                with browser.console_browser(settings.monitoring) as chromium:
                    page = chromium.load(url)
                    chromium.screenshot(output)
            except (FileNotFoundError, RuntimeError, TimeoutError) as error:
                raise UserFacingError(f"{error}") from None
            figures = _latency_figures(settings)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
        taken = datetime.now(UTC)
        record = {
            "taken_at": taken.isoformat(timespec="seconds"),
            "load_started_at": started.isoformat(timespec="seconds"),
            "rate_events_per_s": rate,
            "processes": processes,
            "warmup_s": warmup_s,
            "latency_s": figures,
            "panels": [
                {"title": g.title, "has_data": g.has_data, "finite_samples": g.finite_samples}
                for g in page.graphs
            ],
        }
        output.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
        for graph in page.graphs:
            state = "data" if graph.has_data else (graph.error or "no data")
            report(f"{graph.title}: {state}")
        report(f"wrote {output} and {output.with_suffix('.json').name}")
        out.print(json.dumps(figures, indent=2), markup=False, highlight=False)

    guarded(action)


def _owner(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        uid, gid = (int(part) for part in text.split(":"))
    except ValueError:
        raise UserFacingError(f"--owner {text!r} is not UID:GID, e.g. 65534:65534.") from None
    return uid, gid


@alerting_app.command("config")
def alerting_config(
    output: Annotated[
        Path, typer.Option(help="Folder to write alertmanager.yml (and its secret files) into.")
    ],
    owner: Annotated[
        str | None,
        typer.Option(help="UID:GID to hand the files to (the user Alertmanager runs as)."),
    ] = None,
) -> None:
    """Write Alertmanager's configuration from the alerting settings."""
    from monitoring.alerting import write_config

    def action() -> None:
        settings = load_settings()
        path = write_config(settings.alerting, output, settings.dashboard_url, _owner(owner))
        channels = [
            name
            for name, on in (
                ("webhook", settings.alerting.webhook_url is not None),
                ("e-mail", settings.alerting.email_enabled),
            )
            if on
        ]
        report(f"wrote {path} (receivers: {', '.join(channels) or 'none configured'})")

    guarded(action)
