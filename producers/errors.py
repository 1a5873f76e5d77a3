"""Errors the producers raise, so callers can route them by kind."""

from __future__ import annotations


class RecordError(ValueError):
    """One source record cannot become a change event (missing or mistyped field).

    The poller routes such records to the dead-letter topic instead of failing
    the whole poll, so the error carries a machine-readable ``reason`` and the
    record's id when it could be read.
    """

    def __init__(self, reason: str, *, record_id: str | None = None, field: str | None = None):
        self.reason = reason
        self.record_id = record_id
        self.field = field
        context = []
        if record_id is not None:
            context.append(f"record {record_id!r}")
        if field is not None:
            context.append(f"field {field!r}")
        super().__init__(f"{reason} ({', '.join(context)})" if context else reason)


class SourceError(RuntimeError):
    """The source could not be read this time (HTTP error, timeout, unreadable body).

    Transient from the poller's point of view: the poll fails, the cursor does
    not move and the next poll retries the same range. ``body`` is the error
    response's text when one arrived (a source's refusal of a too-large query
    is recognised from it, see ``producers.sources.base.QuerySplit``).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        url: str | None = None,
        body: str | None = None,
    ):
        self.status_code = status_code
        self.url = url
        self.body = body
        super().__init__(message)


class PublishError(RuntimeError):
    """Records could not be handed to Kafka (serialization, registry or local queue)."""


class RecordRejectedError(PublishError):
    """Kafka refused one record before queueing it (too large, bad header): dead-letter it."""


class PageError(RuntimeError):
    """A response arrived but its body cannot be read as a page (malformed or truncated JSON).

    Carries the raw body so the poller can dead-letter it exactly as received.
    """

    def __init__(self, reason: str, *, raw: bytes, url: str | None = None):
        self.reason = reason
        self.raw = raw
        self.url = url
        super().__init__(f"{reason} ({url})" if url else reason)


class ProducerFencedError(PublishError):
    """The transactional producer can never commit again (fenced by a newer instance, fatal)."""
