"""Load generator: the generated stream's shape (pure) and its encoding (valid for the schema)."""

from __future__ import annotations

import io
import json
import uuid
from collections import Counter
from itertools import count
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from core.schemas import load_schema_str
from core.settings import RegistrySettings
from producers.loadgen.bench import RunResult, summarise
from producers.loadgen.encoding import ChangeEncoder, split_schema, wire_header
from producers.loadgen.generator import (
    ON_TIME_JITTER_MS,
    EventGenerator,
    EventKind,
    LoadProfile,
    synthetic_quakes,
    to_record,
)
from producers.loadgen.runner import LoadPlan
from producers.loadgen.stats import (
    LATENCY_BUCKETS_S,
    ROW,
    LoadGenCollector,
    WorkerCounters,
    totals,
)
from producers.serialization import load_schema, make_registry_client, register_value_schema

SCHEMA = load_schema_str("quake_change.avsc")
PROFILE = LoadProfile(entities=5_000, duplicates=0.05, out_of_order=0.05, late=0.01)
N = 100_000


def _clock(start_ms: int = 1_700_000_000_000, step_ms: int = 1) -> Any:
    ticks = count(start_ms, step_ms)
    return lambda: next(ticks)


def _stream(profile: LoadProfile = PROFILE, n: int = N, **kwargs: Any) -> list[Any]:
    generator = EventGenerator(profile, seed=42, clock_ms=_clock(), **kwargs)
    return [generator.next() for _ in range(n)]


@pytest.fixture(scope="module")
def stream() -> list[Any]:
    return _stream()


def test_shares_of_each_kind_are_honoured(stream: list[Any]) -> None:
    kinds = Counter(spec.kind for spec in stream)
    for kind, share in (
        (EventKind.DUPLICATE, 0.05),
        (EventKind.OUT_OF_ORDER, 0.05),
        (EventKind.LATE, 0.01),
    ):
        assert kinds[kind] / N == pytest.approx(share, rel=0.08), kind


def test_duplicates_repeat_a_version_already_sent(stream: list[Any]) -> None:
    sent: dict[tuple[str, int], Any] = {}
    for spec in stream:
        version = (spec.entity_id, spec.updated_ms)
        if spec.kind is EventKind.DUPLICATE:
            original = sent[version]  # KeyError: a duplicate of something never sent
            assert (original.event_time_ms, original.quake_index) == (
                spec.event_time_ms,
                spec.quake_index,
            )
        else:
            assert version not in sent, "a non-duplicate repeats a version"
            sent[version] = spec
    distinct_versions = len(sent)
    assert N - distinct_versions == sum(1 for s in stream if s.kind is EventKind.DUPLICATE)


def test_out_of_order_versions_come_after_a_newer_one(stream: list[Any]) -> None:
    newest: dict[str, int] = {}
    behind = 0
    for spec in stream:
        if spec.kind is EventKind.DUPLICATE:
            continue
        is_behind = spec.updated_ms < newest.get(spec.entity_id, 0)
        assert is_behind == (spec.kind is EventKind.OUT_OF_ORDER), spec
        behind += is_behind
        newest[spec.entity_id] = max(newest.get(spec.entity_id, 0), spec.updated_ms)
    assert behind > 0


def test_late_events_are_far_behind_and_others_are_not(stream: list[Any]) -> None:
    for spec in stream:
        lag_ms = spec.updated_ms - spec.event_time_ms
        if spec.kind is EventKind.LATE:
            assert lag_ms >= PROFILE.late_by_ms
        elif spec.kind is EventKind.NEW_VERSION:
            assert lag_ms <= ON_TIME_JITTER_MS


def test_entity_cardinality_and_a_fixed_seed(stream: list[Any]) -> None:
    ids = {spec.entity_id for spec in stream}
    assert len(ids) == PROFILE.entities  # 100k draws over 5k ids hit every one
    assert _stream(n=1000) == stream[:1000]
    other = EventGenerator(PROFILE, seed=43, clock_ms=_clock())
    assert [other.next() for _ in range(1000)] != stream[:1000]


