"""Build the SparkSession every job uses: Delta, Kafka and Avro from cached jars, one catalog.

The connector jars are resolved once from Maven Central into the jar cache
(``make install``) and passed to Spark as local jars, so starting a job never
downloads anything. With ``catalog.kind = hive`` (the default) every process
shares one Hive metastore in the stack's PostgreSQL (``spark_jobs/catalog.py``
registers the lake's tables in it); ``in-memory`` keeps Spark's per-session
catalog, for tests that need no service.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from core.environment import temporary_environment
from core.jars import METASTORE_JDBC, spark_bundles
from core.postgres import metastore_credentials
from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import DataStreamWriter, StreamingQuery


def connector_jars(settings: Settings) -> list[Path]:
    """Paths of the Delta, Kafka and Avro connector jars (and ``extra_packages``) in the cache.

    Read from the jar cache only: ``streamhouse jars`` (run by ``make install``)
    resolves them, so a job start never downloads anything.
    """
    return [
        jar
        for bundle in spark_bundles(settings.spark.extra_packages)
        for jar in bundle.cached_jars(settings.jars_dir)
    ]


INGEST_POOL = "ingest"
_POOLS = f"""<?xml version="1.0"?>
<allocations>
  <pool name="{INGEST_POOL}">
    <schedulingMode>FIFO</schedulingMode><weight>4</weight><minShare>1</minShare>
  </pool>
  <pool name="default">
    <schedulingMode>FAIR</schedulingMode><weight>1</weight><minShare>0</minShare>
  </pool>
</allocations>
"""


def _fair_pools(settings: Settings) -> Path:
    """The FAIR scheduler's pools: ingest's tasks go first when the cores are short."""
    path = settings.state_dir / "spark" / "fairscheduler.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != _POOLS:
        path.write_text(_POOLS)
    return path


def metastore_properties(settings: Settings) -> dict[str, str]:
    """The Hive metastore's configuration: PostgreSQL over JDBC, schema created on demand.

    DataNucleus creates the metastore's tables as it first needs them
    (``autoCreateTables``/``Columns``); ``autoCreateAll`` would also add the
    constraints, and two of its connections then lock each other on an
    ``ALTER TABLE ... ADD CONSTRAINT``: the first table write hangs, silently.
    """
    credentials = metastore_credentials(settings)
    return {
        "javax.jdo.option.ConnectionURL": credentials.jdbc_url,
        "javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
        "javax.jdo.option.ConnectionUserName": credentials.user,
        "javax.jdo.option.ConnectionPassword": credentials.password.get_secret_value(),
        "datanucleus.schema.autoCreateAll": "false",
        "datanucleus.schema.autoCreateTables": "true",
        "datanucleus.schema.autoCreateColumns": "true",
        "datanucleus.schema.autoCreateConstraints": "false",
        "hive.metastore.schema.verification": "false",
        # Hive 2.3 defaults to BoneCP, which Spark does not ship; HikariCP it does.
        "datanucleus.connectionPoolingType": "HikariCP",
        # Two pools per driver (transactional, and one for schema and id generation).
        # Hive's defaults keep 10 connections open in each, idle or not; Spark calls the
        # metastore one call at a time per driver (HiveExternalCatalog is synchronized).
        "datanucleus.connectionPool.maxPoolSize": str(settings.catalog.pool_max_connections),
        "datanucleus.connectionPool.minIdle": "1",
        # HikariCP's idleTimeout, in milliseconds (DataNucleus names it maxIdle).
        "datanucleus.connectionPool.maxIdle": str(settings.catalog.pool_idle_timeout_s * 1000),
        "hive.metastore.warehouse.dir": settings.warehouse_uri,
    }


def hive_site_dir(settings: Settings) -> Path:
    """A private folder holding ``hive-site.xml`` for the driver's classpath.

    The metastore's password must not be a Spark setting: PySpark starts the
    JVM with every setting on spark-submit's command line, which any user of
    the machine can read in ``ps``. Hive reads ``hive-site.xml`` from the
    classpath instead; the file is the owner's only (0600 in a 0700 folder).
    """
    folder = settings.state_dir / "spark" / "hive-conf"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    properties = "".join(
        f"  <property><name>{escape(key)}</name><value>{escape(value)}</value></property>\n"
        for key, value in metastore_properties(settings).items()
    )
    text = f'<?xml version="1.0"?>\n<configuration>\n{properties}</configuration>\n'
    target = folder / "hive-site.xml"
    if not target.exists() or target.read_text() != text:
        temporary = folder / f".hive-site.{os.getpid()}.xml"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        temporary.replace(target)  # atomic: another process never reads half a file
    return folder


def catalog_config(settings: Settings) -> dict[str, str]:
    """Spark settings of the catalog (none of them secret: see ``hive_site_dir``)."""
    if settings.catalog.kind == "in-memory":
        return {"spark.sql.catalogImplementation": "in-memory"}
    return {
        "spark.sql.catalogImplementation": "hive",
        # Every process the same, so a table created by one is where the others look.
        "spark.sql.warehouse.dir": settings.warehouse_uri,
    }


def driver_classpath(settings: Settings) -> list[str]:
    """What the driver JVM's own class path needs besides Spark: the catalog's JDBC driver
    and the private ``hive-site.xml`` folder (nothing for the in-memory catalog).

    DataNucleus loads the JDBC driver through DriverManager, which only sees the
    JVM's own class path: with the jar in spark.jars alone, "No suitable driver".
    These entries go after Spark's jars (``driver_launch_environment``), not before
    them as ``spark.driver.extraClassPath`` would put them: the class archive
    (``spark_jobs.class_archive``) is valid only for a class path that starts
    with the entries it was written with, and a folder is never allowed there.
    """
    if settings.catalog.kind == "in-memory":
        return []
    jdbc = METASTORE_JDBC.cached_jars(settings.jars_dir)
    return [*map(str, jdbc), str(hive_site_dir(settings))]


def driver_launch_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment variables a driver JVM must be launched with: ``SPARK_DIST_CLASSPATH``
    (which Spark's launcher appends to the class path) with ``driver_classpath``, after what
    the environment already held there."""
    entries = driver_classpath(settings)
    if not entries:
        return {}
    present = [e for e in environ.get("SPARK_DIST_CLASSPATH", "").split(os.pathsep) if e]
    return {
        "SPARK_DIST_CLASSPATH": os.pathsep.join(
            [*present, *(e for e in entries if e not in present)]
        )
    }


