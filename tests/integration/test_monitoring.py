"""Dashboards and alert rules checked against the real Prometheus the stack runs."""

from __future__ import annotations

import json

import httpx

from core.settings import PROJECT_ROOT, Settings

DASHBOARDS = PROJECT_ROOT / "monitoring" / "grafana" / "dashboards"


def test_every_dashboard_query_is_valid_promql(infra_stack: Settings) -> None:
    rt = infra_stack.runtime
    url = f"http://{rt.host}:{rt.ports.prometheus}/api/v1/query"
    checked = 0
    for dashboard in DASHBOARDS.glob("*.json"):
        for panel in json.loads(dashboard.read_text())["panels"]:
            for target in panel["targets"]:
                answer = httpx.get(url, params={"query": target["expr"]}, timeout=10).json()
                assert answer["status"] == "success", (panel["title"], target["expr"], answer)
                checked += 1
    assert checked >= 10


def test_alert_rules_are_loaded(infra_stack: Settings) -> None:
    rt = infra_stack.runtime
    groups = httpx.get(f"http://{rt.host}:{rt.ports.prometheus}/api/v1/rules", timeout=10).json()[
        "data"
    ]["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"PlatformProcessDown", "PollerDeliveryFailures"} <= names
