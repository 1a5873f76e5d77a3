"""What a streaming checkpoint says: has the query run, under which id, up to which offsets.

Read through Hadoop's FileSystem, so the same code reads a local folder, s3a://
or abfss://. The layout is Structured Streaming's own: ``metadata`` holds the
query id (``{"id": ...}``), ``offsets/<batch>`` the offsets a batch planned
(line 1 the version, line 2 the batch metadata, then one line per source),
``commits/<batch>`` marks a batch as done, and ``sources/<source>/0`` holds
where a Kafka source's first batch starts (a zero byte, the version, the offsets).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _fs_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, hadoop_path


def _read_text(spark: SparkSession, path: str) -> str | None:
    fs, hadoop_path = _fs_path(spark, path)
    if not fs.exists(hadoop_path):
        return None
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    stream = fs.open(hadoop_path)
    try:
        return str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def _batch_ids(spark: SparkSession, folder: str) -> list[int]:
    fs, hadoop_path = _fs_path(spark, folder)
    if not fs.exists(hadoop_path):
        return []
    ids = []
    for status in fs.listStatus(hadoop_path):
        name = str(status.getPath().getName())
        if name.isdigit():
            ids.append(int(name))
    return sorted(ids)


def query_id(spark: SparkSession, checkpoint: str) -> str | None:
    """The id of the query the checkpoint belongs to (stable across restarts), None if new."""
    text = _read_text(spark, f"{checkpoint.rstrip('/')}/metadata")
    if not text:
        return None
    return str(json.loads(text.splitlines()[0])["id"])


def has_started(spark: SparkSession, checkpoint: str) -> bool:
    """True when a query has planned at least one batch in this checkpoint."""
    return bool(_batch_ids(spark, f"{checkpoint.rstrip('/')}/offsets"))


def parse_offset_log(text: str) -> list[Any]:
    """The per-source offsets of an ``offsets/<batch>`` file (pure), in source order."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("v"):
        raise ValueError("not a streaming offset log")
    return [None if line == "-" else json.loads(line) for line in lines[2:]]


def committed_kafka_offsets(spark: SparkSession, checkpoint: str, topic: str) -> dict[int, int]:
    """``{partition: next offset}`` of ``topic`` up to the last batch the query committed.

    Empty when no batch was committed. The offsets are those the committed batch
    planned to read to (exclusive), as the query resumes from them.
    """
    committed = _batch_ids(spark, f"{checkpoint.rstrip('/')}/commits")
    if not committed:
        return {}
    return planned_kafka_offsets(spark, checkpoint, topic, committed[-1]) or {}


def planned_kafka_offsets(
    spark: SparkSession, checkpoint: str, topic: str, batch_id: int
) -> dict[int, int] | None:
    """``{partition: offset}`` of ``topic`` that ``batch_id`` planned to read to (exclusive),
    which is where the next batch starts; None when the checkpoint has no such plan."""
    if batch_id < 0:
        return None
    text = _read_text(spark, f"{checkpoint.rstrip('/')}/offsets/{batch_id}")
    if text is None:
        return None
    for source in parse_offset_log(text):
        if isinstance(source, dict) and topic in source:
            return {int(p): int(o) for p, o in source[topic].items()}
    return None


def initial_kafka_offsets(
    spark: SparkSession, checkpoint: str, topic: str
) -> dict[int, int] | None:
    """``{partition: offset}`` of ``topic`` where the query's batch 0 starts (its Kafka
    source's ``sources/<n>/0``, written before batch 0 runs), None when there is none."""
    fs, hadoop_path = _fs_path(spark, f"{checkpoint.rstrip('/')}/sources")
    if not fs.exists(hadoop_path):
        return None
    for status in fs.listStatus(hadoop_path):
        text = _read_text(spark, f"{status.getPath().toString()}/0")
        offsets = parse_initial_offsets(text or "").get(topic)
        if offsets is not None:
            return {int(p): int(o) for p, o in offsets.items()}
    return None


def parse_initial_offsets(text: str) -> dict[str, Any]:
    """The offsets of a Kafka source's initial offset file (pure); {} when it is not one.

    Spark writes a zero byte first (for Spark 2.1.0's reader, SPARK-19517),
    then ``v1`` and the offsets as JSON on the next line.
    """
    lines = [line for line in text.lstrip("\x00").splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].startswith("v"):
        return {}
    offsets = json.loads(lines[1])
    return offsets if isinstance(offsets, dict) else {}


def created_at_ms(spark: SparkSession, checkpoint: str) -> int | None:
    """When the query first started in this checkpoint (its ``metadata`` file's time),
    None when it has not: every row a query of this checkpoint wrote came after it."""
    return _modified_ms(spark, f"{checkpoint.rstrip('/')}/metadata")


def committed_at_ms(spark: SparkSession, checkpoint: str, batch_id: int) -> int | None:
    """When the query committed ``batch_id`` (its ``commits/<batch>`` file's time), None if not.

    Batch N+1 runs only after batch N's commit file is written, so every row
    batch N+1 wrote was written after this time.
    """
    if batch_id < 0:
        return None
    return _modified_ms(spark, f"{checkpoint.rstrip('/')}/commits/{batch_id}")


def _modified_ms(spark: SparkSession, path: str) -> int | None:
    fs, hadoop_path = _fs_path(spark, path)
    if not fs.exists(hadoop_path):
        return None
    return int(fs.getFileStatus(hadoop_path).getModificationTime())
