"""Hostile input never crashes the poller and never becomes an over-size record.

A 200 MB body, a NaN literal, JSON nested 10,000 deep, an infinite number, a
record Kafka refuses as too large, a dead letter larger than a Kafka message:
each ends as a page or record error with its reason (the dead-letter topic's
business), never as an uncaught exception. The simulator serves the hostile
bodies over loopback; the limits are settings.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.settings import PROJECT_ROOT, Settings, SourceSettings
from producers.errors import PageError, RecordError
from producers.http_client import BodyLimits, RetryPolicy, get_json, read_body
from producers.json_guard import JsonLimitError, NonFiniteNumber, depth_of, parse_json
from producers.kafka_io import capped_payload
from producers.mapping import feature_to_quake_change
from producers.poller import poll_once
from producers.simulator import EventStore, SimulatorServer, start_simulator, stop_simulator
from producers.simulator.faults import FaultSwitches

SEED = PROJECT_ROOT / "tests" / "data" / "usgs" / "feed_1_day_m1.geojson"
FEATURE: dict[str, Any] = json.loads(SEED.read_text())["features"][0]
PARAMS = {"format": "geojson", "limit": "5"}


@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    server, thread = start_simulator("127.0.0.1", 0, EventStore.from_geojson(SEED))
    yield server
    stop_simulator(server, thread)


def fetch(server: SimulatorServer, limits: BodyLimits) -> Any:
    with httpx.Client(timeout=httpx.Timeout(30.0, connect=2.0)) as client:
        return get_json(client, server.query_url, PARAMS, policy=RetryPolicy(), limits=limits)


def test_a_200_mb_body_is_refused_at_the_limit_not_read(server: SimulatorServer) -> None:
    server.faults = FaultSwitches(huge_body_mb=200, queue=("huge_body",))
    began = time.monotonic()
    with pytest.raises(PageError) as raised:
        fetch(server, BodyLimits(max_body_bytes=1 << 20))
    assert "over the limit of 1048576 bytes" in raised.value.reason
    assert len(raised.value.raw) <= 1 << 20
    assert time.monotonic() - began < 10, "refused before 200 MB crossed the loopback"


def test_a_body_without_an_honest_length_is_cut_at_the_limit() -> None:
    chunks = (b"x" * 65_536 for _ in range(100))  # 6.4 MB, no Content-Length
    response = httpx.Response(200, content=chunks, request=httpx.Request("GET", "http://h/q"))
    with pytest.raises(PageError) as raised:
        read_body(response, BodyLimits(max_body_bytes=1 << 20))
    assert "read stopped there" in raised.value.reason
    assert len(raised.value.raw) <= 1 << 20


def test_json_nested_10000_deep_is_a_page_error(server: SimulatorServer) -> None:
    server.faults = FaultSwitches(queue=("deep_nesting",))
    with pytest.raises(PageError, match="nests deeper than 64 levels"):
        fetch(server, BodyLimits())
    with pytest.raises(JsonLimitError, match="deeper than 8"):
        parse_json(b'{"a": [[[[[[[[[1]]]]]]]]]}', max_depth=8)
    assert depth_of({"a": [1, {"b": []}]}, 10) == 4  # object, array, object, array


def test_nan_and_infinity_are_refused_per_record(server: SimulatorServer) -> None:
    server.faults = FaultSwitches(queue=("nan",))
    page = fetch(server, BodyLimits())
    assert isinstance(page["features"][0]["properties"]["mag"], NonFiniteNumber)
    with pytest.raises(RecordError, match="NaN is not a number JSON allows"):
        feature_to_quake_change(page["features"][0], source="s", poll_id="p", produced_at_ms=0)
    assert all(isinstance(f["properties"]["mag"], NonFiniteNumber) for f in page["features"])
    for literal in ("Infinity", "-Infinity", "1e999"):
        marked = json.loads(json.dumps(FEATURE))
        marked["properties"]["mag"] = "__mag__"
        raw = json.dumps(marked).replace('"__mag__"', literal).encode()
        with pytest.raises(RecordError, match=r"not a (finite )?number"):
            feature_to_quake_change(
                parse_json(raw, max_depth=64), source="s", poll_id="p", produced_at_ms=0
            )


def test_dead_letters_are_capped_and_say_so() -> None:
    raw = b"y" * 3_000_000
    head, headers = capped_payload(raw, 512 * 1024)
    assert head == raw[: 512 * 1024]
    assert dict(headers) == {
        "truncated": b"true",
        "original_size": b"3000000",
        "original_sha256": hashlib.sha256(raw).hexdigest().encode(),
    }
    assert capped_payload(b"small", 1024) == (b"small", [])


def test_a_record_kafka_refuses_is_dead_lettered_and_the_poll_commits(
    server: SimulatorServer, make_publisher: Any
) -> None:
    # A title of 2 MB makes an Avro value over the producer's limit: produce()
    # raises, nothing is queued, and the record goes to the dead-letter topic
    # (cut to the cap) in the same transaction as the others.
    victim = FEATURE["id"]
    server.store.revise(victim, FEATURE["properties"]["updated"] + 1, {"title": "t" * 2_000_000})
    publisher, producer, _ = make_publisher(max_message_bytes=1_000_000)
    publisher.dead_letter_max_bytes = 64 * 1024
    settings = Settings(source=SourceSettings(base_url=server.query_url, page_size=500))
    summary = poll_once(settings, publisher=publisher, flush_timeout_s=1.0)
    assert summary.ok and summary.invalid == 1
    letters = [m for m in producer.delivered if m.topic() == publisher.dead_letter_topic]
    assert len(letters) == 1
    headers = dict(letters[0].headers() or [])
    assert headers["error_class"] == b"RecordRejectedError"
    assert b"MSG_SIZE_TOO_LARGE" in headers["reason"] or b"too large" in headers["reason"].lower()
    assert headers["truncated"] == b"true" and len(letters[0].value()) == 64 * 1024
    changes = [m for m in producer.delivered if m.topic() == publisher.topic]
    assert len(changes) == summary.produced > 0


def test_a_page_of_nan_records_is_dead_lettered_record_by_record(
    server: SimulatorServer, make_publisher: Any
) -> None:
    # Dead-lettering a record that holds a NaN once crashed the poller: the
    # record could not be written back as JSON for the dead letter.
    server.faults = FaultSwitches(queue=("nan",))
    publisher, producer, _ = make_publisher()
    settings = Settings(source=SourceSettings(base_url=server.query_url, page_size=500))
    summary = poll_once(settings, publisher=publisher, flush_timeout_s=1.0)
    letters = [m for m in producer.delivered if m.topic() == publisher.dead_letter_topic]
    assert summary.invalid == len(letters) > 0
    headers = dict(letters[0].headers() or [])
    assert b"NaN is not a number JSON allows" in headers["reason"]
    assert b'"mag":"NaN"' in letters[0].value()
