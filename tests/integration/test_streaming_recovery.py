"""An operator's ordinary actions never stall ingest or write a record twice (real Kafka,
registry, Spark + Delta).

- The bronze checkpoint is deleted (after an offset reset): the new checkpoint
  starts right after the Kafka offsets bronze already holds.
- The last ``commits/N`` file is deleted: the state a crash between the Delta
  commit and the checkpoint's commit leaves. The batch is re-run, Delta skips
  it, the writer sees that and goes on (before, it waited forever for figures
  of a write that never ran).
- The ingest writer itself run twice with one batch id changes nothing and returns.
- The registry turns unready between bronze's commit and the quarantine's question
  (forced at that call): the re-run skips bronze and still quarantines every record.
Counts come from an independent reader (a plain Kafka consumer) and from bronze.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from core.errors import UserFacingError
from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES, QUARANTINE_QUAKE_CHANGES
from monitoring.stream_metrics import BATCHES_SKIPPED
from producers.loadgen.runner import register_schema
from spark_jobs import replay
from spark_jobs.bronze_stream import QUERY_NAME, ChangeBatchWriter, ChangeDecoder, ensure_bronze
from spark_jobs.delta_io import table_version
from spark_jobs.schemas import (
    RegistryNotReadyError,
    RegistryUnavailableError,
    WriterSchemas,
    readiness_check,
)

from .streaming_helpers import (
    bronze_count,
    own_topic_and_lake,
    read_topic,
    run_loadgen,
    spawn_cli,
    stop,
    topic_size,
    wait_until,
)


def _positions(spark: SparkSession, settings: Settings) -> list[tuple[int, int]]:
    bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    return [(r.kafka_partition, r.kafka_offset) for r in bronze.collect()]


def _committed_batches(checkpoint: Path) -> list[int]:
    commits = checkpoint / "commits"
    return (
        sorted(int(p.name) for p in commits.iterdir() if p.name.isdigit())
        if commits.is_dir()
        else []
    )


def test_checkpoint_reset_and_a_crash_before_the_checkpoint_commit(
    quiet_stack: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    settings = own_topic_and_lake(quiet_stack, tmp_path / "lake", "recovery")
    log, loadgen_log = tmp_path / "stream.log", tmp_path / "loadgen.log"
    checkpoint = Path(settings.checkpoint_dir("bronze", "quake_changes"))

    run_loadgen(settings, loadgen_log, 2000, "--seed", "1")
    stream = spawn_cli(["stream", "run", "bronze"], settings, log)
    wait_until(lambda: bronze_count(spark, settings) >= 2000, 300, stream, log)
    stop(stream, signal.SIGTERM)

    # An offset reset: the operator deletes the checkpoint, new events arrive.
    shutil.rmtree(checkpoint)
    run_loadgen(settings, loadgen_log, 1000, "--seed", "2")
    stream = spawn_cli(["stream", "run", "bronze"], settings, log)
    # The rows, and the checkpoint's commit of the batch that wrote them.
    wait_until(
        lambda: bronze_count(spark, settings) >= 3000 and _committed_batches(checkpoint),
        300,
        stream,
        log,
    )
    stop(stream, signal.SIGTERM)
    text = log.read_text()
    assert "starts right after the Kafka offsets the lake already holds" in text
    # Batch 0 starts after every position the lake holds and has not run before: it
    # is appended as it is, with no anti-join against the whole of bronze.
    assert "batch 0 is the first since a start" in text
    assert "batch 0 does not follow" not in text
    positions = _positions(spark, settings)
    assert len(positions) == len(set(positions)) == 3000

    # A crash between the Delta commit and the checkpoint's commit: the batch is
    # in bronze, its commit file is not.
    last = _committed_batches(checkpoint)[-1]
    (checkpoint / "commits" / str(last)).unlink()
    (checkpoint / "commits" / f".{last}.crc").unlink(missing_ok=True)
    run_loadgen(settings, loadgen_log, 500, "--seed", "3")
    stream = spawn_cli(["stream", "run", "bronze"], settings, log)
    wait_until(lambda: bronze_count(spark, settings) >= 3500, 300, stream, log)
    time.sleep(5)  # a batch written twice would land now
    stop(stream, signal.SIGTERM)
    assert f"batch {last} was already committed to bronze" in log.read_text(), "the fault landed"

    positions = _positions(spark, settings)
    in_kafka = {(partition, offset) for partition, offset, _ in read_topic(settings)}
    assert topic_size(settings) == len(in_kafka) == 3500
    assert len(positions) == len(set(positions)) == 3500
    assert set(positions) == in_kafka


def _new_checkpoint(path: Path) -> str:
    """A new checkpoint directory with its query id, as the query writes it first."""
    path.mkdir()
    (path / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}) + "\n")
    return str(path)


def _topic_as_batch(spark: SparkSession, settings: Settings) -> DataFrame:
    """The settings' whole topic as one batch DataFrame, as the ingest query hands it over."""
    return (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
        .option("subscribe", settings.kafka.changes_topic)
        .load()
    )