def test_workers_own_disjoint_entities() -> None:
    profile = LoadProfile(entities=10)
    first = {s.entity_id for s in _stream(profile, 2000, worker=0, workers=3)}
    second = {s.entity_id for s in _stream(profile, 2000, worker=1, workers=3)}
    assert first.isdisjoint(second)
    assert len(first) + len(second) == 4 + 3
    with pytest.raises(ValueError, match="cannot be split"):
        EventGenerator(LoadProfile(entities=2), seed=1, clock_ms=_clock(), worker=2, workers=3)


def test_no_faults_gives_only_new_versions() -> None:
    kinds = Counter(s.kind for s in _stream(LoadProfile(entities=100), 5000))
    assert kinds == {EventKind.NEW_VERSION: 5000}


@pytest.mark.parametrize(
    "changes",
    [{"duplicates": 1.0}, {"out_of_order": 0.5, "late": 0.1}, {"entities": 0}, {"late_by_ms": 10}],
)
def test_impossible_profiles_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LoadProfile(**changes)


def test_synthetic_quakes_match_the_schema() -> None:
    parsed = fastavro.parse_schema(json.loads(SCHEMA))
    quakes = synthetic_quakes(500, seed=3)
    assert quakes == synthetic_quakes(500, seed=3)
    for spec in _stream(LoadProfile(entities=100, quake_pool=500, late=0.1), 500):
        record = to_record(spec, quakes, produced_at_ms=1, source="loadgen", run_id="r")
        assert fastavro.validation.validate(record, parsed, raise_errors=True)
    assert len({q["place"] for q in quakes}) > 400
    assert all(q["region"] for q in quakes)


def test_encoding_equals_the_whole_record_and_decodes_with_the_registry() -> None:
    registry = make_registry_client(RegistrySettings(url=f"mock://{uuid.uuid4().hex}"))
    schema_id = register_value_schema(
        registry, "lg", load_schema("quake_change.avsc"), compatibility=None
    )
    quakes = synthetic_quakes(64, seed=5)
    encoder = ChangeEncoder(SCHEMA, schema_id, quakes, source="loadgen", run_id="run-1")
    parsed = fastavro.parse_schema(json.loads(SCHEMA))
    deserializer = AvroDeserializer(registry)
    ctx = SerializationContext("lg", MessageField.VALUE)
    for produced_at_ms, spec in enumerate(_stream(LoadProfile(entities=50, quake_pool=64), 300)):
        value = encoder.encode(spec, produced_at_ms)
        record = to_record(
            spec, quakes, produced_at_ms=produced_at_ms, source="loadgen", run_id="run-1"
        )
        whole = io.BytesIO()
        fastavro.schemaless_writer(whole, parsed, record)
        assert value == wire_header(schema_id) + whole.getvalue()
        assert deserializer(value, ctx) == record


def test_header_and_split() -> None:
    assert wire_header(7) == b"\x00\x00\x00\x00\x07"
    with pytest.raises(ValueError):
        wire_header(-1)
    envelope, quake = split_schema(SCHEMA)
    assert [f["name"] for f in envelope["fields"]][-1] == "produced_at_ms"
    assert quake["name"] == "Quake"
    reordered = json.loads(SCHEMA)
    reordered["fields"].insert(0, reordered["fields"].pop())
    with pytest.raises(ValueError, match="last field"):
        split_schema(json.dumps(reordered))


def test_totals_latency_and_prometheus_view() -> None:
    shared = [0] * (2 * ROW)
    for worker, (acked, latency_s) in enumerate(((10, 0.003), (30, 0.2))):
        counters = WorkerCounters()
        counters.values[1] = acked  # ACKED
        counters.values[0] = acked + 1  # SENT
        counters.values[3] = 1_000_000_000 * (1 + worker)  # START_NS
        counters.values[4] = 3_000_000_000  # END_NS
        counters.values[6] = 1  # DONE
        for _ in range(acked):
            counters.record_latency(latency_s)
        counters.publish(shared, worker)
    snapshot = totals(shared, 2, now_ns=10**12)
    assert (snapshot.sent, snapshot.acked, snapshot.workers_done) == (42, 40, 2)
    assert snapshot.elapsed_s == pytest.approx(2.0)
    assert snapshot.acked_per_s == pytest.approx(20.0)
    assert snapshot.latency_quantile_s(0.2) == 0.005
    assert snapshot.latency_quantile_s(0.99) == 0.25
    assert snapshot.latency_sum_s == pytest.approx(10 * 0.003 + 30 * 0.2)

    metrics = {m.name: m for m in LoadGenCollector(shared, 2, "t", lambda: 10**12).collect()}
    assert metrics["streamhouse_loadgen_events_acked"].samples[0].value == 40
    histogram = metrics["streamhouse_loadgen_produce_latency_seconds"].samples
    buckets = {s.labels["le"]: s.value for s in histogram if s.name.endswith("_bucket")}
    assert buckets["0.005"] == 10 and buckets["+Inf"] == 40
    assert len(buckets) == len(LATENCY_BUCKETS_S) + 1
    assert metrics["streamhouse_loadgen_achieved_rate"].samples[0].value == pytest.approx(20.0)


