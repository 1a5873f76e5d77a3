"""The shared catalog against the real stack: PostgreSQL, the Hive metastore, two Spark processes.

The streaming service (one JVM) registers the lake's tables as it creates
them; a second Spark process (`streamhouse catalog tables`, another JVM)
reads every one of them by name while the stream keeps writing. Derby is
nowhere: no ``metastore_db`` or ``derby.log`` appears.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from core.postgres import credentials_dir, metastore_credentials, superuser_credentials
from core.settings import PROJECT_ROOT, Settings, settings_env
from lake.tables import TABLES
from streamhouse.runtime import postgres


def _connect(credentials: object) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(**credentials.conninfo(5), autocommit=True)  # type: ignore[attr-defined]


def test_postgres_runs_unprivileged_with_private_generated_passwords(
    infra_stack: Settings,
) -> None:
    folder = credentials_dir(infra_stack)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(folder.glob("*.password"))
    # The superuser and the metastore's role at least; Airflow's too when it ran first.
    assert {"metastore", "postgres"} <= {f.stem for f in files}, files
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    secrets = [f.read_text().strip() for f in files]
    log = (infra_stack.state_dir / "postgres" / "service.log").read_text()
    assert not any(secret in log for secret in secrets), "a password is in the server's log"
    pid = int((infra_stack.state_dir / "postgres" / "service.pid").read_text().split()[0])
    assert Path(f"/proc/{pid}").stat().st_uid != 0, "PostgreSQL runs as root"
    data = infra_stack.state_dir / "postgres" / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    with _connect(superuser_credentials(infra_stack)) as connection:
        address = connection.execute("SELECT inet_server_addr()::text").fetchone()
    assert address is not None and address[0].startswith("127.0.0.1")


def test_a_database_and_role_per_user(infra_stack: Settings) -> None:
    first = postgres.ensure_database(infra_stack, "probe_one")
    again = postgres.ensure_database(infra_stack, "probe_one")
    assert first == again  # idempotent: same role, same password
    other = postgres.ensure_database(infra_stack, "probe_two")
    with _connect(first) as connection:
        row = connection.execute("SELECT current_user, current_database()").fetchone()
    assert row == ("probe_one", "probe_one")
    # Another user's database is closed to it.
    intruder = first.__class__(first.host, first.port, "probe_two", "probe_one", first.password)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        _connect(intruder)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(other.__class__(other.host, other.port, "probe_two", "probe_two", first.password))


def _registered_tables(settings: Settings) -> set[str]:
    with _connect(metastore_credentials(settings)) as connection:
        rows = connection.execute(
            'SELECT d."NAME" || \'.\' || t."TBL_NAME" FROM "TBLS" t JOIN "DBS" d USING ("DB_ID")'
        ).fetchall()
    return {str(r[0]) for r in rows}


def _existing_lake_tables(settings: Settings) -> set[str]:
    return {
        f"{settings.catalog.lake_schema}.{table.name}"
        for table in TABLES.values()
        if (Path(table.path(settings.lake_uri)) / "_delta_log").is_dir()
    }


def test_two_spark_processes_share_the_catalog(running_stack: Settings) -> None:
    """The streaming job registers every table it has; another JVM reads each by name."""
    wanted = {"lake.quake_changes", "lake.quakes", "lake.quake_windows_1m", "lake.quake_windows_1h"}
    deadline = time.monotonic() + 300
    while True:
        existing = _existing_lake_tables(running_stack)
        registered = _registered_tables(running_stack) if existing else set()
        if wanted <= existing <= registered:
            break
        assert time.monotonic() < deadline, (
            f"tables on disk {sorted(existing)}, registered by the stream {sorted(registered)}"
        )
        time.sleep(3)

    env = settings_env(running_stack)
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "streamhouse.cli", "catalog", "tables"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    for name in existing:
        assert name in lines, result.stdout
        rows = int(lines[name].split("│")[2].strip())
        if name in ("lake.quake_changes", "lake.quakes"):
            assert rows > 0, lines[name]
    # The stream was running (and using the metastore) the whole time.
    streaming_pid = int(
        (running_stack.state_dir / "streaming" / "service.pid").read_text().split()[0]
    )
    assert Path(f"/proc/{streaming_pid}").exists(), "the streaming job stopped meanwhile"
    assert time.monotonic() - began < 300


def test_no_derby_anywhere(running_stack: Settings) -> None:
    """The metastore is PostgreSQL's: Derby leaves neither a database nor a log."""
    places = [PROJECT_ROOT, running_stack.state_dir, Path.cwd()]
    found = [
        path
        for place in places
        for pattern in ("metastore_db", "derby.log")
        for path in place.rglob(pattern)
        if ".venv" not in path.parts
    ]
    assert found == [], f"Derby files (delete them if an older version made them): {found}"


def test_no_password_on_any_command_line(running_stack: Settings) -> None:
    """PySpark passes Spark settings on spark-submit's command line: the metastore's
    password must not be one of them (it is in a private hive-site.xml)."""
    secrets = [p.read_text().strip() for p in credentials_dir(running_stack).glob("*.password")]
    assert secrets
    leaks = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(secret in cmdline for secret in secrets):
            leaks.append(proc.name)
    assert leaks == [], f"processes with a password on their command line: {leaks}"
