"""The stack's PostgreSQL: first-start initialisation, the server command, a database per user.

Debian's postgresql-15 binaries (``postgres.bin_dir``) run the server bound to
``runtime.host`` with its cluster in ``<state_dir>/postgres/data``, TCP only
(no Unix socket to place or share), SCRAM passwords for every connection.
initdb and postgres refuse to run as root: when the platform runs as root,
both run as ``postgres.run_as_user`` (Debian's ``postgres``), which owns the
data directory; an ordinary user runs them as themself.

``ensure_database(settings, name)`` gives each user of the server (the Hive
metastore, Airflow's metadata) a role and a database of its own, with a
generated password kept like the superuser's (``core.postgres``).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from core.errors import UserFacingError
from core.postgres import (
    PgCredentials,
    credentials_dir,
    generate_password,
    role_credentials,
    store_password,
    stored_password,
    superuser_credentials,
)
from core.settings import Settings
from streamhouse.runtime.process import ServicePaths

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class RunAs:
    """The OS account the server runs as; None fields: the current one."""

    user: str | None
    uid: int
    gid: int

    @property
    def switches(self) -> bool:
        return self.user is not None


def run_as(settings: Settings) -> RunAs:
    """Who runs initdb and postgres: ``run_as_user`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return RunAs(None, os.geteuid(), os.getegid())
    name = settings.postgres.run_as_user
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        raise UserFacingError(
            f"PostgreSQL cannot run as root and user {name!r} does not exist: run "
            "`make install` (Debian's postgresql package creates `postgres`), or set "
            "STREAMHOUSE_POSTGRES__RUN_AS_USER to an unprivileged user."
        ) from None
    return RunAs(name, account.pw_uid, account.pw_gid)


def binary(settings: Settings, name: str) -> Path:
    """One of the server's programs, or a sentence saying how to install it."""
    path = settings.postgres.bin_dir / name
    if not os.access(path, os.X_OK):
        raise UserFacingError(
            f"PostgreSQL's {name} is not at {path}: run `make install` (it installs Debian's "
            "postgresql-15), or set STREAMHOUSE_POSTGRES__BIN_DIR to where it is."
        )
    return path


def _blocked_parent(path: Path, account: RunAs) -> Path | None:
    """The first folder above ``path`` that ``account`` may not enter, if any."""
    groups = {account.gid, *(g.gr_gid for g in grp.getgrall() if account.user in g.gr_mem)}
    for folder in reversed(path.parents):
        mode = folder.stat()
        if mode.st_uid == account.uid:
            allowed = mode.st_mode & stat.S_IXUSR
        elif mode.st_gid in groups:
            allowed = mode.st_mode & stat.S_IXGRP
        else:
            allowed = mode.st_mode & stat.S_IXOTH
        if not allowed:
            return folder
    return None


def prepare_data_dir(settings: Settings, paths: ServicePaths) -> RunAs:
    """Make ``data/`` the server's: owned by the account it runs as, mode 0700."""
    account = run_as(settings)
    paths.data.mkdir(parents=True, exist_ok=True)
    if account.switches:
        blocked = _blocked_parent(paths.data, account)
        if blocked is not None:
            raise UserFacingError(
                f"PostgreSQL runs as {account.user} (the platform runs as root), which cannot "
                f"enter {blocked}: allow it (chmod o+x {blocked}) or set STREAMHOUSE_STATE_DIR "
                "to a folder it can reach."
            )
        os.chown(paths.data, account.uid, account.gid)
    paths.data.chmod(0o700)
    return account


def initdb(settings: Settings, paths: ServicePaths, account: RunAs) -> None:
    """Create the cluster on first start, with a generated superuser password.

    A cluster from an earlier start is kept; its passwords are those in the
    credentials folder, which is why a cluster without them is refused.
    """
    superuser = settings.postgres.superuser
    if (paths.data / "PG_VERSION").exists():
        if settings.postgres.superuser_password is None and (
            stored_password(settings, superuser) is None
        ):
            raise UserFacingError(
                f"PostgreSQL's data in {paths.data} has no superuser password in "
                f"{credentials_dir(settings)}: purge it with "
                "`streamhouse stack down --purge postgres` and start it again."
            )
        return
    # A new cluster: passwords generated for an older one mean nothing any more.
    for old in credentials_dir(settings).glob("*.password"):
        old.unlink()
    password = settings.postgres.superuser_password or generate_password()
    # initdb reads the password from a file the server's account can read; it is
    # removed as soon as initdb is done, and never on a command line.
    pwfile = paths.root / ".initdb-pw"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password.get_secret_value() + "\n")
    try:
        if account.switches:
            os.chown(pwfile, account.uid, account.gid)
        command = [
            str(binary(settings, "initdb")),
            f"--pgdata={paths.data}",
            f"--username={superuser}",
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            user=account.user,
            group=account.gid if account.switches else None,
            extra_groups=[] if account.switches else None,
            cwd=paths.root,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    with paths.log.open("a") as log:
        log.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise UserFacingError(f"PostgreSQL's initdb failed; its output is in {paths.log}")
    if settings.postgres.superuser_password is None:
        store_password(settings, superuser, password)


def server_command(settings: Settings, paths: ServicePaths) -> list[str]:
    """The postmaster in the foreground, configured on its command line (no secret in it)."""
    host, port = settings.runtime.host, settings.runtime.ports.postgres
    options = {
        "listen_addresses": host,
        "port": str(port),
        # TCP only: no socket folder to create, own or share between users.
        "unix_socket_directories": "",
        "max_connections": str(settings.postgres.max_connections),
        "shared_buffers": "64MB",
        "log_destination": "stderr",
        "logging_collector": "off",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        "password_encryption": "scram-sha-256",
    }
    command = [str(binary(settings, "postgres")), "-D", str(paths.data)]
    for key, value in options.items():
        command += ["-c", f"{key}={value}"]
    return command


def is_ready(settings: Settings) -> bool:
    """True when the superuser can log in and run a query."""
    import psycopg

    try:
        credentials = superuser_credentials(settings)
        with psycopg.connect(**credentials.conninfo(2)) as connection:  # type: ignore[arg-type]
            connection.execute("SELECT 1")
        return True
    except (psycopg.Error, UserFacingError):
        return False


# Serialises concurrent ensure_database calls (a stack start beside an Airflow
# task): CREATE ROLE / CREATE DATABASE are not idempotent on their own.
_ENSURE_LOCK = 0x5354_4D48_5345  # "STMHSE"


def _set_role(
    connection: psycopg.Connection[Any], settings: Settings, name: str, password: SecretStr | None
) -> SecretStr:
    """Create ``name`` as a login role, or re-apply its password; the password.

    The password goes to the server as a SCRAM verifier computed here, so the clear
    text appears in no statement, log or ``pg_stat_activity``. ``password`` (from the
    settings) is applied and not stored; without it the stored one, else a new one.
    """
    from psycopg import sql

    secret = password or stored_password(settings, name) or generate_password()
    verifier = connection.pgconn.encrypt_password(
        secret.get_secret_value().encode(), name.encode(), b"scram-sha-256"
    ).decode()
    exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    statement = f"{verb} ROLE {{}} WITH LOGIN PASSWORD {{}}"
    connection.execute(sql.SQL(statement).format(sql.Identifier(name), sql.Literal(verifier)))
    if password is None:
        store_password(settings, name, secret)
    return secret


def _check_name(name: str, what: str) -> None:
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise UserFacingError(
            f"{name!r} is not a valid {what} name: start with a letter, then use letters, "
            "digits and underscores."
        )


@contextlib.contextmanager
def _as_superuser(settings: Settings, purpose: str) -> Iterator[psycopg.Connection[Any]]:
    """A superuser connection holding the lock that serialises role and database changes;
    a refused connection or statement becomes one sentence naming ``purpose``."""
    import psycopg

    superuser = superuser_credentials(settings)
    timeout = settings.postgres.connect_timeout_s
    try:
        with psycopg.connect(**superuser.conninfo(timeout), autocommit=True) as connection:  # type: ignore[arg-type]
            connection.execute("SELECT pg_advisory_lock(%s)", (_ENSURE_LOCK,))
            yield connection
            connection.execute("SELECT pg_advisory_unlock(%s)", (_ENSURE_LOCK,))
    except psycopg.Error as error:
        host, port = settings.postgres_address
        raise UserFacingError(
            f"PostgreSQL at {host}:{port} refused to {purpose} "
            f"({str(error).strip().splitlines()[0]}): check it runs (`streamhouse stack status`)."
        ) from None


def ensure_database(
    settings: Settings, name: str, password: SecretStr | None = None
) -> PgCredentials:
    """A role and a database named ``name``, owned by that role; its credentials.

    Idempotent: an existing role keeps the password stored for it (re-applied,
    so the role and the file always agree) and an existing database is left
    alone. ``password`` (from the settings, e.g. in containers) is applied
    instead of a generated one and not stored. Other roles cannot connect to
    the database.
    """
    from psycopg import sql

    _check_name(name, "database")
    with _as_superuser(settings, f"create database {name!r}") as connection:
        secret = _set_role(connection, settings, name, password)
        role = sql.Identifier(name)
        if not connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone():
            connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role))
            connection.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(role))
    return role_credentials(settings, name, secret)


def ensure_monitor_role(settings: Settings) -> PgCredentials:
    """The metrics exporter's role (``postgres.monitor_role``): it logs in, reads the
    server's statistics through ``pg_monitor``, and owns nothing; its credentials.

    Idempotent like ``ensure_database``; it connects to the ``postgres`` database,
    which every role may.
    """
    from psycopg import sql

    name = settings.postgres.monitor_role
    _check_name(name, "role")
    with _as_superuser(settings, f"create the monitoring role {name!r}") as connection:
        secret = _set_role(connection, settings, name, settings.postgres.monitor_password)
        connection.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(name)))
    return role_credentials(settings, name, secret, database="postgres")
