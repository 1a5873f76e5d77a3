"""What each service of the embedded runtime is: its command, port and readiness probe.

A ``ServiceSpec`` is pure description built from the settings; ``stack``
does the starting and stopping. Infrastructure services run from jars
resolved from Maven Central (Kafka, Apicurio Registry) or from Debian's
packages (Prometheus, Alertmanager, Pushgateway); the platform's own processes
run from this virtualenv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.errors import UserFacingError
from core.jars import Coordinate, JarBundle, spark_bundles
from core.postgres import password_file
from core.settings import PROJECT_ROOT, Settings, settings_env
from spark_jobs.connect import is_serving
from streamhouse.runtime import airflow, postgres
from streamhouse.runtime.java import check_java
from streamhouse.runtime.maven import resolve_bundle
from streamhouse.runtime.process import ServicePaths, port_in_use, read_pid

INFRA_SERVICES = (
    "postgres",
    "kafka",
    "registry",
    "prometheus",
    "alertmanager",
    "pushgateway",
    "postgres-exporter",
    "node-exporter",
)
PLATFORM_SERVICES = ("simulator", "poller", "streaming", "streaming-background", "spark-connect")
#: The stream's queries split over two drivers: the latency-critical path (ingest
#: to bronze, the minute windows) alone in one, so the MERGEs of silver, the hour
#: rollup and late events (a second driver) never stall it.
STREAM_DRIVERS = {
    "streaming": ("bronze", "windows"),
    "streaming-background": ("late", "silver", "rollup"),
}
SERVICE_NAMES = INFRA_SERVICES + PLATFORM_SERVICES + airflow.COMPONENTS

MONITORING_DIR = PROJECT_ROOT / "monitoring"


@dataclass
class ServiceSpec:
    """How to run and probe one service.

    ``resolve`` fetches what the service runs from (jars) and nothing else;
    ``prepare`` writes its configuration and returns the command to run.
    """

    name: str
    #: The port it listens on (checked free before it starts); None: it listens on none.
    port: int | None
    depends_on: tuple[str, ...]
    prepare: Callable[[ServicePaths], list[str]]
    ready: Callable[[], bool]
    after_ready: Callable[[], None] = lambda: None
    resolve: Callable[[], object] = lambda: None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    #: What ``stack status`` says beyond "ready", and whether it is bad news
    #: (a streaming query that stopped reporting is stalled though its process runs).
    detail: Callable[[], tuple[str, bool]] | None = None
    #: Run as this account instead of ours (a server that refuses root).
    user: str | None = None
    #: The signal that asks it to stop (sent to it alone; its process group follows).
    stop_signal: signal.Signals = signal.SIGTERM


def _serves_line(url: str, prefix: str) -> bool:
    """True when ``url`` answers a text with a line starting with ``prefix``: an exporter
    that serves ``/metrics`` but cannot read what it exports is not ready."""
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return False
    return any(line.startswith(prefix) for line in text.splitlines())


def _http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def kafka_server_properties(settings: Settings, data_dir: Path) -> str:
    """KRaft combined broker + controller configuration for a single node."""
    rt = settings.runtime
    host, port, ctl = rt.host, rt.ports.kafka, rt.ports.kafka_controller
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{ctl}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{ctl}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(settings.kafka.topic_partitions),
        # One node: every internal topic has one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


_KAFKA_LOG4J2 = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      # Per-partition chatter (one line per partition created or loaded) buries
      # what matters in a single-node log.
      - name: state.change.logger
        level: WARN
      - name: kafka.cluster
        level: WARN
      - name: kafka.log
        level: WARN
      - name: org.apache.kafka.storage
        level: WARN
      - name: org.apache.kafka.coordinator
        level: WARN
"""


def kafka_bundle(settings: Settings) -> JarBundle:
    """The Kafka broker's jars."""
    version = settings.runtime.kafka_version
    return JarBundle(
        f"kafka-{version}",
        (
            Coordinate.parse(f"org.apache.kafka:kafka_2.13:{version}"),
            # Kafka logs through SLF4J 1.7; without a binding the broker is silent.
            Coordinate.parse("org.apache.logging.log4j:log4j-slf4j-impl:2.24.3"),
        ),
    )


