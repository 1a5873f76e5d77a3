"""The shared catalog against the real stack: PostgreSQL, the Hive metastore, two Spark processes.

The streaming service (one JVM) registers the lake's tables as it creates
them; a second Spark process (`streamhouse catalog tables`, another JVM)
reads every one of them by name while the stream keeps writing. Derby is
nowhere: no ``metastore_db`` or ``derby.log`` appears.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from core.errors import UserFacingError
from core.postgres import (
    credentials_dir,
    metastore_credentials,
    password_file,
    superuser_credentials,
)
from core.settings import PROJECT_ROOT, Settings, settings_env
from lake.tables import TABLES
from spark_jobs.catalog import METASTORE_LOCK, metastore_lock
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


def test_the_monitor_role_reads_statistics_not_data(infra_stack: Settings) -> None:
    """The exporter's role (``postgres.monitor_role``): idempotent, sees every session's
    statistics (pg_monitor), and may neither enter the metastore's database nor create."""
    first = postgres.ensure_monitor_role(infra_stack)
    assert postgres.ensure_monitor_role(infra_stack) == first
    assert first.database == "postgres"
    postgres.ensure_database(infra_stack, "probe_watched")
    with _connect(first) as connection:
        row = connection.execute(
            "SELECT pg_has_role(current_user, 'pg_monitor', 'member'), "
            "(SELECT count(*) FROM pg_stat_database WHERE datname = 'probe_watched')"
        ).fetchone()
        assert row == (True, 1)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("CREATE TABLE watched (x int)")
    intruder = first.__class__(first.host, first.port, "probe_watched", first.user, first.password)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        _connect(intruder)


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


def _process_tree(pid: int) -> set[int]:
    """``pid`` and its descendants (the service's Python process and its JVM)."""
    parents: dict[int, int] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
            after = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat_file.parent.name)] = int(after[1])
    tree = {pid}
    while True:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        if not more:
            return tree
        tree |= more


def _tcp_sockets(pids: set[int]) -> list[tuple[int, int]]:
    """(local port, remote port) of each TCP socket the processes hold (from /proc)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    sockets = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
                sockets.append((local, remote))
    return sockets


def test_each_spark_driver_keeps_a_few_metastore_connections(running_stack: Settings) -> None:
    """A driver's metastore client has two connection pools (DataNucleus' HikariCP); each
    may open ``catalog.pool_max_connections``. Before, Hive's defaults kept 10 open in
    each: 20 idle sessions per driver, and five drivers filled PostgreSQL's 100."""
    deadline = time.monotonic() + 300
    while not _registered_tables(running_stack):
        assert time.monotonic() < deadline, "the stream registered no table"
        time.sleep(3)
    with _connect(superuser_credentials(running_stack)) as connection:
        sessions = {
            int(port)  # type: ignore[call-overload]
            for (port,) in connection.execute(
                "SELECT client_port FROM pg_stat_activity WHERE datname = %s",
                (running_stack.catalog.database,),
            ).fetchall()
        }
    _, server_port = running_stack.postgres_address
    held = {}
    for service in ("streaming", "streaming-background", "spark-connect"):
        pid = int((running_stack.state_dir / service / "service.pid").read_text().split()[0])
        held[service] = sum(
            1
            for local, remote in _tcp_sockets(_process_tree(pid))
            if remote == server_port and local in sessions
        )
    limit = 2 * running_stack.catalog.pool_max_connections
    assert sum(held.values()) > 0, held  # they use the metastore
    assert all(count <= limit for count in held.values()), (held, limit)


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


#: A Spark driver as the stack's streaming jobs start: the project's session, a Delta table
#: written by path, then read by path in SQL, which asks the catalog for a database `delta`.
_FIRST_CONTACT = """
import sys
from core.settings import Settings
from spark_jobs.session import build_spark, spark_log_file
settings = Settings()
spark = build_spark(settings, sys.argv[2], log_file=spark_log_file(settings, sys.argv[2]))
print("session built", flush=True)
spark.range(3).write.format("delta").save(sys.argv[1])
assert spark.sql(f"SELECT count(*) FROM delta.`{sys.argv[1]}`").first()[0] == 3
"""


def _lock_waiters(connection: psycopg.Connection[tuple[object, ...]], database: str) -> int:
    row = connection.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = %s",
        (database,),
    ).fetchone()
    return int(row[0]) if row else 0


