"""Run the streaming queries in one driver: ingest (bronze, late events), silver, aggregates.

One SparkSession, one Prometheus endpoint, one listener for all queries, and
a supervisor: a query that fails is restarted from its checkpoint (which is
what makes that safe), with a growing backoff, and a query that stops
reporting (stuck in a batch) is reported as stalled.

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
from monitoring.liveness import liveness
from monitoring.stream_metrics import STALL_THRESHOLD_S, PrometheusListener
from spark_jobs import aggregates_stream, bronze_stream, late_stream, silver_stream, transforms
from spark_jobs.catalog import LakeRegistrar
from spark_jobs.session import build_spark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger(__name__)

#: One job per query: ingest (bronze + quarantine), the late-events copy, silver,
#: the 1-minute windows and their 1-hour rollup. The stack runs the latency-critical
#: ones (bronze, windows) in one driver and the rest in a second, lower-priority one.
JOBS = ("bronze", "late", "silver", "windows", "rollup")
#: The order of an available-now run: a Delta source fixes the version it reads up to
#: when its query starts, so a query starts only once the queries it reads from have
#: finished (late events, silver and the minute windows read bronze; the rollup reads
#: the minute windows). Run all at once, they would read a bronze still empty.
AVAILABLE_NOW_STAGES = (("bronze",), ("late", "silver", "windows"), ("rollup",))
#: A query that ran this long before failing starts its backoff afresh.
HEALTHY_RUN_S = 300.0
MAX_BACKOFF_S = 60
#: Restarts of one query that may fail in a row before the driver gives up (and the stack's
#: supervisor starts a fresh process, with a fresh JVM).
MAX_FAILED_RESTARTS = 5


class RestartFailedError(RuntimeError):
    """A query could not be started again: the driver ends and is restarted as a whole."""


REGISTER_EVERY_S = 30.0  # the catalog learns of tables the queries create lazily
RESTARTS = Counter(
    "streamhouse_stream_query_restarts_total", "Failed queries restarted from checkpoint", ["query"]
)

QueryFactory = Callable[[], "StreamingQuery"]


#: Jobs a ``stream run`` can be given; ``aggregates`` is both window jobs.
JOB_ALIASES = {"aggregates": ("windows", "rollup")}


def resolve_jobs(jobs: tuple[str, ...]) -> tuple[str, ...]:
    """The jobs named (aliases expanded, order kept), or every job when none is named."""
    if not jobs:
        return JOBS
    unknown = [j for j in jobs if j not in JOBS and j not in JOB_ALIASES]
    if unknown:
        choices = ", ".join((*JOBS, *JOB_ALIASES))
        raise UserFacingError(f"Unknown job {', '.join(unknown)}: choose from {choices}.")
    expanded = [part for job in jobs for part in JOB_ALIASES.get(job, (job,))]
    return tuple(dict.fromkeys(expanded))


def query_factories(
    spark: SparkSession, settings: Settings, jobs: tuple[str, ...], available_now: bool
) -> dict[str, QueryFactory]:
    """How to (re)start each query of ``jobs``, by query name."""
    starts: dict[str, tuple[str, QueryFactory]] = {
        "bronze": (
            bronze_stream.QUERY_NAME,
            lambda: bronze_stream.start(spark, settings, available_now=available_now),
        ),
        "late": (
            late_stream.QUERY_NAME,
            lambda: late_stream.start(spark, settings, available_now=available_now),
        ),
        "silver": (
            silver_stream.QUERY_NAME,
            lambda: silver_stream.start(spark, settings, available_now=available_now),
        ),
        "windows": (
            aggregates_stream.MINUTE_QUERY,
            lambda: aggregates_stream.start_minute_windows(spark, settings, available_now),
        ),
        "rollup": (
            aggregates_stream.HOUR_QUERY,
            lambda: aggregates_stream.start_hour_rollup(spark, settings, available_now),
        ),
    }
    return dict(starts[job] for job in resolve_jobs(jobs))


def run_stages(jobs: tuple[str, ...], available_now: bool) -> list[tuple[str, ...]]:
    """The groups of ``jobs`` run one after the other: all at once when continuous, in
    ``AVAILABLE_NOW_STAGES`` order when available-now."""
    if not available_now:
        return [jobs]
    stages = [tuple(job for job in stage if job in jobs) for stage in AVAILABLE_NOW_STAGES]
    return [stage for stage in stages if stage]


def stall_threshold_s(settings: Settings, query_name: str) -> float:
    """How long ``query_name`` may be silent before it counts as stalled."""
    trigger_s = transforms.duration_ms(settings.trigger_for(query_name)) / 1000
    return trigger_s + settings.spark.stall_after_s


class Supervisor:
    """Restarts failed queries from their checkpoints and reports stalled ones.

    A failed query is restarted with a backoff that grows while it keeps
    failing (capped) and resets once it has run for a while: an outage of
    Kafka or the registry is waited out, not turned into an exit. A query
    silent past its threshold is logged once per stall (the metrics and
    ``stack status`` show it too).
    """

    def __init__(
        self,
        factories: dict[str, QueryFactory],
        listener: PrometheusListener,
        thresholds_s: dict[str, float],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._factories = factories
        self._listener = listener
        self._thresholds_s = thresholds_s
        self._clock = clock
        self._sleep = sleep
        self.queries = {name: factory() for name, factory in factories.items()}
        self._failures = dict.fromkeys(self.queries, 0)
        self._failed_restarts = dict.fromkeys(self.queries, 0)
        self._started_at = dict.fromkeys(self.queries, clock())
        self._stalled: set[str] = set()

    def check(self) -> None:
        """One round: restart what failed, report what stalled."""
        for name, query in list(self.queries.items()):
            if not query.isActive and query.exception() is not None:
                self._restart(name, str(query.exception()))
        self._report_stalls()

    def _restart(self, name: str, error: str) -> None:
        if self._clock() - self._started_at[name] > HEALTHY_RUN_S:
            self._failures[name] = 0
        self._failures[name] += 1
        RESTARTS.labels(name).inc()
        backoff_s = min(2 ** self._failures[name], MAX_BACKOFF_S)
        log.error(
            "query %s failed (%d in a row), restarting from its checkpoint in %d s: %s",
            name,
            self._failures[name],
            backoff_s,
            error.strip().splitlines()[0] if error.strip() else error,
        )
        self._sleep(backoff_s)
        self._started_at[name] = self._clock()
        try:
            self.queries[name] = self._factories[name]()
        except Exception as restart_error:
            # Starting a query runs Spark jobs of its own (table creation, resume offsets):
            # the same transient failure must not end the driver and the other queries.
            # The failed query stays in place, so the next round tries again, backing off.
            self._failed_restarts[name] += 1
            if self._failed_restarts[name] >= MAX_FAILED_RESTARTS:
                raise RestartFailedError(
                    f"query {name} could not be restarted {MAX_FAILED_RESTARTS} times in a row"
                ) from restart_error
            log.error(
                "query %s could not be restarted (%d in a row), trying again: %s",
                name,
                self._failed_restarts[name],
                str(restart_error).strip().splitlines()[0] if str(restart_error).strip() else "",
            )
            return
        self._failed_restarts[name] = 0

    def _report_stalls(self) -> None:
        now = self._clock()
        reports = {
            name: self._listener.last_report_s(name) or self._started_at[name]
            for name, query in self.queries.items()
            if query.isActive
        }
        for state in liveness(reports, self._thresholds_s, now):
            if state.stalled and state.query not in self._stalled:
                self._stalled.add(state.query)
                log.error(
                    "query %s has reported nothing for %.0f s (threshold %.0f s): it is stuck "
                    "in a batch; its thread dump (jstack) shows where",
                    state.query,
                    state.silent_s,
                    state.threshold_s,
                )
            elif not state.stalled and state.query in self._stalled:
                self._stalled.discard(state.query)
                log.warning("query %s reports again", state.query)

    def finished(self) -> bool:
        """True when every query has ended without failing (an available-now run)."""
        return all(not q.isActive and q.exception() is None for q in self.queries.values())

    def stop(self) -> None:
        """Stop every active query after its running batch; checkpoints stay consistent."""
        for name, query in self.queries.items():
            try:
                if query.isActive:
                    query.stop()
            except Exception as error:  # the JVM went first (a signal to the whole group)
                log.warning("query %s could not be stopped in order: %s", name, error)


def run(
    settings: Settings,
    jobs: tuple[str, ...],
    stop: threading.Event,
    available_now: bool = False,
    metrics_port: int | None = None,
) -> None:
    """Start ``jobs`` (all when empty) and supervise them until they end (available-now)
    or ``stop`` is set; metrics on ``metrics_port`` (default: ``ports.stream_metrics``)."""
    start_http_server(
        metrics_port or settings.runtime.ports.stream_metrics, addr=settings.runtime.host
    )
    jobs = resolve_jobs(jobs)
    spark = build_spark(settings, f"streamhouse-{'-'.join(jobs)}")
    listener = PrometheusListener()
    spark.streams.addListener(listener)
    registrar = LakeRegistrar(spark, settings)
    for stage in run_stages(jobs, available_now):
        _supervise(
            spark,
            settings,
            stage,
            listener=listener,
            registrar=registrar,
            stop=stop,
            available_now=available_now,
        )
        if stop.is_set():
            return
    if available_now:
        registrar.poll()  # the tables the run created are in the catalog when it ends


def _supervise(
    spark: SparkSession,
    settings: Settings,
    jobs: tuple[str, ...],
    *,
    listener: PrometheusListener,
    registrar: LakeRegistrar,
    stop: threading.Event,
    available_now: bool,
) -> None:
    """Start ``jobs``' queries and supervise them until they end (available-now) or
    ``stop`` is set."""
    factories = query_factories(spark, settings, jobs, available_now)
    thresholds = {name: stall_threshold_s(settings, name) for name in factories}
    for name, threshold in thresholds.items():
        STALL_THRESHOLD_S.labels(name).set(threshold)
    supervisor = Supervisor(factories, listener, thresholds)
    log.info("started %s", ", ".join(supervisor.queries))
    registered_at = 0.0
    try:
        while not stop.is_set():
            if not registrar.complete and time.monotonic() - registered_at > REGISTER_EVERY_S:
                registrar.poll()
                registered_at = time.monotonic()
            supervisor.check()
            if available_now and supervisor.finished():
                break
            stop.wait(1.0)
    except BaseException:
        log.exception("the streaming job is stopping on an error")
        raise
    finally:
        supervisor.stop()
        log.info("stopped %s", ", ".join(supervisor.queries))
