"""Dashboards and rules checked against the real Prometheus the stack runs."""

from __future__ import annotations

import httpx

from core.settings import Settings
from monitoring.dashboards import rules
from monitoring.dashboards.definitions import DASHBOARDS


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
