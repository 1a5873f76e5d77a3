"""Airflow 3 on the embedded stack: its home, configuration, secrets and admin account.

Four services run from this virtualenv (``services.py``): the API server (UI,
REST API and the execution API the tasks report to), the scheduler with the
LocalExecutor, the dag-processor and the triggerer (deferrable sensors and
deadline callbacks run there). They share one ``AIRFLOW_HOME`` under
``<state_dir>/airflow`` whose ``airflow.cfg`` is written from the settings at
every start and is readable by the owner only: it holds the metadata
database's URL with its password and the secrets every component must agree
on (the JWT secret of the execution API above all: with a key of its own per
process, every task is refused).

The metadata database is a database and role of its own on the stack's
PostgreSQL (``ensure_database``). The UI's administrator gets a generated
password on the first start, kept in ``<state_dir>/airflow/passwords.json``
(0600), which Airflow's simple auth manager reads; never ``admin/admin``.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr

from core.errors import UserFacingError
from core.postgres import role_credentials
from core.settings import PROJECT_ROOT, Settings, settings_env

#: The four components, in start order; each is a service of the stack.
COMPONENTS = ("airflow-api", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")


def airflow_home(settings: Settings) -> Path:
    """``AIRFLOW_HOME`` of the stack's Airflow (configuration, logs, secrets)."""
    return settings.state_dir / "airflow"


def config_path(settings: Settings) -> Path:
    return airflow_home(settings) / "airflow.cfg"


def passwords_path(settings: Settings) -> Path:
    """The simple auth manager's passwords (JSON, user -> password), 0600."""
    return airflow_home(settings) / "passwords.json"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, from the first byte, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    temporary.replace(path)


def _stored_secrets(settings: Settings) -> dict[str, str]:
    """The secrets every component must share, generated once and kept (0600)."""
    path = airflow_home(settings) / "secrets.json"
    try:
        stored: dict[str, str] = json.loads(path.read_text())
    except FileNotFoundError:
        stored = {}
    wanted: dict[str, Callable[[], str]] = {
        # Signs the tokens of the execution API (tasks -> API server) and the UI's.
        "jwt_secret": lambda: secrets.token_urlsafe(48),
        # Signs the API server's session cookies.
        "secret_key": lambda: secrets.token_urlsafe(48),
        # Encrypts connections' passwords and variables in the metadata database.
        "fernet_key": lambda: Fernet.generate_key().decode(),
    }
    missing = {name: make() for name, make in wanted.items() if name not in stored}
    if missing:
        stored.update(missing)
        _write_private(path, json.dumps(stored))
    return stored


def admin_password(settings: Settings) -> SecretStr:
    """The administrator's password: from the settings, else the generated one (created once)."""
    if settings.airflow.admin_password is not None:
        return settings.airflow.admin_password
    path = passwords_path(settings)
    user = settings.airflow.admin_user
    try:
        passwords: dict[str, str] = json.loads(path.read_text())
    except FileNotFoundError:
        passwords = {}
    if user not in passwords:
        passwords[user] = secrets.token_urlsafe(18)
        _write_private(path, json.dumps(passwords))
    return SecretStr(passwords[user])


def shown_password(settings: Settings) -> SecretStr:
    """The administrator's password for ``streamhouse airflow password``, never generated here."""
    if settings.airflow.admin_password is not None:
        return settings.airflow.admin_password
    try:
        passwords: dict[str, str] = json.loads(passwords_path(settings).read_text())
        return SecretStr(passwords[settings.airflow.admin_user])
    except (FileNotFoundError, KeyError):
        raise UserFacingError(
            "Airflow has no administrator password yet: start it with "
            "`streamhouse stack up airflow-api` (the first start generates one)."
        ) from None


def metadata_url(settings: Settings) -> SecretStr:
    """The metadata database's SQLAlchemy URL (psycopg2, Airflow's tested driver)."""
    credentials = role_credentials(settings, settings.airflow.database, settings.airflow.password)
    return credentials.sqlalchemy_url("psycopg2")


