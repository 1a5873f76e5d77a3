"""``streamhouse bench marts --days 30``: a full refresh against one daily incremental run.

A benchmark, not a test. On a topic, lake and catalog schemas of its own:

1. the load generator writes ``days`` days of history (event times and Kafka
   timestamps spread evenly over them, revisions keeping their quake's event
   time, so the record-level lateness rule sees what a live stream would);
2. ``streamhouse stream run --available-now`` takes it to bronze, a day per
   micro-batch, then through silver, late events and the windows, again about
   a day of bronze's files per micro-batch (``spark.delta_max_files_per_trigger``),
   so that their files are laid out by time as a live stream leaves them;
3. the marts are built once (seeds, models, every data test);
4. then, ``runs`` times, side by side in this one JVM: a full refresh of the
   models (``dbt run --full-refresh``), then the last day's rows are deleted
   from the facts (the day the daily run has not merged yet) and one daily
   incremental run (``dbt run`` over that day and its lookback) merges them
   back; the result must equal the full refresh's (``EXCEPT ALL`` both ways).
   Like ``marts build``, the daily run leaves out the marts built from seeds
   alone whose inputs did not change (``marts.static``);
5. the floor of a daily run: ``dbt run`` over a day with no rows in its
   interval or lookback (the same models and statements, no data), ``runs``
   times after a warm-up, which shows how much of the daily run is dbt's and
   Spark's fixed cost per model rather than work on the day's rows;
6. a one-day query on the partitioned marts, counting the files it reads.

Figures: wall time (in-process, the JVM already started; its start is
reported apart), dbt's time per model, rows and files written from Delta's
operation metrics, rows and files read from Spark's scan metrics (the SQL
executions the run made, from Spark's status store).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.settings import PROJECT_ROOT, Settings, settings_env
from lake.tables import BRONZE_QUAKE_CHANGES
from marts.build import build, static_to_skip
from marts.profiles import interval_vars
from marts.runner import require_success, run_dbt
from marts.static import mark_built

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.sql import SparkSession

FACTS = {
    "fct_quake_revisions": "event_date",
    "fct_quakes": "event_date",
    "fct_network_activity_daily": "activity_date",
}
#: The marts a one-day query is measured on (partitioned by event_date).
PARTITIONED = ("fct_quake_revisions", "fct_quakes")
TARGET_INCREMENTAL_SHARE = 0.05
TARGET_ONE_DAY_FILES_SHARE = 0.05
#: The run over a day with no data: the daily run's fixed cost.
EMPTY_DAY = "empty day"


@dataclass
class Scans:
    """Spark's scan metrics of the Parquet scans of some SQL executions, per table."""

    files: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def files_read(self) -> int:
        return sum(self.files.values())

    @property
    def rows_read(self) -> int:
        return sum(self.rows.values())


@dataclass
class RunFigures:
    """One timed dbt command."""

    kind: str  # "full refresh", "incremental" or "empty day"
    seconds: float
    model_seconds: dict[str, float]
    rows_written: dict[str, int]
    files_written: dict[str, int]
    files_removed: dict[str, int]
    files_read: dict[str, int]
    rows_read: dict[str, int]
    operations: dict[str, list[str]]
    left_out: list[str] = field(default_factory=list)


@dataclass
class OneDayQuery:
    """A query of one event date on a partitioned mart."""

    mart: str
    day: str
    files_read: int
    files_in_table: int
    rows_read: int

    @property
    def share(self) -> float:
        return self.files_read / self.files_in_table if self.files_in_table else 0.0


@dataclass
class MartsBenchResult:
    """Everything the benchmark measured."""

    command: str
    days: int
    events: int
    interval: tuple[str, str]
    lookback_days: int
    bronze_rows: int
    load_seconds: float
    stream_seconds: float
    spark_start_seconds: float
    first_build_seconds: float
    runs: list[RunFigures] = field(default_factory=list)
    one_day: list[OneDayQuery] = field(default_factory=list)
    equal_to_full_refresh: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    finished_at: str = ""

    def median(self, kind: str) -> float:
        """The median wall time of the runs of ``kind`` (of two runs: their mean)."""
        times = [r.seconds for r in self.runs if r.kind == kind]
        return statistics.median(times) if times else 0.0

    @property
    def incremental_share(self) -> float:
        full = self.median("full refresh")
        return self.median("incremental") / full if full else 0.0

    @property
    def floor_share(self) -> float:
        """The empty day's run against the full refresh (medians): the fixed cost's share."""
        full = self.median("full refresh")
        return self.median(EMPTY_DAY) / full if full else 0.0


