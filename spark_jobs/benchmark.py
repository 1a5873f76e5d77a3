"""``streamhouse bench streaming``: the pipeline's latency next to the floor, in one run.

A benchmark, not a test. On its own topics and lakes it drives the load
generator at fixed rates against two jobs, alternating them phase by phase so
both see the same machine:

- the floor (``spark_jobs.floor``): a bare Kafka -> Delta query, no decoding,
  no transforms, the same settings and trigger: what any Kafka -> Delta
  pipeline pays on this machine;
- the pipeline in one or both layouts (``LAYOUTS``): ``two-drivers`` as the
  stack runs it, the latency-critical driver (ingest -> bronze, the 1-minute
  windows) beside the background driver (silver, the hour rollup, late
  events; `stream run --background`), ``one-driver``, every query in one
  JVM, and (only when asked for) ``two-drivers-nice``, the stack's layout with
  its background driver at nice 10, and ``two-drivers-txn``, the stack's layout
  with a Delta transaction id on every ingest append. Each layout has its own
  topic and lake.

Each job starts right before a warm-up phase of its own (load at the first
rate: a start under load), which measures its cold start, the time until
latency settles, and is left out of the steady-state percentiles. The
measured phases then alternate the jobs rate by rate, so each sees the same
machine; a job waits idle through the others' phases. After each of its
phases a pipeline job is drained (``drain``): the next phase starts only once
bronze holds the phase's records and every query that reads a Delta table has
read all of it. Silver's
trigger is minutes, so without it one layout's silver MERGE ran in the next
job's phase and was charged to that job. Latency = commit time in
Delta (change data feed) minus the Kafka record's timestamp, per row; every
row's latency is kept (Parquet, in the run's folder) and the percentiles, the
cold starts and the plot come from those files. Each pipeline figure is printed
next to its ratio to the floor.

Beside the latencies, ``cpu_profile.CpuSampler`` samples once a second the CPU
of every job's drivers, the load generator and the host: each phase's
CPU-seconds by process (``PhaseResult.cpu_s``), and for each layout with a
background driver, bronze's percentiles split by whether that driver was busy
just before each row's commit (``Comparison.bronze_by_background``). Replays
of every phase's records, from Kafka and from bronze, run in a fresh JVM twice
in a row: cold, then warm.
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
from urllib.parse import urlparse

import httpx
from prometheus_client.parser import text_string_to_metric_families

from core.kafka_topics import offset_span
from core.settings import PROJECT_ROOT, Settings, settings_env
from lake.tables import (
    BRONZE_QUAKE_CHANGES,
    LATE_QUAKE_CHANGES,
    QUAKE_WINDOWS_1H,
    QUAKE_WINDOWS_1M,
    SILVER_QUAKES,
    Table,
)
from spark_jobs import checkpoints, cpu_profile, latency, replay
from spark_jobs.aggregates_stream import HOUR_QUERY, MINUTE_QUERY
from spark_jobs.aggregates_stream import JOB as AGGREGATES_JOB
from spark_jobs.bronze_stream import QUERY_NAME as BRONZE_QUERY
from spark_jobs.floor import floor_path
from spark_jobs.late_stream import JOB as LATE_JOB
from spark_jobs.late_stream import QUERY_NAME as LATE_QUERY
from spark_jobs.silver_stream import JOB as SILVER_JOB
from spark_jobs.silver_stream import QUERY_NAME as SILVER_QUERY

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    from pyspark.sql import SparkSession

# Lag (in seconds of input) at the end of a phase above which the rate is not sustained.
SUSTAINED_LAG_S = 10.0
STOP_TIMEOUT_S = 120.0
#: The longest wait after a phase for a job's queries to read what it produced (silver's
#: trigger is 2 minutes, and its MERGE of them may take a minute more on a busy machine).
DRAIN_TIMEOUT_S = 300.0
#: The queries that read a Delta table, by the name their metrics carry: (job, sink, source).
#: Their checkpoints say how far they have read.
DELTA_READERS: dict[str, tuple[str, Table, Table]] = {
    MINUTE_QUERY: (AGGREGATES_JOB, QUAKE_WINDOWS_1M, BRONZE_QUAKE_CHANGES),
    HOUR_QUERY: (AGGREGATES_JOB, QUAKE_WINDOWS_1H, QUAKE_WINDOWS_1M),
    SILVER_QUERY: (SILVER_JOB, SILVER_QUAKES, BRONZE_QUAKE_CHANGES),
    LATE_QUERY: (LATE_JOB, LATE_QUAKE_CHANGES, BRONZE_QUAKE_CHANGES),
}
#: The pipeline's two drivers, as the stack runs them.
CRITICAL_JOBS = ("bronze", "windows")
BACKGROUND_JOBS = ("late", "silver", "rollup")
FLOOR = "floor"
#: How the pipeline's queries are spread over drivers: (jobs, `stream run --background`) per driver.
_TWO_DRIVERS = ((CRITICAL_JOBS, False), (BACKGROUND_JOBS, True))
LAYOUTS: dict[str, tuple[tuple[tuple[str, ...], bool], ...]] = {
    "two-drivers": _TWO_DRIVERS,
    "one-driver": ((CRITICAL_JOBS + BACKGROUND_JOBS, False),),
    "two-drivers-nice": _TWO_DRIVERS,
    "two-drivers-txn": _TWO_DRIVERS,
}
#: The layouts a run measures unless told otherwise.
DEFAULT_LAYOUTS = ("two-drivers", "one-driver")
#: Layouts that are ``two-drivers`` with Spark settings of their own, whatever the settings say,
#: to be measured side by side with it: the background driver at nice 10, and the ingest
#: query's appends each carrying a Delta transaction id (``spark.ingest_idempotency``).
LAYOUT_SPARK: dict[str, dict[str, Any]] = {
    "two-drivers-nice": {"background_nice": 10},
    "two-drivers-txn": {"ingest_idempotency": "transaction"},
}
#: The layout the stack runs, whose figures the targets judge first.
STACK_LAYOUT = "two-drivers"
#: The latency-critical series, judged against the floor and plotted.
PIPELINE_SERIES = ("bronze", "windows")
#: Reported beside them: what a background driver's share of the CPU costs its own table.
BACKGROUND_SERIES = ("silver",)
#: The load generator's role in the CPU profile; the rest of the host is its busy time minus
#: every role (Kafka, the registry, PostgreSQL, the benchmark itself).
LOADGEN_ROLE = "loadgen"
OTHER_JOBS = "other jobs"
REST_OF_HOST = "rest of host"


def driver_role(job: str, number: int) -> str:
    """A driver's role in the CPU profile: the floor, a layout's ``ingest`` and ``background``
    drivers, or its only ``driver``."""
    if job == FLOOR:
        return FLOOR
    drivers = LAYOUTS[job]
    if len(drivers) == 1:
        return f"{job} driver"
    return f"{job} {'background' if drivers[number][1] else 'ingest'}"


def job_roles(job: str) -> list[str]:
    """Every driver role of a job."""
    return [FLOOR] if job == FLOOR else [driver_role(job, n) for n in range(len(LAYOUTS[job]))]


def background_role(job: str) -> str | None:
    """The role of a layout's background driver, if it has one."""
    if job == FLOOR:
        return None
    return next((driver_role(job, n) for n, (_, bg) in enumerate(LAYOUTS[job]) if bg), None)


