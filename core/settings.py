"""The one typed settings object of the platform.

Read once at the edge (CLI, job entry point, DAG) with ``Settings()`` and passed
down; library code never reads the environment itself. Every field can be set
with an environment variable ``STREAMHOUSE_<SECTION>__<FIELD>`` (for example
``STREAMHOUSE_KAFKA__BOOTSTRAP_SERVERS=broker:9092``) or in a ``.env`` file, so
moving from the embedded runtime to containers or a cluster is configuration
only. docker-compose.yml uses the same names.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class KafkaSettings(BaseModel):
    """Where Kafka is and which topics the platform uses."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]."
    )
    changes_topic: str = Field("usgs.quake_changes", description="Topic of change events.")
    dead_letter_topic: str = Field(
        "usgs.quake_changes.dlq", description="Topic of records that could not be published."
    )
    cursor_topic: str = Field(
        "_streamhouse.poller.cursors",
        description="Compacted topic of the pollers' cursors, keyed by source name.",
    )
    transaction_timeout_s: float = Field(
        60.0,
        gt=0,
        description="How long an open poller transaction may last before Kafka aborts it.",
    )
    topic_partitions: int = Field(3, ge=1, description="Partitions of topics the platform creates.")
    init_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long a transactional producer waits for Kafka when it starts "
        "(fencing a crashed predecessor) before giving up with an error.",
    )
    security_protocol: str = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: str | None = Field(
        None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL_* protocol)."
    )
    sasl_username: str | None = None
    sasl_password: SecretStr | None = Field(None, description="Secret: never printed or logged.")
    ssl_ca_location: Path | None = Field(
        None, description="PEM file of the CA that signed the brokers' certificates (SSL)."
    )

    @field_validator("security_protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        if value.upper() not in SECURITY_PROTOCOLS:
            raise ValueError(f"choose one of {', '.join(SECURITY_PROTOCOLS)}")
        return value.upper()

    @field_validator("sasl_mechanism")
    @classmethod
    def _known_mechanism(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in SASL_LOGIN_MODULES:
            raise ValueError(f"choose one of {', '.join(SASL_LOGIN_MODULES)}")
        return value.upper() if value else None

    def client_config(self) -> dict[str, str]:
        """librdkafka properties common to every client (the producers, the tools)."""
        config = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location is not None:
            config["ssl.ca.location"] = str(self.ssl_ca_location)
        return config

    def java_client_config(self) -> dict[str, str]:
        """The same settings as the Java client's properties (Spark's Kafka source).

        The Java client ignores librdkafka's ``sasl.username``/``sasl.password``:
        it reads credentials from a JAAS line, and a PEM CA as a truststore of
        type PEM.
        """
        config = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            if self.sasl_username is not None and self.sasl_password is not None:
                config["sasl.jaas.config"] = jaas_config(
                    self.sasl_mechanism, self.sasl_username, self.sasl_password
                )
        if self.ssl_ca_location is not None:
            config["ssl.truststore.type"] = "PEM"
            config["ssl.truststore.location"] = str(self.ssl_ca_location)
        return config


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def jaas_config(mechanism: str, username: str, password: SecretStr) -> str:
    """The Java client's ``sasl.jaas.config`` line for a username and password."""

    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (
        f"{SASL_LOGIN_MODULES[mechanism]} required username={quoted(username)} "
        f"password={quoted(password.get_secret_value())};"
    )


class RegistrySettings(BaseModel):
    """The schema registry, spoken to through the Confluent REST API."""

    url: str = Field(
        "http://127.0.0.1:8081/apis/ccompat/v7",
        description="Base URL of a Confluent-compatible schema registry API.",
    )
    compatibility: str = Field("BACKWARD", description="Compatibility level enforced per subject.")
    basic_auth_username: str | None = Field(None, description="HTTP basic auth user, if any.")
    basic_auth_password: SecretStr | None = Field(
        None, description="HTTP basic auth password. Secret: never printed or logged."
    )
    ssl_ca_location: Path | None = Field(
        None, description="PEM file of the CA that signed the registry's certificate (https)."
    )
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one registry request.")
    ready_path: str = Field(
        "/health/ready",
        description=(
            "Path, on the registry's host, of a check that answers 200 only once the registry "
            "has loaded every schema (Apicurio: /health/ready; its API answers earlier, from a "
            "partly replayed journal). The ingest decodes a batch, and quarantines a record for "
            "its schema, only while it passes. Empty, or a path the registry does not serve "
            "(404): no such check, the registry's answers are taken as complete."
        ),
    )

    def ready_url(self) -> str | None:
        """The readiness check's URL (``url``'s scheme and host plus ``ready_path``), if any."""
        if not self.ready_path:
            return None
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, self.ready_path, "", ""))

    def basic_auth(self) -> tuple[str, str] | None:
        """(user, password) for HTTP basic auth, when both are set."""
        if self.basic_auth_username is None or self.basic_auth_password is None:
            return None
        return self.basic_auth_username, self.basic_auth_password.get_secret_value()

    def client_config(self) -> dict[str, str | int]:
        """Configuration of confluent-kafka's ``SchemaRegistryClient`` (auth and CA included)."""
        config: dict[str, str | int] = {"url": self.url, "timeout": max(1, round(self.timeout_s))}
        auth = self.basic_auth()
        if auth is not None:
            config["basic.auth.user.info"] = ":".join(auth)
        if self.ssl_ca_location is not None:
            config["ssl.ca.location"] = str(self.ssl_ca_location)
        return config


