"""The expectation suites of each layer, defined once in code.

``python -m quality.build_context`` writes them into the GX file context in
``quality/gx`` (reviewed and committed like any code), and a test keeps the
two equal. Each suite validates a DataFrame of one interval built by
``quality.frames``; a few columns of those frames are derived there (named
here as such) so that a check across rows or tables is a plain column check.

Thresholds that belong to the platform's settings are GX expectation
parameters (``{"$PARAMETER": name}``), filled in at each run (``run.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.schemas import load_schema_str

#: Spark type names of the Avro types the bronze rows carry.
_AVRO_TO_SPARK = {
    "string": "StringType",
    "long": "LongType",
    "int": "IntegerType",
    "double": "DoubleType",
    "boolean": "BooleanType",
}

#: Columns the ingest job adds to every decoded event (spark_jobs/transforms.py).
BRONZE_ENVELOPE_EXTRA = {
    "kafka_topic": "StringType",
    "kafka_partition": "IntegerType",
    "kafka_offset": "LongType",
    "kafka_timestamp": "TimestampType",
    "schema_id": "IntegerType",
    "ingested_at": "TimestampType",
    "ingest_date": "DateType",
    "is_late": "BooleanType",
}

#: Derived by quality.frames.bronze_frame: how far an event time is after its Kafka record's.
EVENT_TIME_AHEAD_MS = "event_time_ahead_ms"

USGS_STATUSES = ["automatic", "reviewed", "deleted"]
CHANGE_OPS = ["UPSERT", "DELETE"]

#: Relationships of the facts to their dimensions, as quality.frames names the flag of each.
FCT_QUAKES_RELATIONSHIPS = {
    "has_dim_date": "event_date in marts.dim_date",
    "has_dim_network": "network_code in marts.dim_network",
    "has_dim_magnitude_type": "magnitude_type in marts.dim_magnitude_type (or null)",
    "has_dim_region": "fe_region_number in marts.dim_region",
    "has_silver_row": "quake_id in silver (lake.quakes), not deleted there",
}
FCT_REVISIONS_RELATIONSHIPS = {
    "has_dim_date": "event_date in marts.dim_date",
    "has_dim_network": "network_code in marts.dim_network",
    "has_dim_magnitude_type": "magnitude_type in marts.dim_magnitude_type (or null)",
    "has_dim_region": "fe_region_number in marts.dim_region",
    "has_bronze_row": "(quake_id, updated_ms) in bronze (lake.quake_changes)",
}
#: The one-row frame of counts that reconciles the marts with silver and bronze.
RECONCILIATION_PAIRS = (
    ("silver_quakes", "mart_quakes"),
    ("bronze_versions", "mart_revisions"),
)


@dataclass(frozen=True)
class Expectation:
    """One expectation: its GX type (snake case) and arguments."""

    type: str
    kwargs: dict[str, Any]
    notes: str = ""


@dataclass(frozen=True)
class Suite:
    """One suite: the layer it belongs to, its frame and its expectations."""

    name: str
    layer: str
    description: str
    expectations: tuple[Expectation, ...]


def _param(name: str) -> dict[str, str]:
    return {"$PARAMETER": name}


def bronze_columns() -> dict[str, str]:
    """Bronze's columns and Spark types: the reader schema's fields, flattened, and the
    ingest job's own columns (the reader schema is the only definition of an event)."""
    schema = json.loads(load_schema_str("quake_change.avsc"))
    columns: dict[str, str] = {}
    for field_ in schema["fields"]:
        kind = field_["type"]
        if isinstance(kind, dict) and kind.get("type") == "record":
            for inner in kind["fields"]:
                columns[inner["name"]] = _spark_type(inner["type"])
        else:
            columns[field_["name"]] = _spark_type(kind)
    columns.update(BRONZE_ENVELOPE_EXTRA)
    return columns


def _spark_type(avro: Any) -> str:
    if isinstance(avro, list):
        avro = next(t for t in avro if t != "null")
    if isinstance(avro, dict):
        return "StringType" if avro.get("type") == "enum" else _spark_type(avro["type"])
    return _AVRO_TO_SPARK[avro]


def _not_null(*columns: str) -> list[Expectation]:
    return [Expectation("expect_column_values_to_not_be_null", {"column": c}) for c in columns]


