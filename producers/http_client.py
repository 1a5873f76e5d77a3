"""The HTTP side of a source: one configured client and one robust GET of a JSON page.

Kept apart from the declarative source so paging and mapping never see a
retry. What is retried and how:

- connect / read timeouts and broken connections, 429, 500, 502, 503, 504:
  retried up to ``max_attempts`` with exponential backoff and full jitter
  (a random wait in ``[0, min(max, initial * 2**n)]``, so many pollers do not
  retry in lock-step);
- a ``Retry-After`` header (seconds or an HTTP date) replaces the backoff,
  capped at ``retry_after_max_s``;
- any other 4xx is the request's own fault: retrying it blindly would only
  repeat it, so it fails at once (``SourceError`` with the body).

A 200 whose body is not a JSON object (malformed, truncated), is larger than
``max_body_bytes`` or nests deeper than ``max_json_depth`` raises ``PageError``
with the raw bytes (the head of them, for a body over the limit), for the
dead-letter topic. The body is read as a stream and the read stops at the
limit, so a hostile response never fills the poller's memory.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from core.settings import SourceSettings
from producers.errors import PageError, SourceError
from producers.json_guard import JsonLimitError, parse_json
from producers.metrics import HTTP_RESPONSES, RETRY_WAIT_SECONDS, RETRY_WAITS

USER_AGENT = "streamhouse-poller/0.1"
# How much of an error body goes into the exception: enough for the USGS
# text/plain error (about 400 bytes), not a whole HTML page.
_ERROR_BODY_CHARS = 600
#: An error body is read this far at most (a source's refusal text is a few hundred bytes).
_ERROR_BODY_MAX_BYTES = 64 * 1024
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})

#: Waits ``seconds``; returns True when the wait was interrupted (stop requested).
Sleep = Callable[[float], object]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a request is retried."""

    max_attempts: int = 5
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0

    @classmethod
    def from_settings(cls, settings: SourceSettings) -> RetryPolicy:
        """The policy configured for a source."""
        return cls(
            max_attempts=settings.max_attempts,
            backoff_initial_s=settings.backoff_initial_s,
            backoff_max_s=settings.backoff_max_s,
            retry_after_max_s=settings.retry_after_max_s,
        )

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff before retry number ``retry`` (0-based)."""
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2**retry)
        return rng.uniform(0, ceiling)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP date.

    None when absent or unreadable; a date in the past means 0.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def make_http_client(settings: SourceSettings) -> httpx.Client:
    """An ``httpx.Client`` with the source's connect and read timeouts."""
    timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
    return httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT})


@dataclass(frozen=True)
class BodyLimits:
    """What a page may be: its size in bytes and how deeply its JSON nests."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_json_depth: int = 64

    @classmethod
    def from_settings(cls, settings: SourceSettings) -> BodyLimits:
        """The limits configured for a source."""
        return cls(settings.max_body_bytes, settings.max_json_depth)


def read_body(response: httpx.Response, limits: BodyLimits) -> bytes:
    """The body of a streamed response, or ``PageError`` once it passes the size limit.

    A ``Content-Length`` over the limit is refused before reading; a body that
    grows past it (no or a false length) is cut there. The error keeps the
    head of the body that was read.
    """
    url = str(response.url)
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise PageError(
            f"body of {int(declared)} bytes is over the limit of {limits.max_body_bytes} bytes",
            raw=b"",
            url=url,
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limits.max_body_bytes:
            head = b"".join(chunks)
            raise PageError(
                f"body is over the limit of {limits.max_body_bytes} bytes (read stopped there)",
                raw=head,
                url=url,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _head_of(response: httpx.Response, max_bytes: int) -> str:
    """At most ``max_bytes`` of an error body, as text (the rest is not read)."""
    head = bytearray()
    for chunk in response.iter_bytes():
        head.extend(chunk[: max_bytes - len(head)])
        if len(head) >= max_bytes:
            break
    return bytes(head).decode(response.encoding or "utf-8", errors="replace")


def parse_page(raw: bytes, url: str, limits: BodyLimits) -> Mapping[str, Any]:
    """The JSON object of a 200 body, or ``PageError`` with the raw body."""
    try:
        body = parse_json(raw, max_depth=limits.max_json_depth)
    except JsonLimitError as error:
        raise PageError(str(error), raw=raw, url=url) from error
    if not isinstance(body, Mapping):
        raise PageError("body is JSON but not an object", raw=raw, url=url)
    return body


def get_json(
    client: httpx.Client,
    url: str,
    params: Mapping[str, str],
    *,
    policy: RetryPolicy | None = None,
    sleep: Sleep | None = None,
    rng: random.Random | None = None,
    source: str = "",
    limits: BodyLimits | None = None,
) -> Mapping[str, Any]:
    """GET ``url`` with ``params`` and return the JSON object of the body, retrying per ``policy``.

    Without a policy the request is tried once. Raises ``SourceError`` (status
    code and the start of the body) when it cannot be read, ``PageError`` when
    a 200 body is not a JSON object. ``sleep`` returning True (a stop was
    requested) ends the retries at once.
    """
    policy = policy or RetryPolicy(max_attempts=1)
    limits = limits or BodyLimits()
    rng = rng or random.Random()
    wait: Sleep = sleep or _blocking_sleep
    last_error: SourceError | None = None
    for attempt in range(policy.max_attempts):
        try:
            with client.stream("GET", url, params=dict(params)) as response:
                HTTP_RESPONSES.labels(source=source, status=str(response.status_code)).inc()
                if response.status_code == httpx.codes.OK:
                    raw = read_body(response, limits)
                    return parse_page(raw, str(response.url), limits)
                error_body = _head_of(response, _ERROR_BODY_MAX_BYTES)
        except httpx.HTTPError as error:
            kind = "timeout" if isinstance(error, httpx.TimeoutException) else "error"
            HTTP_RESPONSES.labels(source=source, status=kind).inc()
            last_error = SourceError(f"GET {url} failed: {error!r}", url=url)
            retry_after = None
        else:
            last_error = SourceError(
                f"GET {response.url} returned HTTP {response.status_code}: "
                f"{error_body[:_ERROR_BODY_CHARS]}",
                status_code=response.status_code,
                url=str(response.url),
                body=error_body,
            )
            if response.status_code not in RETRYABLE_STATUS:
                raise last_error
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), datetime.now(tz=UTC)
            )
        if attempt + 1 == policy.max_attempts:
            break
        if retry_after is not None:
            delay, reason = min(retry_after, policy.retry_after_max_s), "retry_after"
        else:
            delay, reason = policy.backoff_s(attempt, rng), "backoff"
        RETRY_WAITS.labels(source=source, reason=reason).inc()
        RETRY_WAIT_SECONDS.labels(source=source, reason=reason).inc(delay)
        if wait(delay):
            break
    assert last_error is not None
    raise SourceError(
        f"{last_error} (gave up after {attempt + 1} attempts)",
        status_code=last_error.status_code,
        url=last_error.url,
        body=last_error.body,
    )


def _blocking_sleep(seconds: float) -> bool:
    import time

    time.sleep(seconds)
    return False
