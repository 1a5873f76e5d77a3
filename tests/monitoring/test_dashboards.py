"""One definition, two renderings: Grafana's JSON and the console pages hold the same panels.

Grafana's JSON is checked against the schema of grafana-foundation-sdk (the
pinned build for Grafana 11.6): the SDK's typed models are generated from
Grafana's dashboard schema, so the JSON is read back through them, every
field it holds must survive the trip (an unknown or misspelt field is
dropped), and every value must have the type the model declares.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any

import pytest
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard as GrafanaDashboard

from monitoring.dashboards import consoles, grafana
from monitoring.dashboards.definitions import DASHBOARDS, OVERVIEW
from monitoring.dashboards.generate import GRAFANA_DASHBOARDS_DIR
from monitoring.dashboards.model import Dashboard, Panel, Query, Row, Unit

plugins.register_default_plugins()


def _problems_of_types(value: Any, annotation: Any, where: str) -> list[str]:  # noqa: PLR0911
    """Where ``value`` does not have the type the SDK's model declares."""
    if annotation in (Any, object) or annotation is typing.Any:
        return _problems_of_model(value, where) if _is_model(value) else []
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        attempts = [_problems_of_types(value, arg, where) for arg in args if arg is not type(None)]
        return [] if any(not found for found in attempts) else attempts[0]
    if origin is typing.Literal:
        return [] if value in args else [f"{where}: {value!r} is not one of {args}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__} where a list belongs"]
        return [
            p
            for i, item in enumerate(value)
            for p in _problems_of_types(item, args[0], f"{where}[{i}]")
        ]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__} where a mapping belongs"]
        return [
            p
            for k, item in value.items()
            for p in _problems_of_types(item, args[1], f"{where}.{k}")
        ]
    if annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{where}: {value!r} is not a number"]
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{where}: {value!r} is not an integer"]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        # The SDK reads enums back as their raw values: the value must be a member's.
        members = {member.value for member in annotation}
        ok = isinstance(value, annotation) or value in members
        return [] if ok else [f"{where}: {value!r} is not one of {sorted(map(str, members))}"]
    if isinstance(annotation, type):
        if not isinstance(value, annotation):
            return [f"{where}: {type(value).__name__} where {annotation.__name__} belongs"]
        return _problems_of_model(value, where) if _is_model(value) else []
    return []


def _is_model(value: Any) -> bool:
    return type(value).__module__.startswith("grafana_foundation_sdk.models") and hasattr(
        value, "to_json"
    )


def _problems_of_model(model: Any, where: str) -> list[str]:
    hints = typing.get_type_hints(type(model))
    return [
        problem
        for name, annotation in hints.items()
        for problem in _problems_of_types(getattr(model, name, None), annotation, f"{where}.{name}")
    ]


def _lost(original: Any, back: Any, where: str = "$") -> list[str]:
    """Fields or values of ``original`` that did not come back."""
    if isinstance(original, dict):
        if not isinstance(back, dict):
            return [f"{where}: became {type(back).__name__}"]
        return [
            problem
            for key, value in original.items()
            for problem in (
                _lost(value, back[key], f"{where}.{key}")
                if key in back
                else [f"{where}.{key}: unknown to the SDK's schema"]
            )
        ]
    if isinstance(original, list):
        if not isinstance(back, list) or len(back) != len(original):
            return [f"{where}: list changed"]
        return [p for i, item in enumerate(original) for p in _lost(item, back[i], f"{where}[{i}]")]
    return [] if original == back else [f"{where}: {original!r} came back as {back!r}"]


def _validate(document: dict[str, Any]) -> list[str]:
    model = GrafanaDashboard.from_json(document)
    back = json.loads(JSONEncoder(sort_keys=True).encode(model))
    return _lost(document, back) + _problems_of_model(model, "dashboard")


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_grafana_json_follows_the_sdk_schema(dashboard: Dashboard) -> None:
    assert _validate(grafana.to_json(dashboard)) == []


def test_the_schema_check_catches_an_unknown_field_and_a_wrong_type() -> None:
    document = grafana.to_json(OVERVIEW)
    document["panels"][1]["targets"][0]["legendFromat"] = "typo"
    document["panels"][1]["gridPos"]["h"] = "eight"
    problems = _validate(document)
    assert any("legendFromat: unknown to the SDK's schema" in p for p in problems), problems
    assert any("grid_pos.h" in p and "not an integer" in p for p in problems), problems


