"""The lake's tables in the shared catalog: external Delta tables by location, schema ``lake``.

The tables are written by path (``lake/tables.py``); the catalog only names
them, so ``SELECT * FROM lake.quakes`` works in every Spark process (dbt, GX,
Airflow tasks, a notebook) and dropping a registration never deletes data.
Registration is idempotent (``CREATE TABLE IF NOT EXISTS ... LOCATION``) and
runs when the streaming job starts, again as the tables it creates later
appear, and before each marts command.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import UserFacingError
from core.postgres import metastore_credentials
from core.settings import Settings
from lake.tables import TABLES, Table
from spark_jobs.delta_io import table_exists

if TYPE_CHECKING:
    import psycopg
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# Held in PostgreSQL while a process creates metastore objects: DataNucleus
# creates the metastore's own tables on first use, and two processes doing it
# at once can both try to create one (see ``open_metastore``).
METASTORE_LOCK = 0x5354_4D48_4D53  # "STMHMS"
#: The application name of the lock's connections (``pg_stat_activity``), with the process id.
_APPLICATION = "streamhouse-metastore"


def _metastore_connection(settings: Settings) -> psycopg.Connection[Any]:
    """A connection to the metastore's database; its server down is one sentence."""
    import psycopg

    credentials = metastore_credentials(settings)
    timeout = settings.postgres.connect_timeout_s
    try:
        return psycopg.connect(
            **credentials.conninfo(timeout),  # type: ignore[arg-type]
            autocommit=True,
            # Names this process to another that waits for the lock it holds.
            application_name=f"{_APPLICATION} pid {os.getpid()}",
        )
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserFacingError(
            f"The catalog's PostgreSQL at {credentials.host}:{credentials.port} did not answer "
            f"({reason}): start it with `streamhouse stack up postgres`, or point postgres.host "
            "and postgres.port at a running server."
        ) from None


def require_metastore(settings: Settings) -> None:
    """Fail at once, in one sentence, when the catalog's database does not answer: before a
    JVM starts, instead of Hive's "Unable to instantiate" traceback after it (9-47 s here).
    A no-op for the in-memory catalog."""
    if settings.catalog.kind == "hive":
        _metastore_connection(settings).close()


def _lock_holder(connection: psycopg.Connection[Any]) -> str:
    """Who holds the metastore lock: the process's id when it is one of ours, and its
    PostgreSQL session."""
    row = connection.execute(
        "SELECT a.pid, a.backend_start, a.application_name FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND (l.classid::bigint << 32 | l.objid::bigint) = %s",
        (METASTORE_LOCK,),
    ).fetchone()
    if row is None:
        return "a session that has released it since"
    session = f"PostgreSQL session {row[0]}, connected at {row[1]:%Y-%m-%d %H:%M:%S %Z}"
    name = str(row[2] or "")
    if name.startswith(f"{_APPLICATION} pid "):
        return f"process {name.rsplit(' ', 1)[1]} ({session})"
    return session


@contextlib.contextmanager
def metastore_lock(settings: Settings) -> Iterator[None]:
    """Serialise metastore DDL between processes (a no-op for the in-memory catalog).

    The wait is bounded (``catalog.lock_timeout_s``): a process stuck while it holds the
    lock would otherwise stop every driver's start behind it, without a word.
    """
    if settings.catalog.kind != "hive":
        yield
        return
    import psycopg

    timeout = settings.catalog.lock_timeout_s
    with _metastore_connection(settings) as connection:
        connection.execute(f"SET lock_timeout = {int(timeout * 1000)}")
        try:
            connection.execute("SELECT pg_advisory_lock(%s)", (METASTORE_LOCK,))
        except psycopg.errors.LockNotAvailable:
            raise UserFacingError(
                f"The catalog's metastore lock was still held after {timeout:g} s, by "
                f"{_lock_holder(connection)}: end that process if it is stuck, or raise "
                "catalog.lock_timeout_s."
            ) from None
        connection.execute("SET lock_timeout = 0")
        try:
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (METASTORE_LOCK,))


def open_metastore(spark: SparkSession, settings: Settings) -> None:
    """The process's first contact with the metastore, under the metastore lock.

    Hive's client, on a JVM's first contact, creates the metastore's tables (DataNucleus),
    then the default database and the roles ``admin`` and ``public`` when it finds none.
    With DataNucleus's constraints off (``spark_jobs.session.metastore_properties``) no
    unique index stops two processes doing it at once: both insert, and every client
    started later fails ("Unable to instantiate SessionHiveMetaStoreClient", on a
    duplicate role). Any catalog call makes that contact, a path read in SQL
    (``delta.`path```) included, so every driver makes it here, before its work starts.
    A no-op for the in-memory catalog. A catalog that does not answer is logged, not
    raised: a stream's data never waits on the catalog (``LakeRegistrar``), and a command
    that needs it says so in one sentence before its JVM starts (``require_metastore``).
    """
    if settings.catalog.kind != "hive":
        return
    try:
        with metastore_lock(settings):
            spark.catalog.databaseExists("default")
    except Exception as error:  # PostgreSQL down, or Hive's client failing to start
        log.warning("could not open the catalog: %s", str(error).strip().splitlines()[0])


def qualified_name(settings: Settings, table: Table) -> str:
    """``lake.<table>``: the name the catalog knows ``table`` by."""
    return f"{settings.catalog.lake_schema}.{table.name}"


