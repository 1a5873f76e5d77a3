"""Bronze and silver rows made by the ingest job's own transforms, for the quality tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from spark_jobs import transforms
from spark_jobs.schemas import reader_schema

from ..spark_jobs.test_transforms import KAFKA_SCHEMA, change, framed

#: A UTC day of event time, and a Kafka timestamp a few days later (as for the seed data).
DAY_START_MS = int(datetime(2019, 2, 15, tzinfo=UTC).timestamp() * 1000)
KAFKA_TS = datetime(2019, 2, 18, 12, 0, 0)


def quake(
    entity_id: str,
    event_offset_ms: int,
    *,
    updated_after_ms: int = 60_000,
    op: str = "UPSERT",
    status: str = "reviewed",
    net: str = "ci",
) -> dict[str, Any]:
    """A change event of an earthquake ``event_offset_ms`` after the day's start."""
    record = change(entity_id, DAY_START_MS + event_offset_ms + updated_after_ms)
    record["event_time_ms"] = DAY_START_MS + event_offset_ms
    record["op"] = op
    record["quake"].update({"status": status, "net": net, "mag_type": "ml"})
    return record


def bronze(spark: SparkSession, records: list[dict[str, Any]]) -> DataFrame:
    """Bronze rows of ``records``, as the ingest job writes them (decoded, flagged)."""
    schema = json.loads(reader_schema())
    values = [
        ("usgs.quake_changes", 0, offset, KAFKA_TS, b"k", framed(schema, record, 1))
        for offset, record in enumerate(records)
    ]
    kafka = spark.createDataFrame(values, KAFKA_SCHEMA)
    decoded, rejected = transforms.decode_changes(
        transforms.split_wire_format(kafka), {1: json.dumps(schema)}, reader_schema()
    )
    assert rejected.count() == 0
    rows = transforms.to_bronze(decoded, F.lit(KAFKA_TS).cast("timestamp"))
    return transforms.flag_late(rows, 600_000)


def silver(bronze_rows: DataFrame) -> DataFrame:
    """Silver of ``bronze_rows``: the newest version per quake, tombstones kept."""
    return transforms.latest_per_entity(bronze_rows)
