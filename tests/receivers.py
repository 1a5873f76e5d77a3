"""Loopback receivers of alerts: a Slack-compatible webhook and an SMTP server (aiosmtpd).

Real servers on 127.0.0.1 that keep what they receive, so a test asserts on
the message a person would get.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """What the receivers got: webhook bodies (JSON) and e-mails."""

    webhook: list[dict[str, Any]] = field(default_factory=list)
    mail: list[Message] = field(default_factory=list)

    def wait(self, predicate: Callable[[Received], bool], timeout_s: float) -> bool:
        """Wait until ``predicate`` holds; whether it did within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.2)
        return predicate(self)

    def webhook_texts(self) -> list[str]:
        return [str(body.get("text", "")) for body in self.webhook]

    def mail_texts(self) -> list[str]:
        texts = []
        for message in self.mail:
            body = message.get_payload(decode=True) if not message.is_multipart() else b""
            text = body.decode() if isinstance(body, bytes) else str(body)
            texts.append(f"Subject: {message['Subject']}\n{text}")
        return texts


@contextmanager
def webhook_receiver(host: str, port: int, received: Received) -> Iterator[str]:
    """A webhook that answers 200 and keeps each JSON body; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.webhook.append(json.loads(self.rfile.read(length) or b"{}"))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/slack-webhook"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def smtp_receiver(host: str, port: int, received: Received) -> Iterator[int]:
    """An SMTP server (aiosmtpd) that keeps every message; yields its port."""
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            received.mail.append(message_from_bytes(envelope.content))
            return "250 OK"

    controller = Controller(Handler(), hostname=host, port=port)
    controller.start()
    try:
        yield int(controller.port)
    finally:
        controller.stop()