@pytest.mark.parametrize("idempotency", ["positions", "transaction"])
def test_the_ingest_writer_run_twice_with_one_batch_id_changes_nothing(
    quiet_stack: Settings, spark: SparkSession, tmp_path: Path, idempotency: str
) -> None:
    settings = own_topic_and_lake(
        quiet_stack, tmp_path / "lake", "twice", ingest_idempotency=idempotency
    )
    topic = settings.kafka.changes_topic
    run_loadgen(settings, tmp_path / "loadgen.log", 300, "--seed", "4")
    _, schema_id = register_schema(settings.registry, topic)
    producer = Producer(settings.kafka.client_config())
    producer.produce(topic, value=b"\x13\x37 not avro", partition=0)  # for quarantine
    assert producer.flush(30) == 0
    batch = _topic_as_batch(spark, settings)
    assert batch.count() == 301 and schema_id > 0
    writer = ChangeBatchWriter(settings, _new_checkpoint(tmp_path / "checkpoint"))
    ensure_bronze(spark, settings)
    skipped = BATCHES_SKIPPED.labels(QUERY_NAME, "bronze")
    skipped_before = skipped._value.get()

    writer(batch, 7)
    began = time.monotonic()
    writer(batch, 7)  # the same batch again, as after a crash: nothing is written twice
    assert time.monotonic() - began < 60, "a skipped batch returns, it does not wait"
    assert skipped._value.get() == skipped_before + 1

    bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    quarantine = spark.read.format("delta").load(QUARANTINE_QUAKE_CHANGES.path(settings.lake_uri))
    assert bronze.count() == 300
    assert bronze.select("kafka_partition", "kafka_offset").distinct().count() == 300
    assert quarantine.count() == 1
    assert quarantine.where(F.col("reason").startswith("not in the Confluent")).count() == 1


def _commit_actions(path: str) -> list[set[str]]:
    """The kinds of action in each of the Delta table's commits, by version."""
    log = Path(path) / "_delta_log"
    commits = sorted(log.glob("*.json"))
    return [{next(iter(json.loads(line))) for line in c.read_text().splitlines()} for c in commits]


def _plan(checkpoint: str, batch_id: int, topic: str, ends: dict[int, int]) -> None:
    """Write ``offsets/<batch_id>`` as the query plans a batch: where it reads to."""
    offsets = Path(checkpoint) / "offsets"
    offsets.mkdir(exist_ok=True)
    source = json.dumps({topic: {str(p): o for p, o in sorted(ends.items())}})
    (offsets / str(batch_id)).write_text(f'v1\n{{"batchWatermarkMs":0}}\n{source}\n')


def _ends(batch: DataFrame) -> dict[int, int]:
    """``{partition: last offset + 1}`` of a batch of Kafka records."""
    rows = batch.groupBy("partition").agg(F.max("offset").alias("last")).collect()
    return {int(r.partition): int(r.last) + 1 for r in rows}