def series_of(job: str) -> tuple[str, ...]:
    """The latency series a job writes: the floor's table, or a layout's bronze, windows and
    silver."""
    return (FLOOR,) if job == FLOOR else PIPELINE_SERIES + BACKGROUND_SERIES


def plotted_series(job: str) -> tuple[str, ...]:
    """The series the plot draws: silver's minutes would flatten the seconds of the rest."""
    return (FLOOR,) if job == FLOOR else PIPELINE_SERIES


@dataclass(frozen=True)
class Progress:
    """How far a pipeline job's ingest has got: rows it wrote to bronze and quarantine."""

    bronze_rows: int
    quarantined_rows: int


@dataclass
class PhaseResult:
    """What one fixed-rate phase measured: steady percentiles and the lag."""

    rate_per_s: int
    job: str  # "floor" or a layout
    duration_s: float
    warmup: bool = False
    produced: int = 0
    started_ms: int = 0
    ended_ms: int = 0
    percentiles: dict[str, latency.Percentiles] = field(default_factory=dict)
    final_lag_records: int = 0
    max_lag_records: int = 0
    sustained: bool = True
    lag_samples: list[tuple[float, int]] = field(default_factory=list)
    #: Seconds after the phase until every query had read what it produced (None: not
    #: within DRAIN_TIMEOUT_S; 0 for the floor, whose one query is ingest).
    drained_s: float | None = 0.0
    #: CPU-seconds by role while the phase ran (``phase_cpu``).
    cpu_s: dict[str, float] = field(default_factory=dict)


@dataclass
class Comparison:
    """The pipeline against the floor at one rate, and the targets."""

    rate_per_s: int
    floor: latency.Percentiles
    bronze: latency.Percentiles
    windows: latency.Percentiles
    bronze_p95_ratio: float | None
    bronze_p99_ratio: float | None
    windows_p95_over_floor_s: float | None
    sustained: bool
    layout: str = STACK_LAYOUT
    #: Silver's latency (its MERGE's commit minus the version's produced-at), no target.
    silver: latency.Percentiles | None = None
    #: Bronze's rows by whether the background driver was busy before their commit.
    bronze_by_background: cpu_profile.BusySplit | None = None


