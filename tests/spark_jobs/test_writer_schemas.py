"""When the ingest may quarantine a record for its schema id (pure logic, a stand-in registry).

A restarted Apicurio serves its API while it replays its journal topic: for a
few seconds it answers from a partial store, "no such subject" for a subject
that exists. The batch is decoded, and a record quarantined, only on answers
given once the registry is ready; otherwise the batch fails like an outage
and is decoded again (``tests/integration/test_streaming_recovery.py`` shows
the restart on the real registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core.settings import RegistrySettings
from spark_jobs.schemas import (
    RegistryNotReadyError,
    RegistryUnavailableError,
    WriterSchemas,
    readiness_check,
)

SUBJECT = "usgs.quake_changes-value"
NOT_READY = r"did not answer the readiness check \(every schema loaded\)"


@dataclass
class Registered:
    schema_id: int
    schema: object


@dataclass
class Schema:
    schema_str: str


@dataclass
class StoreClient:
    """The three calls ``WriterSchemas`` makes, answered from a dict of subjects."""

    subjects: dict[str, list[int]] = field(default_factory=dict)

    def get_versions(self, subject: str) -> list[int]:
        if subject not in self.subjects:
            raise SchemaRegistryError(404, 40401, f"Subject '{subject}' not found.")
        return list(range(1, len(self.subjects[subject]) + 1))

    def get_version(self, subject: str, version: int) -> Registered:
        schema_id = self.subjects[subject][version - 1]
        return Registered(schema_id, Schema(f"schema {schema_id}"))

    def get_schema(self, schema_id: int) -> Schema:
        if not any(schema_id in ids for ids in self.subjects.values()):
            raise SchemaRegistryError(404, 40403, f"Schema {schema_id} not found")
        return Schema(f"schema {schema_id}")


def ready_after(failures: int) -> Callable[[], None]:
    """A readiness check that fails ``failures`` times, then passes."""
    left = [failures]

    def check() -> None:
        if left[0] > 0:
            left[0] -= 1
            raise RegistryNotReadyError("its readiness check answered 503")

    return check


def schemas(client: StoreClient, ready: Callable[[], None], retry_s: float = 0.0) -> WriterSchemas:
    registry = RegistrySettings(url="http://127.0.0.1:1/apis/ccompat/v7")
    return WriterSchemas(registry, retry_s, client=client, ready=ready, sleep=lambda _: None)


def test_a_registry_still_loading_fails_the_batch_before_it_is_decoded() -> None:
    # The partial store knows schema 1 (another subject registered it first) but not
    # the subject yet. Decoded with that answer, bronze would commit the batch without
    # its records, and its re-run (the full answer) would find them nowhere to go.
    client = StoreClient({"other-value": [1]})
    writer = schemas(client, ready_after(failures=1))
    with pytest.raises(RegistryUnavailableError, match=NOT_READY):
        writer.of_subject(SUBJECT)


def test_a_registry_that_turns_ready_within_the_budget_gives_the_full_answer() -> None:
    client = StoreClient({"other-value": [1], SUBJECT: [1, 2]})
    writer = schemas(client, ready_after(failures=3), retry_s=30.0)
    assert writer.of_subject(SUBJECT) == {1: "schema 1", 2: "schema 2"}


def test_ids_are_not_judged_while_the_registry_is_loading() -> None:
    # The registry restarted between the decoding and the quarantine's question.
    writer = schemas(StoreClient({"other-value": [1]}), ready_after(failures=1))
    with pytest.raises(RegistryUnavailableError, match=NOT_READY):
        writer.why_unknown(SUBJECT, [1])


def test_a_ready_registry_s_answers_quarantine_with_their_reason() -> None:
    client = StoreClient({"other-value": [7], SUBJECT: [1]})
    writer = schemas(client, ready_after(failures=0))
    assert writer.why_unknown(SUBJECT, [7, 99, 7]) == {
        7: f"schema id 7 is not a version of {SUBJECT} (another subject's schema)",
        99: "unknown schema id 99: the registry has no such id",
    }


def test_the_readiness_check_fails_until_it_answers_200_and_a_missing_one_passes() -> None:
    answers = iter([503, 200])
    loading = readiness_check(
        RegistrySettings(), httpx.MockTransport(lambda _: httpx.Response(next(answers)))
    )
    assert loading is not None
    with pytest.raises(RegistryNotReadyError, match="answered 503"):
        loading()
    loading()
    # A Confluent registry has no /health/ready: asked once, then its answers are trusted.
    calls: list[str] = []

    def not_found(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(404)

    missing = readiness_check(RegistrySettings(), httpx.MockTransport(not_found))
    assert missing is not None
    missing()
    missing()
    assert calls == ["http://127.0.0.1:8081/health/ready"]


def test_the_readiness_url_is_on_the_registry_s_host() -> None:
    registry = RegistrySettings(url="https://sr.example:8443/apis/ccompat/v7")
    assert registry.ready_url() == "https://sr.example:8443/health/ready"
    assert RegistrySettings(ready_path="").ready_url() is None
