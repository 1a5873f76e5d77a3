"""The latency floor: a bare Kafka -> Delta query, for the benchmark to measure against.

``readStream.format("kafka")`` -> ``writeStream.format("delta")``: no decoding,
no transforms, no foreachBatch, the project's own SparkSession settings and
the same trigger as the ingest query. Whatever latency this has on a machine
is what any Kafka -> Delta pipeline pays there (a micro-batch's planning, the
Kafka fetch, a Delta commit); ``streamhouse bench streaming`` runs it at the
same rates in the same run and reports the pipeline as a ratio to it.

``python -m spark_jobs.floor`` runs it with the settings in the environment
until SIGTERM; the table is ``<lake_root>/floor/kafka_copy``.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

QUERY_NAME = "floor_kafka_copy"


def floor_path(settings: Settings) -> str:
    """Where the floor query writes (change data feed on, to read commit times)."""
    return f"{settings.lake_uri.rstrip('/')}/floor/kafka_copy"


def start(spark: SparkSession, settings: Settings) -> StreamingQuery:
    """Start the bare copy of the changes topic into Delta, on the ingest query's trigger."""
    from spark_jobs.bronze_stream import QUERY_NAME as INGEST_QUERY
    from spark_jobs.bronze_stream import kafka_reader_options

    path = floor_path(settings)
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS delta.`{path}` (key BINARY, value BINARY, topic STRING, "
        "partition INT, offset LONG, timestamp TIMESTAMP) USING DELTA "
        "TBLPROPERTIES (delta.enableChangeDataFeed = true)"
    )
    rows = (
        spark.readStream.format("kafka")
        .options(**kafka_reader_options(settings))
        .load()
        .select("key", "value", "topic", "partition", "offset", "timestamp")
    )
    return (
        rows.writeStream.format("delta")
        .queryName(QUERY_NAME)
        .option("checkpointLocation", settings.checkpoint_dir("floor", "kafka_copy"))
        .trigger(processingTime=settings.trigger_for(INGEST_QUERY))
        .start(path)
    )


def main() -> None:
    """Run the floor query until SIGTERM."""
    from spark_jobs.session import build_spark

    settings = Settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    spark = build_spark(settings, "streamhouse-floor")
    query = start(spark, settings)
    while not stop.is_set() and query.isActive:
        stop.wait(1.0)
    if query.isActive:
        query.stop()
    if query.exception() is not None:
        raise SystemExit(f"the floor query failed: {query.exception()}")


if __name__ == "__main__":
    main()
