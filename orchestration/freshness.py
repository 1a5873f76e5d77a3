"""How fresh the lake is: dbt's source freshness of the tables the stream writes, and the
streaming job's Kafka lag, each against a threshold.

The freshness thresholds are the ones the dbt sources declare
(``dbt/models/staging/lake/_lake__sources.yml``: warn after an hour, error
after a day), so there is one definition; the lag threshold is a setting.
The lag comes from the streaming job's own metric through Prometheus (the
query's offsets behind the topic's end, as Spark reports them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from core.errors import UserFacingError
from core.settings import Settings
from marts.profiles import dbt_work_dir

LAG_QUERY = "max by (query) (streamhouse_stream_kafka_lag_offsets)"


@dataclass(frozen=True)
class SourceFreshness:
    """One source table's freshness as dbt judged it."""

    source: str
    status: str  # pass, warn, error, runtime error
    max_loaded_at: str | None
    age_s: float | None
    criteria: dict[str, Any]


def parse_sources_json(document: dict[str, Any]) -> list[SourceFreshness]:
    """The freshness of each source in dbt's ``sources.json``."""
    results = []
    for item in document.get("results", []):
        unique_id = str(item.get("unique_id", "?"))
        results.append(
            SourceFreshness(
                source=".".join(unique_id.split(".")[-2:]),
                status=str(item.get("status", "?")),
                max_loaded_at=item.get("max_loaded_at"),
                age_s=item.get("max_loaded_at_time_ago_in_s"),
                criteria=dict(item.get("criteria") or {}),
            )
        )
    return results


def source_freshness(settings: Settings) -> list[SourceFreshness]:
    """``dbt source freshness`` on the lake's sources (a SparkSession must be active)."""
    from marts.runner import run_dbt

    run_dbt(settings, ["source", "freshness"])
    path = dbt_work_dir(settings) / "target" / "sources.json"
    return parse_sources_json(json.loads(path.read_text()))


def stale(results: list[SourceFreshness]) -> list[SourceFreshness]:
    """The sources past their error threshold (or whose freshness could not be read)."""
    return [r for r in results if r.status not in ("pass", "warn")]


def consumer_lag(settings: Settings) -> dict[str, float]:
    """The streaming queries' Kafka lag (offsets behind the end), by query, from Prometheus."""
    try:
        response = httpx.get(
            f"{settings.prometheus_url}/api/v1/query", params={"query": LAG_QUERY}, timeout=10.0
        )
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise UserFacingError(
            f"Prometheus at {settings.prometheus_url} did not answer ({type(error).__name__}): "
            "start it with `streamhouse stack up prometheus`."
        ) from error
    samples = response.json()["data"]["result"]
    return {str(s["metric"].get("query", "?")): float(s["value"][1]) for s in samples}


def lag_problems(lags: dict[str, float], threshold: int) -> list[str]:
    """What is wrong with the lag: a query past the threshold, or no query reporting at all."""
    if not lags:
        return ["no streaming query reports its Kafka lag: is the streaming job running?"]
    return [
        f"{query} is {lag:.0f} offsets behind (threshold {threshold})"
        for query, lag in sorted(lags.items())
        if lag > threshold
    ]
