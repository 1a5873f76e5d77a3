"""Cold start and steady percentiles from per-row latencies (pure pandas)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spark_jobs import latency
from spark_jobs.cpu_profile import CpuSample

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
    assert targets([at(1000), at(5000)], None, 5000, [])[goal] is None
    assert targets([at(5000), at(20000)], None, 5000, [])[goal] is False
    assert targets([at(5000), at(20000)], None, 20000, [])[goal] is True


def _flat(start_ms: int, seconds: int, latency_ms: int) -> pd.DataFrame:
    return rows([(start_ms + tenth * 100, latency_ms) for tenth in range(seconds * 10)])


def test_warm_ups_give_the_cold_start_and_stay_out_of_each_layout_s_comparison(
    tmp_path: Path,
) -> None:
    """Each job's warm-up measures its cold start only; the measured phases of each layout
    are compared with the floor's phase at the same rate, silver's latency beside them."""
    from spark_jobs.benchmark import PhaseResult, analyse, plot

    def phase(job: str, rate: int, start_s: int, warmup: bool = False) -> PhaseResult:
        return PhaseResult(
            rate, job, 60.0, warmup, started_ms=START + start_s * 1000,
            ended_ms=START + (start_s + 60) * 1000,
        )  # fmt: skip

    jobs = {"floor": 0, "two-drivers": 60, "one-driver": 120}
    phases = [phase(job, 1000, at, warmup=True) for job, at in jobs.items()]
    phases += [phase("floor", 1000, 180), phase("two-drivers", 1000, 240)]
    phases += [phase("one-driver", 1000, 300)]
    # Every warm-up: 20 s at 30 s latency, then settled; the measured phases are flat.
    steady = {"floor": 2_000, "two-drivers": 6_000, "one-driver": 4_000}
    data = {}
    for job, at in jobs.items():
        for series in ("floor",) if job == "floor" else ("bronze", "windows", "silver"):
            extra = {"windows": 1_000, "silver": 60_000}.get(series, 0)
            warm = steady_after(cold_s=20, total_s=60, cold_latency=30_000)
            warm["sent_ms"] += at * 1000
            measured_at = {"floor": 180, "two-drivers": 240, "one-driver": 300}[job]
            flat = _flat(START + measured_at * 1000, 60, steady[job] + extra)
            data[job, series] = pd.concat([warm, flat], ignore_index=True)
    started = {job: START + at * 1000 for job, at in jobs.items()}
    # The two-drivers layout's background driver busy in the first half of its phase.
    samples = [
        CpuSample(START + s * 1000, role, 0.7 if role.endswith("background") and s < 270 else 0.1)
        for s in range(400)
        for role in ("floor", "two-drivers ingest", "two-drivers background", "one-driver driver")
    ]
    cold, comparisons = analyse(data, phases, started, samples)
    assert cold["floor"]["floor"] == 20.0
    assert cold["two-drivers"] == {"bronze": 20.0, "windows": 20.0}
    by_layout = {c.layout: c for c in comparisons}
    assert set(by_layout) == {"two-drivers", "one-driver"}
    # The warm-ups' 30 s latencies are in no steady percentile.
    assert by_layout["two-drivers"].bronze.p99_ms == 6_000
    assert by_layout["two-drivers"].bronze_p95_ratio == 3.0
    assert by_layout["one-driver"].bronze_p95_ratio == 2.0
    assert by_layout["one-driver"].windows_p95_over_floor_s == 3.0
    # Silver is reported beside them (its minutes are in no ratio and no cold start).
    assert by_layout["two-drivers"].silver is not None
    assert by_layout["two-drivers"].silver.p95_ms == 66_000
    # Each phase's CPU by role; bronze split by the background driver's CPU where there is one.
    measured = phases[-1]
    assert measured.cpu_s["one-driver driver"] == 6.0
    assert measured.cpu_s["other jobs"] == 18.0
    split = by_layout["two-drivers"].bronze_by_background
    assert split is not None
    assert split.busy_share is not None
    assert 0.4 < split.busy_share < 0.6
    assert by_layout["one-driver"].bronze_by_background is None
    plot(data, phases, started, tmp_path / "plot.png", samples)
    assert (tmp_path / "plot.png").stat().st_size > 0
