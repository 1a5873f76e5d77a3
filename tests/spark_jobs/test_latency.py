"""Cold start and steady percentiles from per-row latencies (pure pandas)."""

from __future__ import annotations

import pandas as pd

from spark_jobs import latency

START = 1_000_000


def rows(points: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame(points, columns=["sent_ms", "latency_ms"])


def steady_after(cold_s: int, total_s: int, cold_latency: int = 20_000) -> pd.DataFrame:
    """One row per 100 ms: latency high for ``cold_s`` seconds, then around 2 s."""
    points = []
    for tenth in range(total_s * 10):
        sent = START + tenth * 100
        points.append((sent, cold_latency if tenth < cold_s * 10 else 2_000 + tenth % 7 * 50))
    return rows(points)


def test_the_cold_start_ends_where_latency_settles() -> None:
    data = steady_after(cold_s=25, total_s=120)
    settled = latency.settle_ms(data, START, START + 60_000)
    assert settled == START + 25_000


def test_a_later_spike_is_not_a_cold_start() -> None:
    data = steady_after(cold_s=10, total_s=120)
    data.loc[(data.sent_ms > START + 80_000) & (data.sent_ms < START + 82_000), "latency_ms"] = (
        30_000
    )
    assert latency.settle_ms(data, START, START + 60_000) == START + 10_000


def test_too_short_to_settle_is_said() -> None:
    # Less than 30 s of quiet buckets: the run never showed a settled latency.
    data = steady_after(cold_s=10, total_s=35)
    assert latency.settle_ms(data, START, START + 20_000) is None


def test_percentiles_and_buckets() -> None:
    data = rows([(START + i * 1000, i) for i in range(101)])
    p = latency.Percentiles.of(data["latency_ms"])
    assert (p.p50_ms, p.p95_ms, p.p99_ms, p.rows) == (50.0, 95.0, 99.0, 101)
    buckets = latency.bucket_p95(data, START)
    assert list(buckets.index[:3]) == [0, 5, 10]
    assert latency.Percentiles.of(data["latency_ms"].iloc[:0]).p95_ms is None


def test_the_sustained_rate_target_is_unmeasured_when_the_run_never_tried_it() -> None:
    """A run of 1,000 and 5,000 events/s says nothing about 20,000/s: '-', not 'not met'."""
    from spark_jobs.benchmark import Comparison, targets
    from spark_jobs.latency import Percentiles

    none = Percentiles(None, None, None, 0)

    def at(rate: int) -> Comparison:
        return Comparison(rate, none, none, none, None, None, None, True)

    goal = "sustained >= 20,000/s"
    assert targets([at(1000), at(5000)], {}, 5000, [])[goal] is None
    assert targets([at(5000), at(20000)], {}, 5000, [])[goal] is False
    assert targets([at(5000), at(20000)], {}, 20000, [])[goal] is True
