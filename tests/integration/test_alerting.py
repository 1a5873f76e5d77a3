"""A real alert, delivered: Prometheus fires, Alertmanager routes, loopback receivers get it.

Two receivers listen on loopback on the ports the test stack's alerting
settings name (conftest.py): a Slack-compatible webhook (an HTTP server
recording each JSON post) and an SMTP server (aiosmtpd). The test stops the
streaming job and pushes a failed DAG run and a failed validation through
the batch jobs' library; each alert must arrive on both channels with its
name, severity, summary, advice and dashboard link.
"""

from __future__ import annotations

import email
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from core.settings import Settings
from monitoring import batch_metrics
from streamhouse.runtime import stack

from .conftest import SMTP_PORT, WEBHOOK_PORT

DELIVERY_DEADLINE_S = 300
#: A DAG and a suite no other module runs or validates. An alert already firing for
#: lakehouse_daily (the Airflow module fails runs of it on purpose, and the DAG's failure
#: callback may push its outcome after that module reset it) was notified before this
#: test's receivers listened, and Alertmanager does not send it again for an hour: the
#: test waited 300 s for a post that never came (CI, 2026-12-05).
PROBE_DAG = "alerting_probe_dag"
PROBE_SUITE = "alerting_probe_suite"


class Inbox:
    """What the loopback receivers got."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.mails: list[Message] = []
        self.lock = threading.Lock()

    def slack_text(self, alertname: str) -> list[tuple[str, str]]:
        """(title, text) of every firing webhook attachment about ``alertname``."""
        with self.lock:
            found = []
            for post in self.posts:
                for attachment in post.get("attachments", []):
                    title = attachment.get("title", "")
                    if title.startswith("[FIRING") and f"] {alertname} " in title:
                        found.append((title, attachment.get("text", "")))
            return found

    def mail(self, alertname: str) -> list[Message]:
        """Every firing e-mail about ``alertname``."""
        with self.lock:
            return [
                m
                for m in self.mails
                if str(m["Subject"]).startswith("[FIRING")
                and f"] {alertname} " in str(m["Subject"])
            ]


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    received = Inbox()

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with received.lock:
                received.posts.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            return

    class Mailbox:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802
            message = email.message_from_bytes(envelope.original_content or envelope.content)
            message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
            with received.lock:
                received.mails.append(message)
            return "250 OK"

    server = ThreadingHTTPServer(("127.0.0.1", WEBHOOK_PORT), Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    smtp = Controller(Mailbox(), hostname="127.0.0.1", port=SMTP_PORT)
    smtp.start()
    try:
        yield received
    finally:
        smtp.stop()
        server.shutdown()
        server.server_close()


def _text_part(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError(f"no text/plain part in {message['Subject']}")


def _daily_run_posts(inbox: Inbox) -> list[tuple[str, str]]:
    posts = inbox.slack_text("DagRunFailed")
    return [(title, text) for title, text in posts if f"DAG {PROBE_DAG} failed" in text]


def _silver_quality_mails(inbox: Inbox) -> list[Message]:
    mails = inbox.mail("DataQualityCheckFailed")
    return [m for m in mails if f"suite={PROBE_SUITE}" in _text_part(m)]


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not arrive within {DELIVERY_DEADLINE_S} s"
        time.sleep(2)


def test_alerts_are_delivered_to_the_webhook_and_by_mail(
    running_stack: Settings, inbox: Inbox
) -> None:
    settings = running_stack
    rt = settings.runtime
    now = datetime.now(UTC)
    stack.down(settings, ["streaming"], report=print)
    try:
        batch_metrics.push_dag_run(
            settings,
            dag_id=PROBE_DAG,
            success=False,
            started_at=now - timedelta(minutes=3),
            finished_at=now,
        )
        batch_metrics.push_quality_result(
            settings, suite=PROBE_SUITE, passed=10, failed=2, finished_at=now
        )
        _wait(
            lambda: inbox.slack_text("PlatformProcessDown") and inbox.mail("PlatformProcessDown"),
            "PlatformProcessDown (webhook and e-mail)",
        )
        # Other DAGs' or suites' failures (an earlier module's) may be in flight too: wait
        # for the ones this test caused.
        _wait(lambda: _daily_run_posts(inbox), f"DagRunFailed of {PROBE_DAG}")
        _wait(lambda: _silver_quality_mails(inbox), f"DataQualityCheckFailed of {PROBE_SUITE}")
    finally:
        now = datetime.now(UTC)
        batch_metrics.push_dag_run(
            settings, dag_id=PROBE_DAG, success=True, started_at=now, finished_at=now
        )
        batch_metrics.push_quality_result(
            settings, suite=PROBE_SUITE, passed=12, failed=0, finished_at=now
        )
        stack.up(settings, ["streaming"], report=print)

    prometheus = f"http://{rt.host}:{rt.ports.prometheus}"
    title, text = inbox.slack_text("PlatformProcessDown")[0]
    assert title == "[FIRING:1] PlatformProcessDown (page) - streamhouse"
    assert f"streaming on {rt.host}:{rt.ports.stream_metrics} is down" in text
    assert "`streamhouse stack logs streaming`" in text
    assert f"Dashboard: {prometheus}/consoles/health.html" in text
    assert "severity=page" in text

    title, text = _daily_run_posts(inbox)[0]
    assert title.startswith("[FIRING:") and title.endswith("] DagRunFailed (page) - streamhouse")
    assert f"The last run of DAG {PROBE_DAG} failed" in text
    assert f"Dashboard: {prometheus}/consoles/batch.html" in text

    mail = _silver_quality_mails(inbox)[0]
    assert str(mail["Subject"]).startswith("[FIRING:")
    assert str(mail["Subject"]).endswith("] DataQualityCheckFailed (page) - streamhouse")
    assert mail["From"] == settings.alerting.smtp_from
    assert mail["To"] == settings.alerting.smtp_to
    body = _text_part(mail)
    assert f"Great Expectations suite {PROBE_SUITE} failed its last validation" in body
    assert f"suite={PROBE_SUITE}" in body

    mail = inbox.mail("PlatformProcessDown")[0]
    assert f"streaming on {rt.host}:{rt.ports.stream_metrics} is down" in _text_part(mail)
