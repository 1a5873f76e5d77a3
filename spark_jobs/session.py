"""Build the SparkSession every job uses: Delta, Kafka and Avro from cached jars.

The connector jars are resolved once from Maven Central into the jar cache and
passed to Spark as local jars, so starting a job never downloads anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from streamhouse.runtime.maven import Coordinate, bundle_fingerprint, resolve_bundle
from streamhouse.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SPARK_VERSION = "4.1.1"
DELTA_VERSION = "4.4.0"

SPARK_CONNECTORS = [
    Coordinate.parse(f"io.delta:delta-spark_4.1_2.13:{DELTA_VERSION}"),
    Coordinate.parse(f"org.apache.spark:spark-sql-kafka-0-10_2.13:{SPARK_VERSION}"),
    Coordinate.parse(f"org.apache.spark:spark-avro_2.13:{SPARK_VERSION}"),
]
# Spark ships scala, jackson, hadoop, parquet, log4j...: take only the connectors'
# own jars, never second copies of what is on Spark's classpath already.
_CONNECTOR_GROUPS = (
    "io.delta",
    "io.unitycatalog",
    "org.apache.spark",
    "org.apache.kafka",
    "org.apache.commons",
)
_ALREADY_IN_SPARK = ("spark-tags_2.13",)
# Libraries on Spark's classpath that a connector's POM often drags in again.
_SPARK_PROVIDED = (
    "hadoop-client-api",
    "hadoop-client-runtime",
    "scala-library",
    "slf4j-api",
    "jackson-core",
    "jackson-databind",
    "jackson-annotations",
)


def connector_jars(settings: Settings) -> list[Path]:
    """Paths of the Delta, Kafka and Avro connector jars, resolving them on first use."""
    folder = resolve_bundle(
        settings.jars_dir,
        f"spark-connectors-{SPARK_VERSION}-delta-{DELTA_VERSION}",
        SPARK_CONNECTORS,
        settings.runtime.maven_cmd,
        include_groups=_CONNECTOR_GROUPS,
        exclude_artifacts=_ALREADY_IN_SPARK,
    )
    jars = sorted(folder.glob("*.jar"))
    if settings.spark.extra_packages:
        extra = [Coordinate.parse(c) for c in settings.spark.extra_packages]
        extra_folder = resolve_bundle(
            settings.jars_dir,
            f"spark-extra-{bundle_fingerprint(extra)}",
            extra,
            settings.runtime.maven_cmd,
            # Only what Spark does not already ship (see _ALREADY_IN_SPARK's reason).
            exclude_artifacts=_SPARK_PROVIDED,
        )
        jars += sorted(extra_folder.glob("*.jar"))
    return jars


def build_spark(settings: Settings, app_name: str) -> SparkSession:
    """A SparkSession for ``app_name`` configured from the settings."""
    from pyspark.sql import SparkSession

    spark_cfg = settings.spark
    jars = ",".join(str(p) for p in connector_jars(settings))
    builder = (
        SparkSession.builder.appName(app_name)
        .master(spark_cfg.master)
        .config("spark.jars", jars)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.sql.shuffle.partitions", str(spark_cfg.shuffle_partitions))
        # The ingest and window queries share the driver: FAIR keeps a long
        # window MERGE from holding back the next bronze batch.
        .config("spark.scheduler.mode", "FAIR")
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
        .config(
            "spark.driver.extraJavaOptions", f"-Dderby.system.home={settings.state_dir / 'derby'}"
        )
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
