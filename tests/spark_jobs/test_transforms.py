"""Decoding and flattening of change events, on small static inputs in a local Spark."""

from __future__ import annotations

import io
import json
import struct
from datetime import datetime
from typing import Any

import fastavro
from pyspark.sql import SparkSession
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from spark_jobs import transforms
from spark_jobs.schemas import reader_schema

KAFKA_SCHEMA = StructType(
    [
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("timestamp", TimestampType()),
        StructField("key", BinaryType()),
        StructField("value", BinaryType()),
    ]
)


def change(entity_id: str, updated_ms: int, mag: float | None = 2.5) -> dict[str, Any]:
    return {
        "entity_id": entity_id,
        "op": "UPSERT",
        "updated_ms": updated_ms,
        "event_time_ms": updated_ms - 1000,
        "source": "usgs_earthquakes",
        "poll_id": "p1",
        "produced_at_ms": updated_ms + 5,
        "quake": {
            "mag": mag,
            "longitude": -116.8,
            "latitude": 33.5,
            "depth_km": 3.2,
            "title": f"M {mag} - somewhere",
        },
    }


def framed(schema: dict[str, Any], record: dict[str, Any], schema_id: int) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)
    return b"\x00" + struct.pack(">I", schema_id) + buffer.getvalue()


KAFKA_TS = datetime(2026, 11, 26, 12, 0, 0)


def kafka_rows(spark: SparkSession, values: list[bytes]):  # type: ignore[no-untyped-def]
    rows = [("t", 0, i, KAFKA_TS, b"k", v) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def test_wire_format_split(spark: SparkSession) -> None:
    df = transforms.split_wire_format(
        kafka_rows(spark, [b"\x00\x00\x00\x01\x07abc", b"\x01\x00\x00\x00\x07abc", b"\x00"])
    )
    rows = df.orderBy("offset").collect()
    assert (rows[0].wire_ok, rows[0].schema_id, rows[0].avro_payload) == (True, 263, b"abc")
    assert (rows[1].wire_ok, rows[1].schema_id) == (False, None)
    assert rows[2].wire_ok is False


def test_decode_per_schema_id_into_reader_schema(spark: SparkSession) -> None:
    reader = json.loads(reader_schema())
    # An older writer version without the optional `title`: the reader fills its default.
    older = json.loads(reader_schema())
    quake = older["fields"][-1]["type"]
    quake["fields"] = [f for f in quake["fields"] if f["name"] != "title"]
    record_old = change("a", 1000)
    record_old["quake"].pop("title")
    values = [
        framed(reader, change("b", 2000, 4.5), 2),
        framed(older, record_old, 1),
        framed(reader, change("c", 3000), 2)[:-6],  # truncated Avro
        framed(reader, change("d", 4000), 99),  # no such schema id
        b"not avro at all",
    ]
    frame = transforms.split_wire_format(kafka_rows(spark, values))
    decoded, rejected = transforms.decode_changes(
        frame, {1: json.dumps(older), 2: json.dumps(reader)}, reader_schema()
    )
    bronze = {r.entity_id: r for r in transforms.to_bronze(decoded).collect()}
    assert set(bronze) == {"a", "b"}
    assert bronze["b"].mag == 4.5 and bronze["b"].title == "M 4.5 - somewhere"
    assert bronze["a"].title is None and bronze["a"].updated_ms == 1000
    assert bronze["b"].kafka_offset == 0 and bronze["b"].schema_id == 2
    reasons = {r.offset: r.reason for r in rejected.collect()}
    assert reasons[2].startswith("Avro payload does not decode with writer schema id 2")
    assert reasons[3] == transforms.NOT_OF_SUBJECT + "99"  # the ingest job asks the registry why
    assert reasons[4].startswith("not in the Confluent wire format")
    assert len(reasons) == 3


def test_quarantine_keeps_raw_bytes_and_reason(spark: SparkSession) -> None:
    frame = transforms.split_wire_format(kafka_rows(spark, [b"\xff\xfe"]))
    _, rejected = transforms.decode_changes(frame, {}, reader_schema())
    row = transforms.to_quarantine(rejected).collect()[0]
    assert bytes(row.raw_value) == b"\xff\xfe"
    assert row.kafka_offset == 0 and row.reason.startswith("not in the Confluent wire format")
    assert row.ingest_date is not None


def test_each_record_is_decoded_once_on_either_side_of_the_split(spark: SparkSession) -> None:
    # A filter on `reason` pushed below the decoding projection inlined the
    # decoder into each field it read: 10 decodes per record, 6 times slower.
    reader = reader_schema()
    frame = transforms.split_wire_format(
        kafka_rows(spark, [framed(json.loads(reader), change("a", 1), 1)])
    )
    for side in transforms.decode_changes(frame, {1: reader}, reader):
        plan = side._jdf.queryExecution().executedPlan().toString()
        assert plan.count("from_avro") == 1


def test_implausible_event_times_are_quarantined_with_the_reason(spark: SparkSession) -> None:
    # One record dated in the year 9999 must not become every later event's
    # watermark: it goes to quarantine, and converting it would overflow.
    reader = reader_schema()
    kafka_ms = int(KAFKA_TS.timestamp() * 1000)
    times = {
        "now": kafka_ms - 1000,
        "slightly_ahead": kafka_ms + 60_000,  # within 5 minutes of clock skew
        "year_9999": 253_370_764_800_000,
        "max_long": 2**63 - 1,
        "before_year_1": -62_135_596_800_001,
        "old_but_real": -2_208_988_800_000,  # 1900: late, not implausible
    }
    values = []
    for name, event_time_ms in times.items():
        record = change(name, 1)
        record["event_time_ms"] = event_time_ms
        values.append(framed(json.loads(reader), record, 1))
    frame = transforms.split_wire_format(kafka_rows(spark, values))
    decoded, rejected = transforms.decode_changes(frame, {1: reader}, reader, 5 * 60_000)
    assert {r.event.entity_id for r in decoded.collect()} == {
        "now",
        "slightly_ahead",
        "old_but_real",
    }
    reasons = {r.offset: r.reason for r in rejected.collect()}
    assert set(reasons) == {2, 3, 4}
    assert reasons[2].startswith("implausible event time: 253370764800000 ms is more than")
    assert "after the record's Kafka timestamp" in reasons[3]
    assert reasons[4].endswith("is before year 1")
    quarantined = transforms.to_quarantine(rejected).collect()
    assert len(quarantined) == 3 and all(r.raw_value for r in quarantined)