def test_plan_splits_events_over_workers() -> None:
    plan = LoadPlan(
        topic="t",
        schema_str=SCHEMA,
        schema_id=1,
        producer_config={},
        profile=PROFILE,
        processes=3,
        rate_per_s=None,
        events=10,
        duration_s=None,
        seed=1,
        source_name="loadgen",
        run_id="r",
        flush_timeout_s=1.0,
    )
    assert [plan.worker_events(w) for w in range(3)] == [4, 3, 3]
    with pytest.raises(ValueError, match="exactly one"):
        LoadPlan(**{**plan.__dict__, "duration_s": 5.0})


def test_benchmark_summary_is_median_min_max() -> None:
    def run(processes: int, rate: float) -> RunResult:
        return RunResult(processes, 1, 1, 0, 1.0, rate, None, None)

    results = [run(1, r) for r in (5.0, 1.0, 3.0)] + [run(2, r) for r in (8.0, 6.0)]
    one, two = summarise(results)
    assert (one.processes, one.median_acked_per_s, one.min_acked_per_s, one.max_acked_per_s) == (
        1,
        3.0,
        1.0,
        5.0,
    )
    assert (two.median_acked_per_s, two.runs) == (7.0, 2)


def test_a_history_spreads_event_times_over_its_span_and_keeps_them_per_entity() -> None:
    from producers.loadgen.generator import HistoryClock

    start, end, n = 1_700_000_000_000, 1_700_000_000_000 + 30 * 86_400_000, 30_000
    clock = HistoryClock(start, end, n)
    profile = LoadProfile(entities=200_000, stable_event_time=True)
    generator = EventGenerator(profile, seed=3, clock_ms=clock)
    specs, stamps = [], []
    for _ in range(n):
        stamps.append(clock())  # the Kafka timestamp the runner gives the record
        specs.append(generator.next())
        clock.advance()
    assert stamps[0] == start and stamps[-1] == end - (end - start) // n
    origins = {s.entity_id: s.event_time_ms for s in reversed(specs)}
    born = Counter(max(0, t - start) // 86_400_000 for t in origins.values())
    # Quakes are born every day, about as many each day; a first version is on time.
    per_day = [born[d] for d in range(30)]
    assert sorted(born) == list(range(30)) and max(per_day) < 1.5 * min(per_day)
    first: dict[str, int] = {}
    for spec, stamp in zip(specs, stamps, strict=True):
        if spec.entity_id not in first:
            first[spec.entity_id] = spec.event_time_ms
            assert stamp - ON_TIME_JITTER_MS <= spec.event_time_ms <= stamp
        assert spec.event_time_ms == first[spec.entity_id]  # revisions keep the origin time


def test_a_history_clock_refuses_an_empty_span() -> None:
    from producers.loadgen.generator import HistoryClock

    with pytest.raises(ValueError, match="ends after it starts"):
        HistoryClock(10, 10, 5)


def test_history_span_ends_now_or_at_a_past_time() -> None:
    from core.errors import UserFacingError
    from streamhouse.cli_load import history_span_ms

    now = 1_800_000_000_000
    assert history_span_ms(2, None, now) == (now - 2 * 86_400_000, now)
    start, end = history_span_ms(1, "2026-01-02", now)
    assert (end - start, end) == (86_400_000, 1_767_312_000_000)
    with pytest.raises(UserFacingError, match="in the future"):
        history_span_ms(1, "2099-01-01", now)
