"""The late-events job: bronze rows flagged ``is_late`` -> the late-events table.

The ingest job flags lateness by the record-level rule (``transforms.flag_late``)
and counts the late events in its metrics; this query copies those rows into their own table, so
that events the windows leave out are kept where an analyst looks for them.
It reads bronze as a Delta stream on a slow trigger: nobody waits seconds for
this table, and the ingest query keeps the cores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F  # noqa: N812

from core.settings import Settings
from lake.tables import LATE_QUAKE_CHANGES
from monitoring.stream_metrics import ROWS_WRITTEN
from spark_jobs import transforms
from spark_jobs.bronze_stream import ensure_bronze
from spark_jobs.delta_io import delta_stream, ensure_table, insert_new, write_if_any
from spark_jobs.session import start_query

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

JOB = "late"
QUERY_NAME = "late_quake_changes"


class LateAppender:
    """``foreachBatch`` of the late-events query: insert the rows not there yet."""

    def __init__(self, settings: Settings) -> None:
        self._path = LATE_QUAKE_CHANGES.path(settings.lake_uri)

    def __call__(self, late_rows: DataFrame, batch_id: int) -> None:
        """Insert the batch's late rows by Kafka position (none: no commit).

        Idempotent by content, not by batch id: a batch re-run after a crash,
        or bronze read again from the start by a new checkpoint, inserts
        nothing twice.
        """
        count = write_if_any(
            late_rows,
            lambda rows: insert_new(
                rows.sparkSession, rows, LATE_QUAKE_CHANGES, self._path, transforms.KAFKA_POSITION
            ),
        )
        ROWS_WRITTEN.labels(JOB, LATE_QUAKE_CHANGES.name).inc(count)


def start(spark: SparkSession, settings: Settings, available_now: bool = False) -> StreamingQuery:
    """Start the late-events query, reading bronze as a stream (the table is created, empty,
    first: its readers find it before the first late event)."""
    bronze = delta_stream(spark, settings).load(ensure_bronze(spark, settings))
    ensure_table(spark, LATE_QUAKE_CHANGES, LATE_QUAKE_CHANGES.path(settings.lake_uri), bronze)
    late = bronze.where(F.col("is_late"))
    return start_query(
        late.writeStream.foreachBatch(LateAppender(settings)),
        settings,
        QUERY_NAME,
        settings.checkpoint_dir(JOB, LATE_QUAKE_CHANGES.name),
        available_now,
    )