def airflow_config(settings: Settings, database_url: SecretStr) -> str:
    """The text of ``airflow.cfg`` for the stack (secrets included: write it 0600)."""
    rt = settings.runtime
    af = settings.airflow
    home = airflow_home(settings)
    shared = _stored_secrets(settings)
    base_url = settings.airflow_url
    config = configparser.ConfigParser(interpolation=None)
    config.read_dict(
        {
            "core": {
                "dags_folder": str(af.dags_folder),
                "plugins_folder": str(af.plugins_folder),
                "executor": "LocalExecutor",
                "parallelism": str(af.parallelism),
                "max_active_tasks_per_dag": str(af.parallelism),
                "load_examples": "False",
                # A DAG starts paused: unpausing the daily one starts its catch-up
                # from start_date, which is the operator's decision.
                "dags_are_paused_at_creation": "True",
                "fernet_key": shared["fernet_key"],
                "default_timezone": "utc",
                "execution_api_server_url": f"{base_url}/execution/",
                "simple_auth_manager_users": f"{af.admin_user}:admin",
                "simple_auth_manager_passwords_file": str(passwords_path(settings)),
            },
            "database": {
                "sql_alchemy_conn": database_url.get_secret_value(),
                "sql_alchemy_pool_size": "3",
                "sql_alchemy_max_overflow": "5",
            },
            "api": {
                "base_url": base_url,
                "host": rt.host,
                "port": str(rt.ports.airflow_api),
                "workers": str(af.api_workers),
                "secret_key": shared["secret_key"],
                "expose_config": "False",
            },
            "api_auth": {"jwt_secret": shared["jwt_secret"]},
            "logging": {
                "base_log_folder": str(home / "logs"),
                "dag_processor_child_process_log_directory": str(home / "logs" / "dag_processor"),
            },
            "dag_processor": {
                "refresh_interval": str(af.min_file_process_interval_s),
                "min_file_process_interval": str(af.min_file_process_interval_s),
                "stale_dag_threshold": "120",
            },
            "scheduler": {
                # No health server: readiness comes from the API server's monitor endpoint.
                "enable_health_check": "False",
            },
            "triggerer": {"capacity": "50"},
            "metrics": {"statsd_on": "False"},
        }
    )
    text = io.StringIO()
    config.write(text)
    header = "# Generated from the streamhouse settings (streamhouse/runtime/airflow.py).\n"
    return header + text.getvalue()


def start_date(settings: Settings) -> date:
    """The first day the daily DAG schedules: the setting, else the stack's go-live day.

    The go-live day is the day Airflow first started here, kept in the state
    directory: unpaused, the daily DAG catches up from it, not from years of
    empty days before the platform existed.
    """
    if settings.airflow.start_date is not None:
        return settings.airflow.start_date
    path = airflow_home(settings) / "start_date"
    try:
        return date.fromisoformat(path.read_text().strip())
    except FileNotFoundError:
        today = datetime.now(UTC).date()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(today.isoformat() + "\n")
        return today


def airflow_env(settings: Settings) -> dict[str, str]:
    """The environment of every Airflow process (and of the tasks they run).

    The platform's settings as variables, secrets included: the tasks send
    alerts (webhook URL, SMTP password) and reach the metastore.
    """
    env = settings_env(settings, secrets=True)
    env["STREAMHOUSE_AIRFLOW__START_DATE"] = start_date(settings).isoformat()
    home = airflow_home(settings)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
        }
    )
    # Airflow reads AIRFLOW__* variables over the file: none may come from the caller.
    return {k: v for k, v in env.items() if not k.startswith("AIRFLOW__")}


def prepare_home(settings: Settings, database_url: SecretStr) -> Path:
    """Write ``airflow.cfg`` (0600) and make sure the admin's password exists; the home."""
    home = airflow_home(settings)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    _write_private(config_path(settings), airflow_config(settings, database_url))
    admin_password(settings)
    return home


def airflow_command(*args: str) -> list[str]:
    """``airflow <args>`` run by this virtualenv's Python."""
    return [sys.executable, "-m", "airflow", *args]


def migrate(settings: Settings, log: Path) -> None:
    """Create or upgrade the metadata database's schema (idempotent; output to ``log``)."""
    with log.open("a") as handle:
        handle.write("\n=== airflow db migrate\n")
        handle.flush()
        result = subprocess.run(
            airflow_command("db", "migrate"),
            env=airflow_env(settings),
            cwd=PROJECT_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=600,
        )
    if result.returncode != 0:
        raise UserFacingError(
            f"Airflow could not migrate its metadata database; the output is in {log}"
        )
