"""Avro schemas for the jobs: the reader schema from schemas/, writer schemas from the registry.

A registry that cannot answer (unreachable, 5xx, timing out) is an outage,
not bad data: ``WriterSchemas`` retries it for a bounded time and then raises
``RegistryUnavailableError``, so the batch fails and is retried from its
checkpoint. Only an answer the registry gives (this id does not exist, or it
is a version of another subject) makes a record undecodable for good, and
only an answer it gives once it has loaded every schema: a restarted
Apicurio serves its API while it still replays its journal topic, and
answers from that partial store say "no such subject" for schemas that
exist. ``WriterSchemas`` asks the registry's readiness check before it
answers; a registry still loading fails the batch like an outage.
"""

from __future__ import annotations

import functools
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import httpx
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core.schemas import load_schema_str
from core.settings import RegistrySettings

log = logging.getLogger(__name__)
T = TypeVar("T")

#: HTTP answers that say something definite about the schema (not an outage).
_DEFINITE = frozenset({404, 422})


class RegistryUnavailableError(RuntimeError):
    """The registry did not answer usefully within the retry budget; retry the batch later."""


class RegistryNotReadyError(RuntimeError):
    """The registry answers but has not loaded every schema yet: its answers may be partial."""


def readiness_check(
    registry: RegistrySettings, transport: httpx.BaseTransport | None = None
) -> Callable[[], None] | None:
    """A call that raises ``RegistryNotReadyError`` unless the registry's readiness check
    answers 200; None when the settings name no such check.

    A registry without that path (404: a Confluent registry at Apicurio's default
    path) is taken as one that serves only complete answers, with one warning.
    """
    url = registry.ready_url()
    if url is None:
        return None
    verify: ssl.SSLContext | bool = True
    if registry.ssl_ca_location is not None:
        verify = ssl.create_default_context(cafile=str(registry.ssl_ca_location))

    # One connection kept open: a new one per batch cost 50 ms here, a kept one 2 ms.
    client = httpx.Client(
        auth=registry.basic_auth(), verify=verify, timeout=registry.timeout_s, transport=transport
    )
    missing: list[bool] = []

    def check() -> None:
        if missing:
            return
        status = client.get(url).status_code
        if status == 404:
            missing.append(True)
            log.warning(
                "the schema registry has no readiness check at %s: its answers are taken as "
                "complete; set registry.ready_path to its check, or empty to silence this",
                url,
            )
        elif status != 200:
            raise RegistryNotReadyError(f"its readiness check {url} answered {status}")

    return check


def reader_schema(name: str = "quake_change") -> str:
    """The latest schema of an event, as defined in ``schemas/<name>.avsc``."""
    return load_schema_str(f"{name}.avsc")


def is_outage(error: Exception) -> bool:
    """True when a registry call failed for a reason other than a definite answer."""
    if isinstance(error, SchemaRegistryError):
        return error.http_status_code not in _DEFINITE
    return True  # connection refused, timeout, TLS error, ...


class WriterSchemas:
    """The writer schemas of a subject, by id; each version is fetched from the registry once."""

    def __init__(
        self,
        registry: RegistrySettings,
        retry_s: float = 60.0,
        *,
        client: Any | None = None,
        ready: Callable[[], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client or SchemaRegistryClient(registry.client_config())
        self._ready = ready if ready is not None else readiness_check(registry)
        self._url = registry.url
        self._retry_s = retry_s
        self._sleep = sleep
        # (subject, version) -> (schema id, schema); a registered version never changes.
        self._versions: dict[tuple[str, int], tuple[int, str]] = {}

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, retried with backoff while the registry has an outage, up to the budget."""
        deadline = time.monotonic() + self._retry_s
        wait = 0.5
        while True:
            try:
                return call()
            except Exception as error:
                if not is_outage(error):
                    raise
                if time.monotonic() + wait > deadline:
                    raise RegistryUnavailableError(
                        f"the schema registry at {self._url} did not answer {what} for "
                        f"{self._retry_s:.0f} s: {error}"
                    ) from error
                log.warning("schema registry %s failed (%s); retrying in %.1f s", what, error, wait)
                self._sleep(wait)
                wait = min(wait * 2, 10.0)

    def of_subject(self, subject: str) -> dict[int, str]:
        """Every version of ``subject`` as {schema id: schema}; empty when it has none yet.

        One registry call per use (the version list) plus one per version not
        seen before. A record is produced only after its schema is registered,
        so every id a batch read from Kafka can hold is in the answer, and the
        batch is decoded without first scanning it for the ids it holds.

        The registry's readiness check is asked first (one more call): an
        answer from a registry still replaying its journal may lack versions,
        and a batch decoded with it would commit those records' absence to
        bronze; its re-run, decoded with the full answer, would then find
        them nowhere to go. Not ready is an outage: the batch fails first.
        """
        self._check_ready()
        try:
            versions = self._call(
                f"the versions of {subject}", lambda: self._client.get_versions(subject)
            )
        except SchemaRegistryError as error:
            if error.http_status_code == 404:
                return {}
            raise
        for version in versions:
            if (subject, version) not in self._versions:
                registered = self._call(
                    f"version {version} of {subject}",
                    functools.partial(self._client.get_version, subject, version),
                )
                self._versions[(subject, version)] = (
                    int(registered.schema_id),
                    str(registered.schema.schema_str),
                )
        return {
            schema_id: schema
            for (name, _), (schema_id, schema) in sorted(self._versions.items())
            if name == subject
        }

    def _check_ready(self) -> None:
        if self._ready is not None:
            self._call("the readiness check (every schema loaded)", self._ready)

    def why_unknown(self, subject: str, schema_ids: Iterable[int]) -> dict[int, str]:
        """Why each of ``schema_ids`` (not a version of ``subject``) can never decode here.

        The registry is asked about each id: one it does not know, or one that
        belongs to another subject, is a definite answer, quarantined with that
        reason. Raises ``RegistryUnavailableError`` when it cannot answer, or
        is still loading its schemas, so the records wait for the registry
        instead of being quarantined.
        """
        self._check_ready()
        reasons: dict[int, str] = {}
        for schema_id in sorted(set(schema_ids)):
            try:
                self._call(
                    f"schema id {schema_id}", functools.partial(self._client.get_schema, schema_id)
                )
            except SchemaRegistryError as error:
                if error.http_status_code != 404:
                    raise
                reasons[schema_id] = f"unknown schema id {schema_id}: the registry has no such id"
            else:
                reasons[schema_id] = (
                    f"schema id {schema_id} is not a version of {subject} "
                    "(another subject's schema)"
                )
        return reasons