DEFAULT_TRIGGER_OVERRIDES = {
    # At 5,000 events/s over 100,000 entities, a silver MERGE of a 30 s batch
    # took 9-14 s of 2 cores. Nobody waits seconds for silver: merging less
    # often leaves the cores to ingest and the windows (spark_jobs/README.md).
    "silver_quakes": "2 minutes",
    "late_quake_changes": "60 seconds",
    "aggregates_quake_windows_1h": "60 seconds",
}


class SparkSettings(BaseModel):
    """How Spark runs; the same jobs run on local[*] or a cluster master."""

    master: str = Field(
        "local[*]", description="Spark master URL: local[*], spark://, k8s://, yarn."
    )
    task_max_failures: int = Field(
        4,
        ge=1,
        description="Tries of a task before its job fails (spark.task.maxFailures). A local "
        "master gives up at the first failure unless told otherwise (local[N] means 1): the "
        "session runs local[N] as local[N,this], so a transient task failure is retried as "
        "on a cluster instead of failing the micro-batch.",
    )
    # Small batches on few cores: every extra shuffle task is overhead. Raise it on a cluster.
    shuffle_partitions: int = Field(2, ge=1)
    delta_snapshot_partitions: int = Field(
        1,
        ge=1,
        description="Partitions Delta uses to rebuild a table's state (Delta's default is 50: "
        "on 2 cores that alone costs seconds per commit). Raise it for tables of many files.",
    )
    file_listing_parallelism: int = Field(
        4,
        ge=1,
        description="Tasks that list a table's files in parallel "
        "(spark.sql.sources.parallelPartitionDiscovery.parallelism; Spark's default is 10,000). "
        "Delta's full VACUUM lists with that many tasks whatever the table's size: on two cores "
        "it took 20 s for a table of four folders, 1.8 s with 4. Raise it on a cluster.",
    )
    driver_memory: str = "2g"
    class_archive: bool = Field(
        True,
        description="Start driver JVMs from the class archive (AppCDS) that `streamhouse jars` "
        "builds: about 3 s less per driver start on two cores. Off, or the archive missing or "
        "stale (another JDK, pyspark or jar set), the JVM loads every class as usual.",
    )
    trigger_interval: str = Field(
        "1 second",
        description="Micro-batch trigger interval of the ingest and 1-minute window queries.",
    )
    trigger_overrides: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_TRIGGER_OVERRIDES),
        description="Trigger interval per query name, over trigger_interval: the queries "
        "nobody waits for seconds on run less often and leave the cores to the others. "
        "What is set here is laid over the defaults: setting one query keeps the others'.",
    )

    @field_validator("trigger_overrides")
    @classmethod
    def _over_default_triggers(cls, value: dict[str, str]) -> dict[str, str]:
        # pydantic-settings builds the whole dict from the variables it finds, so
        # one STREAMHOUSE_SPARK__TRIGGER_OVERRIDES__<query> dropped every default.
        return {**DEFAULT_TRIGGER_OVERRIDES, **value}

    max_offsets_per_trigger: int | None = Field(
        None, ge=1, description="Upper bound of Kafka offsets read per micro-batch."
    )
    delta_max_files_per_trigger: int | None = Field(
        None,
        ge=1,
        description="Upper bound of files a micro-batch reads from a Delta source (silver, late "
        "events and the windows read bronze; the hour rollup reads the minute windows); "
        "unset: Delta's default (1,000).",
    )
    starting_offsets: str = Field("earliest", description="Where a new query starts reading.")
    watermark_delay: str = Field(
        "10 minutes",
        description="Allowed lateness: an event whose time is older than its Kafka record's "
        "timestamp minus this is late (kept in bronze and the late-events table, left out of "
        "the windows). A property of the record, so any replay decides the same.",
    )
    max_event_time_ahead: str = Field(
        "5 minutes",
        description="An event time further than this after its Kafka record's timestamp is "
        "implausible: the record goes to quarantine with the reason (it would otherwise "
        "push the windows' watermark ahead of every later event).",
    )
    registry_retry_s: float = Field(
        60.0,
        gt=0,
        description="How long a batch retries an unreachable or failing schema registry before "
        "it fails (and the query is restarted from its checkpoint); nothing is quarantined for it.",
    )
    observe_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Longest wait for a written batch's observed figures: no wait in a batch is "
        "unbounded.",
    )
    ingest_idempotency: Literal["positions", "transaction"] = Field(
        "positions",
        description="How the ingest query keeps a batch re-run after a crash from being written "
        "twice. positions: a batch that follows the one this writer just committed is appended "
        "as is, and the first batch after a (re)start writes only the Kafka positions the tables "
        "do not hold. transaction: every append carries Delta's txnAppId/txnVersion, which "
        "makes Delta 4.4 rebuild the table's state on each append (0.3-0.4 s here).",
    )
    background_nice: int = Field(
        # 0 by default: on a shared, busy machine (load 20 on 2 cores) a driver at
        # nice 19, and still at 10, missed its executor heartbeats for minutes and
        # fell into local mode's broken re-registration (BlockManagerId NPE): it
        # never wrote again. The split into two drivers alone already keeps the
        # MERGEs off the ingest driver's task slots; raise this where cores are spare.
        0,
        ge=0,
        le=19,
        description="CPU niceness of a `stream run --background` driver (silver, the hour "
        "rollup, late events): under contention their MERGEs get a small share of the "
        "cores and the latency-critical driver the rest. 0 = same priority.",
    )
    stall_after_s: float = Field(
        300.0,
        gt=0,
        description="A query that has reported neither progress nor idleness for its trigger "
        "interval plus this long is stalled (metrics, `stack status`, the alert rule).",
    )
    ui_enabled: bool = False
    extra_packages: list[str] = Field(
        default_factory=list,
        description="More Maven coordinates for Spark's classpath (e.g. hadoop-aws for s3a://), "
        "resolved into the jar cache like the connectors.",
    )
    driver_host: str = Field("127.0.0.1", description="Address executors reach the driver at.")
    driver_bind_address: str = Field("127.0.0.1", description="Address the driver binds to.")
    tasks_on_connect: bool = Field(
        True,
        description="Airflow's Spark tasks (compaction, dbt, GX, freshness) run as clients of "
        "a Spark Connect server (the stack's spark-connect service, or connect_url): one warm "
        "driver instead of a JVM per task, which costs 15-35 s before its first row. The "
        "replay task always runs its own driver (it uses Delta's Python API).",
    )
    connect_url: str | None = Field(
        None,
        description="Spark Connect server of the tasks (sc://host:port[/;use_ssl=true]); "
        "default: the stack's spark-connect service on runtime.host.",
    )
    connect_auth: bool = Field(
        True,
        description="The Connect server requires a token (generated under the state directory, "
        "or connect_token). PySpark sends one only to localhost or over TLS: turn off only on a "
        "private network (docker-compose's), where the server's port is not published.",
    )
    connect_token: SecretStr | None = Field(
        None, description="Secret: the Connect server's token; default: a generated one."
    )