def driver_java_options(settings: Settings, *options: str | None) -> str:
    """The driver's JVM options: the class archive's (when built) and ``options``."""
    from spark_jobs import class_archive

    return " ".join([*class_archive.java_options(settings), *(o for o in options if o)])


_LOCAL_MASTER = re.compile(r"local(?:\[(\*|\d+)\])?")


def master_with_retries(master: str, task_max_failures: int) -> str:
    """``master`` with task retries: ``local`` and ``local[N]`` become ``local[N,F]``.

    Spark's local scheduler fails a job at a task's first failure unless the
    master names a count (``spark.task.maxFailures`` applies to cluster
    masters only); a race inside Spark (a broadcast's block lock released
    twice at task end) then fails a whole micro-batch. Other masters, and a
    local master that already names its count, are returned as they are.
    """
    matched = _LOCAL_MASTER.fullmatch(master.strip())
    if matched is None:
        return master
    threads = matched.group(1) or "1"
    return f"local[{threads},{task_max_failures}]"


def _is_local(uri: str) -> bool:
    """True for a plain path or a file: URI."""
    return "://" not in uri or uri.startswith("file:")


_LOG4J2_TO_FILE = """# Written by streamhouse: Spark's own log lines go to a file, not the console.
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
"""


def _log_to_file(settings: Settings, app_name: str, log_file: Path) -> str:
    """A log4j2 configuration that sends the driver JVM's log to ``log_file``; its path."""
    config = settings.state_dir / "spark" / f"log4j2-{app_name}.properties"
    config.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(_LOG4J2_TO_FILE.format(log_file=log_file))
    return f"-Dlog4j2.configurationFile={config}"


def spark_log_file(settings: Settings, app_name: str) -> Path:
    """Where an interactive command's Spark log goes (the console shows only the command's)."""
    return settings.state_dir / "logs" / f"{app_name}.log"


#: How many tasks list a table's files (Delta's full VACUUM lists with exactly this many).
FILE_LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"