def test_the_provisioned_file_is_the_rendering() -> None:
    for dashboard in DASHBOARDS:
        path = GRAFANA_DASHBOARDS_DIR / f"{dashboard.uid}.json"
        assert json.loads(path.read_text()) == grafana.to_json(dashboard)
    assert sorted(p.name for p in GRAFANA_DASHBOARDS_DIR.glob("*.json")) == sorted(
        f"{d.uid}.json" for d in DASHBOARDS
    )


def _grafana_panels(document: dict[str, Any]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    return [
        (
            panel["title"],
            tuple(target["expr"] for target in panel["targets"]),
            tuple(target["legendFormat"] for target in panel["targets"]),
        )
        for panel in document["panels"]
        if panel["type"] != "row"
    ]


def _console_panels(pages: dict[str, str]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    found = []
    for row in OVERVIEW.rows:
        for panel in consoles.read_panels(pages[consoles.page_name(row)]):
            legends = tuple(
                legend.replace("[[", "{{").replace("]]", "}}") for legend in panel.legends
            )
            found.append((panel.title, panel.exprs, legends))
    return found


def test_grafana_and_the_console_pages_hold_the_same_panels_and_queries() -> None:
    from_grafana = _grafana_panels(grafana.to_json(OVERVIEW))
    from_consoles = _console_panels(consoles.render(OVERVIEW))
    assert from_grafana == from_consoles
    assert len(from_grafana) == len(OVERVIEW.panels) >= 12


def test_grafana_rows_are_the_console_pages() -> None:
    document = grafana.to_json(OVERVIEW)
    rows = [panel["title"] for panel in document["panels"] if panel["type"] == "row"]
    assert rows == [row.title for row in OVERVIEW.rows]
    pages = consoles.render(OVERVIEW)
    assert set(pages) == {consoles.page_name(row) for row in OVERVIEW.rows} | {consoles.INDEX}
    for row in OVERVIEW.rows:
        assert f'href="{consoles.page_name(row)}"' in pages[consoles.INDEX]


def test_the_panels_the_issue_asks_for_exist() -> None:
    exprs = " ".join(expr for panel in OVERVIEW.panels for expr in panel.exprs)
    for sink in ("bronze", "silver", "quake_windows_1m", "quake_windows_1h"):
        for quantile in ("0.5", "0.95", "0.99"):
            assert f'quantile="{quantile}", sink="{sink}"' in exprs, (sink, quantile)
    for needed in (
        "streamhouse_mart_build_latency_seconds",
        "model:streamhouse_mart_data_age_seconds:max",
        "hop:streamhouse_records:rate1m",
        "sink:streamhouse_stream_rows_written:rate1m",
        "query:streamhouse_stream_kafka_lag_offsets:max",
        "streamhouse:dead_lettered_records:rate5m",
        "streamhouse:quarantined_records:rate5m",
        "streamhouse_poller_circuit_open",
        "streamhouse_dag_last_run_success",
        "streamhouse_quality_last_validation_success",
        "query:streamhouse_stream_query_silence_seconds:max",
    ):
        assert needed in exprs, needed


def test_console_legends_use_the_console_syntax() -> None:
    assert Query("x", "freshness {{model}}").console_legend == "freshness [[model]]"
    with pytest.raises(ValueError, match="put the"):
        Query("x", "{{query}} threshold")


def test_go_template_delimiters_cannot_reach_a_page() -> None:
    with pytest.raises(ValueError, match="may not contain"):
        Query("label_replace(up, 'a', '}}', 'b', '')", "x")
    panel = Panel("a {{ title", "d", (Query("up", "x"),), Unit.COUNT, fed_by="test")
    broken = Dashboard("uid", "t", "d", (Row("r", "r", "d", (panel,)),))
    with pytest.raises(ValueError, match="Go templates"):
        consoles.render(broken)


def test_a_panel_title_is_used_once() -> None:
    panel = Panel("same", "d", (Query("up", "x"),), Unit.COUNT, fed_by="test")
    with pytest.raises(ValueError, match="used twice"):
        Dashboard("uid", "t", "d", (Row("r", "r", "d", (panel, panel)),))
