"""Pure transformations of change events: DataFrame in, DataFrame out.

No I/O here: the jobs read Kafka and write Delta, and these functions do the
rest, so the live stream and a batch replay share one code path and each
function is tested with small static inputs.

Decoding happens in the JVM with ``from_avro``. It cannot read the Confluent
wire format itself (one magic byte, a 4-byte schema id, then Avro), and it
decodes with one writer schema at a time, so records are split by schema id
and each group is decoded with its own writer schema into the one reader
schema (Avro schema resolution through the ``avroSchema`` option).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pyspark.sql import Column
from pyspark.sql import functions as F  # noqa: N812

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

KAFKA_COLUMNS = ("topic", "partition", "offset", "timestamp", "key", "value")

ENVELOPE_FIELDS = (
    "entity_id",
    "op",
    "updated_ms",
    "event_time_ms",
    "source",
    "poll_id",
    "produced_at_ms",
)


def split_wire_format(kafka_rows: DataFrame) -> DataFrame:
    """Add ``wire_ok``, ``schema_id`` and ``avro_payload`` from the Confluent framing."""
    value = F.col("value")
    framed_ok = (F.length(value) >= 5) & (F.substring(value, 1, 1) == F.lit(bytes([0])))
    schema_id = F.conv(F.hex(F.substring(value, 2, 4)), 16, 10).cast("int")
    return kafka_rows.select(
        *KAFKA_COLUMNS,
        framed_ok.alias("wire_ok"),
        F.when(framed_ok, schema_id).alias("schema_id"),
        F.when(framed_ok, F.expr("substring(value, 6, length(value) - 5)")).alias("avro_payload"),
    )


def _decode(payload: Column, writer_schema: str, reader_schema: str) -> Column:
    from pyspark.sql.avro.functions import from_avro

    # PERMISSIVE turns an undecodable record into null instead of failing the query.
    return from_avro(payload, writer_schema, {"mode": "PERMISSIVE", "avroSchema": reader_schema})


def decode_changes(
    framed: DataFrame, writer_schemas: dict[int, str], reader_schema: str
) -> tuple[DataFrame, DataFrame]:
    """Decode framed records into (decoded, rejected).

    ``decoded`` has the Kafka columns plus ``schema_id`` and a struct ``event``
    in the reader schema; ``rejected`` has the Kafka columns, ``schema_id`` and
    a ``reason`` for each record that could not be decoded.
    """
    decoded_parts = []
    rejected_parts = [
        framed.where(~F.col("wire_ok")).select(
            *KAFKA_COLUMNS,
            F.col("schema_id"),
            F.lit("not in the Confluent wire format (magic byte 0 + schema id)").alias("reason"),
        )
    ]
    known_ids = list(writer_schemas)
    unknown = framed.where(F.col("wire_ok"))
    if known_ids:
        unknown = unknown.where(~F.col("schema_id").isin(known_ids))
    rejected_parts.append(
        unknown.select(
            *KAFKA_COLUMNS,
            F.col("schema_id"),
            F.concat(F.lit("unknown schema id "), F.col("schema_id").cast("string")).alias(
                "reason"
            ),
        )
    )
    # PERMISSIVE yields either null or a struct of nulls for a record that does not
    # decode: a null in any field the schema requires marks such a record.
    decoded_ok = F.col("event").isNotNull()
    for name in required_fields(reader_schema):
        decoded_ok = decoded_ok & F.col(f"event.{name}").isNotNull()
    for schema_id, writer_schema in writer_schemas.items():
        group = framed.where(F.col("wire_ok") & (F.col("schema_id") == schema_id)).select(
            *KAFKA_COLUMNS,
            F.col("schema_id"),
            _decode(F.col("avro_payload"), writer_schema, reader_schema).alias("event"),
        )
        decoded_parts.append(group.where(decoded_ok))
        rejected_parts.append(
            group.where(~decoded_ok).select(
                *KAFKA_COLUMNS,
                F.col("schema_id"),
                F.lit(f"Avro payload does not decode with writer schema id {schema_id}").alias(
                    "reason"
                ),
            )
        )
    rejected = _union_all(rejected_parts)
    if decoded_parts:
        decoded = _union_all(decoded_parts)
    else:
        decoded = framed.limit(0).select(
            *KAFKA_COLUMNS,
            F.col("schema_id"),
            _decode(F.col("avro_payload"), reader_schema, reader_schema).alias("event"),
        )
    return decoded, rejected


def required_fields(schema_json: str) -> list[str]:
    """Top-level fields of a record schema that cannot be null."""
    fields = json.loads(schema_json)["fields"]
    return [
        f["name"]
        for f in fields
        if not (isinstance(f["type"], list) and "null" in f["type"]) and f["type"] != "null"
    ]


def _union_all(parts: list[DataFrame]) -> DataFrame:
    result = parts[0]
    for part in parts[1:]:
        result = result.unionByName(part)
    return result


def to_bronze(decoded: DataFrame, ingested_at: Column | None = None) -> DataFrame:
    """Flatten decoded change events into bronze rows with their Kafka coordinates.

    ``ingested_at`` defaults to the current timestamp; a replay passes the
    original one so replayed rows equal the live rows.
    """
    return _with_ingest_time(
        decoded.select(
            *[F.col(f"event.{name}").alias(name) for name in ENVELOPE_FIELDS],
            F.col("event.quake.*"),
            *_kafka_coordinates(),
            F.col("schema_id"),
        ),
        ingested_at,
    )


def to_quarantine(rejected: DataFrame, ingested_at: Column | None = None) -> DataFrame:
    """Rows of the quarantine table: the raw record, its coordinates and why it was rejected."""
    return _with_ingest_time(
        rejected.select(
            *_kafka_coordinates(),
            F.col("key").alias("raw_key"),
            F.col("value").alias("raw_value"),
            F.col("schema_id"),
            F.col("reason"),
        ),
        ingested_at,
    )


def _kafka_coordinates() -> list[Column]:
    return [
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
    ]


def _with_ingest_time(rows: DataFrame, ingested_at: Column | None) -> DataFrame:
    ingested = ingested_at if ingested_at is not None else F.current_timestamp()
    return rows.withColumn("ingested_at", ingested).withColumn(
        "ingest_date", F.to_date("ingested_at")
    )
