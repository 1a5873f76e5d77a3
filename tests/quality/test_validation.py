"""GX validates a layer of a small lake with the committed checkpoints, writes Data Docs,
and a failed expectation reaches people through the checkpoint's alert action.

Real GX on the test session's Spark, real Delta tables in a temporary lake,
real loopback receivers; no service of the stack.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from pydantic import SecretStr
from pyspark.sql import SparkSession
from pyspark.sql import functions as F  # noqa: N812

from core.intervals import Interval
from core.settings import AlertingSettings, Settings
from lake.tables import BRONZE_QUAKE_CHANGES, SILVER_QUAKES
from monitoring.notify import Origin
from quality.run import validate_layer

from ..receivers import Received, smtp_receiver, webhook_receiver
from .lake_rows import bronze, quake, silver

DAY = Interval.of_day(date(2019, 2, 15))
ORIGIN = Origin(
    dag_id="lakehouse_daily",
    task_id="validate_silver",
    run_id="manual__2019-02-16T00:00:00+00:00",
    try_number=1,
    log_url="http://127.0.0.1:8080/dags/lakehouse_daily/runs/x/tasks/validate_silver",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def lake(spark: SparkSession, tmp_path: Path) -> Iterator[tuple[Settings, Received]]:
    """A lake with a day of bronze and silver, and settings whose alerts go to loopback."""
    received = Received()
    with (
        webhook_receiver("127.0.0.1", 0, received) as url,
        smtp_receiver("127.0.0.1", _free_port(), received) as smtp_port,
    ):
        settings = Settings(
            state_dir=tmp_path / "state",
            lake_root=str(tmp_path / "lake"),
            catalog={"kind": "in-memory"},
            alerting=AlertingSettings(
                webhook_url=SecretStr(url),
                smtp_host="127.0.0.1",
                smtp_port=smtp_port,
                smtp_starttls=False,
                smtp_to="oncall@streamhouse.test",
            ),
            # No Pushgateway runs here: the push fails, the verdict stands.
            monitoring={"pushgateway_url": f"http://127.0.0.1:{_free_port()}"},
        )
        records = [quake(f"ci{i}", i * 3_000_000) for i in range(20)]
        records.append(quake("ci0", 0, updated_after_ms=600_000, status="reviewed"))
        records.append(quake("ci5", 15_000_000, op="DELETE", status="deleted"))
        rows = bronze(spark, records)
        rows.write.format("delta").partitionBy("ingest_date").save(
            BRONZE_QUAKE_CHANGES.path(settings.lake_uri)
        )
        silver(rows).write.format("delta").save(SILVER_QUAKES.path(settings.lake_uri))
        yield settings, received


def test_a_good_day_passes_and_documents_itself(
    spark: SparkSession, lake: tuple[Settings, Received]
) -> None:
    settings, received = lake
    for layer in ("bronze", "silver"):
        report = validate_layer(spark, settings, layer, DAY, origin=ORIGIN, run_name="good")
        assert report.success, report.summary()
        assert all(o.evaluated == o.passed > 0 for o in report.outcomes)
    assert received.webhook == [] and received.mail == []
    # Data Docs: the content, not the looks (offline, their CSS comes from no CDN).
    index = (settings.docs_site_dir / "gx" / "index.html").read_text()
    assert "bronze_quake_changes" in index and "silver_quakes" in index
    pages = list((settings.docs_site_dir / "gx" / "validations" / "silver_quakes").rglob("*.html"))
    assert pages
    page = pages[0].read_text()
    assert "entity_id" in page and "good" in page  # the checked column, the run's name


def test_a_broken_row_fails_the_suite_and_alerts_with_its_origin(
    spark: SparkSession, lake: tuple[Settings, Received]
) -> None:
    settings, received = lake
    path = SILVER_QUAKES.path(settings.lake_uri)
    # One quake with a status USGS never gives (Delta reads a snapshot: safe to overwrite).
    spark.read.format("delta").load(path).withColumn(
        "status", F.when(F.col("entity_id") == "ci3", F.lit("bogus")).otherwise(F.col("status"))
    ).write.format("delta").mode("overwrite").save(path)
    report = validate_layer(spark, settings, "silver", DAY, origin=ORIGIN, run_name="broken")
    assert not report.success
    (outcome,) = report.outcomes
    assert outcome.failed == 1
    assert any(
        "expect_column_values_to_be_in_set(status)" in f and "bogus" in f for f in outcome.failures
    )
    assert received.wait(lambda r: len(r.webhook) == 1 and len(r.mail) == 1, 15)
    for text in (received.webhook_texts()[0], received.mail_texts()[0]):
        assert "GX validation failed: silver_quakes (2019-02-15)" in text
        for fact in ("DAG: lakehouse_daily", "task: validate_silver", "try: 1", "run: manual__"):
            assert fact in text, (fact, text)
        assert ORIGIN.log_url in text  # type: ignore[operator]
        assert "bogus" in text


def test_the_docs_index_lists_the_latest_results_only(
    spark: SparkSession, lake: tuple[Settings, Received]
) -> None:
    """GX rebuilds the index after every checkpoint run from every result it lists: capped by
    ``quality.docs_index_limit``, the run's cost no longer grows with the history. Older
    results keep their pages."""
    settings, _ = lake
    settings = settings.model_copy(
        update={"quality": settings.quality.model_copy(update={"docs_index_limit": 2})}
    )
    for run in ("day1", "day2", "day3"):
        validate_layer(spark, settings, "silver", DAY, origin=ORIGIN, run_name=run)
    site = settings.docs_site_dir / "gx"
    index = (site / "index.html").read_text()
    assert "day3" in index and "day2" in index
    assert "day1" not in index
    assert list((site / "validations" / "silver_quakes" / "day1").rglob("*.html"))
