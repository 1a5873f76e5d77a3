"""Where the stack's PostgreSQL keeps its generated passwords, and the credentials they make.

The embedded server (``stack up postgres``) generates a password for its
superuser and one per database role it creates (``ensure_database`` in
``streamhouse.runtime.postgres``), and keeps each in
``<state_dir>/postgres/credentials/<role>.password`` (folder 0700, file 0600).
Every process that needs a role's credentials (Spark's metastore, Airflow)
reads them here; a password set in the settings wins over the file, which is
how a server outside the stack is used. Passwords are ``SecretStr`` all the
way: printed or logged, they show as asterisks.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pydantic import SecretStr

from core.errors import UserFacingError
from core.settings import Settings


@dataclass(frozen=True)
class PgCredentials:
    """How one role reaches its database."""

    host: str
    port: int
    database: str
    user: str
    password: SecretStr

    @property
    def jdbc_url(self) -> str:
        """The JDBC URL (no password in it: JDBC takes the password apart)."""
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    def conninfo(self, connect_timeout_s: int = 5) -> dict[str, str | int]:
        """Keyword arguments for ``psycopg.connect``."""
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.database,
            "user": self.user,
            "password": self.password.get_secret_value(),
            "connect_timeout": connect_timeout_s,
        }

    def sqlalchemy_url(self, driver: str = "psycopg") -> SecretStr:
        """``postgresql+<driver>://user:password@host:port/database``, kept secret."""
        user = quote(self.user, safe="")
        password = quote(self.password.get_secret_value(), safe="")
        return SecretStr(
            f"postgresql+{driver}://{user}:{password}@{self.host}:{self.port}/{self.database}"
        )


def credentials_dir(settings: Settings) -> Path:
    """The folder of the embedded server's generated passwords."""
    return settings.state_dir / "postgres" / "credentials"


def password_file(settings: Settings, role: str) -> Path:
    """The file that holds ``role``'s generated password."""
    if not role.replace("_", "").isalnum():
        raise UserFacingError(
            f"{role!r} is not a valid role name: use letters, digits and underscores."
        )
    return credentials_dir(settings) / f"{role}.password"


def generate_password() -> SecretStr:
    """A new random password (256 bits, URL-safe characters)."""
    return SecretStr(secrets.token_urlsafe(32))


def store_password(settings: Settings, role: str, password: SecretStr) -> Path:
    """Write ``role``'s password, readable by the owner only, replacing it atomically."""
    folder = credentials_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    target = password_file(settings, role)
    temporary = target.with_suffix(f".tmp{os.getpid()}")
    # Created 0600 from the start: the password is never readable by others, not even briefly.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password.get_secret_value() + "\n")
    temporary.replace(target)
    return target


def stored_password(settings: Settings, role: str) -> SecretStr | None:
    """``role``'s generated password, or None when the server has generated none."""
    try:
        text = password_file(settings, role).read_text().strip()
    except FileNotFoundError:
        return None
    return SecretStr(text) if text else None


def superuser_credentials(settings: Settings, database: str = "postgres") -> PgCredentials:
    """The superuser's credentials: from the settings, else the embedded server's."""
    role = settings.postgres.superuser
    password = settings.postgres.superuser_password or stored_password(settings, role)
    if password is None:
        raise UserFacingError(
            f"No password for PostgreSQL's superuser {role!r} in {credentials_dir(settings)}: "
            "start the embedded server with `streamhouse stack up postgres`, or set "
            "STREAMHOUSE_POSTGRES__SUPERUSER_PASSWORD for another server."
        )
    host, port = settings.postgres_address
    return PgCredentials(host, port, database, role, password)


def role_credentials(
    settings: Settings, name: str, password: SecretStr | None = None, database: str | None = None
) -> PgCredentials:
    """The credentials of the role ``name`` on ``database`` (default: its own, ``name``).

    ``password`` (from the settings) wins; otherwise the generated one, which
    ``streamhouse stack up postgres`` creates.
    """
    secret = password or stored_password(settings, name)
    if secret is None:
        raise UserFacingError(
            f"No credentials for the PostgreSQL role {name!r} in {credentials_dir(settings)}: "
            "start the stack's PostgreSQL with `streamhouse stack up postgres`."
        )
    host, port = settings.postgres_address
    return PgCredentials(host, port, database or name, name, secret)


def metastore_credentials(settings: Settings) -> PgCredentials:
    """The Hive metastore's database and role (``catalog.database``)."""
    return role_credentials(settings, settings.catalog.database, settings.catalog.password)
