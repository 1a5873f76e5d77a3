"""The daily sensor's trigger holds while bronze's watermark is short of the interval's end
plus the lateness, even when it is past the end, and fires once a commit reaches it.

The trigger runs as the triggerer runs it (its ``run()`` coroutine, reading
the Delta log with pyarrow) in a fresh interpreter (``trigger_probe.py``),
against a Delta table that Spark writes and appends to here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.types import LongType, StructField, StructType, TimestampType

from .airflow_process import run_isolated

END = datetime(2019, 2, 15, tzinfo=UTC)  # the end of the day 2019-02-14
LATENESS = timedelta(minutes=10)
TARGET = END + LATENESS
POKE_S = 0.5
SCHEMA = StructType(
    [StructField("offset", LongType()), StructField("kafka_timestamp", TimestampType())]
)


def _append(spark: SparkSession, path: Path, *stamps: datetime) -> None:
    rows = [(i, stamp) for i, stamp in enumerate(stamps)]
    spark.createDataFrame(rows, SCHEMA).write.format("delta").mode("append").save(str(path))


def _probe(tmp_path: Path, table: Path, wait_s: float) -> dict[str, Any]:
    output = tmp_path / "event.json"
    result = run_isolated(
        [
            str(Path(__file__).with_name("trigger_probe.py")),
            str(table),
            TARGET.isoformat(),
            str(POKE_S),
            str(wait_s),
            str(output),
        ],
        tmp_path / "airflow-home",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, Any] = json.loads(output.read_text())
    return found


def test_the_trigger_holds_past_the_end_and_fires_at_end_plus_lateness(
    spark: SparkSession, tmp_path: Path
) -> None:
    table = tmp_path / "bronze"
    # On time for the interval, and one second short of its end plus the lateness.
    _append(spark, table, END - timedelta(minutes=1), TARGET - timedelta(seconds=1))
    held = _probe(tmp_path, table, wait_s=4.0)
    assert held["event"] is None, f"the trigger fired a second early: {held}"
    assert held["seconds"] >= 4.0

    _append(spark, table, TARGET)
    fired = _probe(tmp_path, table, wait_s=60.0)
    assert fired["event"] == {"status": "complete", "watermark": TARGET.isoformat()}


def test_the_trigger_waits_without_failing_while_bronze_does_not_exist(tmp_path: Path) -> None:
    waited = _probe(tmp_path, tmp_path / "no-bronze-yet", wait_s=2.0)
    assert waited["event"] is None
