"""Grafana's rendering of the dashboards, built with grafana-foundation-sdk.

docker-compose's Grafana provisions the JSON this writes
(``monitoring/grafana/dashboards/<uid>.json``). The SDK's builders set the
layout (rows, grid positions) and the typed panel options; the datasource is
the one Grafana's provisioning declares (uid ``prometheus``).
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import prometheus, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_model

from monitoring.dashboards.model import Dashboard, Kind, Panel

DATASOURCE = dashboard_model.DataSourceRef(type_val="prometheus", uid="prometheus")
PANEL_HEIGHT = 8
PANELS_PER_LINE = 2  # of a 24-column grid
_REF_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# A state panel (1 = good, 0 = bad) names its two values.
_STATES: list[dashboard_model.ValueMapping] = [
    dashboard_model.ValueMap(
        options={
            "0": dashboard_model.ValueMappingResult(text="bad", color="red", index=0),
            "1": dashboard_model.ValueMappingResult(text="good", color="green", index=1),
        }
    )
]


def _targets(panel: Panel) -> list[prometheus.Dataquery]:
    if len(panel.queries) > len(_REF_IDS):
        raise ValueError(f"panel {panel.title!r} has more queries than Grafana ref ids")
    return [
        prometheus.Dataquery()
        .expr(query.expr)
        .legend_format(query.legend)
        .ref_id(_REF_IDS[index])
        .range()
        .datasource(DATASOURCE)
        for index, query in enumerate(panel.queries)
    ]


def _panel(panel: Panel) -> timeseries.Panel | statetimeline.Panel:
    builder: timeseries.Panel | statetimeline.Panel
    if panel.kind is Kind.STATE:
        builder = statetimeline.Panel().mappings(_STATES).show_value(common.VisibilityMode.NEVER)
    else:
        builder = (
            timeseries.Panel()
            .line_width(1)
            .fill_opacity(10)
            .show_points(common.VisibilityMode.NEVER)
        )
    builder = (
        builder.title(panel.title)
        .description(f"{panel.description} Fed by: {panel.fed_by}.")
        .datasource(DATASOURCE)
        .targets(list(_targets(panel)))
        .unit(panel.unit.grafana_id)
        .height(PANEL_HEIGHT)
        .span(24 // PANELS_PER_LINE)
    )
    if panel.min is not None:
        builder = builder.min(panel.min)
    if panel.max is not None:
        builder = builder.max(panel.max)
    return builder


def build(dashboard: Dashboard) -> dashboard_model.Dashboard:
    """The dashboard as the SDK's typed model."""
    builder = (
        dashboard_builder.Dashboard(dashboard.title)
        .uid(dashboard.uid)
        .description(dashboard.description)
        .tags(list(dashboard.tags))
        .time(dashboard.time_from, "now")
        .refresh(dashboard.refresh)
        .timezone("utc")
        .readonly()
        .tooltip(dashboard_model.DashboardCursorSync.CROSSHAIR)
    )
    for row in dashboard.rows:
        builder = builder.with_row(dashboard_builder.Row(row.title))
        for panel in row.panels:
            builder = builder.with_panel(_panel(panel))
    model = builder.build()
    for index, grafana_panel in enumerate(model.panels or [], start=1):
        grafana_panel.id_val = index  # stable ids: links to a panel survive regeneration
    return model


def to_json(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as the JSON Grafana provisions."""
    encoded = json.loads(JSONEncoder(sort_keys=True).encode(build(dashboard)))
    assert isinstance(encoded, dict)
    return encoded


def render(dashboard: Dashboard) -> str:
    """The provisioned file's text: stable key order, one trailing newline."""
    return json.dumps(to_json(dashboard), indent=2, sort_keys=True) + "\n"
