"""Kafka side of the load generator: producer processes, pacing, delivery reports.

The parent registers the schema once, starts ``processes`` worker processes
(``spawn``: librdkafka's threads do not survive a ``fork``), releases them
together and watches their shared counters; each worker owns every P-th
entity, its own idempotent producer and its own share of the rate and of the
event count.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from core.settings import KafkaSettings, LoadGenSettings, RegistrySettings
from producers.loadgen.encoding import ChangeEncoder
from producers.loadgen.generator import (
    EventGenerator,
    HistoryClock,
    LoadProfile,
    synthetic_quakes,
)
from producers.loadgen.stats import (
    ACKED,
    DONE,
    END_NS,
    FAILED,
    KIND_BASE,
    ROW,
    SENT,
    START_NS,
    LoadTotals,
    WorkerCounters,
    totals,
)

log = logging.getLogger(__name__)

#: Events produced between two looks at the clock, the stop flag and the shared counters.
BATCH = 500
#: How many delivery failures a worker logs one by one (the rest are only counted).
LOGGED_FAILURES = 10


def producer_config(
    kafka: KafkaSettings, load: LoadGenSettings, *, client_id: str
) -> dict[str, Any]:
    """librdkafka properties of a load-generator producer: idempotent, acks=all, batched.

    ``linger.ms`` lets a batch fill before it is sent and, with large
    ``batch.size`` / ``batch.num.messages``, amortises each request over
    thousands of records; ``lz4`` compresses Avro's repeated strings at a small
    CPU cost (the producers share two cores with the broker). The local queue is
    raised so a fast producer waits on the broker, not on ``BufferError``.
    """
    return {
        **kafka.client_config(),
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": load.linger_ms,
        "batch.size": load.batch_size_bytes,
        "batch.num.messages": load.batch_num_messages,
        "compression.type": load.compression,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
    }


@dataclass(frozen=True)
class LoadPlan:
    """Everything a run needs; picklable, handed to every worker process."""

    topic: str
    schema_str: str
    schema_id: int
    producer_config: dict[str, Any]
    profile: LoadProfile
    processes: int
    rate_per_s: float | None
    events: int | None
    duration_s: float | None
    seed: int
    source_name: str
    run_id: str
    flush_timeout_s: float
    #: (start, end) epoch ms: event times and Kafka timestamps spread over this
    #: span of the past (``HistoryClock``); None: now, the wall clock.
    history_ms: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if (self.events is None) == (self.duration_s is None):
            raise ValueError("give exactly one of events and duration_s")
        if self.history_ms is not None and self.events is None:
            raise ValueError("a history run needs a number of events, not a duration")

    def worker_events(self, worker: int) -> int | None:
        """This worker's share of ``events`` (the remainder goes to the first workers)."""
        if self.events is None:
            return None
        share, extra = divmod(self.events, self.processes)
        return share + (1 if worker < extra else 0)


class _Deliveries:
    """Delivery callback: counts acknowledgements, failures and produce latency."""

    def __init__(self, counters: WorkerCounters, topic: str) -> None:
        self.counters = counters
        self.topic = topic

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        values = self.counters.values
        if error is None:
            values[ACKED] += 1
            latency = message.latency()
            if latency is not None:
                self.counters.record_latency(latency)
            return
        values[FAILED] += 1
        if values[FAILED] <= LOGGED_FAILURES:
            log.error("delivery to %s failed for key %s: %s", self.topic, message.key(), error)


