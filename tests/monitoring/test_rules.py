"""The Prometheus rules: promtool's own checks and unit tests, and their names against the code.

``promtool test rules`` runs the cases in monitoring/prometheus/tests/, which
fire every alert on the series that should raise it and keep it quiet on the
healthy twin. The other tests tie the rule files to the code: recorded names
exist, every metric a rule or panel reads is exported by a process of the
platform (or named by a contract of a producer still to come), and the
generated files match their definitions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from core.settings import PROJECT_ROOT, Settings
from monitoring import batch_metrics
from monitoring.dashboards import generate, rules
from monitoring.dashboards.definitions import DASHBOARDS

PROMETHEUS_DIR = PROJECT_ROOT / "monitoring" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTS = PROMETHEUS_DIR / "rules" / "alerts.yml"

# Liveness metrics the reliability work (issue 11) adds to the streaming job;
# their names are fixed, the stalled-query alert and panel read them already.
LIVENESS_METRICS = {
    "streamhouse_stream_query_last_progress_timestamp_seconds",
    "streamhouse_stream_query_stall_threshold_seconds",
    "streamhouse_stream_batches_skipped_total",
}
_METRIC = re.compile(r"\bstreamhouse_[a-z0-9_]+")
_RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")


def _promtool() -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run `make install` (Debian's prometheus package)"
    return binary


def _alert_rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_rule_files_pass_promtool_check() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", *map(str, RULE_FILES)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case_file", RULE_TESTS, ids=lambda path: path.name)
def test_rule_unit_tests_pass(case_file: Path) -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", case_file.name],
        check=False,
        capture_output=True,
        text=True,
        cwd=case_file.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    fired = set()
    for case_file in RULE_TESTS:
        for case in yaml.safe_load(case_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    alerts = {str(rule["alert"]) for rule in _alert_rules()}
    assert alerts - fired == set(), f"alerts no promtool test fires: {sorted(alerts - fired)}"


def test_the_issue_s_alerts_exist() -> None:
    alerts = {str(rule["alert"]) for rule in _alert_rules()}
    assert {
        "LatencySloBurn",
        "StreamLagGrowing",
        "StreamingQueryStalled",
        "RecordsDeadLettered",
        "PollerCircuitOpen",
        "DagRunFailed",
        "DataQualityCheckFailed",
    } <= alerts


def _expressions() -> list[str]:
    exprs = [str(rule["expr"]) for rule in _alert_rules()]
    exprs += [rule.expr for group in rules.GROUPS for rule in group.rules]
    exprs += [
        expr for dashboard in DASHBOARDS for panel in dashboard.panels for expr in panel.exprs
    ]
    return exprs


def test_recorded_names_that_alerts_and_panels_read_are_defined() -> None:
    used = {name for expr in _expressions() for name in _RECORDED.findall(expr)}
    assert used - rules.recorded_names() == set()


def _exported_metrics() -> set[str]:
    """Every series name the platform's processes expose (names as Prometheus stores them)."""
    from multiprocessing import Array

    from prometheus_client import REGISTRY, CollectorRegistry

    import monitoring.stream_metrics  # noqa: F401 - registers the streaming job's metrics
    import producers.metrics
    import spark_jobs.streams  # noqa: F401 - registers the restart counter
    from producers.loadgen.stats import ROW, LoadGenCollector

    loadgen = CollectorRegistry()
    loadgen.register(LoadGenCollector(Array("q", ROW), 1, "topic", lambda: 0))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    names = set()
    for registry in (REGISTRY, loadgen):
        # Labelled metrics list no sample before their first label set: read the families.
        for family in registry.collect():
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    assert producers.metrics.CIRCUIT_OPEN is not None
    # Airflow's health, rendered per scrape by the plugin on its API server.
    from datetime import UTC, datetime

    from prometheus_client.parser import text_string_to_metric_families

    from monitoring.airflow_health import render

    now = datetime.now(UTC)
    scheduler = {"status": "healthy", "latest_scheduler_heartbeat": now.isoformat()}
    ends = [("lakehouse_freshness", "success", now)]
    text = render({"scheduler": scheduler}, [("lakehouse_daily", True)], now, ends).decode()
    names.update(family.name for family in text_string_to_metric_families(text))
    return names


def test_every_metric_read_by_a_rule_or_panel_is_exported() -> None:
    contract = {
        value
        for name, value in vars(batch_metrics).items()
        if name.isupper() and isinstance(value, str) and value.startswith("streamhouse_")
    }
    known = _exported_metrics() | contract | LIVENESS_METRICS
    read = {name for expr in _expressions() for name in _METRIC.findall(_RECORDED.sub("", expr))}
    assert read - known == set(), f"read but exported by nothing: {sorted(read - known)}"


def test_slo_thresholds_are_bucket_bounds_of_the_latency_histogram() -> None:
    from monitoring.stream_metrics import LATENCY_BUCKETS_S

    for slo in rules.LATENCY_SLOS:
        assert slo.threshold_s in LATENCY_BUCKETS_S, slo


def test_generated_files_match_their_definitions() -> None:
    stale = generate.stale_files()
    assert not stale, f"run `streamhouse dashboard generate`: {stale} differ from the definitions"


def test_embedded_prometheus_configuration_passes_promtool(tmp_path: Path) -> None:
    """The configuration the runtime writes at `stack up`: rules, targets, consoles."""
    from streamhouse.runtime.process import ServicePaths
    from streamhouse.runtime.services import build_services

    settings = Settings(
        state_dir=tmp_path,
        monitoring={"evaluation_interval_s": 5},
        _env_file=None,  # type: ignore[call-arg]
    )
    paths = ServicePaths(tmp_path / "prometheus")
    paths.ensure()
    command = build_services(settings)["prometheus"].prepare(paths)
    config = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--config.file="))
    # The settings' evaluation interval, the repo's comments kept.
    written = Path(config).read_text()
    assert "  evaluation_interval: 5s\n" in written and "# Prometheus configuration" in written
    result = subprocess.run(
        [_promtool(), "check", "config", config], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    consoles = Path(
        next(a.split("=", 1)[1] for a in command if a.startswith("--web.console.templates="))
    )
    assert sorted(p.name for p in consoles.glob("*.html")) == [
        "batch.html",
        "health.html",
        "index.html",
        "latency.html",
        "throughput.html",
    ]


def test_the_evaluation_interval_is_rewritten_once_or_refused() -> None:
    from streamhouse.runtime.services import with_evaluation_interval

    config = "global:\n  scrape_interval: 5s\n  evaluation_interval: 15s # rules\n"
    assert with_evaluation_interval(config, 7) == (
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 7s # rules\n"
    )
    with pytest.raises(ValueError, match="exactly once"):
        with_evaluation_interval("global:\n  scrape_interval: 5s\n", 7)