def test_a_batch_that_follows_the_last_is_appended_as_is_and_a_rerun_after_it_writes_nothing(
    quiet_stack: Settings, spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The positions rule: only the first batch after a start (or a batch id seen before)
    is checked against bronze; the batch after it is a plain append, with no Delta
    transaction to look up. The crash window is hit on purpose: that batch, committed,
    comes again to a writer that has just started (a new process) and to the same writer.
    A writer just started whose first batch is new (where it starts is in the checkpoint,
    and bronze holds nothing from there) appends it as it is.
    """
    settings = own_topic_and_lake(quiet_stack, tmp_path / "lake", "follows")
    topic = settings.kafka.changes_topic
    run_loadgen(settings, tmp_path / "loadgen.log", 300, "--seed", "5")
    whole = _topic_as_batch(spark, settings)
    first, second = whole.where(F.col("offset") < 40), whole.where(F.col("offset") >= 40)
    first_count, second_count = first.count(), second.count()
    assert first_count and second_count and first_count + second_count == 300
    checkpoint = _new_checkpoint(tmp_path / "checkpoint")
    ensure_bronze(spark, settings)
    bronze_path = BRONZE_QUAKE_CHANGES.path(settings.lake_uri)
    writer = ChangeBatchWriter(settings, checkpoint)
    skipped = BATCHES_SKIPPED.labels(QUERY_NAME, "bronze")
    skipped_before = skipped._value.get()

    with caplog.at_level("INFO", logger="spark_jobs.bronze_stream"):
        writer(first, 0)  # a new checkpoint's batch 0 on a lake holding none of the topic
        assert "batch 0 is the first since a start; bronze and quarantine hold none" in caplog.text
        caplog.clear()
        writer(second, 1)
        assert "batch 1" not in caplog.text.replace("batch 1:", ""), "a plain append"
    assert bronze_count(spark, settings) == 300
    assert not any("txn" in actions for actions in _commit_actions(bronze_path))
    version = table_version(spark, bronze_path)

    # The job stopped after batch 1's Delta commit, before the checkpoint's: batch 1 again,
    # to a writer just started (the checkpoint says where batch 1 starts), and to the same.
    _plan(checkpoint, 0, topic, _ends(first))
    ChangeBatchWriter(settings, checkpoint)(second, 1)
    writer(second, 1)
    assert skipped._value.get() == skipped_before + 2
    assert table_version(spark, bronze_path) == version, "nothing was written again"

    # A start whose first batch is new: appended as it is, after one look at each table.
    ends = _ends(whole)  # before more records arrive: the DataFrame reads the topic anew
    run_loadgen(settings, tmp_path / "loadgen.log", 100, "--seed", "6")
    third = _topic_as_batch(spark, settings).where(
        F.col("offset") >= F.element_at(F.create_map(*_map_of(ends)), F.col("partition"))
    )
    assert third.count() == 100
    _plan(checkpoint, 1, topic, ends)
    with caplog.at_level("INFO", logger="spark_jobs.bronze_stream"):
        ChangeBatchWriter(settings, checkpoint)(third, 2)
        assert "batch 2 is the first since a start; bronze and quarantine hold none" in caplog.text
    positions = _positions(spark, settings)
    assert len(positions) == len(set(positions)) == 400


def _map_of(ends: dict[int, int]) -> list[Column]:
    return [F.lit(v) for item in sorted(ends.items()) for v in item]


class _ReadinessGate:
    """The registry's real readiness check, answered "not ready" after ``open_calls`` calls:
    the crash window is forced at a chosen call, not left to timing."""

    def __init__(self, settings: Settings, open_calls: int) -> None:
        check = readiness_check(settings.registry)
        assert check is not None
        self._check, self.open_calls, self.calls = check, open_calls, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls > self.open_calls:
            raise RegistryNotReadyError("turned off by the test")
        self._check()


def test_a_registry_unready_between_bronze_and_quarantine_loses_no_record(
    quiet_stack: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    """Bronze commits a batch, then the registry turns unready before the quarantine's
    question about another subject's schema id: the batch fails.

    The query re-runs the batch with the same id. Delta skips bronze's append, which says
    nothing of the batch's rejected records: the writer must still ask and quarantine
    them. Taking "bronze skipped" for "nothing rejected" loses them for good.
    """
    settings = own_topic_and_lake(quiet_stack, tmp_path / "lake", "unready", registry_retry_s=2.0)
    topic = settings.kafka.changes_topic
    run_loadgen(settings, tmp_path / "loadgen.log", 200, "--seed", "8")
    registry = SchemaRegistryClient({"url": settings.registry.url})
    other_id = registry.register_schema(
        f"other-{topic}-value",
        Schema('{"type":"record","name":"Other","fields":[{"name":"x","type":"long"}]}', "AVRO"),
    )
    producer = Producer(settings.kafka.client_config())
    for _ in range(3):
        producer.produce(topic, value=b"\x00" + other_id.to_bytes(4, "big") + b"\x02")
    assert producer.flush(30) == 0
    batch = _topic_as_batch(spark, settings)
    assert batch.count() == 203
    ensure_bronze(spark, settings)
    # Open for the versions bronze is decoded with, closed for the question after its commit.
    gate = _ReadinessGate(settings, open_calls=1)
    schemas = WriterSchemas(settings.registry, settings.spark.registry_retry_s, ready=gate)
    writer = ChangeBatchWriter(
        settings, _new_checkpoint(tmp_path / "checkpoint"), ChangeDecoder(settings, schemas)
    )
    bronze_path = BRONZE_QUAKE_CHANGES.path(settings.lake_uri)
    quarantine_path = Path(QUARANTINE_QUAKE_CHANGES.path(settings.lake_uri))

    with pytest.raises(RegistryUnavailableError, match="readiness check"):
        writer(batch, 3)
    # The window was hit: bronze committed its records, the quarantine got nothing.
    assert bronze_count(spark, settings) == 200
    assert not (quarantine_path / "_delta_log").is_dir()
    version = table_version(spark, bronze_path)

    gate.open_calls = 1_000_000
    for _ in range(2):  # the re-run, then once more: each record once, in one table
        writer(batch, 3)
    assert bronze_count(spark, settings) == 200
    assert table_version(spark, bronze_path) == version, "bronze was not written again"
    assert (quarantine_path / "_delta_log").is_dir(), "the re-run quarantined nothing: lost"
    quarantine = spark.read.format("delta").load(str(quarantine_path))
    reasons = [r.reason for r in quarantine.collect()]
    assert (
        reasons
        == [f"schema id {other_id} is not a version of {topic}-value (another subject's schema)"]
        * 3
    )


def test_a_live_kafka_replay_never_rewrites_bronze_nor_writes_a_record_twice(
    quiet_stack: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    settings = own_topic_and_lake(quiet_stack, tmp_path / "lake", "livereplay")
    log, loadgen_log = tmp_path / "stream.log", tmp_path / "loadgen.log"
    bronze_path = BRONZE_QUAKE_CHANGES.path(settings.lake_uri)
    run_loadgen(settings, loadgen_log, 500, "--seed", "5")
    ingest = spawn_cli(["stream", "run", "bronze", "--available-now"], settings, log)
    assert ingest.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert bronze_count(spark, settings) == 500

    # Everything is in bronze already: the replay inserts nothing and commits nothing.
    version = table_version(spark, bronze_path)
    counts = replay.replay_kafka(spark, settings, replay.KafkaRange(), to_live=True)
    assert counts["bronze"] == 500 and bronze_count(spark, settings) == 500
    assert table_version(spark, bronze_path) == version, "bronze was not rewritten"

    # New records the ingest query has not read yet: refused, in one sentence.
    run_loadgen(settings, loadgen_log, 200, "--seed", "6")
    with pytest.raises(UserFacingError, match=r"has not read partition .* would write those"):
        replay.replay_kafka(spark, settings, replay.KafkaRange(), to_live=True)

    # With the checkpoint gone the replay fills what is missing, and the ingest
    # query then starts after it: every record once.
    shutil.rmtree(settings.checkpoint_dir("bronze", "quake_changes"))
    counts = replay.replay_kafka(spark, settings, replay.KafkaRange(), to_live=True)
    assert counts["records"] == 700 and bronze_count(spark, settings) == 700
    ingest = spawn_cli(["stream", "run", "bronze", "--available-now"], settings, log)
    assert ingest.wait(timeout=300) == 0, log.read_text()[-3000:]
    positions = _positions(spark, settings)
    assert len(positions) == len(set(positions)) == 700


def test_a_registry_outage_delays_ingest_and_quarantines_nothing(
    quiet_stack: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    """The registry is down when ingest starts, then restarts and replays its journal.

    A restarted Apicurio serves its API before it has replayed its journal topic
    (long here: ``test_registry`` registered many subjects on this stack). Before,
    the ingest, retrying on its own, could ask inside that window and decode its
    first batch with a partial answer: all 300 records quarantined as "another
    subject's schema" (on the CI machine), or, with a check after the bronze
    commit only, committed to bronze as absent and then lost on the batch's re-run.
    Whether a run asks inside the window is timing: ``test_registry`` asks there
    on purpose.
    """
    from streamhouse.runtime import stack

    base = quiet_stack.model_copy(
        update={"spark": quiet_stack.spark.model_copy(update={"registry_retry_s": 5.0})}
    )
    settings = own_topic_and_lake(base, tmp_path / "lake", "outage")
    log = tmp_path / "stream.log"
    run_loadgen(settings, tmp_path / "loadgen.log", 300, "--seed", "7")
    stack.down(settings, ["registry"], report=print)
    try:
        stream = spawn_cli(["stream", "run", "bronze"], settings, log)
        # Batches fail on the unreachable registry and are retried from the checkpoint.
        wait_until(lambda: "did not answer" in log.read_text(), 240, stream, log)
        assert bronze_count(spark, settings) == 0
    finally:
        stack.up(settings, ["registry"], report=print)
    wait_until(lambda: bronze_count(spark, settings) >= 300, 300, stream, log)
    stop(stream, signal.SIGTERM)
    positions = _positions(spark, settings)
    assert len(positions) == len(set(positions)) == 300
    quarantine = QUARANTINE_QUAKE_CHANGES.path(settings.lake_uri)
    assert not Path(quarantine).exists() or spark.read.format("delta").load(quarantine).count() == 0