def test_spark_processes_open_a_new_metastore_one_at_a_time(
    infra_stack: Settings, tmp_path: Path
) -> None:
    """Hive's client creates the metastore's tables, its default database and its roles on a
    process's first contact. With DataNucleus's constraints off (``metastore_properties``)
    two first contacts at once left two rows per role, and every later client failed
    ("Unable to instantiate SessionHiveMetaStoreClient"): the stack's two streaming drivers
    did so on a new metastore (a test stack, 2026-12-06), and Airflow's marts task then
    failed three times. Each driver now opens the catalog under the metastore lock.

    Held here, two new drivers wait for it and the new database stays empty; released,
    they open it one after the other: one row per role and one default database.
    """
    name = f"metastore_probe_{os.getpid()}"
    credentials = postgres.ensure_database(infra_stack, name)
    env = settings_env(infra_stack)
    env.update(
        STREAMHOUSE_STATE_DIR=str(tmp_path / "state"),  # its own hive-site.xml
        STREAMHOUSE_CATALOG__DATABASE=name,
        STREAMHOUSE_CATALOG__PASSWORD=credentials.password.get_secret_value(),
        STREAMHOUSE_CATALOG__WAREHOUSE_DIR=(tmp_path / "warehouse").as_uri(),
    )
    processes: list[subprocess.Popen[str]] = []
    try:
        with _connect(credentials) as holder, _connect(superuser_credentials(infra_stack)) as su:
            holder.execute("SELECT pg_advisory_lock(%s)", (METASTORE_LOCK,))
            for n in (1, 2):
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-c", _FIRST_CONTACT, str(tmp_path / f"t{n}"), f"p{n}"],
                        env=env,
                        cwd=PROJECT_ROOT,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                )
            deadline = time.monotonic() + 240
            while _lock_waiters(su, name) < 2:
                ended = [p.args[-1] for p in processes if p.poll() is not None]
                assert not ended, (
                    f"{ended} ended without waiting for the metastore lock: "
                    + "".join(p.communicate()[0][-2000:] for p in processes if p.poll() is not None)
                )
                assert time.monotonic() < deadline, "the drivers never asked for the lock"
                time.sleep(0.5)
            tables = holder.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
            assert tables == (0,), "a driver created metastore tables while the lock was held"
            holder.execute("SELECT pg_advisory_unlock(%s)", (METASTORE_LOCK,))
        outputs = [p.communicate(timeout=300)[0] for p in processes]
        assert [p.returncode for p in processes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
        with _connect(credentials) as connection:
            roles = connection.execute(
                'SELECT "ROLE_NAME", count(*) FROM "ROLES" GROUP BY 1 ORDER BY 1'
            ).fetchall()
            databases = connection.execute(
                'SELECT "NAME", count(*) FROM "DBS" GROUP BY 1 ORDER BY 1'
            ).fetchall()
        assert roles == [("admin", 1), ("public", 1)]
        assert databases == [("default", 1)]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        with _connect(superuser_credentials(infra_stack)) as su:
            su.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            su.execute(f'DROP ROLE IF EXISTS "{name}"')
        password_file(infra_stack, name).unlink(missing_ok=True)


def test_a_held_metastore_lock_is_waited_for_a_bounded_time_and_its_holder_named(
    infra_stack: Settings,
) -> None:
    """Every driver now takes the metastore lock as it starts: a process stuck while it
    holds it must not stop the others without a word. Before, the wait had no end."""
    settings = infra_stack.model_copy(
        update={"catalog": infra_stack.catalog.model_copy(update={"lock_timeout_s": 1.0})}
    )
    outcome: list[BaseException | None] = []

    def take() -> None:
        try:
            with metastore_lock(settings):
                outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:  # a process of ours that holds the lock and is stuck
        with metastore_lock(infra_stack):
            holding.set()
            release.wait(60)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert holding.wait(30), "the holder did not get the lock"
    with _connect(metastore_credentials(infra_stack)) as connection:
        row = connection.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND (classid::bigint << 32 | objid::bigint) = %s",
            (METASTORE_LOCK,),
        ).fetchone()
    assert row is not None
    waiter = threading.Thread(target=take, daemon=True)
    waiter.start()
    waiter.join(timeout=30)
    stuck = waiter.is_alive()
    release.set()
    holder.join(timeout=30)
    assert not stuck, "still waiting for the metastore lock after 30 s"
    assert len(outcome) == 1 and isinstance(outcome[0], UserFacingError), outcome
    assert str(outcome[0]).startswith(
        "The catalog's metastore lock was still held after 1 s, by process "
        f"{os.getpid()} (PostgreSQL session {row[0]}, connected at "
    ), outcome[0]
    with metastore_lock(settings):  # released: taken at once, and given back
        pass
