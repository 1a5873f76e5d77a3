"""The silver job: bronze -> current state per earthquake, by MERGE.

Reads bronze as a Delta stream and MERGEs the newest version of each entity
in the micro-batch into silver (``transforms.latest_per_entity``; the MERGE
updates only when the incoming version is strictly newer). Repeating a batch
after a crash therefore changes nothing, so the checkpoint alone makes the
table exactly-once. It runs as its own query so that bronze, the durable
copy of the log, never waits for the MERGE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.settings import Settings
from lake.tables import SILVER_QUAKES
from monitoring.stream_metrics import ROWS_WRITTEN
from spark_jobs import transforms
from spark_jobs.bronze_stream import ensure_bronze
from spark_jobs.delta_io import merge_upsert, write_if_any
from spark_jobs.session import start_query

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

JOB = "silver"
QUERY_NAME = "silver_quakes"


class SilverMerger:
    """``foreachBatch`` of the silver query."""

    def __init__(self, settings: Settings) -> None:
        self._path = SILVER_QUAKES.path(settings.lake_uri)

    def __call__(self, bronze_rows: DataFrame, batch_id: int) -> None:
        """MERGE the newest version per entity of this batch into silver."""
        count = write_if_any(
            transforms.latest_per_entity(bronze_rows),
            lambda latest: merge_upsert(
                latest.sparkSession,
                latest,
                SILVER_QUAKES,
                self._path,
                ("entity_id",),
                update_condition=transforms.SILVER_UPDATE_CONDITION,
            ),
        )
        ROWS_WRITTEN.labels(JOB, "silver").inc(count)


def start(spark: SparkSession, settings: Settings, available_now: bool = False) -> StreamingQuery:
    """Start the silver query, reading bronze as a stream."""
    bronze_path = ensure_bronze(spark, settings)
    return start_query(
        spark.readStream.format("delta")
        .load(bronze_path)
        .writeStream.foreachBatch(SilverMerger(settings)),
        settings,
        QUERY_NAME,
        settings.checkpoint_dir(JOB, SILVER_QUAKES.name),
        available_now,
    )
