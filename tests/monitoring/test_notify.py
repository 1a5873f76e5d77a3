"""Alerts reach people: the message a Slack-compatible webhook and an SMTP server receive.

Real loopback receivers, no stand-ins: the webhook is an HTTP server, the
mail server is aiosmtpd.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from core.settings import AlertingSettings
from monitoring.notify import (
    Alert,
    AlertDeliveryError,
    Origin,
    email_message,
    send,
    webhook_payload,
)

from ..receivers import Received, smtp_receiver, webhook_receiver

ORIGIN = Origin(
    dag_id="lakehouse_daily",
    task_id="validate_silver",
    run_id="manual__2019-02-16T00:00:00+00:00",
    try_number=2,
    log_url="http://127.0.0.1:8080/dags/lakehouse_daily/runs/r/tasks/validate_silver?try_number=2",
)
ALERT = Alert(
    title="GX validation failed: silver_quakes (2019-02-15)",
    facts=(*ORIGIN.facts(), ("interval", "2019-02-15")),
    details="silver_quakes: expect_column_values_to_be_in_set(status): 1 of 230 rows",
    link=ORIGIN.log_url,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def receivers() -> Iterator[tuple[Received, AlertingSettings]]:
    received = Received()
    with (
        webhook_receiver("127.0.0.1", 0, received) as url,
        smtp_receiver("127.0.0.1", _free_port(), received) as smtp_port,
    ):
        yield (
            received,
            AlertingSettings(
                webhook_url=SecretStr(url),
                smtp_host="127.0.0.1",
                smtp_port=smtp_port,
                smtp_starttls=False,
                smtp_from="airflow@streamhouse.test",
                smtp_to="oncall@streamhouse.test, data@streamhouse.test",
            ),
        )


def test_both_channels_get_dag_task_run_try_and_log_url(
    receivers: tuple[Received, AlertingSettings],
) -> None:
    received, alerting = receivers
    assert send(alerting, ALERT) == ["webhook", "smtp"]
    assert received.wait(lambda r: len(r.webhook) == 1 and len(r.mail) == 1, 10)
    for text in (received.webhook_texts()[0], received.mail_texts()[0]):
        for expected in (
            "DAG: lakehouse_daily",
            "task: validate_silver",
            "run: manual__2019-02-16T00:00:00+00:00",
            "try: 2",
            f"log: {ORIGIN.log_url}",
            "expect_column_values_to_be_in_set(status)",
        ):
            assert expected in text, (expected, text)
    mail = received.mail[0]
    assert mail["Subject"] == "[streamhouse error] GX validation failed: silver_quakes (2019-02-15)"
    assert mail["To"] == "oncall@streamhouse.test, data@streamhouse.test"
    blocks = received.webhook[0]["blocks"]
    assert blocks[0]["text"]["text"] == ALERT.title
    assert {"type": "mrkdwn", "text": "*task*\nvalidate_silver"} in blocks[1]["fields"]


def test_a_failing_channel_is_named_without_its_url_and_the_other_still_delivers(
    receivers: tuple[Received, AlertingSettings],
) -> None:
    received, alerting = receivers
    closed = _free_port()  # nothing listens there
    broken = alerting.model_copy(
        update={"webhook_url": SecretStr(f"http://127.0.0.1:{closed}/hooks/T0KEN-SECRET")}
    )
    with pytest.raises(AlertDeliveryError) as raised:
        send(broken, ALERT)
    assert "webhook (ConnectError)" in str(raised.value)
    assert "delivered by smtp" in str(raised.value)
    assert "T0KEN-SECRET" not in str(raised.value)
    assert received.wait(lambda r: len(r.mail) == 1, 10)


def test_no_channel_configured_sends_nothing() -> None:
    assert send(AlertingSettings(), ALERT) == []


def test_payload_and_mail_without_receivers() -> None:
    payload = webhook_payload(ALERT)
    assert payload["text"].startswith(ALERT.title)
    assert "*log*" in str(payload["blocks"])
    message = email_message(ALERT, AlertingSettings(smtp_to="a@x.test,b@x.test"))
    assert message["To"] == "a@x.test, b@x.test"
    outside = Origin(command="streamhouse quality run --date 2019-02-15")
    assert outside.facts() == (("command", "streamhouse quality run --date 2019-02-15"),)