@dataclass
class ReplayResult:
    """One replay source, cold (a fresh JVM) then warm (the same JVM again)."""

    source: str
    records: int
    cold_seconds: float
    warm_seconds: float

    @property
    def cold_rate_per_s(self) -> float:
        return self.records / self.cold_seconds if self.cold_seconds else 0.0

    @property
    def warm_rate_per_s(self) -> float:
        return self.records / self.warm_seconds if self.warm_seconds else 0.0


@dataclass
class StreamingBenchReport:
    """Everything the benchmark measured, saved as JSON next to the plot."""

    command: str
    phases: list[PhaseResult]
    comparisons: list[Comparison]
    #: Per job, per series: seconds from the job's start until latency settled.
    cold_start_s: dict[str, dict[str, float | None]]
    #: Per layout.
    highest_sustained_rate: dict[str, int | None]
    replays: list[ReplayResult]
    #: Per layout: issue 15's targets, met or not.
    targets: dict[str, dict[str, bool | None]]
    latencies_dir: str
    finished_at: str
    #: The raw CPU samples (``at_ms,role,cpu_s``), beside the latencies.
    cpu_samples_path: str
    machine: dict[str, Any]


def _spawn(settings: Settings, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, *args],
            env=settings_env(settings, secrets=True),
            cwd=PROJECT_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _metric_samples(settings: Settings) -> list[Any]:
    """Every sample a job's drivers serve (the background driver's port too, when it has one)."""
    rt = settings.runtime
    samples: list[Any] = []
    for port in (rt.ports.stream_metrics, rt.ports.stream_background_metrics):
        try:
            text = httpx.get(f"http://{rt.host}:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        for family in text_string_to_metric_families(text):
            samples.extend(family.samples)
    return samples


def progress_of(samples: list[Any]) -> Progress:
    """Rows written to bronze and to quarantine, from a job's metric samples."""
    written = {"bronze": 0, "quarantine": 0}
    for sample in samples:
        if sample.name == "streamhouse_stream_rows_written_total":
            sink = sample.labels.get("sink")
            if sink in written:
                written[sink] += int(sample.value)
    return Progress(written["bronze"], written["quarantine"])


def _rows_written(settings: Settings) -> int:
    return progress_of(_metric_samples(settings)).bronze_rows


def has_read_all(offset: dict[str, Any] | None, latest_version: int | None) -> bool:
    """True when a Delta source's committed offset covers its table's latest version (pure).

    Delta's offset is ``(reservoirVersion, index)``: the next version to read
    from index -1, or the last file read of a version. A query that read all of
    version V stands at ``(V + 1, -1)``, or at ``(V, i)`` with ``i >= 0`` (its
    batch ended on V's last file: under Delta's default limit of 1,000 files per
    trigger a batch never stops inside a version of a few files; a smaller
    ``spark.delta_max_files_per_trigger`` could make this say drained early).
    """
    if latest_version is None:
        return True
    if offset is None:
        return False
    version, index = int(offset["reservoirVersion"]), int(offset["index"])
    return version > latest_version or (version == latest_version and index >= 0)


def _local_path(uri: str) -> Path:
    """A benchmark's lake and checkpoints are local: a path, or a ``file:`` URI."""
    return Path(urlparse(uri).path if uri.startswith("file:") else uri)


def _committed_delta_offset(checkpoint: Path) -> dict[str, Any] | None:
    commits = [int(p.name) for p in (checkpoint / "commits").glob("*") if p.name.isdigit()]
    if not commits:
        return None
    sources = checkpoints.parse_offset_log((checkpoint / "offsets" / str(max(commits))).read_text())
    return sources[0] if sources and isinstance(sources[0], dict) else None


def _latest_version(table: Path) -> int | None:
    versions = [int(p.stem) for p in (table / "_delta_log").glob("*.json") if p.stem.isdigit()]
    return max(versions, default=None)


def behind(settings: Settings, produced: int) -> list[str]:
    """The queries of a pipeline job that have not yet read all that ``produced`` records gave.

    Ingest is behind while bronze and quarantine hold fewer rows than the topic
    (the load generator's topic has no transaction markers); a query that reads
    a Delta table is behind while its last committed offset is short of the
    table's latest version. Read from the job's local lake and checkpoints.
    """
    late = []
    progress = progress_of(_metric_samples(settings))
    if progress.bronze_rows + progress.quarantined_rows < produced:
        late.append(BRONZE_QUERY)
    for query, (job, sink, source) in DELTA_READERS.items():
        offset = _committed_delta_offset(_local_path(settings.checkpoint_dir(job, sink.name)))
        if not has_read_all(offset, _latest_version(_local_path(source.path(settings.lake_uri)))):
            late.append(query)
    return late


def drain(
    settings: Settings,
    label: str,
    report: Callable[[str], None],
    timeout_s: float = DRAIN_TIMEOUT_S,
) -> float | None:
    """Wait until the job has read everything its phase produced; seconds waited, None past
    ``timeout_s``.

    Without it a layout's background batch (silver's trigger is minutes) runs in
    the next job's phase and is charged to that job's latency.
    """
    began = time.monotonic()
    produced = _topic_size(settings)
    while waiting := behind(settings, produced):
        waited = time.monotonic() - began
        if waited > timeout_s:
            report(f"  {label}: still behind after {waited:.0f} s: {', '.join(waiting)}")
            return None
        report(f"  {label}: draining, behind: {', '.join(waiting)} ({waited:.0f} s)")
        time.sleep(5)
    waited = time.monotonic() - began
    report(f"  {label}: drained in {waited:.0f} s")
    return waited


def _wait_or_kill(process: subprocess.Popen[bytes], report: Callable[[str], None]) -> None:
    """Wait for a job's clean stop; past STOP_TIMEOUT_S end its session with SIGKILL.

    A driver starved of CPU (the background one is niced) can take minutes to
    stop, or hang when the signal came while its SparkContext was starting.
    The figures come from committed Delta versions, so a hard stop loses none.
    """
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        report(f"  a job (pid {process.pid}) did not stop in {STOP_TIMEOUT_S:.0f} s: killed")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)


