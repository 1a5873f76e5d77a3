"""Alertmanager's configuration, from the ``alerting`` settings.

Every alert goes to one receiver, ``streamhouse``, which posts to the
Slack-compatible webhook and sends e-mail over SMTP, each only when its
settings are set (a receiver with neither keeps alerts in Alertmanager's UI
only). The webhook URL (its token is in the URL) and the SMTP password are
written to files of their own, readable by the owner only, and the
configuration names the files: no secret is on a command line or in the
configuration text. The message templates are ``alertmanager/streamhouse.tmpl``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from core.settings import AlertingSettings

RECEIVER = "streamhouse"
TEMPLATES = Path(__file__).resolve().parent / "alertmanager" / "streamhouse.tmpl"
WEBHOOK_URL_FILE = "webhook_url.secret"
SMTP_PASSWORD_FILE = "smtp_password.secret"
CONFIG_FILE = "alertmanager.yml"


def _duration(seconds: float) -> str:
    return f"{round(seconds)}s"


def config(alerting: AlertingSettings, directory: Path) -> dict[str, Any]:
    """Alertmanager's configuration for files kept in ``directory`` (secrets, templates)."""
    receiver: dict[str, Any] = {"name": RECEIVER}
    if alerting.webhook_url is not None:
        receiver["slack_configs"] = [
            {
                "api_url_file": str(directory / WEBHOOK_URL_FILE),
                "send_resolved": True,
                "title": '{{ template "streamhouse.title" . }}',
                "text": '{{ template "streamhouse.text" . }}',
            }
        ]
    if alerting.email_enabled:
        email: dict[str, Any] = {
            "to": alerting.smtp_to,
            "from": alerting.smtp_from,
            "smarthost": f"{alerting.smtp_host}:{alerting.smtp_port}",
            "require_tls": alerting.smtp_starttls,
            "send_resolved": True,
            "headers": {"Subject": '{{ template "streamhouse.title" . }}'},
            "text": '{{ template "streamhouse.text" . }}',
            "html": '{{ template "streamhouse.html" . }}',
        }
        if alerting.smtp_username:
            email["auth_username"] = alerting.smtp_username
        if alerting.smtp_password is not None:
            email["auth_password_file"] = str(directory / SMTP_PASSWORD_FILE)
        receiver["email_configs"] = [email]
    return {
        "route": {
            "receiver": RECEIVER,
            "group_by": ["alertname", "severity"],
            "group_wait": _duration(alerting.group_wait_s),
            "group_interval": _duration(alerting.group_interval_s),
            "repeat_interval": _duration(alerting.repeat_interval_s),
        },
        # A page already tells the story: the same alert's warning adds nothing.
        "inhibit_rules": [
            {
                "source_matchers": ['severity="page"'],
                "target_matchers": ['severity="warn"'],
                "equal": ["alertname"],
            }
        ],
        "receivers": [receiver],
        "templates": [str(directory / TEMPLATES.name)],
    }


def _write_secret(path: Path, value: str) -> None:
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value)


def dashboard_template(dashboard_url: str) -> str:
    """The template that turns an alert's dashboard page name into an address.

    ``dashboard_url`` holds ``{page}`` where the page name goes (the console
    pages have one address per page; a Grafana dashboard may ignore it).
    """
    if "{{" in dashboard_url or "}}" in dashboard_url:
        raise ValueError(f"the dashboard address {dashboard_url!r} may not hold {{{{ or }}}}")
    link = dashboard_url.replace("{page}", "{{ . }}")
    return f'{{{{ define "streamhouse.dashboard" }}}}{link}{{{{ end }}}}\n'


def write_config(
    alerting: AlertingSettings,
    directory: Path,
    dashboard_url: str,
    owner: tuple[int, int] | None = None,
) -> Path:
    """Write the configuration, its templates and its secret files into ``directory``.

    ``owner`` (uid, gid) hands the files to the user Alertmanager runs as
    when another user writes them (compose's one-shot configuration service).
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / TEMPLATES.name).write_text(
        TEMPLATES.read_text() + "\n" + dashboard_template(dashboard_url)
    )
    for name, secret in (
        (WEBHOOK_URL_FILE, alerting.webhook_url),
        (SMTP_PASSWORD_FILE, alerting.smtp_password),
    ):
        if secret is None:
            (directory / name).unlink(missing_ok=True)
        else:
            _write_secret(directory / name, secret.get_secret_value())
    path = directory / CONFIG_FILE
    header = "# Generated from the alerting settings (monitoring/alerting.py); do not edit.\n"
    path.write_text(header + yaml.safe_dump(config(alerting, directory), sort_keys=False))
    if owner is not None:
        for written in (directory, *directory.iterdir()):
            os.chown(written, *owner)
    return path
