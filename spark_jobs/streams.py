"""Run the streaming queries in one driver: ingest (bronze, late events), silver, aggregates.

One SparkSession, one Prometheus endpoint, one listener for all queries, and
a supervisor: a query that fails is restarted from its checkpoint (which is
what makes that safe) a bounded number of times before the job gives up.

Why a supervisor: Spark 4.1.1's Kafka source throws a NullPointerException
while reporting progress of the first batch after a crash, when that batch
is re-run from the offset log (SPARK-55271 / SPARK-57438, fixed after 4.1.1).
The batch itself has been committed by then; restarting the query goes on
from the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import Counter, start_http_server

from core.errors import UserFacingError
from core.settings import Settings
from monitoring.stream_metrics import PrometheusListener
from spark_jobs import aggregates_stream, bronze_stream, late_stream, silver_stream
from spark_jobs.catalog import LakeRegistrar
from spark_jobs.session import build_spark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger(__name__)

JOBS = ("bronze", "silver", "aggregates")
MAX_RESTARTS = 5
REGISTER_EVERY_S = 30.0  # the catalog learns of tables the queries create lazily
RESTARTS = Counter(
    "streamhouse_stream_query_restarts_total", "Failed queries restarted from checkpoint", ["query"]
)

QueryFactory = Callable[[], "StreamingQuery"]


def query_factories(
    spark: SparkSession, settings: Settings, jobs: tuple[str, ...], available_now: bool
) -> dict[str, QueryFactory]:
    """How to (re)start each query of ``jobs``, by query name."""
    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        raise UserFacingError(f"Unknown job {', '.join(unknown)}: choose from {', '.join(JOBS)}.")
    factories: dict[str, QueryFactory] = {}
    if "bronze" in jobs:
        factories[bronze_stream.QUERY_NAME] = lambda: bronze_stream.start(
            spark, settings, available_now=available_now
        )
        # The late-events table belongs to ingest: it copies the rows ingest flagged.
        factories[late_stream.QUERY_NAME] = lambda: late_stream.start(
            spark, settings, available_now=available_now
        )
    if "silver" in jobs:
        factories[silver_stream.QUERY_NAME] = lambda: silver_stream.start(
            spark, settings, available_now=available_now
        )
    if "aggregates" in jobs:
        factories[aggregates_stream.MINUTE_QUERY] = lambda: aggregates_stream.start_minute_windows(
            spark, settings, available_now
        )
        factories[aggregates_stream.HOUR_QUERY] = lambda: aggregates_stream.start_hour_rollup(
            spark, settings, available_now
        )
    return factories


def run(
    settings: Settings,
    jobs: tuple[str, ...],
    stop: threading.Event,
    available_now: bool = False,
) -> None:
    """Start ``jobs`` and supervise them until they end (available-now) or ``stop`` is set."""
    start_http_server(settings.runtime.ports.stream_metrics, addr=settings.runtime.host)
    spark = build_spark(settings, f"streamhouse-{'-'.join(jobs)}")
    spark.streams.addListener(PrometheusListener())
    factories = query_factories(spark, settings, jobs, available_now)
    queries = {name: factory() for name, factory in factories.items()}
    restarts = dict.fromkeys(queries, 0)
    log.info("started %s", ", ".join(queries))
    registrar, registered_at = LakeRegistrar(spark, settings), 0.0
    try:
        while not stop.is_set():
            if not registrar.complete and time.monotonic() - registered_at > REGISTER_EVERY_S:
                registrar.poll()
                registered_at = time.monotonic()
            for name, query in list(queries.items()):
                if query.isActive or query.exception() is None:
                    continue
                if restarts[name] >= MAX_RESTARTS:
                    raise UserFacingError(
                        f"the {name} query failed {MAX_RESTARTS + 1} times; last error: "
                        f"{query.exception()}"
                    )
                restarts[name] += 1
                RESTARTS.labels(name).inc()
                log.warning(
                    "query %s failed, restarting from its checkpoint: %s",
                    name,
                    str(query.exception()).splitlines()[0],
                )
                time.sleep(min(2 ** restarts[name], 30))
                queries[name] = factories[name]()
            if all(not q.isActive for q in queries.values()):
                break  # available-now: every query has finished
            stop.wait(1.0)
    finally:
        for query in queries.values():
            if query.isActive:
                query.stop()  # ends after the running batch; the checkpoints stay consistent