class ServicePorts(BaseModel):
    """Loopback ports of the embedded runtime's services."""

    kafka: int = 9092
    kafka_controller: int = 9093
    registry: int = 8081
    prometheus: int = 9090
    poller_metrics: int = 9401
    stream_metrics: int = 9402
    # The second, lower-priority streaming driver (silver, the hour rollup, late events).
    stream_background_metrics: int = 9404
    postgres: int = 5432
    # 9093 is Kafka's controller, so Alertmanager moves off its usual port.
    alertmanager: int = 9095
    pushgateway: int = 9091
    # Prometheus' PostgreSQL exporter, its usual port: the catalog's server as metrics.
    postgres_exporter: int = 9187
    # The Kafka broker's metrics: Prometheus' JMX exporter, an agent in its JVM.
    kafka_metrics: int = 9405
    # Prometheus' node exporter, its usual port: the host's CPU, memory and disks.
    node_exporter: int = 9100
    # Airflow's API server (UI, REST API, the tasks' execution API). Its scheduler,
    # dag-processor and triggerer listen on no port (their log servers are off:
    # every log is a local file the API server reads).
    airflow_api: int = 8080
    # Spark Connect's usual port: the driver Airflow's tasks run on.
    spark_connect: int = 15002


class RuntimeSettings(BaseModel):
    """The embedded runtime: versions of what it runs and how long it waits."""

    host: str = Field("127.0.0.1", description="Address every embedded service binds to.")
    ports: ServicePorts = ServicePorts()
    kafka_version: str = Field("4.1.1", description="org.apache.kafka:kafka_2.13 version.")
    # 3.0.x runs on Java 17; Apicurio 3.1+ is compiled for Java 21 (set java_home to one).
    registry_version: str = Field("3.0.9", description="io.apicurio:apicurio-registry-app version.")
    jmx_exporter_version: str = Field(
        "1.0.1",
        description="io.prometheus.jmx:jmx_prometheus_javaagent version: the Java agent that "
        "serves the Kafka broker's metrics (monitoring/kafka/jmx-exporter.yml).",
    )
    kafka_heap: str = "768m"
    registry_heap: str = "512m"
    start_timeout_s: float = Field(120.0, gt=0)
    stop_timeout_s: float = Field(30.0, gt=0)
    java_home: Path | None = Field(None, description="JDK to run services with; default: PATH.")
    maven_cmd: str = "mvn"
    prometheus_cmd: str = "prometheus"
    alertmanager_cmd: str = Field(
        "prometheus-alertmanager", description="Alertmanager binary (Debian's package name)."
    )
    pushgateway_cmd: str = Field(
        "prometheus-pushgateway", description="Pushgateway binary (Debian's package name)."
    )
    postgres_exporter_cmd: str = Field(
        "prometheus-postgres-exporter",
        description="PostgreSQL exporter binary (Debian's package name).",
    )
    node_exporter_cmd: str = Field(
        "prometheus-node-exporter", description="Node exporter binary (Debian's package name)."
    )
    min_java_version: int = 17