def _same_location(registered: str, wanted: str) -> bool:
    def norm(uri: str) -> str:
        return uri.removeprefix("file:").rstrip("/")

    return norm(registered) == norm(wanted)


def ensure_schemas(spark: SparkSession, settings: Settings) -> None:
    """The ``lake`` and ``marts`` schemas, created when missing."""
    with metastore_lock(settings):
        for schema in (settings.catalog.lake_schema, settings.catalog.marts_schema):
            spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")


def _table_names(spark: SparkSession, schema: str) -> set[str]:
    """Every name the metastore holds in ``schema``, in one call, loading no table (which
    fails when its files went away, as ``Catalog.tableExists`` and ``listTables`` do)."""
    return {
        str(row["tableName"]).lower() for row in spark.sql(f"SHOW TABLES IN {schema}").collect()
    }


def registered_location(spark: SparkSession, name: str) -> str | None:
    """Where the catalog's Delta table ``name`` lives; None when no Delta table is there."""
    from pyspark.errors import AnalysisException

    try:
        detail = spark.sql(f"DESCRIBE DETAIL {name}").first()
    except AnalysisException:  # DELTA_PATH_DOES_NOT_EXIST: the files went away
        return None
    return str(detail["location"]) if detail is not None else None


def register_table(
    spark: SparkSession, settings: Settings, table: Table, names: set[str] | None = None
) -> bool:
    """Register ``table`` by location when its Delta log exists; True when it is registered.

    A registration pointing elsewhere (the lake moved: ``lake_root`` changed)
    is replaced; the table is external, so dropping it keeps every file.
    ``names``: the lake schema's names (``_table_names``), when the caller listed them.
    A name already at its place costs one look at its table (``DESCRIBE DETAIL``).
    """
    path = table.path(settings.lake_uri)
    name = qualified_name(settings, table)
    if names is None:
        names = _table_names(spark, settings.catalog.lake_schema)
    taken = table.name.lower() in names
    location = registered_location(spark, name) if taken else None
    # A location DESCRIBE DETAIL answered for holds a Delta table: nothing to do.
    if location is not None and _same_location(location, path):
        return True
    if not table_exists(spark, path):
        return False
    if taken:
        # Elsewhere, or at a location that no longer holds a Delta table (a lake
        # deleted under its name): re-pointed, or the name would stay unreadable.
        log.warning("%s pointed at %s; registering it at %s", name, location or "nothing", path)
        spark.sql(f"DROP TABLE IF EXISTS {name}")
    escaped = path.replace("'", "\\'")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{escaped}'")
    log.info("registered %s at %s", name, path)
    return True


def register_lake_tables(spark: SparkSession, settings: Settings) -> dict[str, bool]:
    """Register every lake table that exists; by qualified name, whether it is registered."""
    ensure_schemas(spark, settings)
    with metastore_lock(settings):
        names = _table_names(spark, settings.catalog.lake_schema)
        return {
            qualified_name(settings, table): register_table(spark, settings, table, names)
            for table in TABLES.values()
        }


class LakeRegistrar:
    """Registers the lake's tables as they appear (the streaming job creates some lazily).

    ``poll`` is cheap once every table is registered: it does nothing more.
    """

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self._spark = spark
        self._settings = settings
        self._missing = set(TABLES)
        self._schemas_ready = False

    @property
    def complete(self) -> bool:
        return not self._missing

    def poll(self) -> None:
        """Register the tables that appeared since the last call.

        A catalog that cannot be reached is logged and tried again at the next
        call: the stream's data never waits on the catalog.
        """
        if not self._missing:
            return
        try:
            if not self._schemas_ready:
                ensure_schemas(self._spark, self._settings)
                self._schemas_ready = True
            with metastore_lock(self._settings):
                names = _table_names(self._spark, self._settings.catalog.lake_schema)
                for name in sorted(self._missing):
                    if register_table(self._spark, self._settings, TABLES[name], names):
                        self._missing.discard(name)
        except Exception as error:  # the metastore, PostgreSQL or a credentials file
            log.warning("could not register the lake's tables yet: %s", str(error).splitlines()[0])


#: What ``catalog tables`` shows for a name whose location holds no Delta table.
MISSING_LOCATION = (
    "(no Delta table at its location: `streamhouse catalog register` points it at the lake)"
)


@dataclass(frozen=True)
class CatalogTable:
    """One table of the catalog as ``streamhouse catalog tables`` shows it."""

    name: str
    location: str
    rows: int | None


def describe_tables(spark: SparkSession, settings: Settings, count: bool) -> list[CatalogTable]:
    """Every table of the lake and marts schemas, each read by its name."""
    found = []
    for schema in (settings.catalog.lake_schema, settings.catalog.marts_schema):
        if not spark.catalog.databaseExists(schema):
            continue
        names = sorted(_table_names(spark, schema))
        views = {r["viewName"] for r in spark.sql(f"SHOW VIEWS IN {schema}").collect()}
        for table_name in names:
            name = f"{schema}.{table_name}"
            if table_name in views:
                location: str | None = "(view)"
            else:
                location = registered_location(spark, name)
            if location is None:
                found.append(CatalogTable(name, MISSING_LOCATION, None))
                continue
            rows = spark.table(name).count() if count else None
            found.append(CatalogTable(name, location, rows))
    return found