def _topic_size(settings: Settings) -> int:
    return offset_span(settings.kafka, settings.kafka.changes_topic)


def run_phase(
    settings: Settings,
    *,
    job: str,
    rate: int,
    duration_s: float,
    processes: int,
    work_dir: Path,
    report: Callable[[str], None],
    warmup: bool = False,
    sampler: cpu_profile.CpuSampler | None = None,
) -> PhaseResult:
    """Drive the load generator at ``rate`` for ``duration_s`` (sampling the pipeline's lag)."""
    before = _topic_size(settings)
    result = PhaseResult(rate, job, duration_s, warmup, started_ms=int(time.time() * 1000))
    label = f"{job}-warmup" if warmup else job
    load = _spawn(
        settings,
        [
            "-m", "streamhouse.cli", "loadgen", "--rate", str(rate), "--duration", str(duration_s),
            "--processes", str(processes), "--duplicates", "0.01", "--out-of-order", "0.01",
            "--late", "0.001", "--entities", "100000",
        ],
        work_dir / f"loadgen-{label}-{rate}.log",
    )  # fmt: skip
    if sampler is not None:
        sampler.track(LOADGEN_ROLE, load.pid)
    began = time.monotonic()

    def sample() -> None:
        if job != FLOOR:
            lag = max(0, _topic_size(settings) - _rows_written(settings))
            result.lag_samples.append((time.monotonic() - began, lag))

    while load.poll() is None:
        time.sleep(5)
        sample()
        report(f"  {label} at {rate}/s: t={time.monotonic() - began:4.0f} s")
    if load.returncode != 0:
        raise RuntimeError(f"the load generator failed; see {work_dir}")
    for _ in range(3):  # the grace a dashboard gives: a few triggers
        time.sleep(5)
        sample()
    result.ended_ms = int(time.time() * 1000)
    result.produced = _topic_size(settings) - before
    if result.lag_samples:
        result.final_lag_records = result.lag_samples[-1][1]
        result.max_lag_records = max(lag for _, lag in result.lag_samples)
        result.sustained = result.final_lag_records <= rate * SUSTAINED_LAG_S
    return result


def save_latencies(spark: SparkSession, jobs: dict[str, Settings], folder: Path) -> None:
    """Every row's (sent_ms, latency_ms) of each job's series, as Parquet under ``folder``."""
    for job, job_settings in jobs.items():
        sources = (
            {FLOOR: (floor_path(job_settings), "timestamp")}
            if job == FLOOR
            else {
                "bronze": (BRONZE_QUAKE_CHANGES.path(job_settings.lake_uri), "kafka_timestamp"),
                "windows": (QUAKE_WINDOWS_1M.path(job_settings.lake_uri), "last_produced_at_ms"),
                "silver": (SILVER_QUAKES.path(job_settings.lake_uri), "produced_at_ms"),
            }
        )
        for series, (path, sent_column) in sources.items():
            rows = latency.row_latencies(spark, path, sent_column)
            rows.coalesce(1).write.mode("overwrite").parquet(str(folder / job / series))