class PostgresSettings(BaseModel):
    """The PostgreSQL server of the shared catalog (Hive metastore) and Airflow's metadata.

    By default the embedded one (``stack up postgres``): its address comes from
    the runtime and its generated passwords from the state directory. Point
    ``host``/``port`` and ``superuser_password`` at another server to use it instead.
    """

    host: str | None = Field(None, description="Server address; default: runtime.host.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Server port; default: runtime.ports.postgres."
    )
    superuser: str = Field("postgres", description="Role that creates the per-user databases.")
    superuser_password: SecretStr | None = Field(
        None,
        description="Password of the superuser; default: the one the embedded server "
        "generated at its first start (kept in <state_dir>/postgres/credentials, mode 0600).",
    )
    bin_dir: Path = Field(
        Path("/usr/lib/postgresql/15/bin"),
        description="Where Debian's postgresql-15 package puts initdb and postgres.",
    )
    run_as_user: str = Field(
        "postgres",
        description="OS user the embedded server runs as when the platform runs as root "
        "(initdb and postgres refuse to run as root); ignored otherwise.",
    )
    max_connections: int = Field(
        100, ge=10, description="Connections the embedded server admits (metastore pools, Airflow)."
    )
    connect_timeout_s: int = Field(5, ge=1, description="Timeout of opening a connection.")
    monitor_role: str = Field(
        "streamhouse_monitor",
        description="Role the metrics exporter logs in as: pg_monitor's read-only statistics, "
        "no database of its own, no data.",
    )
    monitor_password: SecretStr | None = Field(
        None,
        description="Password of the monitor role; default: one generated for it "
        "(<state_dir>/postgres/credentials, mode 0600).",
    )


class CatalogSettings(BaseModel):
    """Spark's catalog: a Hive metastore in PostgreSQL, shared by every Spark process.

    ``in-memory`` is Spark's per-session catalog: for unit tests and one-off
    scripts that need no service; tables are then read by path only.
    """

    kind: Literal["hive", "in-memory"] = Field(
        "hive", description="hive: the metastore in PostgreSQL; in-memory: none shared."
    )
    database: str = Field(
        "metastore", description="PostgreSQL database (and role of the same name) of the metastore."
    )
    password: SecretStr | None = Field(
        None,
        description="Password of the metastore role; default: the one generated for it "
        "(<state_dir>/postgres/credentials, mode 0600).",
    )
    warehouse_dir: str | None = Field(
        None,
        description="spark.sql.warehouse.dir, the same for every process "
        "(default: <lake_root>/_warehouse).",
    )
    lock_timeout_s: float = Field(
        120.0,
        gt=0,
        description="How long a process waits for the metastore lock (held while another "
        "opens the metastore or registers tables) before it reports who holds it.",
    )
    pool_max_connections: int = Field(
        3,
        ge=1,
        description="Connections each of a Spark driver's two metastore pools may open "
        "(DataNucleus' HikariCP pools). Hive's default, 10 kept open per pool, held 20 "
        "idle connections per driver: five drivers filled PostgreSQL's 100.",
    )
    pool_idle_timeout_s: int = Field(
        60,
        ge=10,
        description="A pool closes connections idle for this long, down to one per pool.",
    )
    lake_schema: str = Field("lake", description="Schema of the lake's tables (by location).")
    marts_schema: str = Field("marts", description="Schema of the dbt marts (and seeds).")
    staging_schema: str = Field(
        "staging", description="Schema of the dbt staging and intermediate views."
    )


class SourceSettings(BaseModel):
    """The HTTP source the poller reads."""

    name: str = "usgs_earthquakes"
    base_url: str = Field(
        "http://127.0.0.1:8088/fdsnws/event/1/query",
        description="Endpoint of the FDSN event query (the simulator by default).",
    )
    page_size: int = Field(1000, ge=1, le=20000)
    timeout_s: float = Field(30.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0, description="Timeout of opening a connection.")
    simulator_host: str = Field("127.0.0.1", description="Address the API simulator binds to.")
    simulator_port: int = Field(8088, ge=0, le=65535, description="Port of the API simulator.")
    simulator_seed_path: Path = Field(
        PROJECT_ROOT / "producers" / "simulator" / "seed" / "usgs_feed_7_day_m1.geojson",
        description="GeoJSON FeatureCollection the simulator starts with (real USGS records).",
    )
    lookback_s: float = Field(
        60.0,
        ge=0,
        description="Overlap window: each poll re-reads this much before the cursor, so "
        "versions the source commits late are not missed; versions already sent are dropped.",
    )
    max_attempts: int = Field(5, ge=1, description="HTTP attempts per request (first + retries).")
    backoff_initial_s: float = Field(0.5, gt=0, description="First retry wait (doubles each time).")
    backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between two attempts.")
    retry_after_max_s: float = Field(
        120.0, gt=0, description="Longest Retry-After the poller honours (longer ones are capped)."
    )
    breaker_failures: int = Field(
        3, ge=1, description="Failed polls in a row that open the circuit breaker."
    )
    breaker_open_s: float = Field(
        30.0, gt=0, description="How long an open breaker pauses polling (doubles while failing)."
    )
    breaker_open_max_s: float = Field(300.0, gt=0, description="Longest breaker pause.")
    max_body_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="A response body larger than this is not read further: the page is "
        "dead-lettered (its head) and the poll retried later.",
    )
    max_json_depth: int = Field(
        64, ge=4, le=900, description="A page nesting deeper than this is dead-lettered."
    )
    dead_letter_max_bytes: int = Field(
        512 * 1024,
        ge=1024,
        description="Dead-letter payloads are cut to this size (original size and SHA-256 in "
        "the headers), below Kafka's message size limit.",
    )


