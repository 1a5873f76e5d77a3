"""Throughput benchmark of the load generator: acknowledged events/s for 1..N processes.

Every configuration runs ``runs`` times on a fresh topic (deleted afterwards);
the figure is the sustained *acknowledged* rate (acks=all), from the first
produce to the last acknowledgement, flush included. The median is reported
with min and max because this machine is shared and single runs vary.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from producers.loadgen.stats import LoadTotals


@dataclass(frozen=True)
class RunResult:
    """One benchmark run."""

    processes: int
    sent: int
    acked: int
    failed: int
    elapsed_s: float
    acked_per_s: float
    latency_p50_s: float | None
    latency_p99_s: float | None

    @classmethod
    def of(cls, processes: int, run: LoadTotals) -> RunResult:
        """The figures of one run's totals."""
        return cls(
            processes=processes,
            sent=run.sent,
            acked=run.acked,
            failed=run.failed,
            elapsed_s=round(run.elapsed_s, 3),
            acked_per_s=round(run.acked_per_s, 1),
            latency_p50_s=run.latency_quantile_s(0.5),
            latency_p99_s=run.latency_quantile_s(0.99),
        )


@dataclass(frozen=True)
class SeriesSummary:
    """Median, min and max acknowledged events/s of one configuration's runs."""

    processes: int
    runs: int
    median_acked_per_s: float
    min_acked_per_s: float
    max_acked_per_s: float
    failed: int


def summarise(results: Sequence[RunResult]) -> list[SeriesSummary]:
    """One summary per process count, in increasing process count."""
    by_processes: dict[int, list[RunResult]] = {}
    for result in results:
        by_processes.setdefault(result.processes, []).append(result)
    return [
        SeriesSummary(
            processes=processes,
            runs=len(runs),
            median_acked_per_s=round(statistics.median(r.acked_per_s for r in runs), 1),
            min_acked_per_s=min(r.acked_per_s for r in runs),
            max_acked_per_s=max(r.acked_per_s for r in runs),
            failed=sum(r.failed for r in runs),
        )
        for processes, runs in sorted(by_processes.items())
    ]


@dataclass
class BenchReport:
    """What ``benchmarks/results/loadgen.json`` holds."""

    command: str
    settings: dict[str, Any]
    summaries: list[SeriesSummary]
    runs: list[RunResult]
    machine: dict[str, Any] = field(default_factory=dict)
    finished_at: str = ""

    def write(self, path: Path) -> None:
        """Write the report as indented JSON (creating the folder)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def machine_info() -> dict[str, Any]:
    """Where the figures were measured (they mean little without it)."""
    import os

    import confluent_kafka

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "confluent_kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
    }


def run_series(
    process_counts: Sequence[int],
    runs: int,
    run_once: Callable[[int, int], LoadTotals],
    on_result: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Run each process count ``runs`` times, interleaved (1, 2, 1, 2, ...) so drift hits all alike.

    ``run_once(processes, run_index)`` performs one run and returns its totals.
    """
    results = []
    for index in range(runs):
        for processes in process_counts:
            result = RunResult.of(processes, run_once(processes, index))
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def timestamp() -> str:
    """UTC time of the report."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
