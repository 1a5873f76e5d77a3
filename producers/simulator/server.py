"""The simulator's HTTP server: the FDSN event query on loopback.

Only wiring: the request handler turns a GET into ``parse_query`` ->
``select_events`` -> ``page`` -> a rendered body, reading the ``EventStore``
and the simulated clock held by the server. Response faults (429 with
Retry-After, 500, 503, slow, truncated or malformed bodies) are chosen per
query response from the server's ``FaultSwitches``.

Admin endpoints (loopback only, for tests and demos):
``POST /admin/faults`` (JSON object of switches, answers the switches now),
``POST /admin/dynamics`` (``{"changes_per_s": x}``), ``POST /admin/drift``
(``{"kind": "new_field" | "removed_field" | "changed_type"}``, answers the
drifted version), ``POST /admin/change`` (``{"id": ..., "kind": "revision" |
"deletion", "properties": {...}}``: one known change now, answers the new
version), ``GET /admin/history`` (every version the store holds, the
versions served in complete responses, the drifted ones).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from producers.simulator.dynamics import ChangeMaker, Dynamics
from producers.simulator.faults import (
    MALFORMED_BODY,
    FaultSwitches,
    choose_fault,
    deeply_nested_body,
    huge_body_chunks,
    truncate,
    with_nan,
)
from producers.simulator.query import (
    DEFAULT_MAX_EVENT_AGE_MS,
    DEFAULT_SERVICE_LIMIT,
    FdsnError,
    page,
    parse_query,
    select_events,
)
from producers.simulator.render import query_metadata, render_error, render_feature_collection
from producers.simulator.store import EventStore, EventVersion, SimulatedClock, wall_clock_ms

log = logging.getLogger(__name__)

SERVICE_PATH = "/fdsnws/event/1"
QUERY_PATH = f"{SERVICE_PATH}/query"
ADMIN_FAULTS_PATH = "/admin/faults"
ADMIN_DYNAMICS_PATH = "/admin/dynamics"
ADMIN_DRIFT_PATH = "/admin/drift"
ADMIN_HISTORY_PATH = "/admin/history"
ADMIN_CHANGE_PATH = "/admin/change"
NOT_FOUND = 404


@dataclass(frozen=True)
class SimulatorConfig:
    """Service-level settings of the simulated FDSN service."""

    #: Largest ``limit`` a request may ask.
    service_limit: int = DEFAULT_SERVICE_LIMIT
    max_event_age_ms: int = DEFAULT_MAX_EVENT_AGE_MS
    # The newest API version seen in a real GeoJSON response (fixtures, 2024).
    api_version: str = "1.14.0"
    #: The search limit: more matching events are refused with 400 (None: ``service_limit``).
    result_cap: int | None = None
    #: Count the search limit over every matching event, before ``limit``/``offset``
    #: (the service's code counts after them); see ``query.page``.
    cap_counts_before_paging: bool = False

    @property
    def search_limit(self) -> int:
        """The number of matching events above which a query is refused."""
        return self.service_limit if self.result_cap is None else self.result_cap


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
        faults: FaultSwitches | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(address, FdsnRequestHandler)
        self.store = store
        self.clock = clock
        self.config = config
        self.faults = faults or FaultSwitches()
        self.rng = rng or random.Random()
        self.dynamics: Dynamics | None = None
        self.fault_lock = threading.Lock()
        #: (id, updated) of every feature sent in a complete 200 query response.
        self.served: set[tuple[str, int]] = set()

    def next_fault(self) -> str | None:
        """The fault of the next query response (thread-safe)."""
        with self.fault_lock:
            fault, self.faults = choose_fault(self.faults, self.rng)
            return fault

    def history(self) -> dict[str, Any]:
        """Every version the store holds, what was served, what drifted (JSON-ready)."""
        versions = sorted(
            [v.event_id, v.updated_ms]
            for current in self.store.current()
            for v in self.store.history(current.event_id)
        )
        with self.fault_lock:
            served = sorted([key, updated] for key, updated in self.served)
        drifted = {} if self.dynamics is None else dict(self.dynamics.maker.drifted)
        return {
            "versions": versions,
            "served": served,
            "drifted": sorted([key, updated, kind] for (key, updated), kind in drifted.items()),
        }

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
        if parts.path == ADMIN_HISTORY_PATH:
            self._send(200, "application/json", json.dumps(server.history()))
            return
        fault = server.next_fault() if parts.path == QUERY_PATH else None
        if fault in ("rate_limit", "unavailable", "server_error"):
            self._send_fault(server, fault, now_ms)
            return
        if fault == "slow":
            time.sleep(server.faults.slow_s)
        try:
            if parts.path != QUERY_PATH:
                raise FdsnError(NOT_FOUND, f"No service at {parts.path}.")
            body, features = self._query(server, parts.query, now_ms)
        except FdsnError as error:
            self._send(error.status, "text/plain", self._error_body(server, error, now_ms))
            return
        if fault is not None and self._send_faulty_page(server, fault, body):
            return
        self._send(200, "application/json", body)
        with server.fault_lock:
            server.served.update((v.event_id, v.updated_ms) for v in features)

    def _send_faulty_page(self, server: SimulatorServer, fault: str, body: str) -> bool:
        """Send the page with a body fault instead of as it is; False for no body fault."""
        if fault == "truncate":
            self._send_bytes(200, "application/json", truncate(body.encode("utf-8")))
        elif fault == "malformed":
            self._send_bytes(200, "application/json", MALFORMED_BODY)
        elif fault == "deep_nesting":
            self._send_bytes(200, "application/json", deeply_nested_body())
        elif fault == "nan":
            self._send(200, "application/json", with_nan(body))
        elif fault == "huge_body":
            self._send_stream(
                200, "application/json", *huge_body_chunks(server.faults.huge_body_mb)
            )
        else:
            return False
        return True

    def _send_fault(self, server: SimulatorServer, fault: str, now_ms: int) -> None:
        status = {"rate_limit": 429, "unavailable": 503, "server_error": 500}[fault]
        headers = {}
        if status in (429, 503):
            seconds = server.faults.retry_after_s
            headers["Retry-After"] = (
                formatdate(time.time() + seconds, usegmt=True)
                if server.faults.retry_after_as_date
                else str(seconds)
            )
        message = {429: "Too Many Requests.", 503: "Service Unavailable.", 500: "Server error."}
        error = FdsnError(status, message[status])
        self._send(status, "text/plain", self._error_body(server, error, now_ms), headers)

    def do_POST(self) -> None:
        """The admin endpoints: switch faults, set the change rate, drift a record."""
        server = cast(SimulatorServer, self.server)
        path = urlsplit(self.path).path
        try:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(request, dict):
                raise ValueError("the body must be a JSON object")
            answer = self._admin(server, path, request)
        except (ValueError, KeyError) as error:
            self._send(400, "application/json", json.dumps({"error": str(error)}))
            return
        if answer is None:
            self._send(404, "application/json", json.dumps({"error": f"no endpoint {path}"}))
            return
        self._send(200, "application/json", json.dumps(answer))

    def _admin(
        self, server: SimulatorServer, path: str, request: dict[str, Any]
    ) -> dict[str, Any] | None:
        if path == ADMIN_FAULTS_PATH:
            with server.fault_lock:
                server.faults = server.faults.updated(request)
                return server.faults.as_json()
        if server.dynamics is None and path in (
            ADMIN_DYNAMICS_PATH,
            ADMIN_DRIFT_PATH,
            ADMIN_CHANGE_PATH,
        ):
            raise ValueError("the simulator runs without dynamics")
        if path == ADMIN_DYNAMICS_PATH and server.dynamics is not None:
            server.dynamics.changes_per_s = float(request["changes_per_s"])
            return {"changes_per_s": server.dynamics.changes_per_s}
        if path == ADMIN_DRIFT_PATH and server.dynamics is not None:
            version = server.dynamics.maker.drift(str(request["kind"]))
            return {"id": version.event_id, "updated": version.updated_ms}
        if path == ADMIN_CHANGE_PATH and server.dynamics is not None:
            properties = request.get("properties")
            if properties is not None and not isinstance(properties, dict):
                raise ValueError("properties must be a JSON object")
            version = server.dynamics.maker.change(
                str(request["id"]), str(request["kind"]), properties
            )
            return {"id": version.event_id, "updated": version.updated_ms}
        return None

    def _query(
        self, server: SimulatorServer, query_string: str, now_ms: int
    ) -> tuple[str, list[EventVersion]]:
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
        served = page(
            selected,
            query,
            service_limit=config.search_limit,
            counts_before_paging=config.cap_counts_before_paging,
        )
        features = [v.feature for v in served]
        metadata = query_metadata(
            # The service stamps responses with its clock in whole seconds.
            generated_ms=now_ms - now_ms % 1000,
            url=server.base_url + self.path,
            api=config.api_version,
            count=len(features),
            limit=query.limit,
            offset=query.offset,
        )
        return render_feature_collection(features, metadata), served

    def _error_body(self, server: SimulatorServer, error: FdsnError, now_ms: int) -> str:
        return render_error(
            error.status,
            error.message,
            request_uri=self.path,
            usage_url=server.base_url + SERVICE_PATH,
            submitted_ms=now_ms,
            version=server.config.api_version,
        )

    def _send(
        self,
        status: int,
        content_type: str,
        body: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send_bytes(status, content_type, body.encode("utf-8"), headers)

    def _send_stream(
        self, status: int, content_type: str, size: int, chunks: Iterator[bytes]
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading at its limit, as it should

    def _send_bytes(
        self,
        status: int,
        content_type: str,
        payload: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up first (a read timeout against a slow response).
            log.debug("client closed the connection before the response was sent")

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
    faults: FaultSwitches | None = None,
    rng: random.Random | None = None,
    maker: ChangeMaker | None = None,
    changes_per_s: float = 0.0,
) -> tuple[SimulatorServer, threading.Thread]:
    """Serve ``store`` on ``host``:``port`` (0 = any free port) from a daemon thread.

    ``clock`` is the simulated "now" in epoch ms; by default it starts at the
    store's seed time (when its data were current) and runs at wall speed.
    Stop with ``stop_simulator``, which takes up to ``poll_interval_s`` (how
    often the serving loop checks for shutdown). The bound address is
    ``server.base_url``. ``faults`` are the response fault switches;
    ``maker`` (a ``ChangeMaker`` on the same store) enables the dynamics thread
    at ``changes_per_s`` (changeable at runtime through ``/admin/dynamics``).
    """
    if clock is None:
        clock = (
            SimulatedClock(store.seed_time_ms) if store.seed_time_ms is not None else wall_clock_ms
        )
    server = SimulatorServer(
        (host, port), store, clock=clock, config=config or SimulatorConfig(), faults=faults, rng=rng
    )
    if maker is not None:
        server.dynamics = Dynamics(maker, changes_per_s).start()
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
    """Stop serving (and changing the data), close the socket and wait for the serving thread."""
    if server.dynamics is not None:
        server.dynamics.stop(timeout_s)
    server.shutdown()
    server.server_close()
    thread.join(timeout_s)