def load_latencies(folder: Path, jobs: list[str]) -> dict[tuple[str, str], pd.DataFrame]:
    """The per-row latencies ``save_latencies`` wrote, by (job, series)."""
    import pandas as pd

    return {
        (job, series): pd.read_parquet(folder / job / series)
        for job in jobs
        for series in series_of(job)
    }


def _sent_between(data: pd.DataFrame, start_ms: int, end_ms: int) -> pd.DataFrame:
    return data[(data["sent_ms"] >= start_ms) & (data["sent_ms"] <= end_ms)]


def phase_cpu(
    samples: list[cpu_profile.CpuSample], phase: PhaseResult, jobs: list[str]
) -> dict[str, float]:
    """CPU-seconds by role while ``phase`` ran (pure): its job's drivers, the other jobs'
    drivers together (idle, or draining late), the load generator, the rest of the host
    (Kafka, the registry, ...), and the host's busy and stolen time."""
    used = cpu_profile.roles_in(samples, phase.started_ms, phase.ended_ms)
    mine = {role: used.get(role, 0.0) for role in job_roles(phase.job)}
    others = sum(used.get(role, 0.0) for job in jobs if job != phase.job for role in job_roles(job))
    loadgen = used.get(LOADGEN_ROLE, 0.0)
    host = used.get(cpu_profile.HOST_BUSY, 0.0)
    rest = max(0.0, host - sum(mine.values()) - others - loadgen)
    figures = {
        **mine,
        OTHER_JOBS: others,
        LOADGEN_ROLE: loadgen,
        REST_OF_HOST: rest,
        cpu_profile.HOST_BUSY: host,
        cpu_profile.HOST_STEAL: used.get(cpu_profile.HOST_STEAL, 0.0),
    }
    return {role: round(seconds, 1) for role, seconds in figures.items()}


def analyse(
    rows: dict[tuple[str, str], pd.DataFrame],
    phases: list[PhaseResult],
    job_started_ms: dict[str, int],
    samples: list[cpu_profile.CpuSample] | None = None,
) -> tuple[dict[str, dict[str, float | None]], list[Comparison]]:
    """Cold starts (from each job's warm-up), each measured phase's percentiles, and each
    layout's comparisons with the floor, rate by rate; with CPU ``samples``, each phase's
    CPU by role and bronze's rows split by the background driver's CPU."""
    cold: dict[str, dict[str, float | None]] = {}
    for job, started in job_started_ms.items():
        first = next(p for p in phases if p.job == job)  # its warm-up
        middle = (first.started_ms + first.ended_ms) // 2
        cold[job] = {}
        for series in plotted_series(job):
            at = latency.settle_ms(
                _sent_between(rows[job, series], started, first.ended_ms), started, middle
            )
            cold[job][series] = None if at is None else (at - started) / 1000
    for phase in phases:
        for series in series_of(phase.job):
            window = _sent_between(rows[phase.job, series], phase.started_ms, phase.ended_ms)
            phase.percentiles[series] = latency.Percentiles.of(window["latency_ms"])
        if samples is not None:
            phase.cpu_s = phase_cpu(samples, phase, list(job_started_ms))
    measured = [p for p in phases if not p.warmup]
    comparisons = []
    for layout in dict.fromkeys(p.job for p in measured if p.job != FLOOR):
        for rate in dict.fromkeys(p.rate_per_s for p in measured):
            floor = next(p for p in measured if p.job == FLOOR and p.rate_per_s == rate)
            pipe = next(p for p in measured if p.job == layout and p.rate_per_s == rate)
            f, b, w = (
                floor.percentiles[FLOOR],
                pipe.percentiles["bronze"],
                pipe.percentiles["windows"],
            )
            background = background_role(layout)
            split = (
                cpu_profile.split_by_busy(
                    _sent_between(rows[layout, "bronze"], pipe.started_ms, pipe.ended_ms),
                    samples,
                    background,
                )
                if samples is not None and background is not None
                else None
            )
            comparisons.append(
                Comparison(
                    rate,
                    f,
                    b,
                    w,
                    _ratio(b.p95_ms, f.p95_ms),
                    _ratio(b.p99_ms, f.p99_ms),
                    None if w.p95_ms is None or f.p95_ms is None else (w.p95_ms - f.p95_ms) / 1000,
                    pipe.sustained,
                    layout,
                    pipe.percentiles["silver"],
                    split,
                )
            )
    return cold, comparisons


def _ratio(value: float | None, floor: float | None) -> float | None:
    return None if value is None or not floor else value / floor


def highest_sustained(phases: list[PhaseResult], layout: str) -> int | None:
    """The highest rate ``layout`` sustained in a measured phase."""
    rates = [p.rate_per_s for p in phases if p.job == layout and not p.warmup and p.sustained]
    return max(rates) if rates else None