class SimulatorSettings(BaseModel):
    """How the API simulator changes its data over time and which faults it injects.

    Rates are per second of wall time; fault rates are the probability that one
    response carries the fault. The same switches can be flipped at runtime with
    ``POST /admin/faults`` (see producers/README.md).
    """

    seed: int = Field(7, description="Seed of the simulator's random choices (reproducible runs).")
    changes_per_s: float = Field(
        0.0, ge=0, description="Changes (new events, revisions, deletions) per second; 0 = static."
    )
    new_event_share: float = Field(0.4, ge=0, description="Relative share of new events.")
    revision_share: float = Field(0.5, ge=0, description="Relative share of revisions.")
    deletion_share: float = Field(0.1, ge=0, description="Relative share of deletions.")
    min_version_age_s: float = Field(
        0.0,
        ge=0,
        description="A version stays current at least this long before it is revised again.",
    )
    rate_limit_rate: float = Field(0.0, ge=0, le=1, description="Share of 429 responses.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After of a 429 or 503, seconds.")
    retry_after_as_date: bool = Field(False, description="Send Retry-After as an HTTP date.")
    server_error_rate: float = Field(0.0, ge=0, le=1, description="Share of 500 responses.")
    unavailable_rate: float = Field(0.0, ge=0, le=1, description="Share of 503 responses.")
    slow_rate: float = Field(0.0, ge=0, le=1, description="Share of slow responses.")
    slow_s: float = Field(2.0, ge=0, description="Delay of a slow response.")
    truncate_rate: float = Field(0.0, ge=0, le=1, description="Share of truncated bodies.")
    malformed_rate: float = Field(0.0, ge=0, le=1, description="Share of non-JSON bodies.")
    huge_body_rate: float = Field(
        0.0, ge=0, le=1, description="Share of bodies padded to huge_body_mb (hostile input)."
    )
    huge_body_mb: int = Field(200, ge=1, description="Size of a huge body, MiB.")
    nan_rate: float = Field(
        0.0, ge=0, le=1, description="Share of pages whose first record's mag is a NaN literal."
    )
    deep_nesting_rate: float = Field(
        0.0, ge=0, le=1, description="Share of bodies that are JSON nested 10,000 levels deep."
    )
    drift_rate: float = Field(
        0.0, ge=0, le=1, description="Share of revisions that drift (extra/removed/retyped field)."
    )
    result_cap: int = Field(
        20000,
        ge=0,
        description="Search limit: a query matching more events is refused with 400.",
    )
    cap_counts_before_paging: bool = Field(
        False,
        description="Count the search limit before limit/offset (the service's code counts "
        "after them, so paging never hits it); on, a large poll must be split.",
    )


class LoadGenSettings(BaseModel):
    """The load generator: synthetic change events straight to Kafka (``streamhouse loadgen``)."""

    topic: str | None = Field(None, description="Topic to write; default: kafka.changes_topic.")
    rate_per_s: float | None = Field(
        10_000.0, gt=0, description="Target events per second over all processes; None = max."
    )
    processes: int = Field(1, ge=1, le=64, description="Producer processes.")
    entities: int = Field(100_000, ge=1, description="Distinct entity ids (cardinality).")
    duplicates: float = Field(0.0, ge=0, lt=1, description="Share of (id, version) sent twice.")
    out_of_order: float = Field(
        0.0, ge=0, lt=0.5, description="Share of versions sent after a newer one of the entity."
    )
    late: float = Field(0.0, ge=0, lt=1, description="Share of events with event time far behind.")
    late_by_s: float = Field(3600.0, gt=5, description="How far behind a late event's time is.")
    seed: int = Field(1, description="Seed of the generated stream (reproducible runs).")
    source_name: str = Field("loadgen", description="Value of the events' `source` field.")
    linger_ms: int = Field(20, ge=0, description="librdkafka linger.ms: wait to fill a batch.")
    batch_size_bytes: int = Field(1_000_000, ge=1, description="librdkafka batch.size.")
    batch_num_messages: int = Field(10_000, ge=1, description="librdkafka batch.num.messages.")
    compression: str = Field("lz4", description="librdkafka compression.type: lz4, zstd, none.")
    metrics_port: int = Field(9403, ge=0, le=65535, description="/metrics port; 0 = none.")
    flush_timeout_s: float = Field(60.0, gt=0, description="Wait for acknowledgements at the end.")


