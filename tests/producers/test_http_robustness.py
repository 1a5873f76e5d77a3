"""Retries, Retry-After, backoff, the circuit breaker and fault switches: pure logic + loopback."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from core.settings import PROJECT_ROOT
from producers.breaker import CircuitBreaker
from producers.errors import PageError, SourceError
from producers.http_client import RetryPolicy, get_json, parse_retry_after
from producers.simulator import EventStore, SimulatorServer, start_simulator, stop_simulator
from producers.simulator.faults import FaultSwitches, choose_fault

SEED = PROJECT_ROOT / "tests" / "data" / "usgs" / "feed_1_day_m1.geojson"
NOW = datetime(2026, 11, 5, 12, 0, 0, tzinfo=UTC)
PARAMS = {"format": "geojson", "limit": "5"}


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert parse_retry_after("7", NOW) == 7.0
    later = NOW.replace(second=30)
    assert parse_retry_after(format_datetime(later, usegmt=True), NOW) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", NOW) == 0.0  # past: no wait
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetryPolicy(backoff_initial_s=1.0, backoff_max_s=5.0)
    rng = random.Random(3)
    waits = [[policy.backoff_s(retry, rng) for _ in range(200)] for retry in range(5)]
    assert [round(max(w)) for w in waits] == [1, 2, 4, 5, 5]
    assert all(min(w) >= 0 for w in waits)
    assert len({round(w, 6) for w in waits[2]}) > 150  # jittered, not lock-step


def test_the_breaker_opens_after_repeated_failures_and_backs_off_longer() -> None:
    breaker = CircuitBreaker(failures_to_open=3, open_s=10.0, open_max_s=25.0)
    assert [breaker.record_failure() for _ in range(5)] == [None, None, 10.0, 20.0, 25.0]
    assert breaker.is_open
    assert breaker.record_success() is True
    assert not breaker.is_open and breaker.record_failure() is None


def test_queued_faults_come_first_then_rates() -> None:
    switches = FaultSwitches().updated({"queue": ["truncate", "rate_limit"]})
    rng = random.Random(1)
    first, switches = choose_fault(switches, rng)
    second, switches = choose_fault(switches, rng)
    third, _ = choose_fault(switches, rng)
    assert (first, second, third) == ("truncate", "rate_limit", None)
    always = FaultSwitches(server_error_rate=1.0)
    assert choose_fault(always, rng)[0] == "server_error"
    with pytest.raises(ValueError, match="unknown fault"):
        FaultSwitches().updated({"queue": ["meteor"]})
    with pytest.raises(ValueError, match="unknown fault switch"):
        FaultSwitches().updated({"meteor_rate": 1.0})


@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    store = EventStore.from_geojson(SEED)
    server, thread = start_simulator("127.0.0.1", 0, store)
    yield server
    stop_simulator(server, thread)


class Waits:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> bool:
        self.seconds.append(seconds)
        return False


def fetch(server: SimulatorServer, waits: Waits, **policy: Any) -> Any:
    with httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0)) as client:
        return get_json(
            client,
            server.query_url,
            PARAMS,
            policy=RetryPolicy(**{"max_attempts": 4, "backoff_initial_s": 0.01, **policy}),
            sleep=waits,
            rng=random.Random(0),
        )


def test_429_is_retried_after_the_seconds_it_asks_for(server: SimulatorServer) -> None:
    server.faults = FaultSwitches(retry_after_s=3, queue=("rate_limit", "rate_limit"))
    waits = Waits()
    assert len(fetch(server, waits)["features"]) == 5
    assert waits.seconds == [3.0, 3.0]


def test_503_retry_after_as_a_date_is_honoured_and_capped(server: SimulatorServer) -> None:
    server.faults = FaultSwitches(
        retry_after_s=60, retry_after_as_date=True, queue=("unavailable",)
    )
    waits = Waits()
    fetch(server, waits, retry_after_max_s=20.0)
    assert waits.seconds == [20.0]
    server.faults = FaultSwitches(retry_after_s=2, retry_after_as_date=True, queue=("unavailable",))
    waits = Waits()
    fetch(server, waits)
    assert len(waits.seconds) == 1 and 0.0 <= waits.seconds[0] <= 2.0


def test_500_is_retried_with_backoff_until_the_attempts_run_out(server: SimulatorServer) -> None:
    server.faults = FaultSwitches(server_error_rate=1.0)
    waits = Waits()
    with pytest.raises(SourceError, match="gave up after 4 attempts") as raised:
        fetch(server, waits)
    assert raised.value.status_code == 500
    assert len(waits.seconds) == 3 and all(0 <= w <= 0.04 for w in waits.seconds)


def test_a_4xx_other_than_429_is_not_retried(server: SimulatorServer) -> None:
    waits = Waits()
    with httpx.Client() as client, pytest.raises(SourceError) as raised:
        get_json(client, server.query_url, {"limit": "x"}, policy=RetryPolicy(), sleep=waits)
    assert raised.value.status_code == 400
    assert waits.seconds == []


def test_a_read_timeout_is_retried(server: SimulatorServer) -> None:
    server.faults = FaultSwitches(slow_s=0.6, queue=("slow",))
    waits = Waits()
    with httpx.Client(timeout=httpx.Timeout(0.2, connect=1.0)) as client:
        body = get_json(
            client,
            server.query_url,
            PARAMS,
            policy=RetryPolicy(backoff_initial_s=0.01),
            sleep=waits,
        )
    assert len(body["features"]) == 5 and len(waits.seconds) == 1


@pytest.mark.parametrize("fault", ["truncate", "malformed"])
def test_an_unreadable_200_body_is_a_page_error_with_the_raw_bytes(
    server: SimulatorServer, fault: str
) -> None:
    server.faults = FaultSwitches(queue=(fault,))
    with pytest.raises(PageError) as raised:
        fetch(server, Waits())
    assert "not valid JSON" in raised.value.reason
    assert raised.value.raw and (fault != "truncate" or raised.value.raw.startswith(b'{"type"'))
    assert server.served == set()  # an unreadable response served nothing