def build_spark(
    settings: Settings,
    app_name: str,
    log_file: Path | None = None,
    extra_config: Mapping[str, str] | None = None,
) -> SparkSession:
    """A SparkSession for ``app_name`` configured from the settings.

    ``log_file``: where the driver JVM logs (an interactive command passes one,
    so Spark's warnings stay off the user's console); a service logs to its
    own output, which is its service log. ``extra_config``: settings of this
    process only (the Spark Connect server's plugin and address).
    """
    from pyspark.sql import SparkSession

    spark_cfg = settings.spark
    java_options = _log_to_file(settings, app_name, log_file) if log_file is not None else None
    jars = ",".join(str(p) for p in connector_jars(settings))
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master_with_retries(spark_cfg.master, spark_cfg.task_max_failures))
        .config("spark.task.maxFailures", str(spark_cfg.task_max_failures))
        .config("spark.jars", jars)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.sql.shuffle.partitions", str(spark_cfg.shuffle_partitions))
        # The ingest and window queries share the driver: FAIR keeps a long
        # window MERGE from holding back the next bronze batch.
        .config("spark.scheduler.mode", "FAIR")
        .config("spark.scheduler.allocation.file", str(_fair_pools(settings)))
        # RocksDB keeps window and dedup state off the JVM heap and checkpoints
        # only the changes of each batch.
        .config(
            "spark.sql.streaming.stateStore.providerClass",
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        )
        .config("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
        .config("spark.driver.memory", spark_cfg.driver_memory)
        .config("spark.ui.enabled", str(spark_cfg.ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", spark_cfg.driver_host)
        .config("spark.driver.bindAddress", spark_cfg.driver_bind_address)
        .config("spark.sql.session.timeZone", "UTC")
        # Local state and spill stay under the state directory, not in /tmp.
        .config("spark.local.dir", str(settings.state_dir / "spark-local"))
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        # Every idempotent append (txnAppId) rebuilds the table state to look up
        # its transaction; with Delta's default of 50 partitions that is 50 tasks.
        .config(
            "spark.databricks.delta.snapshotPartitions", str(spark_cfg.delta_snapshot_partitions)
        )
        # Delta's full VACUUM lists the table's folders with this many tasks (Spark's
        # default: 10,000), however few the folders: 20 s for four on two cores.
        .config(FILE_LISTING_PARALLELISM, str(spark_cfg.file_listing_parallelism))
    )
    extra = dict(extra_config or {})
    java_options = driver_java_options(
        settings, java_options, extra.pop("spark.driver.extraJavaOptions", None)
    )
    for key, value in {**catalog_config(settings), **extra}.items():
        builder = builder.config(key, value)
    if java_options:
        builder = builder.config("spark.driver.extraJavaOptions", java_options)
    if _is_local(settings.lake_uri) and _is_local(settings.checkpoint_dir("", "")):
        # On a local disk, the default FileContext-based manager renames through
        # Hadoop's RawLocalFileSystem, which (without Hadoop's native library)
        # forks `readlink` and `chmod` for every offset, commit and Delta
        # checksum file: tens of ms each, per micro-batch. The FileSystem-based
        # one renames with java.io. It is only safe with one writer per
        # checkpoint, which a streaming query is; object stores keep the default.
        builder = builder.config(
            "spark.sql.streaming.checkpointFileManagerClass",
            "org.apache.spark.sql.execution.streaming.checkpointing."
            "FileSystemBasedCheckpointFileManager",
        )
    # PySpark launches the driver JVM with this process's environment; set for the launch
    # only, so that a process started later (another stack's) never inherits these entries.
    with temporary_environment(driver_launch_environment(settings, os.environ)):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    from spark_jobs.catalog import open_metastore  # catalog imports Delta's Python API

    open_metastore(spark, settings)
    return spark


def start_query(
    writer: DataStreamWriter,
    settings: Settings,
    name: str,
    checkpoint: str,
    available_now: bool = False,
) -> StreamingQuery:
    """Start a query under ``name`` with its checkpoint: on its trigger from the settings
    (``trigger_for(name)``), or reading what is there and stopping (``available_now``)."""
    writer = writer.queryName(name).option("checkpointLocation", checkpoint)
    if available_now:
        return writer.trigger(availableNow=True).start()
    return writer.trigger(processingTime=settings.trigger_for(name)).start()
