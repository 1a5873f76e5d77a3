"""Dashboards and rules checked against the real Prometheus the stack runs."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import httpx

from core.settings import Settings
from monitoring.dashboards import rules
from monitoring.dashboards.definitions import DASHBOARDS
from streamhouse.runtime import stack

from .prometheus_helpers import eventually, values


def test_every_dashboard_query_is_valid_promql(infra_stack: Settings) -> None:
    url = f"{infra_stack.prometheus_url}/api/v1/query"
    checked = 0
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels:
            for expr in panel.exprs:
                answer = httpx.get(url, params={"query": expr}, timeout=10).json()
                assert answer["status"] == "success", (panel.title, expr, answer)
                checked += 1
    assert checked >= 20


def test_alert_and_recording_rules_are_loaded(infra_stack: Settings) -> None:
    groups = httpx.get(f"{infra_stack.prometheus_url}/api/v1/rules", timeout=10).json()["data"][
        "groups"
    ]
    loaded = [rule for group in groups for rule in group["rules"]]
    assert all(rule["health"] != "err" for rule in loaded), [
        (rule["name"], rule.get("lastError")) for rule in loaded if rule["health"] == "err"
    ]
    names = {rule["name"] for rule in loaded}
    assert {
        "PlatformProcessDown",
        "PollerDeliveryFailures",
        "LatencySloBurn",
        "DagRunFailed",
    } <= names
    assert rules.recorded_names() <= names


def test_prometheus_reads_the_broker_s_own_metrics(infra_stack: Settings) -> None:
    """The broker's JMX exporter agent, scraped as job kafka: a topic's messages counted by the
    broker itself, and the series KafkaPartitionsUnavailable reads exist (an alert on a name
    nothing exports would never fire)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic, sent = f"probe.broker-metrics.{uuid.uuid4().hex[:8]}", 257
    admin = AdminClient(infra_stack.kafka.client_config())
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=30)
    try:
        producer = Producer(infra_stack.kafka.client_config())
        for i in range(sent):
            producer.produce(topic, value=b"x" * 100, key=str(i).encode())
        assert producer.flush(30) == 0
        counted = f'kafka_server_brokertopicmetrics_messagesin_total{{job="kafka",topic="{topic}"}}'
        seen = eventually(infra_stack, counted, lambda s: list(s.values()) == [sent])
        assert list(seen.values()) == [sent], f"{counted}: {seen}"
    finally:
        for future in admin.delete_topics([topic]).values():
            future.result(timeout=30)

    assert list(values(infra_stack, 'up{job="kafka"}').values()) == [1.0]
    for series in (
        "kafka_controller_kafkacontroller_offlinepartitionscount",
        "kafka_server_replicamanager_underminisrpartitioncount",
        "kafka_controller_kafkacontroller_activecontrollercount",
    ):
        assert list(values(infra_stack, f'{series}{{job="kafka"}}').values()) == [
            1.0 if "active" in series else 0.0
        ], series
    request_time = 'kafka_network_request_total_time_ms{job="kafka",request="Produce"}'
    assert len(values(infra_stack, request_time)) == 2  # P50 and P99


def test_prometheus_reads_the_registry_s_request_metrics(infra_stack: Settings) -> None:
    """Job registry: Apicurio's own request counters, by status, and its being up."""
    subjects = f"{infra_stack.registry.url}/subjects"
    assert httpx.get(subjects, timeout=10).status_code == 200
    counted = 'rest_requests_seconds_count{job="registry",method="GET",status_code_group="2xx"}'
    seen = eventually(infra_stack, counted, bool)
    assert seen and all(value >= 1 for value in seen.values()), f"{counted}: {seen}"
    assert list(values(infra_stack, 'up{job="registry"}').values()) == [1.0]


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path


def test_prometheus_sees_the_file_system_the_lake_and_the_logs_are_on(
    infra_stack: Settings,
) -> None:
    """Job node: the file system of the state directory (Kafka's logs, PostgreSQL, the
    checkpoints) is among those the disk alert reads, with the space the OS reports. In a
    container that is an overlay file system, which the node exporter leaves out by default."""
    stack.up(infra_stack, ["node-exporter"], report=print)
    mount = _mount_point(infra_stack.state_dir)
    free = f'node_filesystem_avail_bytes{{job="node",mountpoint="{mount}"}}'
    seen = eventually(infra_stack, free, bool)
    assert len(seen) == 1, f"{free}: {seen}"
    usage = shutil.disk_usage(infra_stack.state_dir)
    assert abs(next(iter(seen.values())) - usage.free) < 0.01 * usage.total
    # The share the disk alert and the host panel read (a recording rule), as the OS has it.
    share = f'instance_mountpoint:node_filesystem_avail_bytes:ratio{{mountpoint="{mount}"}}'
    recorded = eventually(infra_stack, share, bool)
    assert len(recorded) == 1, f"{share}: {recorded}"
    assert abs(next(iter(recorded.values())) - usage.free / usage.total) < 0.01
    cores = values(infra_stack, 'count(node_cpu_seconds_total{job="node",mode="idle"})')
    assert list(cores.values()) == [float(os.cpu_count() or 0)]
