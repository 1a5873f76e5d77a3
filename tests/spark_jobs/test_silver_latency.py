"""Latency to silver: the produced-at histogram of a MERGE's rows, its series from zero."""

from __future__ import annotations

from pyspark.sql import SparkSession

from monitoring.stream_metrics import LATENCY_BUCKETS_S, BulkHistogram, observe_latency_histogram
from spark_jobs.silver_stream import produced_histogram


def test_produced_histogram_counts_rows_per_100_ms(spark: SparkSession) -> None:
    rows = spark.createDataFrame(
        [(1_000,), (1_050,), (1_099,), (1_100,), (5_000,)], "produced_at_ms long"
    )
    assert produced_histogram(rows) == [(1_000, 3), (1_100, 1), (5_000, 1)]


def test_a_declared_sink_is_exposed_at_zero_before_its_first_commit() -> None:
    histogram = BulkHistogram("test_latency_seconds", "test", LATENCY_BUCKETS_S)
    histogram.declare("silver")
    (family,) = histogram.collect()
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("test_latency_seconds_count", None)] == 0
    assert samples[("test_latency_seconds_bucket", "+Inf")] == 0
    # Declaring again after observations keeps them.
    histogram.add("silver", [1] * len(LATENCY_BUCKETS_S), 1, 0.1)
    histogram.declare("silver")
    (family,) = histogram.collect()
    assert {s.name: s.value for s in family.samples}["test_latency_seconds_count"] == 1


def test_silver_latency_is_commit_time_minus_produced_at() -> None:
    from monitoring import stream_metrics

    before = _count(stream_metrics.END_TO_END_LATENCY, "silver-test")
    observe_latency_histogram("silver-test", [(1_000, 2), (3_000, 1)], committed_ms=11_000)
    (family,) = stream_metrics.END_TO_END_LATENCY.collect()
    values = {
        (s.name, s.labels.get("le")): s.value
        for s in family.samples
        if s.labels["sink"] == "silver-test"
    }
    assert _count(stream_metrics.END_TO_END_LATENCY, "silver-test") == before + 3
    assert values[("streamhouse_end_to_end_latency_seconds_bucket", "7.5")] == 0
    assert values[("streamhouse_end_to_end_latency_seconds_bucket", "10.0")] == 3
    assert values[("streamhouse_end_to_end_latency_seconds_bucket", "+Inf")] == 3
    assert values[("streamhouse_end_to_end_latency_seconds_sum", None)] == 2 * 10.0 + 8.0


def _count(histogram: BulkHistogram, sink: str) -> float:
    (family,) = histogram.collect()
    return sum(
        s.value for s in family.samples if s.name.endswith("_count") and s.labels["sink"] == sink
    )