def targets(
    comparisons: list[Comparison],
    cold_bronze_s: float | None,
    highest_sustained: int | None,
    replays: list[ReplayResult],
) -> dict[str, bool | None]:
    """Issue 15's targets for one layout's comparisons, each met or not (None: not measured)."""
    at = {c.rate_per_s: c for c in comparisons}

    def check(rate: int, test: Callable[[Comparison], bool | None]) -> bool | None:
        return test(at[rate]) if rate in at else None

    bronze_replay = next((r for r in replays if r.source == "bronze"), None)
    return {
        "bronze P95 <= 1.5 x floor P95 at 1,000/s": check(
            1000, lambda c: c.bronze_p95_ratio is not None and c.bronze_p95_ratio <= 1.5
        ),
        "bronze P95 <= 1.5 x floor P95 at 5,000/s": check(
            5000, lambda c: c.bronze_p95_ratio is not None and c.bronze_p95_ratio <= 1.5
        ),
        "windows P95 <= floor P95 + 3 s at 1,000/s": check(
            1000,
            lambda c: c.windows_p95_over_floor_s is not None and c.windows_p95_over_floor_s <= 3,
        ),
        "windows P95 <= floor P95 + 3 s at 5,000/s": check(
            5000,
            lambda c: c.windows_p95_over_floor_s is not None and c.windows_p95_over_floor_s <= 3,
        ),
        "bronze P99 <= 2 x floor P99 at 1,000/s": check(
            1000, lambda c: c.bronze_p99_ratio is not None and c.bronze_p99_ratio <= 2
        ),
        "bronze P99 <= 2 x floor P99 at 5,000/s": check(
            5000, lambda c: c.bronze_p99_ratio is not None and c.bronze_p99_ratio <= 2
        ),
        "cold start until steady <= 30 s": None if cold_bronze_s is None else cold_bronze_s <= 30,
        # Not measured when the run never tried 20,000/s (or more): only a run that did can fail it.
        "sustained >= 20,000/s": None
        if not comparisons or max(c.rate_per_s for c in comparisons) < 20_000
        else highest_sustained is not None and highest_sustained >= 20_000,
        "replay from bronze, warm >= 5 x highest sustained rate": None
        if bronze_replay is None or not highest_sustained
        else bronze_replay.warm_rate_per_s >= 5 * highest_sustained,
    }


def plot(
    rows: dict[tuple[str, str], pd.DataFrame],
    phases: list[PhaseResult],
    job_started_ms: dict[str, int],
    path: Path,
    samples: list[cpu_profile.CpuSample] | None = None,
) -> None:
    """P95 latency per 5 s: each job's warm-up from its start (the cold start), then each
    rate's phases with every job side by side; below, the layouts' lag, and with CPU
    ``samples`` each job's drivers' cores (5 s mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = list(dict.fromkeys(p.rate_per_s for p in phases if not p.warmup))
    columns: list[tuple[str, list[PhaseResult]]] = [
        ("cold start", [p for p in phases if p.warmup]),
        *((f"{rate} events/s", [p for p in phases if p.rate_per_s == rate and not p.warmup])
          for rate in rates),
    ]  # fmt: skip
    labels = [f"{job} {series}" for job in job_started_ms for series in plotted_series(job)]
    colors = {label: f"C{i}" for i, label in enumerate(labels)}
    roles = [role for job in job_started_ms for role in job_roles(job)]
    role_colors = {role: f"C{i}" for i, role in enumerate(roles)}
    height = 3 if samples is not None else 2
    fig, axes = plt.subplots(
        height, len(columns), figsize=(5.5 * len(columns), 3.5 * height), squeeze=False
    )
    for column, (title, shown) in enumerate(columns):
        ax, lag_ax = axes[0][column], axes[1][column]
        if samples is not None:
            _plot_cpu(
                axes[2][column],
                title,
                shown=shown,
                job_started_ms=job_started_ms,
                samples=samples,
                colors=role_colors,
            )
        for phase in shown:
            start = job_started_ms[phase.job] if phase.warmup else phase.started_ms
            for series in plotted_series(phase.job):
                window = _sent_between(rows[phase.job, series], start, phase.ended_ms)
                p95 = latency.bucket_p95(window, start)
                label = f"{phase.job} {series}"
                ax.plot(p95.index, p95.values / 1000, label=f"{label} P95", color=colors[label])
            if phase.job != FLOOR and phase.lag_samples:
                lag_ax.plot(
                    [t for t, _ in phase.lag_samples],
                    [v for _, v in phase.lag_samples],
                    label=phase.job,
                    color=colors[f"{phase.job} bronze"],
                )
        ax.set_title(f"{title}: P95 latency per 5 s")
        ax.set_xlabel("seconds from the job's start" if column == 0 else "seconds into phase")
        ax.set_ylabel("seconds")
        ax.legend(fontsize="small")
        lag_ax.set_title(f"{title}: pipeline lag (records)")
        lag_ax.set_xlabel("seconds into phase")
        if lag_ax.lines:
            lag_ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def _plot_cpu(
    ax: Any,
    title: str,
    *,
    shown: list[PhaseResult],
    job_started_ms: dict[str, int],
    samples: list[cpu_profile.CpuSample],
    colors: dict[str, str],
) -> None:
    """One column's CPU row: the cores each driver of each shown job used, 5 s mean."""
    import pandas as pd

    for phase in shown:
        start = job_started_ms[phase.job] if phase.warmup else phase.started_ms
        for role in job_roles(phase.job):
            mine = [
                (s.at_ms, s.cpu_s)
                for s in samples
                if s.role == role and start < s.at_ms <= phase.ended_ms
            ]
            if not mine:
                continue
            cores = pd.Series([c for _, c in mine], index=[(t - start) / 1000 for t, _ in mine])
            ax.plot(cores.index, cores.rolling(5, min_periods=1).mean(), label=role,
                    color=colors[role])  # fmt: skip
    ax.set_title(f"{title}: CPU of each driver (cores, 5 s mean)")
    from_start = bool(shown) and shown[0].warmup
    ax.set_xlabel("seconds from the job's start" if from_start else "seconds into phase")
    if ax.lines:
        ax.legend(fontsize="small")


