"""Is each streaming query alive, idle or stalled? Read from its liveness metrics (pure).

A query reports after each batch and every few seconds while idle; one stuck
inside a batch (an unbounded wait, a hung sink) reports nothing. So a query
whose last report is older than its stall threshold (its trigger interval
plus ``spark.stall_after_s``) is stalled, whatever its process looks like.
``stack status`` and the streaming supervisor use this; the alert rule
``StreamingQueryStalled`` computes the same from the same two metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

LAST_REPORT = "streamhouse_stream_query_last_progress_timestamp_seconds"
THRESHOLD = "streamhouse_stream_query_stall_threshold_seconds"


@dataclass(frozen=True)
class QueryLiveness:
    """One query's liveness at a moment."""

    query: str
    silent_s: float
    threshold_s: float

    @property
    def stalled(self) -> bool:
        """True when the query has been silent for longer than its threshold."""
        return self.silent_s > self.threshold_s


def liveness(
    last_report_s: dict[str, float], threshold_s: dict[str, float], now_s: float
) -> list[QueryLiveness]:
    """Each query's liveness from its last report time and threshold (queries with both)."""
    return [
        QueryLiveness(query, max(0.0, now_s - last_report_s[query]), threshold_s[query])
        for query in sorted(last_report_s.keys() & threshold_s.keys())
    ]


def liveness_from_metrics(text: str, now_s: float) -> list[QueryLiveness]:
    """Each query's liveness from a Prometheus text exposition of the streaming job."""
    values: dict[str, dict[str, float]] = {LAST_REPORT: {}, THRESHOLD: {}}
    for family in text_string_to_metric_families(text):
        if family.name in values:
            for sample in family.samples:
                values[family.name][sample.labels.get("query", "")] = float(sample.value)
    return liveness(values[LAST_REPORT], values[THRESHOLD], now_s)


def describe(queries: list[QueryLiveness]) -> str:
    """One line for ``stack status``: every query reporting, or which ones are stalled."""
    if not queries:
        return "no query has reported yet"
    stalled = [q for q in queries if q.stalled]
    if not stalled:
        return f"{len(queries)} queries reporting"
    return "STALLED: " + ", ".join(
        f"{q.query} silent {q.silent_s:.0f} s (> {q.threshold_s:.0f} s)" for q in stalled
    )