def run_worker(
    plan: LoadPlan, worker: int, *, shared: Any, ready: Any, start: Any, stop: Any
) -> None:
    """One producer process: generate, encode, produce until the plan's events/duration or stop."""
    # Ctrl-C reaches the whole process group: the parent turns it into `stop`,
    # so the worker still flushes what it produced.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    counters = WorkerCounters()
    values = counters.values
    quakes = synthetic_quakes(plan.profile.quake_pool, seed=plan.seed)
    encoder = ChangeEncoder(
        plan.schema_str, plan.schema_id, quakes, source=plan.source_name, run_id=plan.run_id
    )
    config = {**plan.producer_config, "on_delivery": _Deliveries(counters, plan.topic)}
    producer = Producer(config)
    remaining = plan.worker_events(worker)
    history = (
        HistoryClock(*plan.history_ms, max(remaining or 1, 1))
        if plan.history_ms is not None
        else None
    )
    generator = EventGenerator(
        plan.profile,
        seed=plan.seed,
        clock_ms=history if history is not None else lambda: time.time_ns() // 1_000_000,
        worker=worker,
        workers=plan.processes,
    )
    rate = plan.rate_per_s / plan.processes if plan.rate_per_s else None
    topic, produce, poll, encode = plan.topic, producer.produce, producer.poll, encoder.encode
    next_event, now_ns = generator.next, time.time_ns
    ready.set()
    start.wait()
    began = time.monotonic()
    deadline = began + plan.duration_s if plan.duration_s is not None else None
    values[START_NS] = time.monotonic_ns()
    while not stop.is_set():
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        batch = BATCH
        if rate is not None:
            batch = min(BATCH, int((now - began) * rate) - values[SENT])
            if batch <= 0:
                poll(0.002)  # serve delivery reports while waiting for the schedule
                continue
        if remaining is not None:
            batch = min(batch, remaining - values[SENT])
            if batch <= 0:
                break
        for _ in range(batch):
            spec = next_event()
            value = encode(spec, now_ns() // 1_000_000)
            # A history run stamps the record with its simulated now (default: the broker's
            # CreateTime, now), so lateness is judged as if it had been sent then.
            timestamp = history() if history is not None else 0
            while True:
                try:
                    produce(topic, value, spec.entity_id, timestamp=timestamp)
                    break
                except BufferError:
                    poll(0.05)  # the local queue is full: let the broker catch up
            if history is not None:
                history.advance()
            poll(0)
            values[KIND_BASE + spec.kind] += 1
        values[SENT] += batch
        counters.publish(shared, worker)
    producer.flush(plan.flush_timeout_s)
    values[END_NS] = time.monotonic_ns()
    values[DONE] = 1
    counters.publish(shared, worker)


ProgressCallback = Callable[[LoadTotals], None]


def run_load(
    plan: LoadPlan,
    *,
    on_progress: ProgressCallback | None = None,
    progress_interval_s: float = 0.5,
    stop: Any = None,
    on_shared: Callable[[Any], None] | None = None,
) -> LoadTotals:
    """Run ``plan`` in ``plan.processes`` processes and return the totals when all are done.

    ``on_progress`` gets a snapshot every ``progress_interval_s``; ``stop`` (a
    ``multiprocessing`` event of the spawn context, optional) ends the run
    early, after which every worker still flushes what it produced;
    ``on_shared`` receives the shared counter array (e.g. for ``/metrics``).
    """
    context = mp.get_context("spawn")
    shared = context.Array("q", ROW * plan.processes, lock=False)
    if on_shared is not None:
        on_shared(shared)
    stop = stop if stop is not None else context.Event()
    start = context.Event()
    readies = [context.Event() for _ in range(plan.processes)]
    workers = [
        context.Process(
            target=run_worker,
            args=(plan, index),
            kwargs={"shared": shared, "ready": readies[index], "start": start, "stop": stop},
            name=f"loadgen-{index}",
            daemon=True,
        )
        for index in range(plan.processes)
    ]
    for process in workers:
        process.start()
    try:
        for ready, process in zip(readies, workers, strict=True):
            while not ready.wait(0.5):
                if not process.is_alive():
                    raise RuntimeError(f"load-generator process {process.name} died at start-up")
        start.set()
        while any(process.is_alive() for process in workers):
            for process in workers:
                process.join(progress_interval_s / plan.processes)
            if on_progress is not None:
                on_progress(totals(shared[:], plan.processes, time.monotonic_ns()))
    finally:
        stop.set()
        start.set()
        for process in workers:
            process.join(plan.flush_timeout_s + 10)
            if process.is_alive():
                process.terminate()
    failed_exit = [p.name for p in workers if p.exitcode not in (0, None)]
    result = totals(shared[:], plan.processes, time.monotonic_ns())
    if failed_exit:
        raise RuntimeError(f"load-generator processes {', '.join(failed_exit)} failed")
    return result


def new_run_id() -> str:
    """Identifier of one run, written to every event's ``poll_id``."""
    return f"loadgen-{uuid.uuid4().hex[:12]}"


def ensure_topic(kafka: KafkaSettings, topic: str, *, timeout_s: float = 30.0) -> bool:
    """Create ``topic`` (``kafka.topic_partitions`` partitions) unless it exists; True if created.

    The embedded broker does not auto-create topics, and a producer writing to
    a missing topic only fails after ``message.timeout.ms``.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka.client_config())
    if topic in admin.list_topics(timeout=timeout_s).topics:
        return False
    new = NewTopic(topic, num_partitions=kafka.topic_partitions, replication_factor=1)
    admin.create_topics([new])[topic].result(timeout_s)
    return True


def delete_topic(kafka: KafkaSettings, topic: str, *, timeout_s: float = 30.0) -> None:
    """Delete ``topic`` (the benchmark's scratch topics), waiting for the controller."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka.client_config())
    admin.delete_topics([topic])[topic].result(timeout_s)


def register_schema(registry: RegistrySettings, topic: str) -> tuple[str, int]:
    """Register ``quake_change.avsc`` under ``<topic>-value`` once; (schema text, schema id)."""
    from producers.serialization import (
        load_schema,
        make_registry_client,
        register_value_schema,
    )

    client = make_registry_client(registry)
    schema = load_schema(VALUE_SCHEMA)
    schema_id = register_value_schema(client, topic, schema, compatibility=registry.compatibility)
    return schema.schema_str, schema_id


#: The event the load generator writes: the same schema as the poller's.
VALUE_SCHEMA = "quake_change.avsc"
