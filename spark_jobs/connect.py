"""One warm Spark driver for the batch tasks: the stack's Spark Connect server and its clients.

A short-lived Spark process pays 15-35 s before its first row (the JVM, the
first Delta read's planning and code generation, the metastore client:
``spark_jobs/README.md``), and a day of ``lakehouse_daily`` starts five of
them. The ``spark-connect`` service is one driver built like every other
(``build_spark``: the jars, the shared metastore, Delta) with Spark's
Connect plugin; Airflow's tasks connect to it as clients, each in a session
of its own (its own settings, such as the commit marker, and temporary views).

The server asks for a token (generated under the state directory, 0600).
PySpark sends it in the clear only to ``localhost`` (gRPC's local
credentials); to any other host it needs TLS, so the client's address is
``localhost`` when the server is on a loopback address.

Delta's Python API (``DeltaTable``) needs a server plugin that Maven Central
does not carry for Delta 4.4 (``delta-connect-server``): code that runs over
Connect uses Delta's SQL.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from core.errors import UserFacingError
from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: PySpark's own variables: the server's address for every session of the process
#: (dbt-spark's ``SparkSession.builder.getOrCreate()`` included), and the token.
REMOTE_ENV = "SPARK_REMOTE"
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
SERVICE = "spark-connect"


def token_file(settings: Settings) -> Path:
    """Where the stack's generated token is kept (owner-only)."""
    return settings.state_dir / "spark" / "connect" / "token"


def serving_file(settings: Settings) -> Path:
    """Written by the server, with its pid, once its driver is built and its catalog open.

    Its gRPC port opens earlier, while Spark builds the context (the plugin starts
    it): a client answered then fails with "No active or default Spark session
    found", so readiness is this file, not the port.
    """
    return settings.state_dir / "spark" / "connect" / "serving"


def is_serving(settings: Settings, pid: int | None) -> bool:
    """True when the server running as ``pid`` said it serves (``serving_file``)."""
    if pid is None:
        return False
    try:
        return int(serving_file(settings).read_text().strip()) == pid
    except (OSError, ValueError):
        return False


def server_token(settings: Settings) -> str | None:
    """The token the server asks for: the setting, else the stored one, generated on first use;
    None when authentication is off."""
    if not settings.spark.connect_auth:
        return None
    if settings.spark.connect_token is not None:
        return settings.spark.connect_token.get_secret_value()
    path = token_file(settings)
    try:
        stored = path.read_text().strip()
    except FileNotFoundError:
        stored = ""
    if stored:
        return stored
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    token = secrets.token_urlsafe(32)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    temporary.replace(path)
    return token


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def client_url(settings: Settings) -> str:
    """The server's ``sc://`` address: the setting, else the stack's service."""
    if settings.spark.connect_url:
        return settings.spark.connect_url
    host = settings.runtime.host
    # The token goes out only to "localhost" without TLS (PySpark's rule).
    name = "localhost" if _is_loopback(host) else host
    return f"sc://{name}:{settings.runtime.ports.spark_connect}"


def server_config(settings: Settings) -> dict[str, str]:
    """The Spark settings that make a ``build_spark`` driver a Connect server."""
    return {
        "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
        "spark.connect.grpc.binding.address": settings.runtime.host,
        "spark.connect.grpc.binding.port": str(settings.runtime.ports.spark_connect),
        # A task that died without closing its session frees it after this long.
        "spark.connect.session.manager.defaultSessionTimeout": "30m",
    }


def connect_session(settings: Settings, app_name: str) -> SparkSession:
    """A Connect client session on the server, checked with a first query.

    Sets ``SPARK_REMOTE`` (and the token) for the whole process, so any
    later ``SparkSession.builder.getOrCreate()`` (dbt-spark's) gets this
    session. A server that does not answer is one sentence naming the
    service and its log.
    """
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession

    url = client_url(settings)
    log = settings.state_dir / SERVICE / "service.log"  # the stack's service log

    def not_answering(why: str) -> UserFacingError:
        return UserFacingError(
            f"The Spark Connect server at {url} did not answer ({why}): start it with "
            f"`streamhouse stack up {SERVICE}`; its log is {log}."
        )

    # Checked first: PySpark's client retries an unreachable server for minutes.
    address = urlsplit(url.replace("sc://", "http://", 1))
    try:
        socket.create_connection((address.hostname or "", address.port or 15002), 5).close()
    except OSError as error:
        raise not_answering(error.strerror or type(error).__name__) from error
    token = server_token(settings)
    os.environ[REMOTE_ENV] = url
    if token is not None:
        os.environ[TOKEN_ENV] = token
    # dbt-spark's session method calls enableHiveSupport() on every statement; over Connect
    # that static setting cannot change (the server has it) and PySpark warns each time.
    warnings.filterwarnings(
        "ignore", message=r"Failed to set spark\.sql\.catalogImplementation", category=UserWarning
    )
    spark = SparkSession.builder.remote(url).appName(app_name).getOrCreate()
    try:
        spark.sql("SELECT 1").collect()
    except (PySparkException, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise not_answering(first[:200]) from error
    return spark