def last_execution_id(spark: SparkSession) -> int:
    """The id of the newest SQL execution Spark's status store holds (-1: none)."""
    executions = spark._jsparkSession.sharedState().statusStore().executionsList()
    newest = -1
    iterator = executions.iterator()
    while iterator.hasNext():
        newest = max(newest, int(iterator.next().executionId()))
    return newest


_SCAN = re.compile(r"^Scan parquet (\S+)")


def _number(text: str | None) -> int:
    """A metric value as Spark formats it ("1,234" or "total (min, med, max)\\n1,234 (...)")."""
    if not text:
        return 0
    digits = re.search(r"[\d,]+", text.split("\n")[-1] if "total" in text else text)
    return int(digits.group().replace(",", "")) if digits else 0


def scans_since(spark: SparkSession, after_id: int) -> Scans:
    """Files and rows read by the Parquet scans of the SQL executions after ``after_id``.

    Delta's own reads of its log (JSON, checkpoints, table state) are left out:
    they are the same whatever the query reads.
    """
    store = spark._jsparkSession.sharedState().statusStore()
    scans = Scans()
    iterator = store.executionsList().iterator()
    while iterator.hasNext():
        execution = iterator.next()
        execution_id = int(execution.executionId())
        if execution_id <= after_id:
            continue
        values = store.executionMetrics(execution_id)
        nodes = store.planGraph(execution_id).allNodes().iterator()
        while nodes.hasNext():
            node = nodes.next()
            match = _SCAN.match(str(node.name()))
            if match is None:
                continue
            table = match.group(1).split(".")[-1]
            metrics = node.metrics().iterator()
            while metrics.hasNext():
                metric = metrics.next()
                value = values.get(metric.accumulatorId())
                amount = _number(value.get() if value.isDefined() else None)
                if metric.name() == "number of files read":
                    scans.files[table] = scans.files.get(table, 0) + amount
                elif metric.name() == "number of output rows":
                    scans.rows[table] = scans.rows.get(table, 0) + amount
    return scans


def table_version(spark: SparkSession, table: str) -> int:
    """The table's newest Delta version."""
    row = spark.sql(f"DESCRIBE HISTORY {table} LIMIT 1").first()
    return int(row["version"]) if row is not None else -1


def commits_since(spark: SparkSession, table: str, after: int) -> list[dict[str, Any]]:
    """Operation and metrics of each Delta commit of ``table`` after version ``after``."""
    rows = spark.sql(f"DESCRIBE HISTORY {table}").where(f"version > {after}").collect()
    return [
        {"version": r["version"], "operation": r["operation"], **(r["operationMetrics"] or {})}
        for r in sorted(rows, key=lambda r: r["version"])
    ]


