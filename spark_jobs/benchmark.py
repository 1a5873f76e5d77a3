"""``streamhouse bench streaming``: end-to-end latency, sustainable rate and replay throughput.

A benchmark, not a test: it drives the load generator at fixed rates against
a running ``streamhouse stream run`` on its own topic and lake, then measures

- end-to-end latency to bronze: Delta's change data feed gives each row's
  ``_commit_timestamp``; latency = commit time - ``produced_at_ms``;
- end-to-end latency to the 1-minute windows: each committed window version
  against the newest ``produced_at_ms`` it includes;
- consumer lag over time (records in Kafka minus rows committed to bronze),
  sampled every few seconds; a rate is sustainable when the lag at the end of
  its phase is no more than a few seconds of input;
- replay throughput, records per second: every phase's records replayed in
  batch through the same transforms into side tables, once from Kafka
  (decode, bronze, then silver and both window tables) and once from bronze
  (silver and both window tables), each in a fresh JVM.

Percentiles are exact (Spark ``percentile``), per phase.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pyspark.sql import functions as F  # noqa: N812

from core.kafka_topics import offset_span
from core.settings import PROJECT_ROOT, Settings, settings_env
from lake.tables import BRONZE_QUAKE_CHANGES, QUAKE_WINDOWS_1M
from spark_jobs import replay
from spark_jobs.delta_io import table_exists

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.sql import DataFrame, SparkSession

# Lag (in seconds of input) at the end of a phase above which the rate is not sustained.
SUSTAINED_LAG_S = 10.0


@dataclass
class PhaseResult:
    """What one fixed-rate phase measured."""

    rate_per_s: int
    duration_s: float
    produced: int
    bronze_p50_ms: float | None = None
    bronze_p95_ms: float | None = None
    bronze_p99_ms: float | None = None
    windows_p50_ms: float | None = None
    windows_p95_ms: float | None = None
    windows_p99_ms: float | None = None
    final_lag_records: int = 0
    max_lag_records: int = 0
    sustained: bool = False
    lag_samples: list[tuple[float, int]] = field(default_factory=list)
    started_ms: int = 0
    ended_ms: int = 0


def _stream_rows_written(settings: Settings) -> int:
    rt = settings.runtime
    try:
        text = httpx.get(f"http://{rt.host}:{rt.ports.stream_metrics}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0
    for family in text_string_to_metric_families(text):
        if family.name == "streamhouse_stream_rows_written":
            return int(
                sum(
                    s.value
                    for s in family.samples
                    if s.name.endswith("_total") and s.labels.get("sink") == "bronze"
                )
            )
    return 0


def _topic_size(settings: Settings) -> int:
    return offset_span(settings.kafka, settings.kafka.changes_topic)


def _spawn(settings: Settings, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "streamhouse.cli", *args],
            env=settings_env(settings),
            cwd=PROJECT_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_phase(
    settings: Settings,
    *,
    rate: int,
    duration_s: float,
    processes: int,
    work_dir: Path,
    report: Callable[[str], None],
) -> PhaseResult:
    """Drive the load generator at ``rate`` for ``duration_s`` and sample the lag."""
    before = _topic_size(settings)
    result = PhaseResult(rate, duration_s, 0, started_ms=int(time.time() * 1000))
    load = _spawn(
        settings,
        [
            "loadgen", "--rate", str(rate), "--duration", str(duration_s),
            "--processes", str(processes), "--duplicates", "0.01", "--out-of-order", "0.01",
            "--late", "0.001", "--entities", "100000",
        ],
        work_dir / f"loadgen-{rate}.log",
    )  # fmt: skip
    began = time.monotonic()
    while load.poll() is None:
        time.sleep(5)
        lag = max(0, _topic_size(settings) - _stream_rows_written(settings))
        result.lag_samples.append((time.monotonic() - began, lag))
        report(f"  {rate}/s: t={time.monotonic() - began:5.0f}s lag={lag}")
    # Give the stream the same grace a dashboard would: a few triggers.
    for _ in range(3):
        time.sleep(5)
        lag = max(0, _topic_size(settings) - _stream_rows_written(settings))
        result.lag_samples.append((time.monotonic() - began, lag))
    result.ended_ms = int(time.time() * 1000)
    result.produced = _topic_size(settings) - before
    result.final_lag_records = result.lag_samples[-1][1]
    result.max_lag_records = max(lag for _, lag in result.lag_samples)
    result.sustained = result.final_lag_records <= rate * SUSTAINED_LAG_S
    return result


def _percentiles(rows: DataFrame, column: str) -> list[float | None]:
    value = rows.agg(F.percentile(column, [0.5, 0.95, 0.99])).first()
    if value is None or value[0] is None:
        return [None, None, None]
    return [float(v) for v in value[0]]


def measure_latencies(spark: SparkSession, settings: Settings, phase: PhaseResult) -> None:
    """Exact latency percentiles of the phase's rows, from the change data feeds."""
    lake = settings.lake_uri
    bronze = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 0)
        .load(BRONZE_QUAKE_CHANGES.path(lake))
        .where(F.col("produced_at_ms").between(phase.started_ms, phase.ended_ms))
        .select((F.unix_millis("_commit_timestamp") - F.col("produced_at_ms")).alias("latency_ms"))
    )
    phase.bronze_p50_ms, phase.bronze_p95_ms, phase.bronze_p99_ms = _percentiles(
        bronze, "latency_ms"
    )
    if not table_exists(spark, QUAKE_WINDOWS_1M.path(lake)):
        return
    windows = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 0)
        .load(QUAKE_WINDOWS_1M.path(lake))
        .where(F.col("_change_type").isin("insert", "update_postimage"))
        .where(F.col("last_produced_at_ms").between(phase.started_ms, phase.ended_ms))
        .select(
            (F.unix_millis("_commit_timestamp") - F.col("last_produced_at_ms")).alias("latency_ms")
        )
    )
    phase.windows_p50_ms, phase.windows_p95_ms, phase.windows_p99_ms = _percentiles(
        windows, "latency_ms"
    )


