"""The simulator's HTTP server: the FDSN event query on loopback.

Only wiring: the request handler turns a GET into ``parse_query`` ->
``select_events`` -> ``page`` -> a rendered body, reading the ``EventStore``
and the simulated clock held by the server. Fault switches (429, 5xx, slow or
truncated responses) will hook in here, between parsing and rendering.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast
from urllib.parse import parse_qsl, urlsplit

from producers.simulator.query import (
    DEFAULT_MAX_EVENT_AGE_MS,
    DEFAULT_SERVICE_LIMIT,
    FdsnError,
    page,
    parse_query,
    select_events,
)
from producers.simulator.render import query_metadata, render_error, render_feature_collection
from producers.simulator.store import EventStore, SimulatedClock, wall_clock_ms

log = logging.getLogger(__name__)

SERVICE_PATH = "/fdsnws/event/1"
QUERY_PATH = f"{SERVICE_PATH}/query"
NOT_FOUND = 404


@dataclass(frozen=True)
class SimulatorConfig:
    """Service-level settings of the simulated FDSN service."""

    service_limit: int = DEFAULT_SERVICE_LIMIT
    max_event_age_ms: int = DEFAULT_MAX_EVENT_AGE_MS
    # The newest API version seen in a real GeoJSON response (fixtures, 2024).
    api_version: str = "1.14.0"


class SimulatorServer(ThreadingHTTPServer):
    """A threaded HTTP server holding the store, the clock and the config its handlers use."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        store: EventStore,
        *,
        clock: Callable[[], int],
        config: SimulatorConfig,
    ) -> None:
        super().__init__(address, FdsnRequestHandler)
        self.store = store
        self.clock = clock
        self.config = config

    @property
    def base_url(self) -> str:
        """``http://host:port`` the server listens on (the real port when bound to 0)."""
        host, port = self.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else host
        return f"http://{host_text}:{port}"

    @property
    def query_url(self) -> str:
        """URL of the event query endpoint: the poller's ``source.base_url``."""
        return self.base_url + QUERY_PATH


class FdsnRequestHandler(BaseHTTPRequestHandler):
    """Answers GET requests for the FDSN event query; everything else is 404."""

    server_version = "streamhouse-fdsn-simulator"

    def do_GET(self) -> None:
        """Serve one query (or a 404 for any other path)."""
        server = cast(SimulatorServer, self.server)
        now_ms = server.clock()
        parts = urlsplit(self.path)
        try:
            if parts.path != QUERY_PATH:
                raise FdsnError(NOT_FOUND, f"No service at {parts.path}.")
            body = self._query(server, parts.query, now_ms)
        except FdsnError as error:
            self._send(error.status, "text/plain", self._error_body(server, error, now_ms))
            return
        self._send(200, "application/json", body)

    def _query(self, server: SimulatorServer, query_string: str, now_ms: int) -> str:
        config = server.config
        query = parse_query(
            parse_qsl(query_string, keep_blank_values=True), service_limit=config.service_limit
        )
        selected = select_events(
            server.store.current(),
            query,
            now_ms=now_ms,
            max_event_age_ms=config.max_event_age_ms,
        )
        features = [v.feature for v in page(selected, query, service_limit=config.service_limit)]
        metadata = query_metadata(
            # The service stamps responses with its clock in whole seconds.
            generated_ms=now_ms - now_ms % 1000,
            url=server.base_url + self.path,
            api=config.api_version,
            count=len(features),
            limit=query.limit,
            offset=query.offset,
        )
        return render_feature_collection(features, metadata)

    def _error_body(self, server: SimulatorServer, error: FdsnError, now_ms: int) -> str:
        return render_error(
            error.status,
            error.message,
            request_uri=self.path,
            usage_url=server.base_url + SERVICE_PATH,
            submitted_ms=now_ms,
            version=server.config.api_version,
        )

    def _send(self, status: int, content_type: str, body: str) -> None:
        payload = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Request log lines go to ``logging`` (debug), not to stderr."""
        log.debug("%s %s", self.address_string(), format % args)


def start_simulator(
    host: str,
    port: int,
    store: EventStore,
    *,
    clock: Callable[[], int] | None = None,
    config: SimulatorConfig | None = None,
    poll_interval_s: float = 0.05,
) -> tuple[SimulatorServer, threading.Thread]:
    """Serve ``store`` on ``host``:``port`` (0 = any free port) from a daemon thread.

    ``clock`` is the simulated "now" in epoch ms; by default it starts at the
    store's seed time (when its data were current) and runs at wall speed.
    Stop with ``stop_simulator``, which takes up to ``poll_interval_s`` (how
    often the serving loop checks for shutdown). The bound address is
    ``server.base_url``.
    """
    if clock is None:
        clock = (
            SimulatedClock(store.seed_time_ms) if store.seed_time_ms is not None else wall_clock_ms
        )
    server = SimulatorServer((host, port), store, clock=clock, config=config or SimulatorConfig())
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": poll_interval_s},
        name="fdsn-simulator",
        daemon=True,
    )
    thread.start()
    return server, thread


def stop_simulator(
    server: SimulatorServer, thread: threading.Thread, timeout_s: float = 5.0
) -> None:
    """Stop serving, close the socket and wait for the serving thread."""
    server.shutdown()
    server.server_close()
    thread.join(timeout_s)