def jmx_exporter_bundle(settings: Settings) -> JarBundle:
    """Prometheus' JMX exporter, the Java agent that serves the broker's metrics."""
    version = settings.runtime.jmx_exporter_version
    return JarBundle(
        f"jmx-exporter-{version}",
        (Coordinate.parse(f"io.prometheus.jmx:jmx_prometheus_javaagent:{version}"),),
    )


KAFKA_METRICS_CONFIG = MONITORING_DIR / "kafka" / "jmx-exporter.yml"


def jmx_exporter_agent(settings: Settings) -> Path:
    """The agent's jar, resolved into the jar cache."""
    rt = settings.runtime
    folder = resolve_bundle(settings.jars_dir, jmx_exporter_bundle(settings), rt.maven_cmd)
    jar = folder / f"jmx_prometheus_javaagent-{rt.jmx_exporter_version}.jar"
    if not jar.is_file():
        raise UserFacingError(f"No JMX exporter agent in {folder}: remove it and run again.")
    return jar


def copy_jmx_exporter_agent(settings: Settings, folder: Path) -> list[Path]:
    """Resolve the JMX exporter agent and copy it, with the broker's metrics configuration,
    into ``folder`` under fixed names (``jmx_prometheus_javaagent.jar``, ``jmx-exporter.yml``):
    what compose's broker loads from a shared volume."""
    agent = jmx_exporter_agent(settings)
    folder.mkdir(parents=True, exist_ok=True)
    targets = [folder / "jmx_prometheus_javaagent.jar", folder / KAFKA_METRICS_CONFIG.name]
    shutil.copyfile(agent, targets[0])
    shutil.copyfile(KAFKA_METRICS_CONFIG, targets[1])
    return targets