REPLAY_SOURCES = ("kafka", "bronze")


def replay_once(spark: SparkSession, settings: Settings, source: str, until_ms: int) -> int:
    """Replay every phase's records from ``source`` into the side tables; the records replayed.

    From Kafka: the topic up to ``until_ms``, decoded and written to bronze,
    then silver and the windows derived. From bronze: silver and the windows
    recomputed from every bronze row (the bench's lake holds only its phases).
    """
    if source == "kafka":
        span = replay.KafkaRange(ending_timestamp_ms=until_ms)
        return replay.replay_kafka(spark, settings, span)["records"]
    return replay.replay_bronze(spark, settings, None, None)["bronze"]


def measure_replay(settings: Settings, source: str, until_ms: int, log: Path) -> tuple[int, float]:
    """(records, seconds) of one replay, run in its own process.

    Each replay starts in a fresh JVM, as ``streamhouse replay`` does, so
    neither gains from the JIT warm-up of the other (on 2 cores the same
    replay runs about a third faster in a warm JVM). The seconds exclude the
    JVM's and the SparkSession's start.
    """
    with log.open("ab") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "spark_jobs.benchmark", source, str(until_ms)],
            env=settings_env(settings),
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=handle,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the replay from {source} failed; see {log}")
    measured = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return int(measured["records"]), float(measured["seconds"])


