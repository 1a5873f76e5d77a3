"""Alertmanager's configuration from the alerting settings, checked by Alertmanager's own amtool."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from core.settings import AlertingSettings, Settings, settings_env
from monitoring import alerting

DASHBOARD = "http://127.0.0.1:9090/consoles/{page}.html"


def _amtool_check(config: Path) -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool is missing: run `make install` (Debian's prometheus-alertmanager)"
    result = subprocess.run(
        [amtool, "check-config", str(config)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_channels_with_secrets_in_owner_only_files(tmp_path: Path) -> None:
    settings = AlertingSettings(
        webhook_url="https://hooks.example/services/T000/B000/very-secret-token",
        smtp_host="smtp.example",
        smtp_port=587,
        smtp_to="oncall@example.org, data@example.org",
        smtp_username="alerts",
        smtp_password="hunter2-smtp",
    )
    path = alerting.write_config(settings, tmp_path, DASHBOARD)
    _amtool_check(path)
    text = path.read_text()
    assert "very-secret-token" not in text and "hunter2-smtp" not in text
    receiver = yaml.safe_load(text)["receivers"][0]
    slack, mail = receiver["slack_configs"][0], receiver["email_configs"][0]
    assert Path(slack["api_url_file"]).read_text() == settings.webhook_url.get_secret_value()  # type: ignore[union-attr]
    assert Path(mail["auth_password_file"]).read_text() == "hunter2-smtp"
    assert mail["smarthost"] == "smtp.example:587" and mail["require_tls"] is True
    assert mail["to"] == "oncall@example.org, data@example.org"
    for secret in (alerting.WEBHOOK_URL_FILE, alerting.SMTP_PASSWORD_FILE):
        assert stat.S_IMODE((tmp_path / secret).stat().st_mode) == 0o600


def test_nothing_configured_is_a_valid_receiver_without_channels(tmp_path: Path) -> None:
    path = alerting.write_config(AlertingSettings(), tmp_path, DASHBOARD)
    _amtool_check(path)
    assert yaml.safe_load(path.read_text())["receivers"] == [{"name": "streamhouse"}]
    assert not (tmp_path / alerting.WEBHOOK_URL_FILE).exists()


def test_a_secret_removed_from_the_settings_is_removed_from_disk(tmp_path: Path) -> None:
    alerting.write_config(
        AlertingSettings(webhook_url="https://hooks.example/x"), tmp_path, DASHBOARD
    )
    alerting.write_config(AlertingSettings(), tmp_path, DASHBOARD)
    assert not (tmp_path / alerting.WEBHOOK_URL_FILE).exists()


def test_the_dashboard_link_follows_the_settings(tmp_path: Path) -> None:
    alerting.write_config(AlertingSettings(), tmp_path, DASHBOARD)
    templates = (tmp_path / alerting.TEMPLATES.name).read_text()
    expected = 'define "streamhouse.dashboard" }}http://127.0.0.1:9090/consoles/{{ . }}.html'
    assert expected in templates
    with pytest.raises(ValueError, match="may not hold"):
        alerting.dashboard_template("http://x/{{ evil }}")


def test_grouping_and_timing_come_from_the_settings(tmp_path: Path) -> None:
    settings = AlertingSettings(group_wait_s=5, group_interval_s=30, repeat_interval_s=3600)
    route = alerting.config(settings, tmp_path)["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "5s",
        "30s",
        "3600s",
    )


def test_empty_values_from_compose_mean_unset() -> None:
    settings = AlertingSettings(webhook_url="", smtp_host="", smtp_to="", smtp_password="")
    assert settings.webhook_url is None and settings.smtp_password is None
    assert not settings.email_enabled


def test_secrets_never_travel_to_child_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMHOUSE_ALERTING__SMTP_PASSWORD", "from-the-parent")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        alerting={"webhook_url": "https://hooks.example/token", "smtp_host": "smtp.example"},
    )
    env = settings_env(settings)
    assert "STREAMHOUSE_ALERTING__WEBHOOK_URL" not in env
    assert "STREAMHOUSE_ALERTING__SMTP_PASSWORD" not in env
    assert env["STREAMHOUSE_ALERTING__SMTP_HOST"] == "smtp.example"
    assert not any("token" in value or "**" in value for value in env.values())