def bronze_suite() -> Suite:
    """Bronze: schema, keys, ranges, no event time in the future of its record."""
    columns = bronze_columns()
    expectations = [
        Expectation(
            "expect_table_columns_to_match_set",
            {"column_set": sorted([*columns, EVENT_TIME_AHEAD_MS]), "exact_match": True},
            "bronze's columns are the reader schema's fields plus the Kafka coordinates",
        ),
        *(
            Expectation("expect_column_values_to_be_of_type", {"column": c, "type_": columns[c]})
            for c in (
                "entity_id",
                "updated_ms",
                "event_time_ms",
                "kafka_partition",
                "kafka_offset",
                "kafka_timestamp",
                "ingest_date",
            )
        ),
        Expectation(
            "expect_table_row_count_to_be_between",
            {"min_value": _param("min_rows"), "max_value": None},
            "a day of the USGS feed is never empty",
        ),
        *_not_null(
            "entity_id",
            "op",
            "updated_ms",
            "event_time_ms",
            "kafka_topic",
            "kafka_partition",
            "kafka_offset",
            "kafka_timestamp",
            "ingested_at",
            "is_late",
        ),
        Expectation(
            "expect_compound_columns_to_be_unique",
            {"column_list": ["kafka_topic", "kafka_partition", "kafka_offset"]},
            "bronze holds each Kafka record once",
        ),
        Expectation("expect_column_values_to_be_in_set", {"column": "op", "value_set": CHANGE_OPS}),
        Expectation(
            "expect_column_values_to_be_between",
            {"column": "latitude", "min_value": -90, "max_value": 90},
        ),
        Expectation(
            "expect_column_values_to_be_between",
            {"column": "longitude", "min_value": -180, "max_value": 180},
        ),
        Expectation(
            "expect_column_values_to_be_between",
            {"column": "depth_km", "min_value": -15, "max_value": 1000},
            "USGS depths: a few km above sea level to the deepest slabs (~700 km)",
        ),
        Expectation(
            "expect_column_values_to_be_between",
            {"column": "mag", "min_value": -3, "max_value": 10},
        ),
        Expectation(
            "expect_column_pair_values_a_to_be_greater_than_b",
            {"column_A": "updated_ms", "column_B": "event_time_ms", "or_equal": True},
            "a version is never older than its event",
        ),
        Expectation(
            "expect_column_values_to_be_between",
            {
                "column": EVENT_TIME_AHEAD_MS,
                "min_value": None,
                "max_value": _param("max_event_time_ahead_ms"),
            },
            "no event time in the future of its Kafka record beyond spark.max_event_time_ahead",
        ),
    ]
    return Suite(
        "bronze_quake_changes",
        "bronze",
        "Bronze rows whose event time is in the interval.",
        tuple(expectations),
    )


def silver_suite() -> Suite:
    """Silver: one row per quake, known statuses, tombstones consistent."""
    expectations = [
        *_not_null("entity_id", "updated_ms", "event_time_ms", "op", "is_deleted", "ingested_at"),
        Expectation("expect_column_values_to_be_unique", {"column": "entity_id"}),
        Expectation(
            "expect_column_values_to_be_in_set", {"column": "status", "value_set": USGS_STATUSES}
        ),
        Expectation("expect_column_values_to_be_in_set", {"column": "op", "value_set": CHANGE_OPS}),
        Expectation(
            "expect_column_values_to_be_in_set",
            {"column": "tombstone_consistent", "value_set": [True]},
            "is_deleted exactly when the newest version is a DELETE (derived by the frame)",
        ),
    ]
    return Suite(
        "silver_quakes",
        "silver",
        "Silver rows (current state per quake) whose event time is in the interval.",
        tuple(expectations),
    )


def _relationship_suite(name: str, description: str, flags: dict[str, str]) -> Suite:
    expectations = [
        Expectation("expect_column_values_to_be_in_set", {"column": flag, "value_set": [True]}, why)
        for flag, why in flags.items()
    ]
    return Suite(name, "marts", description, tuple(expectations))


def marts_suites() -> list[Suite]:
    """Marts: referential integrity of the facts, counts reconciled with silver and bronze."""
    quakes = _relationship_suite(
        "marts_fct_quakes_integrity",
        "fct_quakes rows of the interval, one flag per relationship.",
        FCT_QUAKES_RELATIONSHIPS,
    )
    revisions = _relationship_suite(
        "marts_fct_quake_revisions_integrity",
        "fct_quake_revisions rows of the interval, one flag per relationship.",
        FCT_REVISIONS_RELATIONSHIPS,
    )
    quakes_keys = Expectation("expect_column_values_to_be_unique", {"column": "quake_id"})
    revision_keys = Expectation(
        "expect_compound_columns_to_be_unique", {"column_list": ["quake_id", "updated_ms"]}
    )
    reconciliation = Suite(
        "marts_reconciliation",
        "marts",
        "One row of counts over the interval: silver and bronze against the marts, rows "
        "changed after the build started left out of both sides.",
        tuple(
            Expectation(
                "expect_column_pair_values_to_be_equal",
                {"column_A": left, "column_B": right},
                f"{left} = {right}",
            )
            for left, right in RECONCILIATION_PAIRS
        ),
    )
    return [
        Suite(quakes.name, quakes.layer, quakes.description, (*quakes.expectations, quakes_keys)),
        Suite(
            revisions.name,
            revisions.layer,
            revisions.description,
            (*revisions.expectations, revision_keys),
        ),
        reconciliation,
    ]


def all_suites() -> list[Suite]:
    """Every suite, bronze first."""
    return [bronze_suite(), silver_suite(), *marts_suites()]


LAYERS = ("bronze", "silver", "marts")


def suites_of(layer: str) -> list[Suite]:
    """The suites of one layer."""
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}: choose from {', '.join(LAYERS)}")
    return [s for s in all_suites() if s.layer == layer]