def plot(phases: list[PhaseResult], spark: SparkSession, settings: Settings, path: Path) -> None:
    """Latency to bronze over time (per 5 s, P50/P95/P99) and lag, one panel per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(phases), figsize=(5 * len(phases), 7), squeeze=False)
    bronze = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 0)
        .load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
        .select(
            "produced_at_ms",
            (F.unix_millis("_commit_timestamp") - F.col("produced_at_ms")).alias("latency_ms"),
        )
    )
    for column, phase in enumerate(phases):
        buckets = (
            bronze.where(F.col("produced_at_ms").between(phase.started_ms, phase.ended_ms))
            .groupBy(((F.col("produced_at_ms") - phase.started_ms) / 5000).cast("int").alias("b"))
            .agg(F.percentile("latency_ms", [0.5, 0.95, 0.99]).alias("p"))
            .orderBy("b")
            .collect()
        )
        seconds = [row.b * 5 for row in buckets]
        ax = axes[0][column]
        for index, label in enumerate(("P50", "P95", "P99")):
            ax.plot(seconds, [row.p[index] / 1000 for row in buckets], label=label)
        ax.set_title(f"{phase.rate_per_s} events/s: latency to bronze")
        ax.set_xlabel("seconds into phase")
        ax.set_ylabel("seconds")
        ax.legend()
        lag_ax = axes[1][column]
        lag_ax.plot([t for t, _ in phase.lag_samples], [lag for _, lag in phase.lag_samples])
        lag_ax.set_title(f"{phase.rate_per_s} events/s: lag (records)")
        lag_ax.set_xlabel("seconds into phase")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


@dataclass
class StreamingBenchReport:
    """Everything the benchmark measured, saved as JSON next to the plot."""

    command: str
    jobs: list[str]
    phases: list[PhaseResult]
    highest_sustained_rate: int | None
    replay_records: int
    replay_seconds: float
    replay_rate_per_s: float
    bronze_replay_records: int
    bronze_replay_seconds: float
    bronze_replay_rate_per_s: float
    finished_at: str
    machine: dict[str, Any]


def run_benchmark(
    settings: Settings,
    *,
    rates: list[int],
    duration_s: float,
    processes: int,
    output: Path,
    report: Callable[[str], None],
    command: str,
    jobs: tuple[str, ...] = (),
) -> StreamingBenchReport:
    """Run every phase against a fresh topic and lake, then measure latencies and replay."""
    from producers.loadgen.runner import ensure_topic
    from spark_jobs.session import build_spark

    run_id = uuid.uuid4().hex[:8]
    work = settings.state_dir / "bench" / run_id
    work.mkdir(parents=True, exist_ok=True)
    bench_settings = settings.model_copy(
        update={
            "lake_root": str(work / "lake"),
            "kafka": settings.kafka.model_copy(update={"changes_topic": f"bench-{run_id}"}),
        }
    )
    os.environ["STREAMHOUSE_LOADGEN__METRICS_PORT"] = "0"
    ensure_topic(bench_settings.kafka, bench_settings.kafka.changes_topic)
    stream = _spawn(bench_settings, ["stream", "run", *jobs], work / "stream.log")
    phases: list[PhaseResult] = []
    try:
        deadline = time.monotonic() + 180
        while _stream_rows_written(bench_settings) == 0 and not _metrics_up(bench_settings):
            if stream.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the streaming job did not start; see {work / 'stream.log'}")
            time.sleep(2)
        time.sleep(15)  # let the queries start their first batches
        for rate in rates:
            report(f"phase {rate} events/s for {duration_s:.0f} s")
            phases.append(
                run_phase(
                    bench_settings,
                    rate=rate,
                    duration_s=duration_s,
                    processes=processes,
                    work_dir=work,
                    report=report,
                )
            )
    finally:
        os.killpg(stream.pid, signal.SIGTERM)
        stream.wait(timeout=120)
    spark = build_spark(bench_settings, "streamhouse-bench")
    try:
        for phase in phases:
            measure_latencies(spark, bench_settings, phase)
        plot(phases, spark, bench_settings, output.with_suffix(".png"))
    finally:
        spark.stop()
    # Every phase's records at once: a replay's fixed cost (planning, MERGEs,
    # commits) is paid once per range, so a small range would understate it.
    replays = {}
    for source in REPLAY_SOURCES:
        report(f"replaying every phase's records from {source}")
        replays[source] = measure_replay(
            bench_settings, source, phases[-1].ended_ms, work / "replay.log"
        )
    sustained = [p.rate_per_s for p in phases if p.sustained]
    from producers.loadgen.bench import machine_info, timestamp

    result = StreamingBenchReport(
        command=command,
        jobs=list(jobs) or ["bronze", "silver", "aggregates"],
        phases=phases,
        highest_sustained_rate=max(sustained) if sustained else None,
        replay_records=replays["kafka"][0],
        replay_seconds=replays["kafka"][1],
        replay_rate_per_s=_rate(*replays["kafka"]),
        bronze_replay_records=replays["bronze"][0],
        bronze_replay_seconds=replays["bronze"][1],
        bronze_replay_rate_per_s=_rate(*replays["bronze"]),
        finished_at=timestamp(),
        machine=machine_info(),
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(asdict(result), indent=2, default=str))
    return result


def _metrics_up(settings: Settings) -> bool:
    rt = settings.runtime
    try:
        return httpx.get(
            f"http://{rt.host}:{rt.ports.stream_metrics}/metrics", timeout=2
        ).is_success
    except httpx.HTTPError:
        return False


def _rate(records: int, seconds: float) -> float:
    return records / seconds if seconds else 0.0


def _replay_main(argv: list[str]) -> None:
    """``python -m spark_jobs.benchmark {kafka|bronze} UNTIL_MS``: one timed replay, JSON out."""
    from spark_jobs.session import build_spark

    source, until_ms = argv
    if source not in REPLAY_SOURCES:
        raise SystemExit(f"Replay source {source!r} is unknown: use kafka or bronze.")
    settings = Settings()
    spark = build_spark(settings, f"streamhouse-bench-replay-{source}")
    try:
        began = time.monotonic()
        records = replay_once(spark, settings, source, int(until_ms))
        seconds = time.monotonic() - began
    finally:
        spark.stop()
    print(json.dumps({"records": records, "seconds": seconds}))


if __name__ == "__main__":
    _replay_main(sys.argv[1:])
