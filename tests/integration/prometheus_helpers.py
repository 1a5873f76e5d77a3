"""Reading the test stack's Prometheus: instant queries, and polling until a query's answer
is the one wanted (Prometheus scrapes every few seconds)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from core.settings import Settings


def values(settings: Settings, expr: str, by: str | None = None) -> dict[str, float]:
    """``expr``'s samples now, as floats, keyed by label ``by`` (default: the whole label
    set, printed)."""
    answer = httpx.get(
        f"{settings.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10
    ).json()
    assert answer["status"] == "success", (expr, answer)
    return {
        (s["metric"][by] if by else str(s["metric"])): float(s["value"][1])
        for s in answer["data"]["result"]
    }


def eventually(
    settings: Settings,
    expr: str,
    done: Callable[[dict[str, float]], bool],
    timeout_s: float = 60,
    by: str | None = None,
) -> dict[str, float]:
    """``expr``'s samples once ``done`` accepts them, or the last ones after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    seen = values(settings, expr, by)
    while not done(seen) and time.monotonic() < deadline:
        time.sleep(1)
        seen = values(settings, expr, by)
    return seen