def measure_replay(settings: Settings, source: str, until_ms: int, log: Path) -> ReplayResult:
    """One replay source run twice in a fresh process: cold, then warm (side tables cleared)."""
    with log.open("ab") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "spark_jobs.benchmark", source, str(until_ms)],
            env=settings_env(settings, secrets=True),
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=handle,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the replay from {source} failed; see {log}")
    measured = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return ReplayResult(source, int(measured["records"]), *measured["seconds"])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bench_settings(settings: Settings, work: Path, name: str, run_id: str) -> Settings:
    """The settings of one job of the run: its own topic, lake and metrics ports, no shared
    catalog, so a running stack is neither used nor disturbed."""
    ports = settings.runtime.ports.model_copy(
        update={"stream_metrics": _free_port(), "stream_background_metrics": _free_port()}
    )
    return settings.model_copy(
        update={
            "runtime": settings.runtime.model_copy(update={"ports": ports}),
            "lake_root": str(work / name / "lake"),
            "checkpoint_root": None,
            "kafka": settings.kafka.model_copy(update={"changes_topic": f"bench-{run_id}-{name}"}),
            # The run's tables must not be registered in the stack's catalog.
            "catalog": settings.catalog.model_copy(update={"kind": "in-memory"}),
        }
    )


def run_benchmark(
    settings: Settings,
    *,
    rates: list[int],
    duration_s: float,
    processes: int,
    output: Path,
    report: Callable[[str], None],
    command: str,
    layouts: list[str] | None = None,
    warmup_s: float = 90.0,
) -> StreamingBenchReport:
    """Warm each job up, run the floor and each layout phase by phase, then analyse, plot
    and replay."""
    from producers.loadgen.bench import machine_info, timestamp
    from producers.loadgen.runner import ensure_topic
    from spark_jobs.session import build_spark

    layouts = layouts or list(DEFAULT_LAYOUTS)
    run_id = uuid.uuid4().hex[:8]
    work = settings.state_dir / "bench" / run_id
    work.mkdir(parents=True, exist_ok=True)
    os.environ["STREAMHOUSE_LOADGEN__METRICS_PORT"] = "0"
    jobs = {job: _bench_settings(settings, work, job, run_id) for job in (FLOOR, *layouts)}
    for job, spark_update in LAYOUT_SPARK.items():
        if job in jobs:
            spark_settings = jobs[job].spark.model_copy(update=spark_update)
            jobs[job] = jobs[job].model_copy(update={"spark": spark_settings})
    for job_settings in jobs.values():
        ensure_topic(job_settings.kafka, job_settings.kafka.changes_topic)
    report(f"run {run_id}: jobs, logs and per-row latencies under {work}")
    processes_of: list[subprocess.Popen[bytes]] = []
    started: dict[str, int] = {}
    phases: list[PhaseResult] = []
    sampler = cpu_profile.CpuSampler()
    sampler.start()

    def start(job: str) -> None:
        started[job] = int(time.time() * 1000)
        job_settings = jobs[job]
        if job == FLOOR:
            processes_of.append(
                _spawn(job_settings, ["-m", "spark_jobs.floor"], work / "floor.log")
            )
            sampler.track(FLOOR, processes_of[-1].pid)
            return
        cli = ["-m", "streamhouse.cli", "stream", "run"]
        for number, (queries, background) in enumerate(LAYOUTS[job]):
            args = [*cli, *queries, *(["--background"] if background else [])]
            log = work / f"{job}-driver{number + 1}.log"
            processes_of.append(_spawn(job_settings, args, log))
            sampler.track(driver_role(job, number), processes_of[-1].pid)

    def phase(job: str, rate: int, seconds: float, warmup: bool) -> None:
        report(f"{job}: {'warm-up, ' if warmup else ''}{rate} events/s for {seconds:.0f} s")
        result = run_phase(
            jobs[job],
            job=job,
            rate=rate,
            duration_s=seconds,
            processes=processes,
            work_dir=work,
            report=report,
            warmup=warmup,
            sampler=sampler,
        )
        if job != FLOOR:
            result.drained_s = drain(jobs[job], job, report)
        phases.append(result)
        for process in processes_of:
            if process.poll() is not None:
                raise RuntimeError(f"a benchmark job exited early; see {work}")

    try:
        for job in jobs:
            start(job)  # right before its warm-up's load: a start under load
            phase(job, rates[0], warmup_s, warmup=True)
        for rate in rates:
            for job in jobs:
                phase(job, rate, duration_s, warmup=False)
    finally:
        for process in processes_of:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes_of:
            _wait_or_kill(process, report)
        sampler.stop()
    samples = sampler.snapshot()
    cpu_path = work / "cpu.csv"
    cpu_profile.write_samples(samples, cpu_path)
    report("reading every row's latency from the change data feeds")
    spark = build_spark(jobs[FLOOR], "streamhouse-bench", work / "bench-spark.log")
    try:
        save_latencies(spark, jobs, work / "latencies")
    finally:
        spark.stop()
    rows = load_latencies(work / "latencies", list(jobs))
    cold, comparisons = analyse(rows, phases, started, samples)
    plot(rows, phases, started, output.with_suffix(".png"), samples)
    replays = []
    replayed = STACK_LAYOUT if STACK_LAYOUT in layouts else layouts[0]
    for source in REPLAY_SOURCES:
        report(f"replaying the {replayed} run's records from {source}, cold then warm")
        last = max(p.ended_ms for p in phases if p.job == replayed)
        replays.append(measure_replay(jobs[replayed], source, last, work / "replay.log"))
    highest = {layout: highest_sustained(phases, layout) for layout in layouts}
    result = StreamingBenchReport(
        command=command,
        phases=phases,
        comparisons=comparisons,
        cold_start_s=cold,
        highest_sustained_rate=highest,
        replays=replays,
        targets={
            layout: targets(
                [c for c in comparisons if c.layout == layout],
                cold[layout]["bronze"],
                highest[layout],
                replays,
            )
            for layout in layouts
        },
        latencies_dir=str(work / "latencies"),
        finished_at=timestamp(),
        cpu_samples_path=str(cpu_path),
        machine=machine_info(),
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    document = asdict(result)
    for replay_doc, replay_result in zip(document["replays"], replays, strict=True):
        replay_doc["cold_rate_per_s"] = replay_result.cold_rate_per_s
        replay_doc["warm_rate_per_s"] = replay_result.warm_rate_per_s
    output.write_text(json.dumps(document, indent=2, default=str))
    return result


REPLAY_SOURCES = ("kafka", "bronze")


def replay_once(spark: SparkSession, settings: Settings, source: str, until_ms: int) -> int:
    """Replay every phase's records from ``source`` into the side tables; the records replayed."""
    if source == "kafka":
        span = replay.KafkaRange(ending_timestamp_ms=until_ms)
        return replay.replay_kafka(spark, settings, span)["records"]
    return replay.replay_bronze(spark, settings, None, None)["bronze"]


def _clear_side_tables(settings: Settings) -> None:
    import shutil

    for side in Path(settings.lake_uri).glob("*_replay"):
        shutil.rmtree(side)


def _replay_main(argv: list[str]) -> None:
    """``python -m spark_jobs.benchmark {kafka|bronze} UNTIL_MS``: a cold and a warm replay."""
    from spark_jobs.session import build_spark

    source, until_ms = argv
    if source not in REPLAY_SOURCES:
        raise SystemExit(f"Replay source {source!r} is unknown: use kafka or bronze.")
    settings = Settings()
    spark = build_spark(settings, f"streamhouse-bench-replay-{source}")
    seconds = []
    try:
        for _ in range(2):  # cold, then warm: the same work in the same JVM
            _clear_side_tables(settings)
            began = time.monotonic()
            records = replay_once(spark, settings, source, int(until_ms))
            seconds.append(time.monotonic() - began)
    finally:
        spark.stop()
    print(json.dumps({"records": records, "seconds": seconds}))


if __name__ == "__main__":
    _replay_main(sys.argv[1:])
