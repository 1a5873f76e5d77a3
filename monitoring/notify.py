"""Alerts of the batch jobs, sent straight to people: a Slack-compatible webhook and SMTP.

Airflow's task failures, its deadline misses and Great Expectations' failed
validations all go through ``send``, so each arrives in one shape naming
where it came from (DAG, task, run, try) and where to look (the log URL).
The targets are the ``alerting`` settings, the same Alertmanager uses;
nothing goes anywhere else, and a channel whose settings are unset is off.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx

from core.settings import AlertingSettings

log = logging.getLogger(__name__)

#: Slack refuses a section text longer than 3,000 characters.
_MAX_TEXT = 2900


class AlertDeliveryError(RuntimeError):
    """No channel took the alert (or one that is configured refused it)."""


@dataclass(frozen=True)
class Origin:
    """Where an alert comes from: an Airflow task instance, or a command run by hand."""

    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    try_number: int | None = None
    log_url: str | None = None
    command: str | None = None

    def facts(self) -> tuple[tuple[str, str], ...]:
        """The facts that name it: DAG, task, run and try (or the command)."""
        if self.dag_id is None:
            return (("command", self.command or "(outside Airflow)"),)
        return (
            ("DAG", self.dag_id),
            ("task", self.task_id or "(the run as a whole)"),
            ("run", self.run_id or "-"),
            ("try", str(self.try_number) if self.try_number is not None else "-"),
        )


@dataclass(frozen=True)
class Alert:
    """One message to people: a title, the facts that locate it, details and a link."""

    title: str
    #: Ordered facts, e.g. ("DAG", "lakehouse_daily"), ("task", …), ("run", …), ("try", "1").
    facts: tuple[tuple[str, str], ...]
    details: str = ""
    link: str | None = None
    severity: str = "error"
    extra: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """The alert as plain text (e-mail body, the webhook's fallback text)."""
        lines = [self.title, ""]
        lines += [f"{name}: {value}" for name, value in self.facts]
        if self.link:
            lines.append(f"log: {self.link}")
        if self.details:
            lines += ["", self.details]
        return "\n".join(lines) + "\n"


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The JSON a Slack-compatible incoming webhook takes: ``text`` plus Block Kit blocks.

    ``text`` alone carries everything, for receivers that ignore blocks
    (Mattermost and Rocket.Chat read it the same way).
    """
    fields = [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in alert.facts]
    if alert.link:
        fields.append({"type": "mrkdwn", "text": f"*log*\n<{alert.link}|{alert.link}>"})
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
        # Slack shows at most 10 fields in a section.
        *({"type": "section", "fields": fields[i : i + 10]} for i in range(0, len(fields), 10)),
    ]
    if alert.details:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"```{alert.details[:_MAX_TEXT]}```"},
            }
        )
    return {"text": alert.text()[:_MAX_TEXT], "blocks": blocks}


def email_message(alert: Alert, alerting: AlertingSettings) -> EmailMessage:
    """The alert as an e-mail from ``smtp_from`` to every ``smtp_to`` recipient."""
    message = EmailMessage()
    message["Subject"] = f"[streamhouse {alert.severity}] {alert.title}"
    message["From"] = alerting.smtp_from
    message["To"] = ", ".join(
        address.strip() for address in (alerting.smtp_to or "").split(",") if address.strip()
    )
    message.set_content(alert.text())
    return message


def _post_webhook(alerting: AlertingSettings, alert: Alert, timeout_s: float) -> None:
    assert alerting.webhook_url is not None
    response = httpx.post(
        alerting.webhook_url.get_secret_value(), json=webhook_payload(alert), timeout=timeout_s
    )
    response.raise_for_status()


def _send_email(alerting: AlertingSettings, alert: Alert, timeout_s: float) -> None:
    assert alerting.smtp_host is not None
    with smtplib.SMTP(alerting.smtp_host, alerting.smtp_port, timeout=timeout_s) as smtp:
        if alerting.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if alerting.smtp_username and alerting.smtp_password is not None:
            smtp.login(alerting.smtp_username, alerting.smtp_password.get_secret_value())
        smtp.send_message(email_message(alert, alerting))


def _reason(error: Exception) -> str:
    """Why a channel failed, without the webhook's URL (its token is in it)."""
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    if isinstance(error, httpx.HTTPError):
        return type(error).__name__
    return f"{type(error).__name__}: {str(error)[:200]}"


def send(alerting: AlertingSettings, alert: Alert, timeout_s: float = 10.0) -> list[str]:
    """Send ``alert`` on every configured channel; the channels that took it.

    Every channel is tried; a configured one that fails raises
    ``AlertDeliveryError`` afterwards, naming it (the caller's log shows
    it), so one broken channel never keeps the alert from the other.
    """
    delivered, failed = [], []
    channels = []
    if alerting.webhook_url is not None:
        channels.append(("webhook", _post_webhook))
    if alerting.email_enabled:
        channels.append(("smtp", _send_email))
    if not channels:
        log.warning("alert not sent, no channel is configured (alerting settings): %s", alert.title)
        return []
    for name, deliver in channels:
        try:
            deliver(alerting, alert, timeout_s)
            delivered.append(name)
        except (httpx.HTTPError, OSError, smtplib.SMTPException) as error:
            failed.append(f"{name} ({_reason(error)})")
    if failed:
        raise AlertDeliveryError(
            f"the alert {alert.title!r} was not delivered by {', '.join(failed)}"
            + (f" (delivered by {', '.join(delivered)})" if delivered else "")
            + "; check the alerting settings (`streamhouse settings`)."
        )
    return delivered