def _written(commits: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(rows written, files added, files removed) of some commits."""
    rows = files = removed = 0
    for commit in commits:
        rows += (
            int(commit.get("numOutputRows", 0))
            if "MERGE" not in commit["operation"]
            else (
                int(commit.get("numTargetRowsInserted", 0))
                + int(commit.get("numTargetRowsUpdated", 0))
                + int(commit.get("numTargetRowsCopied", 0))
            )
        )
        files += int(commit.get("numFiles", 0)) + int(commit.get("numTargetFilesAdded", 0))
        removed += int(commit.get("numTargetFilesRemoved", 0))
    return rows, files, removed


def timed_run(
    spark: SparkSession,
    settings: Settings,
    *,
    kind: str,
    args: list[str],
    window: dict[str, Any],
    marts: list[str],
    left_out: list[str] | None = None,
) -> RunFigures:
    """Run ``dbt <args>`` and measure it: wall time, per model, Delta and scan metrics.

    ``left_out``: models the run excludes (``--exclude``).
    """
    schema = settings.catalog.marts_schema
    versions = {m: table_version(spark, f"{schema}.{m}") for m in marts}
    first_execution = last_execution_id(spark)
    if left_out:
        args = [*args, "--exclude", *left_out]
    began = time.monotonic()
    run = run_dbt(settings, args, window)
    seconds = time.monotonic() - began
    require_success(run)
    scans = scans_since(spark, first_execution)
    figures = RunFigures(
        kind=kind,
        seconds=round(seconds, 2),
        model_seconds={n.name: round(n.seconds, 2) for n in run.nodes},
        rows_written={},
        files_written={},
        files_removed={},
        files_read=scans.files,
        rows_read=scans.rows,
        operations={},
        left_out=list(left_out or []),
    )
    for mart in marts:
        commits = commits_since(spark, f"{schema}.{mart}", versions[mart])
        rows, files, removed = _written(commits)
        figures.rows_written[mart] = rows
        figures.files_written[mart] = files
        figures.files_removed[mart] = removed
        figures.operations[mart] = [str(c["operation"]) for c in commits]
    return figures


def one_day_query(spark: SparkSession, settings: Settings, mart: str, day: date) -> OneDayQuery:
    """The files a query of one event date reads, against the files of the whole table."""
    table = f"{settings.catalog.marts_schema}.{mart}"
    detail = spark.sql(f"DESCRIBE DETAIL {table}").first()
    in_table = int(detail["numFiles"]) if detail is not None else 0
    before = last_execution_id(spark)
    spark.sql(
        f"SELECT network_code, count(*) AS quakes, avg(magnitude) AS magnitude_mean "
        f"FROM {table} WHERE event_date = date'{day.isoformat()}' GROUP BY network_code"
    ).collect()
    scans = scans_since(spark, before)
    return OneDayQuery(mart, day.isoformat(), scans.files_read, in_table, scans.rows_read)


def _differences(spark: SparkSession, table: str, left: int, right: int) -> int:
    """Rows in one version and not the other, both ways (``EXCEPT ALL``)."""
    total = 0
    for a, b in ((left, right), (right, left)):
        total += spark.sql(
            f"SELECT * FROM {table} VERSION AS OF {a} EXCEPT ALL "
            f"SELECT * FROM {table} VERSION AS OF {b}"
        ).count()
    return total


def bench_settings(
    base: Settings, work: Path, topic: str, metrics_port: int, batch_records: int
) -> Settings:
    """``base`` on the benchmark's own topic, lake and catalog schemas.

    ``batch_records`` bounds each micro-batch of the history's replay to about a day of
    records: a live stream writes files that each hold a few seconds of events, so a
    day's interval skips the other days' files by their event-time statistics. One
    batch of the whole history would write files spanning every day, and any interval
    would read them all (the first run of this benchmark did: 71 files for a daily run
    against 47 for a full refresh).
    """
    return base.model_copy(
        update={
            "lake_root": str(work / "lake"),
            "kafka": base.kafka.model_copy(
                update={
                    "changes_topic": topic,
                    "dead_letter_topic": f"{topic}.dlq",
                }
            ),
            "catalog": base.catalog.model_copy(
                update={
                    "lake_schema": "bench_lake",
                    "marts_schema": "bench_marts",
                    "staging_schema": "bench_staging",
                }
            ),
            "spark": base.spark.model_copy(update={"max_offsets_per_trigger": batch_records}),
            "runtime": base.runtime.model_copy(
                update={
                    "ports": base.runtime.ports.model_copy(update={"stream_metrics": metrics_port})
                }
            ),
        }
    )


def bench_files_per_trigger(bronze: Path, days: int) -> int:
    """Bronze's data files per day of history: a Delta source's files per micro-batch."""
    files = sum(1 for p in bronze.rglob("*.parquet") if "_delta_log" not in p.parts)
    return max(1, round(files / days))


def _create_topic(settings: Settings, topic: str) -> None:
    """The history's topic, kept forever: records stamped weeks ago would otherwise be past
    the broker's retention (7 days) as soon as their segment rolls."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.kafka.client_config())
    new = NewTopic(
        topic,
        num_partitions=settings.kafka.topic_partitions,
        replication_factor=1,
        config={"retention.ms": "-1", "retention.bytes": "-1"},
    )
    admin.create_topics([new])[topic].result(30)


def _delete_topic(settings: Settings, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka.client_config())
    for future in admin.delete_topics([topic, f"{topic}.dlq"]).values():
        # A topic nobody created (the DLQ) or already gone.
        with contextlib.suppress(Exception):
            future.result(30)


def _cli(settings: Settings, args: list[str], log: Path) -> float:
    """Run ``streamhouse <args>`` to its end with ``settings``; its wall time."""
    env = settings_env(settings, secrets=True)
    env["STREAMHOUSE_LOADGEN__METRICS_PORT"] = "0"
    began = time.monotonic()
    with log.open("ab") as handle:
        code = subprocess.call(
            [sys.executable, "-m", "streamhouse.cli", *args],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    if code != 0:
        raise RuntimeError(f"streamhouse {' '.join(args)} failed (exit {code}); see {log}")
    return time.monotonic() - began


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_benchmark(
    base: Settings,
    *,
    days: int,
    events_per_day: int,
    runs: int,
    output: Path,
    command: str,
    report: Callable[[str], None],
) -> MartsBenchResult:
    """Load ``days`` days of history through the stream, then time full against incremental."""
    from marts.runner import marts_spark

    work = base.state_dir / "bench-marts"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    topic = f"bench-marts-{uuid.uuid4().hex[:8]}"
    settings = bench_settings(base, work, topic, _free_port(), batch_records=events_per_day)
    today = datetime.now(UTC).date()
    last_day = today - timedelta(days=1)  # the daily run's day: complete, in the past
    events = days * events_per_day
    _create_topic(settings, topic)
    try:
        report(f"loading {days} days of history ({events:,} events) into {topic}")
        load_seconds = _cli(
            settings,
            [
                "loadgen", "--max", "--events", str(events), "--entities", str(events),
                "--history-days", str(days), "--history-end", today.isoformat(),
            ],
            work / "loadgen.log",
        )  # fmt: skip
        report(f"loaded in {load_seconds:.0f} s; the stream takes it to bronze (--available-now)")
        stream_seconds = _cli(
            settings, ["stream", "run", "--available-now", "bronze"], work / "stream.log"
        )
        # The queries that read bronze as a stream take it about a day per micro-batch, as
        # they would live (a few minutes a batch): one batch of the whole history wrote
        # silver in one MERGE, each of its files spanning every day, none skipped.
        per_batch = bench_files_per_trigger(
            Path(BRONZE_QUAKE_CHANGES.path(settings.lake_uri).removeprefix("file:")), days
        )
        downstream = settings.model_copy(
            update={
                "spark": settings.spark.model_copy(
                    update={"delta_max_files_per_trigger": per_batch}
                )
            }
        )
        report(f"bronze in {stream_seconds:.0f} s; silver, late events and windows from it")
        stream_seconds += _cli(
            downstream,
            ["stream", "run", "--available-now", "late", "silver", "windows", "rollup"],
            work / "stream.log",
        )
        report(f"streamed in {stream_seconds:.0f} s")
    finally:
        _delete_topic(settings, topic)

    began = time.monotonic()
    spark = marts_spark(settings)
    spark_start = time.monotonic() - began
    schema = settings.catalog.marts_schema
    for name in ("staging_schema", "marts_schema"):
        # A previous run's marts are still in the catalog while their files went with its
        # work folder: the catalog would answer for tables that no longer exist (a second
        # run failed on DELTA_PATH_DOES_NOT_EXIST). Their files are gone; drop the names.
        spark.sql(f"DROP SCHEMA IF EXISTS {getattr(settings.catalog, name)} CASCADE")
        spark.sql(f"CREATE SCHEMA {getattr(settings.catalog, name)}")
    bronze_rows = spark.table(f"{settings.catalog.lake_schema}.quake_changes").count()
    window = interval_vars(settings, last_day, today, today)
    report(f"first build (seeds, models, data tests) over {bronze_rows:,} bronze rows")
    began = time.monotonic()
    build(spark, settings, window, full_refresh=True)
    first_build = time.monotonic() - began
    result = MartsBenchResult(
        command=command,
        days=days,
        events=events,
        interval=(window["start_date"], window["end_date"]),
        lookback_days=int(window["lookback_days"]),
        bronze_rows=bronze_rows,
        load_seconds=round(load_seconds, 1),
        stream_seconds=round(stream_seconds, 1),
        spark_start_seconds=round(spark_start, 1),
        first_build_seconds=round(first_build, 1),
    )
    marts = [*FACTS]
    for index in range(runs):
        report(f"run {index + 1}/{runs}: full refresh (dbt run --full-refresh)")
        full = timed_run(
            spark,
            settings,
            kind="full refresh",
            args=["run", "--full-refresh"],
            window=window,
            marts=marts,
        )
        result.runs.append(full)
        # As `marts build --full-refresh` does after its run: the static marts record
        # the inputs they were just built from.
        prints, _ = static_to_skip(spark, settings, window)
        mark_built(spark, schema, prints, list(prints))
        refreshed = {m: table_version(spark, f"{schema}.{m}") for m in marts}
        for mart, column in FACTS.items():
            spark.sql(f"DELETE FROM {schema}.{mart} WHERE {column} >= date'{last_day.isoformat()}'")
        report(f"run {index + 1}/{runs}: the daily run for {last_day} (dbt run)")
        _, unchanged = static_to_skip(spark, settings, window)
        daily = timed_run(
            spark,
            settings,
            kind="incremental",
            args=["run"],
            window=window,
            marts=marts,
            left_out=unchanged,
        )
        result.runs.append(daily)
        result.equal_to_full_refresh = all(
            _differences(
                spark, f"{schema}.{m}", refreshed[m], table_version(spark, f"{schema}.{m}")
            )
            == 0
            for m in marts
        )
        report(
            f"  full refresh {full.seconds:.1f} s, daily run {daily.seconds:.1f} s, equal: "
            f"{result.equal_to_full_refresh}"
        )
    # Past the history and its lookback: every model's interval holds no row.
    empty_day = today + timedelta(days=int(window["lookback_days"]) + 2)
    empty_window = interval_vars(settings, empty_day, None, today)
    report(f"the floor: dbt run over {empty_day}, a day with no rows (warm-up, then {runs})")
    _, unchanged = static_to_skip(spark, settings, empty_window)
    require_success(run_dbt(settings, ["run"], empty_window))  # warm-up: dbt re-parses
    for _ in range(runs):
        empty = timed_run(
            spark,
            settings,
            kind=EMPTY_DAY,
            args=["run"],
            window=empty_window,
            marts=marts,
            left_out=unchanged,
        )
        result.runs.append(empty)
        written = sum(empty.rows_written.values())
        report(f"  empty day {empty.seconds:.1f} s, rows written {written}")
    middle = last_day - timedelta(days=days // 2)
    result.one_day = [one_day_query(spark, settings, mart, middle) for mart in PARTITIONED]
    result.machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "note": "shared machine: other work ran at the same time",
    }
    result.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(asdict(result), indent=1) + "\n")
    plot(result, output.with_suffix(".png"))
    return result


def plot(result: MartsBenchResult, path: Path) -> None:
    """Wall time per model, full refresh against the daily run; files read; the one-day query."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = [r for r in result.runs if r.kind == "full refresh"]
    daily = [r for r in result.runs if r.kind == "incremental"]
    empty = [r for r in result.runs if r.kind == EMPTY_DAY]
    if not full or not daily:
        return
    models = sorted(full[-1].model_seconds, key=lambda m: -full[-1].model_seconds[m])[:8]
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 5))
    positions = range(len(models))
    left.barh([p + 0.27 for p in positions], [full[-1].model_seconds[m] for m in models], 0.27,
              label="full refresh")  # fmt: skip
    left.barh(list(positions), [daily[-1].model_seconds.get(m, 0) for m in models], 0.27,
              label="daily run")  # fmt: skip
    if empty:
        left.barh([p - 0.27 for p in positions],
                  [empty[-1].model_seconds.get(m, 0) for m in models], 0.27,
                  label="a day with no rows")  # fmt: skip
    left.set_yticks(list(positions), models)
    left.set_xlabel("seconds (dbt, per model)")
    left.set_title(
        f"{result.days} days: full {result.median('full refresh'):.0f} s, daily "
        f"{result.median('incremental'):.0f} s ({result.incremental_share:.0%}), no rows "
        f"{result.median(EMPTY_DAY):.0f} s"
    )
    left.legend()
    tables = sorted(set(full[-1].files_read) | set(daily[-1].files_read))
    spots = range(len(tables))
    middle.bar([p - 0.2 for p in spots], [full[-1].files_read.get(t, 0) for t in tables], 0.4,
               label="full refresh")  # fmt: skip
    middle.bar([p + 0.2 for p in spots], [daily[-1].files_read.get(t, 0) for t in tables], 0.4,
               label="daily run")  # fmt: skip
    middle.set_xticks(list(spots), tables, rotation=30, ha="right")
    middle.set_ylabel("files read (Spark scan metrics)")
    middle.legend()
    names = [q.mart for q in result.one_day]
    right.bar(names, [q.files_in_table for q in result.one_day], label="files in the table")
    right.bar(names, [q.files_read for q in result.one_day], label="files a one-day query reads")
    right.set_title("one event date on a partitioned mart")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