def registry_bundle(settings: Settings) -> JarBundle:
    """The Apicurio Registry distribution."""
    version = settings.runtime.registry_version
    return JarBundle(
        f"apicurio-registry-{version}",
        (Coordinate.parse(f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"),),
    )


def resolve_spark_jars(settings: Settings) -> list[Path]:
    """Resolve every jar a Spark job puts on its classpath into the cache; their folders."""
    return [
        resolve_bundle(settings.jars_dir, bundle, settings.runtime.maven_cmd)
        for bundle in spark_bundles(settings.spark.extra_packages)
    ]


def _kafka(settings: Settings) -> ServiceSpec:
    rt = settings.runtime

    def resolve() -> tuple[Path, Path]:
        """The broker's jar folder, then its metrics agent (the broker's named first when
        Maven fails)."""
        jars = resolve_bundle(settings.jars_dir, kafka_bundle(settings), rt.maven_cmd)
        return jars, jmx_exporter_agent(settings)

    def prepare(paths: ServicePaths) -> list[str]:
        java = check_java(rt.java_home, rt.min_java_version)
        jars, agent = resolve()
        config = paths.root / "server.properties"
        config.write_text(kafka_server_properties(settings, paths.data))
        (paths.root / "log4j2.yaml").write_text(_KAFKA_LOG4J2)
        classpath = f"{jars}/*"
        if not (paths.data / "meta.properties").exists():
            _format_kafka_storage(java, classpath, config, paths)
        return [
            java,
            f"-Xmx{rt.kafka_heap}",
            f"-Xms{rt.kafka_heap}",
            "-XX:+UseG1GC",
            # The broker's metrics on their own port, for Prometheus (job kafka).
            f"-javaagent:{agent}={rt.host}:{rt.ports.kafka_metrics}:{KAFKA_METRICS_CONFIG}",
            f"-Dlog4j2.configurationFile={paths.root / 'log4j2.yaml'}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(config),
        ]

    def ready() -> bool:
        from confluent_kafka.admin import AdminClient

        if not port_in_use(rt.host, rt.ports.kafka):
            return False  # not listening yet: spare librdkafka's connection-refused noise
        try:
            admin = AdminClient({"bootstrap.servers": f"{rt.host}:{rt.ports.kafka}"})
            return bool(admin.list_topics(timeout=2).brokers)
        except Exception:
            return False

    def after_ready() -> None:
        ensure_topics(settings)

    return ServiceSpec("kafka", rt.ports.kafka, (), prepare, ready, after_ready, resolve)


def ensure_topics(settings: Settings) -> None:
    """Create the platform's topics when missing (the broker does not auto-create topics)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.kafka.client_config())
    existing = set(admin.list_topics(timeout=10).topics)
    kafka = settings.kafka
    wanted = [
        NewTopic(name, num_partitions=kafka.topic_partitions, replication_factor=1)
        for name in (kafka.changes_topic, kafka.dead_letter_topic)
    ]
    # One record per source, the newest wins: compaction keeps the topic small
    # forever, one partition keeps a source's cursor history in order.
    wanted.append(
        NewTopic(
            kafka.cursor_topic,
            num_partitions=1,
            replication_factor=1,
            config={"cleanup.policy": "compact"},
        )
    )
    new = [topic for topic in wanted if topic.topic not in existing]
    for name, future in admin.create_topics(new).items() if new else ():
        try:
            future.result(timeout=30)
        except Exception as error:
            raise UserFacingError(f"Kafka could not create topic {name}: {error}") from error


def _format_kafka_storage(java: str, classpath: str, config: Path, paths: ServicePaths) -> None:
    import subprocess

    tool = [java, "-cp", classpath, "kafka.tools.StorageTool"]
    cluster_id = subprocess.run(
        [*tool, "random-uuid"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    result = subprocess.run(
        [*tool, "format", "-t", cluster_id, "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    with paths.log.open("a") as log:
        log.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise UserFacingError(f"Formatting Kafka's storage failed; see {paths.log}")


def _registry(settings: Settings) -> ServiceSpec:
    rt = settings.runtime
    base = f"http://{rt.host}:{rt.ports.registry}"

    def resolve() -> Path:
        return resolve_bundle(settings.jars_dir, registry_bundle(settings), rt.maven_cmd)

    def prepare(paths: ServicePaths) -> list[str]:
        java = check_java(rt.java_home, rt.min_java_version)
        bundle = resolve()
        runner = _find_registry_runner(bundle)
        return [
            java,
            f"-Xmx{rt.registry_heap}",
            # KafkaSQL keeps every schema in a Kafka topic (as Confluent's registry
            # does), so ids survive a restart of the registry.
            "-Dapicurio.storage.kind=kafkasql",
            f"-Dapicurio.kafkasql.bootstrap.servers={rt.host}:{rt.ports.kafka}",
            f"-Dquarkus.http.host={rt.host}",
            f"-Dquarkus.http.port={rt.ports.registry}",
            f"-Dquarkus.management.host={rt.host}",
            f"-Dquarkus.management.port={rt.ports.registry + 1000}",
            "-Dapicurio.rest.deletion.artifact.enabled=true",
            "-Dapicurio.rest.deletion.artifact-version.enabled=true",
            "-Djava.io.tmpdir=" + str(paths.data),
            "-jar",
            str(runner),
        ]

    def ready() -> bool:
        # Apicurio serves its API while KafkaSQL still replays the journal topic, and
        # answers from that partial store ("no such subject" for one that exists); its
        # readiness check passes only once the replay is done.
        return _http_ok(f"{base}/health/ready") and _http_ok(f"{base}/apis/ccompat/v7/subjects")

    def after_ready() -> None:
        response = httpx.put(
            f"{base}/apis/ccompat/v7/config",
            json={"compatibility": settings.registry.compatibility},
            timeout=10,
        )
        response.raise_for_status()

    return ServiceSpec(
        "registry", rt.ports.registry, ("kafka",), prepare, ready, after_ready, resolve
    )


def _find_registry_runner(bundle: Path) -> Path:
    """The registry's launcher: ``quarkus-run.jar`` (fast-jar) or ``*-runner.jar`` (legacy)."""
    for pattern in ("**/quarkus-run.jar", "**/*-runner.jar"):
        found = sorted(bundle.glob(pattern))
        if found:
            return found[0]
    raise UserFacingError(f"No registry launcher jar in {bundle}: remove it and run again.")


def prometheus_targets(settings: Settings) -> dict[str, list[str]]:
    """Scrape targets per job, for Prometheus' file service discovery."""
    rt = settings.runtime
    loadgen_port = settings.loadgen.metrics_port
    return {
        "prometheus": [f"{rt.host}:{rt.ports.prometheus}"],
        "alertmanager": [f"{rt.host}:{rt.ports.alertmanager}"],
        "poller": [f"{rt.host}:{rt.ports.poller_metrics}"],
        # Both drivers under one job: rules and panels sum over its instances.
        "streaming": [
            f"{rt.host}:{rt.ports.stream_metrics}",
            f"{rt.host}:{rt.ports.stream_background_metrics}",
        ],
        "loadgen": [f"{rt.host}:{loadgen_port}"] if loadgen_port else [],
        "pushgateway": [f"{rt.host}:{rt.ports.pushgateway}"],
        # The catalog's server (Hive metastore, Airflow's metadata), through its exporter.
        "postgres": [f"{rt.host}:{rt.ports.postgres_exporter}"],
        # The broker, through the JMX exporter agent in its JVM.
        "kafka": [f"{rt.host}:{rt.ports.kafka_metrics}"],
        # Apicurio Registry serves Quarkus' Micrometer metrics on its API port.
        "registry": [f"{rt.host}:{rt.ports.registry}"],
        # The host every service shares: CPU, memory, disks.
        "node": [f"{rt.host}:{rt.ports.node_exporter}"],
        # Airflow's components' health, served by our plugin on the API server's port.
        "airflow": [f"{rt.host}:{rt.ports.airflow_api}"],
    }


def with_evaluation_interval(config: str, seconds: int) -> str:
    """``prometheus.yml`` with its global ``evaluation_interval`` set to ``seconds`` (the
    line rewritten in place, so the file's comments stay)."""
    pattern = re.compile(r"^(\s+evaluation_interval:\s*)\S+", re.MULTILINE)
    if len(pattern.findall(config)) != 1:
        raise ValueError("prometheus.yml must set evaluation_interval exactly once")
    return pattern.sub(lambda m: f"{m.group(1)}{seconds}s", config)


def console_links(settings: Settings) -> dict[str, str]:
    """Where the console pages' overview links to: the other monitoring services."""
    rt = settings.runtime
    return {
        "Prometheus alerts": f"{settings.prometheus_url}/alerts",
        "Prometheus targets": f"{settings.prometheus_url}/targets",
        "Alertmanager": f"http://{rt.host}:{rt.ports.alertmanager}/",
        "Pushgateway (batch jobs' last results)": settings.pushgateway_url + "/",
    }


def _binary(command: str, package: str) -> str:
    binary = shutil.which(command)
    if binary is None:
        raise UserFacingError(
            f"{command} is not installed: run `make install` (it installs Debian's {package} "
            "package)."
        )
    return binary


def _prometheus(settings: Settings) -> ServiceSpec:
    rt = settings.runtime
    base = f"http://{rt.host}:{rt.ports.prometheus}"

    def prepare(paths: ServicePaths) -> list[str]:
        from monitoring.dashboards import consoles
        from monitoring.dashboards.definitions import DASHBOARDS

        binary = _binary(rt.prometheus_cmd, "prometheus")
        config_dir = paths.root / "config"
        shutil.rmtree(config_dir, ignore_errors=True)
        shutil.copytree(
            MONITORING_DIR / "prometheus", config_dir, ignore=shutil.ignore_patterns("tests")
        )
        config = config_dir / "prometheus.yml"
        config.write_text(
            with_evaluation_interval(config.read_text(), settings.monitoring.evaluation_interval_s)
        )
        targets = config_dir / "targets"
        targets.mkdir(exist_ok=True)
        for job, addresses in prometheus_targets(settings).items():
            groups = [{"targets": addresses, "labels": {"job": job}}] if addresses else []
            (targets / f"{job}.json").write_text(json.dumps(groups, indent=2))
        # The console pages are generated from the dashboards' definitions at
        # every start, so they never drift from compose's Grafana JSON.
        for dashboard in DASHBOARDS:
            consoles.write(dashboard, config_dir / "consoles", console_links(settings))
        return [
            binary,
            f"--config.file={config_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={paths.data}",
            f"--web.listen-address={rt.host}:{rt.ports.prometheus}",
            # $externalURL of the alerts' dashboard links, and the consoles' own links.
            f"--web.external-url=http://{rt.host}:{rt.ports.prometheus}",
            f"--web.console.templates={config_dir / 'consoles'}",
            f"--web.console.libraries={config_dir / 'console_libraries'}",
            "--storage.tsdb.retention.time=7d",
        ]

    def ready() -> bool:
        return _http_ok(f"{base}/-/ready")

    return ServiceSpec("prometheus", rt.ports.prometheus, (), prepare, ready)


def _postgres(settings: Settings) -> ServiceSpec:
    rt = settings.runtime

    def prepare(paths: ServicePaths) -> list[str]:
        runner = postgres.prepare_data_dir(settings, paths)
        postgres.initdb(settings, paths, runner)
        # Known only now: who runs it depends on who we are (root or not).
        spec.user = runner.user
        return postgres.server_command(settings, paths)

    def after_ready() -> None:
        # Every Spark process finds the metastore's database and role in place.
        if settings.catalog.kind == "hive":
            postgres.ensure_database(settings, settings.catalog.database, settings.catalog.password)

    spec = ServiceSpec(
        "postgres",
        rt.ports.postgres,
        (),
        prepare,
        lambda: postgres.is_ready(settings),
        after_ready,
        # SIGINT is PostgreSQL's fast shutdown: the postmaster ends its sessions
        # and checkpoints. SIGTERM would wait for every client to leave, and
        # signalling its children directly is not how it wants to be stopped.
        stop_signal=signal.SIGINT,
    )
    return spec


def _postgres_exporter(settings: Settings) -> ServiceSpec:
    """Prometheus' PostgreSQL exporter on the catalog's server, as the monitor role.

    Its password reaches it as a file (or, when the settings give one, in its
    environment), never on its command line; it gets no other variable of ours.
    """
    rt = settings.runtime
    address = f"{rt.host}:{rt.ports.postgres_exporter}"

    def prepare(paths: ServicePaths) -> list[str]:
        binary = _binary(rt.postgres_exporter_cmd, "prometheus-postgres-exporter")
        credentials = postgres.ensure_monitor_role(settings)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "DATA_SOURCE_URI": (
                f"{credentials.host}:{credentials.port}/{credentials.database}?sslmode=disable"
            ),
            "DATA_SOURCE_USER": credentials.user,
        }
        if settings.postgres.monitor_password is None:
            env["DATA_SOURCE_PASS_FILE"] = str(password_file(settings, credentials.user))
        else:
            env["DATA_SOURCE_PASS"] = settings.postgres.monitor_password.get_secret_value()
        spec.env = env
        return [binary, f"--web.listen-address={address}", "--log.level=warn"]

    def ready() -> bool:
        # Serving metrics is not enough: pg_up says it could log in and query.
        return _serves_line(f"http://{address}/metrics", "pg_up 1")

    spec = ServiceSpec(
        "postgres-exporter", rt.ports.postgres_exporter, ("postgres",), prepare, ready
    )
    return spec


#: Pseudo and read-only image file systems the node exporter leaves out. Its default
#: list also leaves out overlay, the root file system of a container, where the
#: state directory and the lake live when the platform runs in one.
NODE_FS_TYPES_EXCLUDED = (
    "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs"
    "|iso9660|mqueue|nsfs|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs"
    "|tmpfs|tracefs)$"
)


def _node_exporter(settings: Settings) -> ServiceSpec:
    """Prometheus' node exporter: the host's CPU (and its pressure), memory, load and file
    systems. Only those collectors run: the others would cost a scrape's time for series
    no panel or alert reads."""
    rt = settings.runtime
    address = f"{rt.host}:{rt.ports.node_exporter}"

    def prepare(paths: ServicePaths) -> list[str]:
        binary = _binary(rt.node_exporter_cmd, "prometheus-node-exporter")
        return [
            binary,
            f"--web.listen-address={address}",
            "--log.level=warn",
            "--collector.disable-defaults",
            "--collector.cpu",
            "--collector.pressure",
            "--collector.loadavg",
            "--collector.meminfo",
            "--collector.filesystem",
            f"--collector.filesystem.fs-types-exclude={NODE_FS_TYPES_EXCLUDED}",
        ]

    def ready() -> bool:
        return _serves_line(f"http://{address}/metrics", "node_filesystem_avail_bytes{")

    # None of our variables: it needs no setting and no secret of ours.
    env = {"PATH": os.environ.get("PATH", "")}
    return ServiceSpec("node-exporter", rt.ports.node_exporter, (), prepare, ready, env=env)


def _alertmanager(settings: Settings) -> ServiceSpec:
    rt = settings.runtime
    base = f"http://{rt.host}:{rt.ports.alertmanager}"

    def prepare(paths: ServicePaths) -> list[str]:
        from monitoring.alerting import write_config

        binary = _binary(rt.alertmanager_cmd, "prometheus-alertmanager")
        config = write_config(settings.alerting, paths.root / "config", settings.dashboard_url)
        return [
            binary,
            f"--config.file={config}",
            f"--storage.path={paths.data}",
            f"--web.listen-address={rt.host}:{rt.ports.alertmanager}",
            f"--web.external-url={base}",
            # One node: an empty address turns gossip (and its port 9094) off.
            "--cluster.listen-address=",
        ]

    def ready() -> bool:
        return _http_ok(f"{base}/-/ready")

    return ServiceSpec("alertmanager", rt.ports.alertmanager, (), prepare, ready)


def _pushgateway(settings: Settings) -> ServiceSpec:
    rt = settings.runtime
    base = f"http://{rt.host}:{rt.ports.pushgateway}"

    def prepare(paths: ServicePaths) -> list[str]:
        binary = _binary(rt.pushgateway_cmd, "prometheus-pushgateway")
        return [
            binary,
            f"--web.listen-address={rt.host}:{rt.ports.pushgateway}",
            # The last results survive a restart of the gateway.
            f"--persistence.file={paths.data / 'metrics'}",
            "--persistence.interval=30s",
        ]

    def ready() -> bool:
        return _http_ok(f"{base}/-/ready")

    return ServiceSpec("pushgateway", rt.ports.pushgateway, (), prepare, ready)


def _python_service(
    settings: Settings,
    name: str,
    port: int,
    depends_on: tuple[str, ...],
    args: list[str],
    *,
    secrets: bool = False,
) -> ServiceSpec:
    """A process of the platform run from this virtualenv; ``secrets``: it talks to Kafka or
    the registry and gets their credentials (no other child sees them)."""
    rt = settings.runtime

    def prepare(paths: ServicePaths) -> list[str]:
        return [sys.executable, "-m", *args]

    def ready() -> bool:
        return _http_ok(f"http://{rt.host}:{port}/metrics")

    return ServiceSpec(
        name,
        port,
        depends_on,
        prepare,
        ready,
        env=settings_env(settings, secrets=secrets),
        cwd=PROJECT_ROOT,
    )


def _simulator(settings: Settings) -> ServiceSpec:
    src = settings.source
    spec = _python_service(
        settings,
        "simulator",
        src.simulator_port,
        (),
        [
            "producers.simulator",
            "--host",
            src.simulator_host,
            "--port",
            str(src.simulator_port),
            "--fixture",
            str(src.simulator_seed_path),
        ],
    )
    spec.ready = lambda: _http_ok(
        f"http://{src.simulator_host}:{src.simulator_port}/fdsnws/event/1/query?format=geojson&limit=1"
    )
    return spec


def _streaming(settings: Settings, name: str) -> ServiceSpec:
    background = name == "streaming-background"
    ports = settings.runtime.ports
    port = ports.stream_background_metrics if background else ports.stream_metrics
    # The streaming jobs register the lake's tables in the metastore.
    needs = (
        ("postgres", "kafka", "registry")
        if settings.catalog.kind == "hive"
        else ("kafka", "registry")
    )
    command = ["streamhouse.cli", "stream", "run", *STREAM_DRIVERS[name]]
    if background:
        # It reads bronze, which the first driver creates and fills.
        needs, command = (*needs, "streaming"), [*command, "--background"]
    spec = _python_service(settings, name, port, needs, command, secrets=True)
    spec.resolve = lambda: resolve_spark_jars(settings)
    spec.detail = lambda: streaming_liveness(settings, port)
    return spec


def streaming_liveness(settings: Settings, port: int) -> tuple[str, bool]:
    """(one line, stalled?) about a streaming driver's queries, from its liveness metrics."""
    import time

    from monitoring.liveness import describe, liveness_from_metrics

    url = f"http://{settings.runtime.host}:{port}/metrics"
    try:
        text = httpx.get(url, timeout=2.0).text
    except httpx.HTTPError:
        return "metrics unreachable", True
    queries = liveness_from_metrics(text, time.time())
    return describe(queries), any(q.stalled for q in queries)


def _spark_connect(settings: Settings) -> ServiceSpec:
    """The warm driver Airflow's Spark tasks run on (``spark_jobs/connect.py``)."""
    rt = settings.runtime
    port = rt.ports.spark_connect
    needs = ("postgres",) if settings.catalog.kind == "hive" else ()
    spec = _python_service(
        settings, "spark-connect", port, needs, ["spark_jobs.connect_server"], secrets=True
    )
    spec.resolve = lambda: resolve_spark_jars(settings)
    paths = ServicePaths(settings.state_dir / spec.name)

    def ready() -> bool:
        # The port opens before the driver can serve a session (``serving_file``).
        return port_in_use(rt.host, port) and is_serving(settings, read_pid(paths))

    spec.ready = ready
    return spec


def build_services(settings: Settings) -> dict[str, ServiceSpec]:
    """Every service of the embedded runtime, by name, in start order."""
    ports = settings.runtime.ports
    specs = [
        _postgres(settings),
        _kafka(settings),
        _registry(settings),
        _prometheus(settings),
        _alertmanager(settings),
        _pushgateway(settings),
        _postgres_exporter(settings),
        _node_exporter(settings),
        _simulator(settings),
        _python_service(
            settings,
            "poller",
            ports.poller_metrics,
            ("kafka", "registry", "simulator"),
            ["streamhouse.cli", "poll"],
            secrets=True,
        ),
        _streaming(settings, "streaming"),
        _streaming(settings, "streaming-background"),
        _spark_connect(settings),
        *_airflow_services(settings),
    ]
    return {spec.name: spec for spec in specs}


def _airflow_health(settings: Settings) -> dict[str, object] | None:
    """The API server's view of every Airflow component (``/api/v2/monitor/health``)."""
    rt = settings.runtime
    try:
        response = httpx.get(
            f"http://{rt.host}:{rt.ports.airflow_api}/api/v2/monitor/health", timeout=3.0
        )
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    health: dict[str, object] = response.json()
    return health


def _airflow_services(settings: Settings) -> list[ServiceSpec]:
    """The API server, scheduler, dag-processor and triggerer, each a service of the stack."""
    import time

    rt = settings.runtime
    env = airflow.airflow_env(settings)

    def prepare_api(paths: ServicePaths) -> list[str]:
        database = postgres.ensure_database(
            settings, settings.airflow.database, settings.airflow.password
        )
        airflow.prepare_home(settings, database.sqlalchemy_url("psycopg2"))
        airflow.migrate(settings, paths.log)
        return airflow.airflow_command(
            "api-server",
            "--host",
            rt.host,
            "--port",
            str(rt.ports.airflow_api),
            "--workers",
            str(settings.airflow.api_workers),
        )

    def api_ready() -> bool:
        health = _airflow_health(settings)
        database = health.get("metadatabase") if health else None
        return isinstance(database, dict) and database.get("status") == "healthy"

    api = ServiceSpec(
        "airflow-api",
        rt.ports.airflow_api,
        ("postgres",),
        prepare_api,
        api_ready,
        env=env,
        cwd=PROJECT_ROOT,
    )

    def component(name: str, key: str, args: list[str]) -> ServiceSpec:
        started = [0.0]

        def prepare(paths: ServicePaths) -> list[str]:
            started[0] = time.time()
            return airflow.airflow_command(*args)

        def ready() -> bool:
            # Healthy = a heartbeat the API server has seen from this start on
            # (one left by a process that just stopped does not count).
            health = _airflow_health(settings)
            state = health.get(key) if health else None
            if not isinstance(state, dict) or state.get("status") != "healthy":
                return False
            heartbeat = next((v for k, v in state.items() if k.endswith("heartbeat")), None)
            if not isinstance(heartbeat, str) or not started[0]:
                return True
            from datetime import datetime

            return datetime.fromisoformat(heartbeat).timestamp() >= started[0] - 1

        # The scheduler runs the tasks (LocalExecutor): their Spark is the Connect server.
        needs: tuple[str, ...] = ("airflow-api",)
        if name == "airflow-scheduler" and settings.spark.tasks_on_connect:
            needs = ("airflow-api", "spark-connect")
        return ServiceSpec(name, None, needs, prepare, ready, env=env, cwd=PROJECT_ROOT)

    return [
        api,
        # Task logs are local files the API server reads: no log server to serve them.
        component("airflow-scheduler", "scheduler", ["scheduler", "--skip-serve-logs"]),
        component("airflow-dag-processor", "dag_processor", ["dag-processor"]),
        component("airflow-triggerer", "triggerer", ["triggerer", "--skip-serve-logs"]),
    ]
