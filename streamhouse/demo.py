"""``streamhouse demo``: the platform end to end on the embedded defaults.

Brings the stack up (PostgreSQL, Kafka, registry, Prometheus, the API
simulator, the poller and the streaming job), waits until every record the
simulator serves has crossed each hop, then prints the count at each hop and a
few decoded rows read back from the bronze Delta table. Then it goes on past
bronze: the load generator adds a few thousand events of the last hour (the
simulator's records are from 2019, late by the record-level rule, so in no
window), silver and the window tables are followed until they hold them, the
dbt marts are built in this process's SparkSession, and the rebuild of the
same interval is proved idempotent with Delta time travel. Last, the stack's
Airflow runs ``lakehouse_daily`` once for a day the marts already hold (GX
validation, ``dbt build``, compaction, docs): its task states, the GX
summary, where the docs are, and the time-travel proof that the run changed
no row.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F  # noqa: N812
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from core.errors import UserFacingError
from core.settings import PROJECT_ROOT, Settings, settings_env
from lake.tables import (
    BRONZE_QUAKE_CHANGES,
    QUAKE_WINDOWS_1H,
    QUAKE_WINDOWS_1M,
    QUARANTINE_QUAKE_CHANGES,
    SILVER_QUAKES,
)
from spark_jobs.session import build_spark, spark_log_file
from streamhouse import rendering
from streamhouse.runtime import process, stack
from streamhouse.runtime.services import STREAM_DRIVERS


def source_record_count(settings: Settings) -> int:
    """How many records the source serves right now (one page of the FDSN query)."""
    response = httpx.get(
        settings.source.base_url,
        params={"format": "geojson", "limit": "20000"},
        timeout=settings.source.timeout_s,
    )
    response.raise_for_status()
    return len(response.json()["features"])


def topic_message_count(settings: Settings, topic: str) -> int:
    """Committed records in a topic, counted by reading it with ``read_committed``.

    Offsets cannot be subtracted: the poller writes in transactions, and every
    commit marker takes an offset of its own.
    """
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": "streamhouse-demo-inspect",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        pending, total = set(metadata.partitions), 0
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is None:
                    total += 1
                elif message.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
        return total
    finally:
        consumer.close()


def delta_row_count(spark: SparkSession, path: str) -> int:
    """Rows in a Delta table, 0 while the table does not exist yet."""
    try:
        return int(spark.read.format("delta").load(path).count())
    except AnalysisException:
        return 0


def run(settings: Settings, timeout_s: float, console: Console, out: Console) -> None:
    """Run the demo flow; raise ``UserFacingError`` when a hop does not complete in time."""
    began = time.monotonic()
    stack.up(settings, report=lambda m: console.print(f"[cyan]•[/] {m}"))
    console.print(f"stack ready in {time.monotonic() - began:.1f} s")
    expected = source_record_count(settings)
    topic = settings.kafka.changes_topic
    with console.status("starting a Spark session to read the lake"):
        spark = build_spark(
            settings, "streamhouse-demo-reader", spark_log_file(settings, "streamhouse-demo-reader")
        )
    try:
        _follow_the_flow(settings, spark, expected, timeout_s, console)
        _show_lake(settings, spark, expected, topic_message_count(settings, topic), out)
        _past_bronze(settings, spark, timeout_s, console, out)
    finally:
        spark.stop()
    out.print(f"[green]demo complete[/] in {time.monotonic() - began:.1f} s")


#: On-time events the demo adds with the load generator, so the windows have rows.
DEMO_LOAD_EVENTS = 3000


def _past_bronze(
    settings: Settings, spark: SparkSession, timeout_s: float, console: Console, out: Console
) -> None:
    """Silver, the windows, the marts and the idempotency proof."""
    console.print(
        f"[cyan]•[/] load generator: {DEMO_LOAD_EVENTS:,} events of the last hour "
        "(on time, so they reach the windows)"
    )
    env = settings_env(settings)
    env["STREAMHOUSE_LOADGEN__METRICS_PORT"] = "0"
    load = subprocess.run(
        [
            sys.executable, "-m", "streamhouse.cli", "loadgen", "--events",
            str(DEMO_LOAD_EVENTS), "--max", "--history-days", "0.04",
        ],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if load.returncode != 0:
        raise UserFacingError(
            f"the load generator failed ({load.stderr.strip().splitlines()[-1:]}): "
            "see `streamhouse stack status`."
        )
    _follow_past_bronze(settings, spark, timeout_s, console)
    _build_marts(settings, spark, console, out)
    _run_the_daily_dag(settings, spark, console, out)


def require_running(settings: Settings, names: tuple[str, ...]) -> None:
    """Fail at once, naming the service and its log, when one the demo waits on stopped
    (a driver that died at start would otherwise look like a slow one until the timeout)."""
    for name in names:
        if process.read_pid(stack.service_paths(settings, name)) is None:
            raise UserFacingError(
                f"the {name} service stopped while the demo waited on it: its log is "
                f"{stack.log_path(settings, name)} (`streamhouse stack logs {name}`)."
            )


def _follow_the_flow(
    settings: Settings, spark: SparkSession, expected: int, timeout_s: float, console: Console
) -> None:
    topic = settings.kafka.changes_topic
    bronze_path = BRONZE_QUAKE_CHANGES.path(settings.lake_uri)
    deadline = time.monotonic() + timeout_s
    with Progress(
        TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        kafka_task = progress.add_task(f"API -> Kafka ({topic})", total=expected)
        bronze_task = progress.add_task("Kafka -> bronze Delta", total=expected)
        while True:
            in_kafka = topic_message_count(settings, topic)
            in_bronze = delta_row_count(spark, bronze_path)
            progress.update(kafka_task, completed=min(in_kafka, expected))
            progress.update(bronze_task, completed=min(in_bronze, expected))
            if in_kafka >= expected and in_bronze >= in_kafka:
                break
            require_running(settings, ("poller", "streaming"))
            if time.monotonic() > deadline:
                raise UserFacingError(
                    f"the flow did not complete in {timeout_s:.0f} s ({in_kafka} of {expected} "
                    f"in Kafka, {in_bronze} in bronze): see `streamhouse stack logs poller` "
                    "and `streamhouse stack logs streaming`."
                )
            time.sleep(1.0)


def _show_lake(
    settings: Settings, spark: SparkSession, served: int, in_kafka: int, out: Console
) -> None:
    bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    quarantined = delta_row_count(spark, QUARANTINE_QUAKE_CHANGES.path(settings.lake_uri))
    counts = bronze.agg(
        F.count("*").alias("rows"),
        F.countDistinct("entity_id", "updated_ms").alias("versions"),
        F.countDistinct("kafka_partition", "kafka_offset").alias("offsets"),
    ).first()
    assert counts is not None
    hops = rendering.table("hop", "count", title="records at each hop")
    hops.add_row("source (API simulator) records", str(served))
    hops.add_row(f"Kafka messages ({settings.kafka.changes_topic})", str(in_kafka))
    hops.add_row("bronze rows", str(counts["rows"]))
    hops.add_row("bronze distinct (entity_id, updated_ms)", str(counts["versions"]))
    hops.add_row("bronze distinct Kafka offsets", str(counts["offsets"]))
    hops.add_row("quarantined records", str(quarantined))
    out.print(hops)
    sample = (
        bronze.orderBy(F.col("mag").desc_nulls_last())
        .select(
            "entity_id",
            "op",
            "mag",
            "place",
            F.date_format(F.timestamp_millis("event_time_ms"), "yyyy-MM-dd HH:mm:ss").alias(
                "event_time_utc"
            ),
            F.concat_ws("/", "kafka_partition", "kafka_offset").alias("kafka_partition/offset"),
        )
        .limit(5)
        .collect()
    )
    if sample:
        rows = rendering.table(
            *sample[0].asDict().keys(), title="decoded rows in bronze (strongest first)"
        )
        for row in sample:
            rows.add_row(*(str(v) for v in row))
        out.print(rows)


def _entities(spark: SparkSession, path: str) -> int:
    try:
        return int(spark.read.format("delta").load(path).select("entity_id").distinct().count())
    except AnalysisException:
        return 0


def _follow_past_bronze(
    settings: Settings, spark: SparkSession, timeout_s: float, console: Console
) -> None:
    """Wait until silver holds every quake of bronze and both window tables have rows."""
    lake = settings.lake_uri
    deadline = time.monotonic() + timeout_s
    silver_every = settings.trigger_for("silver_quakes")
    with Progress(
        TextColumn("{task.description:<36}"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        silver_task = progress.add_task(f"bronze -> silver (every {silver_every})", total=None)
        minutes_task = progress.add_task("bronze -> 1-minute windows", total=1)
        hours_task = progress.add_task("1-minute -> 1-hour windows", total=1)
        while True:
            quakes = _entities(spark, BRONZE_QUAKE_CHANGES.path(lake))
            in_silver = delta_row_count(spark, SILVER_QUAKES.path(lake))
            minutes = delta_row_count(spark, QUAKE_WINDOWS_1M.path(lake))
            hours = delta_row_count(spark, QUAKE_WINDOWS_1H.path(lake))
            progress.update(silver_task, total=quakes, completed=min(in_silver, quakes))
            progress.update(minutes_task, completed=min(minutes, 1))
            progress.update(hours_task, completed=min(hours, 1))
            if in_silver >= quakes and minutes and hours:
                return
            require_running(settings, tuple(STREAM_DRIVERS))
            if time.monotonic() > deadline:
                raise UserFacingError(
                    f"silver and the windows did not catch up in {timeout_s:.0f} s ({in_silver} "
                    f"of {quakes} quakes in silver, {minutes} minute and {hours} hour windows): "
                    "see `streamhouse stack logs streaming`."
                )
            time.sleep(2.0)


def _build_marts(settings: Settings, spark: SparkSession, console: Console, out: Console) -> None:
    """Build the marts in this SparkSession, then rebuild the interval and compare versions."""
    from marts.build import build, run_models
    from marts.idempotency import verify_idempotent
    from marts.profiles import interval_vars
    from marts.runner import marts_spark
    from streamhouse.cli_marts import node_progress, show_idempotency

    marts_spark(settings)  # the lake's tables registered; this session is the one dbt uses
    today = datetime.now(UTC).date()
    window = interval_vars(settings, today - timedelta(days=1), None, today)
    began = time.monotonic()
    with node_progress("dbt build (the marts)", console) as on_node:
        result = build(spark, settings, window, progress=on_node)
    console.print(
        f"[cyan]•[/] marts built in {result.seconds:.0f} s (seeds loaded: "
        f"{', '.join(result.seeds_loaded) or 'none, unchanged'})"
    )
    for delivered in result.deliveries:  # pushed for the marts' dashboard panel
        console.print(f"[cyan]•[/] delivered: {delivered.line()}")
    counts = rendering.table(
        "mart", "rows", title="the marts (schema " + settings.catalog.marts_schema + ")"
    )
    for mart in ("fct_quakes", "fct_quake_revisions", "fct_network_activity_daily",
                 "dim_network", "dim_magnitude_type", "dim_region", "dim_date"):  # fmt: skip
        counts.add_row(mart, str(spark.table(f"{settings.catalog.marts_schema}.{mart}").count()))
    out.print(counts)

    def rebuild() -> None:
        with node_progress("dbt run (rebuilding the same interval)", console) as on_node:
            run_models(settings, window, on_node)

    checks = verify_idempotent(spark, settings, rebuild)
    show_idempotency(checks)
    console.print(
        f"[cyan]•[/] marts and their idempotency proof in {time.monotonic() - began:.0f} s"
    )
    changed = [c.name for c in checks if not c.unchanged]
    if changed:
        raise UserFacingError(f"Rebuilding changed {', '.join(changed)}: not idempotent.")


#: How long the demo waits for its run of lakehouse_daily (each task is a Spark process).
DAILY_RUN_TIMEOUT_S = 3600.0


def demo_day(spark: SparkSession, settings: Settings) -> date:
    """The day the demo's DAG run processes: bronze's busiest whole day before yesterday
    (the simulator's data are from a past week; the load generator's are of the last hour)."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    busiest = (
        spark.read.format("delta")
        .load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
        .select(F.to_date(F.timestamp_millis("event_time_ms")).alias("day"))
        .where(F.col("day") < F.lit(yesterday))
        .groupBy("day")
        .count()
        .orderBy(F.desc("count"), F.desc("day"))
        .first()
    )
    if busiest is None:
        raise UserFacingError("bronze holds no day before yesterday to run lakehouse_daily for.")
    return date.fromisoformat(str(busiest["day"]))


def _run_the_daily_dag(
    settings: Settings, spark: SparkSession, console: Console, out: Console
) -> None:
    """lakehouse_daily once, through the stack's scheduler, for a day the marts hold already:
    its dbt build and compaction must change no row, proven with Delta time travel."""
    from streamhouse.daily_run import airflow_api, require_success, run_day, show_run

    day = demo_day(spark, settings)
    began = time.monotonic()
    run = run_day(
        settings,
        airflow_api(settings),
        day,
        timeout_s=DAILY_RUN_TIMEOUT_S,
        console=console,
        spark=spark,
    )
    show_run(run, out)
    require_success(run)
    console.print(f"[cyan]•[/] lakehouse_daily for {day} in {time.monotonic() - began:.0f} s")
