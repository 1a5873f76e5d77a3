"""The dashboards as a person sees them: the embedded stack under load, in headless Chromium.

The load generator writes change events at a steady rate while the stack's
poller, streaming job and Prometheus run. The load goes to a topic and a lake
of this module's own: the stack's streaming service is restarted on them for
the module and restored afterwards, so the session's bronze keeps only what
the other tests expect there. The batch jobs' results (DAG runs,
validations, mart builds) come from jobs this module does not run (test_airflow
and test_marts do), so it pushes results through the very library those jobs
call (``monitoring.batch_metrics``) to the real Pushgateway: their panels show
data the way they do after a run, and the values are the test's own. A finished DAG
run in Airflow's own table is made the same way: a manual run of the paused freshness
DAG, marked successful over Airflow's REST API. Every panel has its producer today; one
declared without (``Panel.pending``) may stay empty, but only while the metric it waits
for exists nowhere in Prometheus.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from core.settings import PROJECT_ROOT, Settings, settings_env
from monitoring import batch_metrics
from monitoring.dashboards import browser, consoles
from monitoring.dashboards.definitions import OVERVIEW
from monitoring.dashboards.model import Panel
from streamhouse.runtime import stack

from .conftest import TEST_STATE_DIR

LOAD_RATE = 300  # events/s: steady load that leaves the shared machine's cores to the stack
LOAD_TOPIC = "dashboards.quake_changes"
STREAM_DRIVERS = ["streaming", "streaming-background"]
DATA_DEADLINE_S = 600
SCREENSHOTS = TEST_STATE_DIR / "screenshots"


def _query(settings: Settings, expr: str) -> list[dict[str, object]]:
    answer = httpx.get(
        f"{settings.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10
    ).json()
    assert answer["status"] == "success", (expr, answer)
    result = answer["data"]["result"]
    assert isinstance(result, list)
    return result


def _finite(samples: list[dict[str, object]]) -> int:
    return sum(1 for s in samples if math.isfinite(float(s["value"][1])))  # type: ignore[index]


def _metric_exists(settings: Settings, name: str) -> bool:
    return bool(_query(settings, f"count({name})"))


def _may_be_empty(settings: Settings, panel: Panel) -> bool:
    """A panel waiting for a producer not built yet, whose metric exists nowhere yet."""
    return panel.pending_metric is not None and not _metric_exists(settings, panel.pending_metric)


def _push_batch_results(settings: Settings) -> None:
    now = datetime.now(UTC)
    batch_metrics.push_dag_run(
        settings,
        dag_id="lakehouse_daily",
        success=True,
        started_at=now - timedelta(minutes=7),
        finished_at=now,
    )
    batch_metrics.push_quality_result(
        settings, suite="silver_quakes", passed=12, failed=0, finished_at=now
    )
    batch_metrics.push_mart_build(
        settings,
        model="fct_quakes",
        finished_at=now,
        newest_data_at=now - timedelta(minutes=3),
        rows=1304,
        latency_quantiles_s={0.5: 95.0, 0.95: 160.0, 0.99: 175.0},
    )


def _finish_a_freshness_run(settings: Settings) -> None:
    """A finished run of lakehouse_freshness in Airflow's own table, which the plugin on its
    API server serves (the batch page's run ages read it): a manual run of the paused DAG, so
    the scheduler starts none of its tasks, marked successful over the REST API."""
    from streamhouse.daily_run import airflow_api

    api = airflow_api(settings)
    api.wait_for_dag("lakehouse_freshness")
    run_id = api.trigger("lakehouse_freshness", {})
    path = f"/dags/lakehouse_freshness/dagRuns/{run_id}"
    api.request("PATCH", path, json={"state": "success"})
    assert api.request("GET", path)["end_date"], "Airflow gave the marked run no end"


@pytest.fixture(scope="module")
def loaded_stack(
    infra_stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """Every service up, the load generator at LOAD_RATE events/s, batch results pushed."""
    from producers.loadgen.runner import ensure_topic

    stack.up(infra_stack, report=print)
    settings = infra_stack.model_copy(
        update={
            "lake_root": str(tmp_path_factory.mktemp("dashboards-lake")),
            "kafka": infra_stack.kafka.model_copy(update={"changes_topic": LOAD_TOPIC}),
            # its own schema too: the stream registers its lake in the shared metastore
            "catalog": infra_stack.catalog.model_copy(update={"lake_schema": "dashboards_lake"}),
        }
    )
    ensure_topic(settings.kafka, LOAD_TOPIC)
    stack.down(infra_stack, STREAM_DRIVERS, report=print)
    stack.up(settings, STREAM_DRIVERS, report=print)
    _push_batch_results(settings)
    _finish_a_freshness_run(settings)
    log = tmp_path_factory.mktemp("loadgen") / "loadgen.log"
    with log.open("w") as handle:
        loadgen = subprocess.Popen(
            [
                sys.executable, "-m", "streamhouse.cli", "loadgen",
                "--rate", str(LOAD_RATE), "--duration", "1500",
                "--duplicates", "0.01", "--late", "0.01", "--entities", "20000",
            ],
            stdout=handle, stderr=subprocess.STDOUT, env=settings_env(settings), cwd=PROJECT_ROOT,
        )  # fmt: skip
    try:
        _wait_for_every_panel(settings, loadgen, log)
        yield settings
    finally:
        loadgen.terminate()
        loadgen.wait(timeout=60)
        stack.down(settings, STREAM_DRIVERS, report=print)
        stack.up(infra_stack, STREAM_DRIVERS, report=print)


def _missing(settings: Settings) -> list[str]:
    """Panel queries that have no finite sample yet."""
    return [
        f"{panel.title}: {expr}"
        for panel in OVERVIEW.panels
        if not _may_be_empty(settings, panel)
        for expr in panel.exprs
        if _finite(_query(settings, expr)) == 0
    ]


def _wait_for_every_panel(settings: Settings, loadgen: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DATA_DEADLINE_S
    missing = _missing(settings)
    while missing and time.monotonic() < deadline:
        assert loadgen.poll() is None, f"the load generator stopped: {log.read_text()[-2000:]}"
        time.sleep(5)
        missing = _missing(settings)
    assert not missing, f"no data after {DATA_DEADLINE_S} s of load for:\n" + "\n".join(missing)


def test_every_panel_query_returns_samples_under_load(loaded_stack: Settings) -> None:
    checked = 0
    for panel in OVERVIEW.panels:
        for expr in panel.exprs:
            samples = _query(loaded_stack, expr)  # valid PromQL, whatever the data
            if _may_be_empty(loaded_stack, panel):
                continue
            assert _finite(samples) > 0, (panel.title, expr, samples)
            checked += 1
    # Every panel was checked, the pushed batch panels too: none waits for a producer.
    assert checked == sum(len(p.exprs) for p in OVERVIEW.panels), checked


def test_no_panel_waits_for_a_producer(loaded_stack: Settings) -> None:
    pending = {panel.title: panel.pending for panel in OVERVIEW.panels if panel.pending}
    assert not pending, pending


@pytest.mark.parametrize("row", OVERVIEW.rows, ids=lambda row: row.slug)
def test_console_page_draws_every_panel_in_chromium(loaded_stack: Settings, row) -> None:  # type: ignore[no-untyped-def]
    url = f"{loaded_stack.prometheus_url}/consoles/{consoles.page_name(row)}"
    served = httpx.get(url, timeout=10)
    assert served.status_code == 200, served.text[:2000]
    # Prometheus rendered the template: the page holds exactly the row's panels and queries.
    assert [(p.title, p.exprs) for p in consoles.read_panels(served.text)] == [
        (panel.title, panel.exprs) for panel in row.panels
    ]
    with browser.console_browser(loaded_stack.monitoring) as chromium:
        page = chromium.load(url + '#pctc{"duration":900,"endTime":0}')
        shot = chromium.screenshot(SCREENSHOTS / f"{row.slug}.png")
    print(f"screenshot of {url}: {shot}")
    assert shot.stat().st_size > 20_000
    assert [graph.title for graph in page.graphs] == [panel.title for panel in row.panels]
    for panel, graph in zip(row.panels, page.graphs, strict=True):
        if _may_be_empty(loaded_stack, panel):
            assert graph.error == "No timeseries returned", graph
            continue
        assert graph.has_data, graph
        assert graph.error is None, graph


def test_console_overview_links_every_page_and_the_alerts(loaded_stack: Settings) -> None:
    page = httpx.get(f"{loaded_stack.prometheus_url}/consoles/index.html", timeout=10)
    assert page.status_code == 200, page.text[:2000]
    for row in OVERVIEW.rows:
        assert f'href="{consoles.page_name(row)}"' in page.text
    assert "Alerts firing now" in page.text
    assert "No alert is firing." in page.text or '<table class="sh-alerts">' in page.text
    rt = loaded_stack.runtime
    assert f"http://{rt.host}:{rt.ports.alertmanager}/" in page.text


def test_dashboard_command_prints_the_console_address(loaded_stack: Settings) -> None:
    from typer.testing import CliRunner

    from streamhouse.cli import app

    env = {k: v for k, v in settings_env(loaded_stack).items() if k.startswith("STREAMHOUSE_")}
    result = CliRunner().invoke(app, ["dashboard"], env=env)
    assert result.exit_code == 0, result.output
    assert f"{loaded_stack.prometheus_url}/consoles/index.html" in result.output
    assert f"{loaded_stack.prometheus_url}/consoles/latency.html" in result.output