class MonitoringSettings(BaseModel):
    """Where metrics go beyond scraping, and what draws the dashboards.

    Batch jobs (Airflow tasks, Great Expectations, dbt) push their last result
    to a Prometheus Pushgateway (``monitoring/batch_metrics.py``); the
    embedded runtime runs one, compose another.
    """

    pushgateway_url: str | None = Field(
        None,
        description="Base URL of the Pushgateway batch jobs push to; default: the embedded "
        "runtime's (runtime.host, runtime.ports.pushgateway).",
    )
    prometheus_url: str | None = Field(
        None,
        description="Base URL of the Prometheus that serves the console dashboards; default: "
        "the embedded runtime's.",
    )
    dashboard_url: str | None = Field(
        None,
        description="Address of a dashboard page in alert messages, {page} standing for the "
        "page (latency, throughput, health, batch), e.g. Grafana's "
        "http://127.0.0.1:3000/d/streamhouse-overview; default: the embedded Prometheus' "
        "console pages.",
    )
    evaluation_interval_s: int = Field(
        15,
        ge=1,
        le=300,
        description="How often the embedded Prometheus evaluates the recording and alert "
        "rules (seconds): a recorded quantile or an alert condition is seen up to this much "
        "later.",
    )
    chromium_path: Path = Field(
        Path("/usr/bin/chromium"),
        description="Headless browser that draws the console pages (screenshots, browser test).",
    )
    chromedriver_path: Path = Field(
        Path("/usr/bin/chromedriver"), description="The WebDriver of that same browser build."
    )


