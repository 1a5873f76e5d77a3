"""The suites in code, the GX file context committed in quality/gx, and bronze's real schema
agree."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import yaml
from pyspark.sql import SparkSession

from core.intervals import Interval
from core.settings import DOCS_INDEX_LIMIT, PROJECT_ROOT
from quality.frames import bronze_frame
from quality.suites import EVENT_TIME_AHEAD_MS, all_suites, bronze_columns, suites_of

from .lake_rows import bronze, quake

GX = PROJECT_ROOT / "quality" / "gx"


def _json(path: Path) -> dict:  # type: ignore[type-arg]
    return dict(json.loads(path.read_text()))


def test_bronze_suite_columns_are_what_the_ingest_job_writes(spark: SparkSession) -> None:
    """The schema check names exactly bronze's columns (and the frame's derived one), typed."""
    rows = bronze(spark, [quake("ci1", 3_600_000)])
    frame = bronze_frame(rows, Interval.of_day(date(2019, 2, 15)))
    expected = bronze_columns()
    assert set(frame.columns) == {*expected, EVENT_TIME_AHEAD_MS}
    written = {field.name: type(field.dataType).__name__ for field in rows.schema.fields}
    assert written == expected


def test_the_committed_context_holds_the_suites_of_the_code() -> None:
    """`python -m quality.build_context` was run after the last change of quality/suites.py."""
    from quality.build_context import _gx_suite

    for suite in all_suites():
        stored = _json(GX / "expectations" / f"{suite.name}.json")
        # As GX writes them (it leaves out arguments equal to their defaults).
        wanted = _gx_suite(suite).to_json_dict()["expectations"]
        assert [(e["type"], e["kwargs"]) for e in stored["expectations"]] == [
            (e["type"], e["kwargs"]) for e in wanted
        ], f"{suite.name}: run python -m quality.build_context and commit quality/gx"
        assert stored["meta"]["layer"] == suite.layer


def test_each_checkpoint_updates_the_docs_and_alerts_on_failure() -> None:
    for suite in all_suites():
        checkpoint = _json(GX / "checkpoints" / f"{suite.name}.json")
        actions = {a["type"]: a for a in checkpoint["actions"]}
        assert actions["update_data_docs"]["site_names"] == ["local_site"]
        assert actions["streamhouse_alert"]["notify_on"] == "failure"
        assert [v["name"] for v in checkpoint["validation_definitions"]] == [suite.name]
        definition = _json(GX / "validation_definitions" / f"{suite.name}.json")
        assert definition["suite"]["name"] == suite.name
        assert definition["data"]["asset"]["name"] == suite.name
        assert definition["data"]["datasource"]["name"] == "lake"


def test_outputs_go_to_the_state_directory_and_nothing_is_sent_anywhere() -> None:
    config = yaml.safe_load((GX / "great_expectations.yml").read_text())
    assert config["analytics_enabled"] is False
    results = config["stores"]["validation_results_store"]["store_backend"]["base_directory"]
    assert results == "${STREAMHOUSE_GX_RESULTS_DIR}"
    site = config["data_docs_sites"]["local_site"]["store_backend"]["base_directory"]
    assert site == "${STREAMHOUSE_GX_DOCS_DIR}"
    # The index is bounded for GX's own tools too (quality.context applies the setting).
    index = config["data_docs_sites"]["local_site"]["site_index_builder"]
    assert index["validation_results_limit"] == DOCS_INDEX_LIMIT
    assert set(config["fluent_datasources"]["lake"]["assets"]) == {s.name for s in all_suites()}
    assert config["fluent_datasources"]["lake"]["type"] == "spark"
    # No spark_config: GX uses the caller's session and never restarts it.
    assert "spark_config" not in config["fluent_datasources"]["lake"]


def test_layers() -> None:
    assert [s.name for s in suites_of("marts")] == [
        "marts_fct_quakes_integrity",
        "marts_fct_quake_revisions_integrity",
        "marts_reconciliation",
    ]
