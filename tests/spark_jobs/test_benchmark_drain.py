"""When a benchmark phase is over: every query has read what the phase produced.

Ingest's figures are read from what the stream's own metrics serve, in
Prometheus' text format, so a renamed counter fails here and not as a drain
that never ends. The derived queries are judged by their checkpoints against
their source tables' Delta logs, laid out here as Spark and Delta write them
(offsets as the benchmark's own lake held them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES
from monitoring.stream_metrics import ROWS_WRITTEN
from spark_jobs.aggregates_stream import HOUR_QUERY, MINUTE_QUERY
from spark_jobs.benchmark import DELTA_READERS, Progress, behind, has_read_all, progress_of
from spark_jobs.bronze_stream import QUERY_NAME as BRONZE_QUERY
from spark_jobs.late_stream import QUERY_NAME as LATE_QUERY
from spark_jobs.silver_stream import QUERY_NAME as SILVER_QUERY

if TYPE_CHECKING:
    from lake.tables import Table


def _served() -> Progress:
    text = generate_latest(REGISTRY).decode()
    return progress_of([s for f in text_string_to_metric_families(text) for s in f.samples])


def test_ingest_progress_is_read_from_what_the_stream_metrics_serve() -> None:
    before = _served()
    ROWS_WRITTEN.labels("bronze", "bronze").inc(10)
    ROWS_WRITTEN.labels("bronze", "quarantine").inc(2)
    ROWS_WRITTEN.labels("silver", "silver").inc(99)  # not an ingest sink
    after = _served()
    assert after.bronze_rows - before.bronze_rows == 10
    assert after.quarantined_rows - before.quarantined_rows == 2


def _offset(version: int, index: int) -> dict[str, object]:
    return {"sourceVersion": 1, "reservoirId": "r", "reservoirVersion": version, "index": index}


def test_a_delta_source_has_read_all_once_its_offset_passes_the_latest_version() -> None:
    assert has_read_all(_offset(21, -1), latest_version=20)  # all of 20 read
    assert has_read_all(_offset(11, 0), latest_version=11)  # its batch ended on 11's file
    assert not has_read_all(_offset(20, -1), latest_version=20)  # 20 not read yet
    assert not has_read_all(_offset(15, 0), latest_version=20)
    assert not has_read_all(None, latest_version=0)  # no batch committed
    assert has_read_all(None, latest_version=None)  # no table: nothing to read


def test_every_query_that_reads_a_delta_table_is_waited_for() -> None:
    assert set(DELTA_READERS) == {MINUTE_QUERY, HOUR_QUERY, SILVER_QUERY, LATE_QUERY}


def _commit_table(settings: Settings, table: Table, version: int) -> None:
    log = Path(table.path(settings.lake_uri)) / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    (log / f"{version:020d}.json").write_text("{}\n")


def _commit_batch(settings: Settings, query: str, batch: int, offset: dict[str, object]) -> None:
    job, sink, _ = DELTA_READERS[query]
    checkpoint = Path(settings.checkpoint_dir(job, sink.name))
    (checkpoint / "offsets").mkdir(parents=True, exist_ok=True)
    (checkpoint / "commits").mkdir(parents=True, exist_ok=True)
    metadata = json.dumps({"batchWatermarkMs": 0, "batchTimestampMs": 0, "conf": {}})
    (checkpoint / "offsets" / str(batch)).write_text(f"v1\n{metadata}\n{json.dumps(offset)}")
    (checkpoint / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}')


def test_a_job_is_drained_when_each_checkpoint_covers_its_source(tmp_path: Path) -> None:
    # No ingest metrics are served on these ports: ingest counts as behind until the
    # topic is empty, so the test passes produced=0 and judges the derived queries.
    ports = Settings().runtime.ports.model_copy(
        update={"stream_metrics": 1, "stream_background_metrics": 1}
    )
    base = Settings()
    settings = base.model_copy(
        update={
            "lake_root": str(tmp_path / "lake"),
            "checkpoint_root": None,
            "runtime": base.runtime.model_copy(update={"ports": ports}),
        }
    )
    for version in range(21):
        _commit_table(settings, BRONZE_QUAKE_CHANGES, version)
    minute_table = DELTA_READERS[MINUTE_QUERY][1]
    for version in range(12):
        _commit_table(settings, minute_table, version)
    assert behind(settings, produced=0) == list(DELTA_READERS)  # nothing committed yet

    _commit_batch(settings, MINUTE_QUERY, 12, _offset(21, -1))
    _commit_batch(settings, HOUR_QUERY, 2, _offset(11, 0))
    _commit_batch(settings, LATE_QUERY, 2, _offset(21, -1))
    _commit_batch(settings, SILVER_QUERY, 1, _offset(14, -1))  # its 2-minute trigger is due
    assert behind(settings, produced=0) == [SILVER_QUERY]
    # Planned but not committed: still behind.
    job, sink, _ = DELTA_READERS[SILVER_QUERY]
    planned = Path(settings.checkpoint_dir(job, sink.name)) / "offsets" / "2"
    planned.write_text(f"v1\n{{}}\n{json.dumps(_offset(21, -1))}")
    assert behind(settings, produced=0) == [SILVER_QUERY]

    _commit_batch(settings, SILVER_QUERY, 2, _offset(21, -1))
    assert behind(settings, produced=0) == []
    assert behind(settings, produced=1) == [BRONZE_QUERY]  # a record bronze does not hold
