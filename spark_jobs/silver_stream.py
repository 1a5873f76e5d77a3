"""The silver job: bronze -> current state per earthquake, by MERGE.

Reads bronze as a Delta stream and MERGEs the newest version of each entity
in the micro-batch into silver (``transforms.latest_per_entity``; the MERGE
updates only when the incoming version is strictly newer). Repeating a batch
after a crash therefore changes nothing, so the checkpoint alone makes the
table exactly-once. It runs as its own query so that bronze, the durable
copy of the log, never waits for the MERGE.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pyspark.sql import functions as F  # noqa: N812

from core.settings import Settings
from lake.tables import SILVER_QUAKES
from monitoring.stream_metrics import END_TO_END_LATENCY, ROWS_WRITTEN, observe_latency_histogram
from spark_jobs import transforms
from spark_jobs.bronze_stream import ensure_bronze
from spark_jobs.delta_io import delta_stream, ensure_table, merge_upsert, write_if_any
from spark_jobs.session import start_query

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

JOB = "silver"
QUERY_NAME = "silver_quakes"
SINK = "silver"
PRODUCED_AT_RESOLUTION_MS = 100


class SilverMerger:
    """``foreachBatch`` of the silver query."""

    def __init__(self, settings: Settings) -> None:
        self._path = SILVER_QUAKES.path(settings.lake_uri)
        END_TO_END_LATENCY.declare(SINK)

    def __call__(self, bronze_rows: DataFrame, batch_id: int) -> None:
        """MERGE the newest version per entity of this batch into silver."""
        count = write_if_any(transforms.latest_per_entity(bronze_rows), self._merge)
        ROWS_WRITTEN.labels(JOB, SINK).inc(count)

    def _merge(self, latest: DataFrame) -> None:
        merge_upsert(
            latest.sparkSession,
            latest,
            SILVER_QUAKES,
            self._path,
            ("entity_id",),
            update_condition=transforms.SILVER_UPDATE_CONDITION,
        )
        committed_ms = time.time() * 1000
        observe_latency_histogram(SINK, produced_histogram(latest), committed_ms)


def produced_histogram(rows: DataFrame) -> list[tuple[int, int]]:
    """(produced_at_ms rounded down to 100 ms, rows) of ``rows``: latency needs only this.

    One small aggregation over rows ``write_if_any`` has cached, after the
    MERGE committed, so it adds nothing to the commit's latency.
    """
    bucket = (
        F.floor(F.col("produced_at_ms") / PRODUCED_AT_RESOLUTION_MS) * PRODUCED_AT_RESOLUTION_MS
    )
    counts = rows.groupBy(bucket.cast("long").alias("produced_ms")).count().collect()
    return sorted((int(row["produced_ms"]), int(row["count"])) for row in counts)


def start(spark: SparkSession, settings: Settings, available_now: bool = False) -> StreamingQuery:
    """Start the silver query, reading bronze as a stream.

    Silver is created (empty) first, as bronze and the windows are: its readers
    (dbt's sources, the validations, the daily DAG) find a table from the
    query's start, not only after the first batch with data, which on the
    default 2-minute trigger can be minutes later.
    """
    bronze = delta_stream(spark, settings).load(ensure_bronze(spark, settings))
    # Only the schema is taken: nothing of the stream is read here.
    ensure_table(
        spark,
        SILVER_QUAKES,
        SILVER_QUAKES.path(settings.lake_uri),
        transforms.latest_per_entity(bronze),
    )
    return start_query(
        bronze.writeStream.foreachBatch(SilverMerger(settings)),
        settings,
        QUERY_NAME,
        settings.checkpoint_dir(JOB, SILVER_QUAKES.name),
        available_now,
    )
