"""The embedded stack the integration tests talk to, over real connections.

The stack runs under its own state directory and on ports 10000 above the
defaults, so a developer's own stack (``make demo``) is neither used nor
disturbed. It is started once per session, from a purged state, and stopped
at the end. ``STREAMHOUSE_TEST_PORT_OFFSET`` and ``STREAMHOUSE_TEST_STATE_DIR``
move it, so two test sessions can run side by side.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT, Settings
from producers.simulator import EventStore, SimulatedClock, start_simulator, stop_simulator
from producers.simulator.dynamics import ChangeMaker, ChangeShares
from producers.simulator.server import SimulatorServer
from streamhouse.runtime import stack
from streamhouse.runtime.services import ensure_topics

TEST_STATE_DIR = Path(os.environ.get("STREAMHOUSE_TEST_STATE_DIR", PROJECT_ROOT / ".state-test"))
FIXTURES = PROJECT_ROOT / "tests" / "data" / "usgs"
OFFSET = int(os.environ.get("STREAMHOUSE_TEST_PORT_OFFSET", "10000"))
LOADGEN_METRICS_PORT = 9403 + OFFSET
# Loopback receivers of the alerts (test_alerting.py): a Slack-compatible webhook, SMTP.
WEBHOOK_PORT = 9096 + OFFSET
SMTP_PORT = 2525 + OFFSET
TEST_BACKGROUND_TRIGGERS = {
    "silver_quakes": "10 seconds",
    "late_quake_changes": "10 seconds",
    "aggregates_quake_windows_1h": "10 seconds",
}


#: Modules that run first, in this order; the others follow in file order. The marts
#: scenario reads the lake the stack's stream filled for the Airflow module: right after it,
#: the stream is warm and the lake full (after the dashboards and alerting modules, which
#: restart the stream's drivers, its first step, the lake filled, took 90-110 s, not 35).
FIRST_MODULES = ("test_airflow", "test_marts")


def _module_rank(item: pytest.Item) -> int:
    name = Path(str(item.fspath)).stem
    return FIRST_MODULES.index(name) if name in FIRST_MODULES else len(FIRST_MODULES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder is an integration test; FIRST_MODULES run first among them
    (the other tests keep their places)."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in Path(str(item.fspath)).parents]
    for i in slots:
        items[i].add_marker(pytest.mark.integration)
    ordered = sorted((items[i] for i in slots), key=_module_rank)  # stable: file order kept
    for i, item in zip(slots, ordered, strict=True):
        items[i] = item


def make_settings(state_dir: Path = TEST_STATE_DIR, **overrides: object) -> Settings:
    """Settings of the test stack: defaults shifted by OFFSET, its own state directory."""
    host = "127.0.0.1"
    ports = {
        "kafka": 9092 + OFFSET,
        "kafka_controller": 9093 + OFFSET,
        "registry": 8081 + OFFSET,
        "prometheus": 9090 + OFFSET,
        "poller_metrics": 9401 + OFFSET,
        "stream_metrics": 9402 + OFFSET,
        "stream_background_metrics": 9404 + OFFSET,
        "postgres": 5432 + OFFSET,
        "alertmanager": 9095 + OFFSET,
        "pushgateway": 9091 + OFFSET,
        "postgres_exporter": 9187 + OFFSET,
        "kafka_metrics": 9405 + OFFSET,
        "node_exporter": 9100 + OFFSET,
        "airflow_api": 8080 + OFFSET,
        "spark_connect": 15002 + OFFSET,
    }
    simulator_port = 8088 + OFFSET
    values: dict[str, object] = {
        "state_dir": state_dir,
        "kafka": {"bootstrap_servers": f"{host}:{ports['kafka']}"},
        "registry": {"url": f"http://{host}:{ports['registry']}/apis/ccompat/v7"},
        "runtime": {"ports": ports, "start_timeout_s": 240},
        "spark": {
            "master": "local[2]",
            "shuffle_partitions": 2,
            "trigger_interval": "1 second",
            # The background queries on 10 s, not their production 1-2 minutes: tests wait
            # for silver and the hour rollup (the DAGs' inputs, the dashboards' panels),
            # and every minute of trigger was a minute of CI.
            "trigger_overrides": TEST_BACKGROUND_TRIGGERS,
        },
        "source": {
            "base_url": f"http://{host}:{simulator_port}/fdsnws/event/1/query",
            "simulator_port": simulator_port,
            "simulator_seed_path": FIXTURES / "feed_7_day_m1.geojson",
        },
        "loadgen": {"metrics_port": LOADGEN_METRICS_PORT},
        # A failed task is retried after seconds, not minutes (the defaults are for production).
        # The daily sensor looks every 4 s: test_airflow watches it defer over several looks.
        "airflow": {"retry_delay_s": 10, "max_retry_delay_s": 30, "wait_poke_s": 4},
        # Rules evaluated every 5 s, not 15: the dashboards and alerting tests wait for
        # recorded quantiles and alert conditions.
        "monitoring": {"evaluation_interval_s": 5},
        # Alertmanager delivers to the loopback receivers of test_alerting.py.
        "alerting": {
            "webhook_url": f"http://{host}:{WEBHOOK_PORT}/slack-webhook",
            "smtp_host": host,
            "smtp_port": SMTP_PORT,
            "smtp_starttls": False,
            "smtp_from": "alerts@streamhouse.test",
            "smtp_to": "oncall@streamhouse.test",
            "group_wait_s": 5,
            "group_interval_s": 30,
            "repeat_interval_s": 3600,
        },
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """Settings of the running test stack."""
    return make_settings()


@pytest.fixture(scope="session")
def _purged_state(stack_settings: Settings) -> Settings:
    stack.down(stack_settings, purge=True, report=lambda _m: None)
    return stack_settings


@pytest.fixture(scope="session")
def infra_stack(_purged_state: Settings) -> Iterator[Settings]:
    """PostgreSQL (the catalog), Kafka, the schema registry and Prometheus, for tests that
    bring their own processes."""
    stack.up(_purged_state, ["postgres", "kafka", "registry", "prometheus"], report=print)
    yield _purged_state
    stack.down(_purged_state, report=print)


@pytest.fixture
def running_stack(infra_stack: Settings) -> Settings:
    """Every service of the embedded runtime, the platform's own processes included.

    Per test, and cheap when everything runs: ``stack up`` only starts what is
    not running, so a test that stopped some services for its own needs (the
    streaming fault test) does not leave the next one without them.
    """
    stack.up(infra_stack, report=print)
    return infra_stack


@pytest.fixture
def quiet_stack(infra_stack: Settings) -> Settings:
    """PostgreSQL, Kafka, registry and Prometheus only: the platform's processes stopped.

    For tests that run their own streaming job, so the stack's idle one does
    not compete for the machine's two cores.
    """
    stack.down(
        infra_stack, ["streaming-background", "streaming", "poller", "simulator"], report=print
    )
    return infra_stack


@pytest.fixture
def isolated(infra_stack: Settings) -> Settings:
    """Settings with this test's own topics and source name, the topics created."""
    suffix = uuid.uuid4().hex[:8]
    settings = infra_stack.model_copy(
        update={
            "kafka": infra_stack.kafka.model_copy(
                update={
                    "changes_topic": f"t{suffix}.quake_changes",
                    "dead_letter_topic": f"t{suffix}.quake_changes.dlq",
                    "cursor_topic": f"_t{suffix}.cursors",
                }
            ),
            "source": infra_stack.source.model_copy(
                update={
                    "name": f"usgs_{suffix}",
                    "timeout_s": 1.0,
                    "connect_timeout_s": 1.0,
                    "backoff_initial_s": 0.05,
                    "backoff_max_s": 0.5,
                    "breaker_failures": 3,
                    "breaker_open_s": 0.5,
                    "breaker_open_max_s": 2.0,
                    "lookback_s": 5.0,
                }
            ),
        }
    )
    ensure_topics(settings)
    return settings


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """The simulator with dynamics (off until a test sets a rate), versions live >= 10 s."""
    store = EventStore.from_geojson(FIXTURES / "feed_7_day_m1.geojson")
    assert store.seed_time_ms is not None
    clock = SimulatedClock(store.seed_time_ms)
    rng = random.Random(42)
    maker = ChangeMaker(
        store, clock, rng=rng, shares=ChangeShares(0.4, 0.5, 0.1), min_version_age_ms=10_000
    )
    server, thread = start_simulator("127.0.0.1", 0, store, clock=clock, rng=rng, maker=maker)
    yield server
    stop_simulator(server, thread)