class AlertingSettings(BaseModel):
    """Where alerts reach people: a Slack-compatible webhook and SMTP.

    One section for every sender: Alertmanager (the Prometheus alert rules)
    and the batch jobs' own notifiers. Nothing is sent to a host outside these
    settings; unset, a channel is off.
    """

    webhook_url: SecretStr | None = Field(
        None,
        description="Slack-compatible incoming webhook (its token is in the URL: a secret).",
    )
    smtp_host: str | None = Field(None, description="SMTP server; unset = no e-mail.")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_starttls: bool = Field(
        True, description="Require STARTTLS (turn off only for a loopback or trusted relay)."
    )
    smtp_from: str = Field("streamhouse@localhost", description="Sender address.")
    smtp_to: str | None = Field(None, description="Recipients, comma-separated.")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    group_wait_s: float = Field(
        30.0, gt=0, description="How long Alertmanager gathers alerts of a group before it sends."
    )
    group_interval_s: float = Field(
        300.0, gt=0, description="Wait before sending a group's new alerts after a first send."
    )
    repeat_interval_s: float = Field(
        4 * 3600.0, gt=0, description="Resend a still-firing group after this long."
    )

    @field_validator(
        "webhook_url", "smtp_host", "smtp_to", "smtp_username", "smtp_password", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker-compose passes an unset variable as "" (`${NAME:-}`): that is "off", not a value.
        return None if value == "" else value

    @property
    def email_enabled(self) -> bool:
        """True when an SMTP server and at least one recipient are set."""
        return bool(self.smtp_host and self.smtp_to)


class AirflowSettings(BaseModel):
    """Airflow 3 on the stack: its metadata database, account and the DAGs' task settings.

    The embedded runtime runs the API server, scheduler (LocalExecutor),
    dag-processor and triggerer with ``AIRFLOW_HOME`` under the state
    directory and the metadata in the stack's PostgreSQL (a database and role
    of its own). The DAGs read the task settings below when they are parsed.
    """

    database: str = Field(
        "airflow", description="PostgreSQL database (and role of the same name) of the metadata."
    )
    password: SecretStr | None = Field(
        None,
        description="Password of the metadata role; default: the one generated for it "
        "(<state_dir>/postgres/credentials, mode 0600).",
    )
    admin_user: str = Field("admin", description="The UI's administrator account.")
    admin_password: SecretStr | None = Field(
        None,
        description="Its password; default: generated at the first start and kept in "
        "<state_dir>/airflow/admin.password (0600); `streamhouse airflow password` shows it.",
    )
    base_url: str | None = Field(
        None,
        description="Address of the UI as people reach it (log links in alerts); default: "
        "http://<runtime.host>:<runtime.ports.airflow_api>.",
    )
    dags_folder: Path = Field(PROJECT_ROOT / "dags", description="Where the DAG files are.")
    plugins_folder: Path = Field(
        PROJECT_ROOT / "orchestration" / "airflow_plugins",
        description="Airflow's plugins folder: the plugin serving Airflow's health to "
        "Prometheus at /streamhouse/metrics on the API server's port.",
    )
    start_date: date | None = Field(
        None,
        description="First day lakehouse_daily schedules (catching up from it when unpaused); "
        "default: the day the stack's Airflow first started (its go-live), kept in "
        "<state_dir>/airflow/start_date.",
    )
    parallelism: int = Field(
        2, ge=1, description="Task instances running at once (each Spark task is a JVM)."
    )
    api_workers: int = Field(1, ge=1, description="Worker processes of the API server.")
    retries: int = Field(2, ge=0, description="Retries of a failed task (not of a data failure).")
    retry_delay_s: float = Field(60.0, gt=0, description="First retry delay; doubles each try.")
    max_retry_delay_s: float = Field(900.0, gt=0, description="Upper bound of the retry delay.")
    task_timeout_s: float = Field(
        3600.0, gt=0, description="execution_timeout of each task of the lakehouse DAGs."
    )
    daily_deadline_s: float = Field(
        3 * 3600.0,
        gt=0,
        description="A lakehouse_daily run not finished this long after it was queued misses "
        "its deadline: the alert goes to the webhook and SMTP.",
    )
    wait_poke_s: float = Field(
        300.0, gt=0, description="How often the daily sensor looks at bronze's watermark."
    )
    wait_timeout_s: float = Field(
        6 * 3600.0, gt=0, description="How long the daily sensor waits before it fails the run."
    )
    max_consumer_lag_records: int = Field(
        100_000,
        ge=0,
        description="lakehouse_freshness alerts when the streaming job's Kafka lag is above this.",
    )
    min_file_process_interval_s: int = Field(
        30, ge=1, description="How often the dag-processor re-parses a DAG file."
    )


#: Validation results on the Data Docs index: about five weeks of the daily DAG's five suites.
DOCS_INDEX_LIMIT = 175


class QualitySettings(BaseModel):
    """Great Expectations: the file context in the repository, its results and docs site."""

    project_dir: Path = Field(
        PROJECT_ROOT / "quality",
        description="The folder whose gx/ is the GX file context (suites, validation "
        "definitions, checkpoints).",
    )
    min_rows_per_day: int = Field(
        1, ge=0, description="Bronze rows a day must hold at least (the USGS feed never rests)."
    )
    site_dir: Path | None = Field(
        None,
        description="The one local docs site (GX Data Docs and dbt docs); default: "
        "<state_dir>/docs.",
    )
    results_dir: Path | None = Field(
        None, description="Where validation results are kept; default: <state_dir>/quality."
    )
    docs_index_limit: int = Field(
        DOCS_INDEX_LIMIT,
        ge=1,
        description="The Data Docs index lists the latest this many validation results "
        "(GX's validation_results_limit); older results stay in the results store and their "
        "pages on the site. Without a limit every checkpoint run reads every stored result "
        "to rebuild the index, so a daily run slows down as the history grows.",
    )


class MaintenanceSettings(BaseModel):
    """Compaction and clean-up of the lake's Delta tables (the daily DAG's compact task)."""

    time_travel_hours: int = Field(
        168,
        ge=24,
        description="Versions younger than this stay readable (VERSION AS OF): the rerun "
        "proof compares a day's versions within it.",
    )
    vacuum_retention_hours: int = Field(
        168,
        ge=168,
        description="VACUUM deletes files unreferenced for longer than this (at least Delta's "
        "7-day default, never less than time_travel_hours).",
    )
    vacuum_mode: Literal["lite", "full"] = Field(
        "lite",
        description="lite: VACUUM finds the files to delete in the Delta log (fast; a FULL run "
        "follows when Delta refuses LITE); full: it lists every file of the table, which also "
        "finds files no commit added (a failed write's leftovers).",
    )
    parallel_tables: int = Field(
        3,
        ge=1,
        description="Tables the daily compaction OPTIMIZEs and VACUUMs at once (each table's "
        "VACUUM after its own OPTIMIZE).",
    )

    @model_validator(mode="after")
    def _vacuum_keeps_time_travel(self) -> MaintenanceSettings:
        if self.vacuum_retention_hours < self.time_travel_hours:
            raise ValueError(
                f"vacuum_retention_hours ({self.vacuum_retention_hours}) would delete files "
                f"of versions inside the {self.time_travel_hours} h time-travel window: "
                "raise it to at least time_travel_hours."
            )
        return self


class MartsSettings(BaseModel):
    """The dbt marts (``streamhouse marts``, ``dbt/``)."""

    project_dir: Path = Field(
        PROJECT_ROOT / "dbt", description="The dbt project the marts commands run."
    )
    lookback_days: int = Field(
        3,
        ge=0,
        description="Days before an incremental run's start it re-merges, so that a revision "
        "arriving that late updates its row.",
    )
    threads: int = Field(
        4,
        ge=1,
        description="dbt threads: nodes built or tested at once (the session shares one "
        "SparkSession between them).",
    )
    unit_tests_in_build: bool = Field(
        False,
        description="Run dbt's unit tests in every ``marts build`` (and the daily run) too. "
        "Off: their inputs are static, so dbt Labs recommends them in development and CI "
        "only; ``marts test`` and ``make test`` run them.",
    )
    target: str = Field(
        "session",
        description="Output of dbt/profiles.yml: session (Spark in the command's process), "
        "connect (the stack's Spark Connect server, warm: no JVM start per command) or thrift "
        "(a Spark Thrift server sharing the metastore).",
    )


class Settings(BaseSettings):
    """All settings of the platform, from ``STREAMHOUSE_*`` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMHOUSE_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    state_dir: Path = Field(
        PROJECT_ROOT / ".state",
        description="Where the embedded runtime keeps each service's data, logs and pids.",
    )
    lake_root: str | None = Field(
        None, description="Root of the Delta lake: a local path or s3a:// / abfss:// URI."
    )
    checkpoint_root: str | None = Field(
        None, description="Root of the streaming checkpoints (default: <lake_root>/_checkpoints)."
    )
    jar_cache: Path = Field(
        Path.home() / ".cache" / "streamhouse" / "jars",
        description="Where connector and service jars are cached; kept by `stack down --purge`.",
    )
    kafka: KafkaSettings = KafkaSettings()
    registry: RegistrySettings = RegistrySettings()
    spark: SparkSettings = SparkSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    source: SourceSettings = SourceSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    loadgen: LoadGenSettings = LoadGenSettings()
    postgres: PostgresSettings = PostgresSettings()
    catalog: CatalogSettings = CatalogSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    alerting: AlertingSettings = AlertingSettings()
    airflow: AirflowSettings = AirflowSettings()
    quality: QualitySettings = QualitySettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    marts: MartsSettings = MartsSettings()

    @field_validator("state_dir")
    @classmethod
    def _absolute_state_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def lake_uri(self) -> str:
        """The lake root as a URI or absolute path Spark understands."""
        return self.lake_root or str(self.state_dir / "lake")

    @property
    def warehouse_uri(self) -> str:
        """``spark.sql.warehouse.dir``: one for every Spark process, under the lake by default."""
        return self.catalog.warehouse_dir or f"{self.lake_uri.rstrip('/')}/_warehouse"

    @property
    def postgres_address(self) -> tuple[str, int]:
        """Host and port of the PostgreSQL server (the embedded one unless set)."""
        return (
            self.postgres.host or self.runtime.host,
            self.postgres.port or self.runtime.ports.postgres,
        )

    @property
    def jars_dir(self) -> Path:
        """Directory of resolved jars."""
        return self.jar_cache.expanduser().resolve()

    @property
    def pushgateway_url(self) -> str:
        """The Pushgateway batch jobs push their results to."""
        rt = self.runtime
        return self.monitoring.pushgateway_url or f"http://{rt.host}:{rt.ports.pushgateway}"

    @property
    def prometheus_url(self) -> str:
        """The Prometheus that scrapes the platform and serves the console dashboards."""
        rt = self.runtime
        return self.monitoring.prometheus_url or f"http://{rt.host}:{rt.ports.prometheus}"

    @property
    def dashboard_url(self) -> str:
        """Address of a dashboard page, ``{page}`` standing for its name (alert messages)."""
        return self.monitoring.dashboard_url or f"{self.prometheus_url}/consoles/{{page}}.html"

    @property
    def airflow_url(self) -> str:
        """Where Airflow's UI and REST API are (log links in alerts point here)."""
        rt = self.runtime
        return (self.airflow.base_url or f"http://{rt.host}:{rt.ports.airflow_api}").rstrip("/")

    @property
    def docs_site_dir(self) -> Path:
        """The one local site of the GX Data Docs and the dbt docs."""
        return self.quality.site_dir or self.state_dir / "docs"

    @property
    def quality_results_dir(self) -> Path:
        """Where GX keeps validation results."""
        return self.quality.results_dir or self.state_dir / "quality"

    def trigger_for(self, query_name: str) -> str:
        """The trigger interval of the streaming query ``query_name``."""
        return self.spark.trigger_overrides.get(query_name, self.spark.trigger_interval)

    def checkpoint_dir(self, job: str, sink: str) -> str:
        """One checkpoint per sink: ``{checkpoint_root}/<job>/<sink>``."""
        root = self.checkpoint_root or f"{self.lake_uri.rstrip('/')}/_checkpoints"
        return f"{root.rstrip('/')}/{job}/{sink}"


def settings_variables(settings: Settings, *, secrets: bool = False) -> dict[str, str]:
    """``settings`` as the ``STREAMHOUSE_*`` variables that set them.

    Nested fields become ``STREAMHOUSE_<SECTION>__<FIELD>``; unset optional
    fields are left out. Secrets (``SecretStr`` fields) are left out unless
    ``secrets`` is true: a child process gets them only when it needs them.
    """
    variables: dict[str, str] = {}

    def flatten(prefix: str, value: object) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                flatten(
                    f"{prefix}__{name.upper()}" if prefix else name.upper(), getattr(value, name)
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                flatten(f"{prefix}__{str(key).upper()}", item)
        elif isinstance(value, SecretStr):
            if secrets:
                variables[f"STREAMHOUSE_{prefix}"] = value.get_secret_value()
        elif isinstance(value, list):
            variables[f"STREAMHOUSE_{prefix}"] = json.dumps(value)
        elif value is not None:
            variables[f"STREAMHOUSE_{prefix}"] = str(value)

    flatten("", settings)
    return variables


def redacted_variables(settings: Settings) -> dict[str, str]:
    """The variables of ``settings`` for printing: every secret that is set shows as ``*****``."""
    shown = settings_variables(settings)
    for key in settings_variables(settings, secrets=True).keys() - shown.keys():
        shown[key] = "*****"
    return shown


def settings_env(settings: Settings, *, secrets: bool = False) -> dict[str, str]:
    """The environment a child process needs to read exactly ``settings`` back.

    The parent's environment is kept underneath; secrets only with ``secrets``.
    """
    import os

    # A secret set in the parent's environment (a webhook URL carries its token)
    # is dropped too unless asked for: the variables of every SecretStr field.
    secret_names = (
        settings_variables(settings, secrets=True).keys() - settings_variables(settings).keys()
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if secrets or not (_is_secret_variable(k) or k in secret_names)
    }
    env.update(settings_variables(settings, secrets=secrets))
    return env


def _is_secret_variable(name: str) -> bool:
    return name.startswith("STREAMHOUSE_") and name.endswith(("PASSWORD", "SECRET", "TOKEN"))
