"""docker-compose.yml and the monitoring files it mounts stay valid and in step.

Compose is the second way to run the platform (DESIGN.md, "Three ways to run the
same code"), so it must not drift from the first: every service the embedded
runtime runs has a compose counterpart, the project's processes are configured
through real ``Settings`` fields, and the Kafka and registry images are the
versions the embedded runtime downloads. No Docker is needed: the file is
checked against the Compose Specification's JSON Schema.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from jsonschema.validators import validator_for
from pydantic import BaseModel, TypeAdapter

from core.settings import RuntimeSettings, ServicePorts, Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
# The Compose Specification's JSON Schema, kept in the repository (its source and
# version: tests/data/README.md), so every checkout and CI validates the same way.
COMPOSE_SCHEMA = REPO_ROOT / "tests" / "data" / "compose-spec.json"
PROMETHEUS_COMPOSE_CONFIG = REPO_ROOT / "monitoring" / "prometheus.compose.yml"
GRAFANA_DIR = REPO_ROOT / "monitoring" / "grafana"

# The project's own processes, which the embedded runtime starts next to its services.
PROJECT_PROCESSES = (
    "simulator",
    "poller",
    "streaming",
    "streaming-background",
    "alertmanager-config",
)

ENV_PREFIX = str(Settings.model_config.get("env_prefix", ""))
ENV_DELIMITER = str(Settings.model_config.get("env_nested_delimiter", ""))

# `${NAME:-default}` / `${NAME-default}`: compose substitutes the default when NAME is unset.
_INTERPOLATION = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as compose reads it (YAML anchors and merge keys applied)."""
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict), "docker-compose.yml is not a YAML mapping"
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``services`` section of docker-compose.yml."""
    return dict(compose["services"])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as name -> value, from either compose syntax."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in raw)
        return {name: value for name, value in pairs}
    return {name: "" if value is None else str(value) for name, value in raw.items()}


def _with_defaults(value: str) -> str:
    """The value compose passes when no interpolated variable is set."""
    return _INTERPOLATION.sub(lambda match: match.group(1), value).replace("$$", "$")


def _settings_path(env_name: str) -> list[str]:
    """``STREAMHOUSE_KAFKA__BOOTSTRAP_SERVERS`` -> ``["kafka", "bootstrap_servers"]``."""
    return env_name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The nested settings model a field holds, or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _settings_field_problem(env_name: str) -> str | None:
    """Why ``env_name`` does not name one scalar ``Settings`` field, or None when it does."""
    model: type[BaseModel] = Settings
    parts = _settings_path(env_name)
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return f"{env_name}: {model.__name__} has no field {part!r}"
        section = _section_model(field.annotation)
        if depth < len(parts) - 1:
            if section is None:
                return f"{env_name}: {model.__name__}.{part} is a value, not a section"
            model = section
        elif section is not None:
            return f"{env_name}: names the whole section {part!r}; set its fields one by one"
    return None


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every data panel of a dashboard, including those folded into rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def _bind_sources(service: dict[str, Any]) -> list[str]:
    """Host paths a service bind-mounts (relative paths as written)."""
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                sources.append(source)
        elif volume.get("type") == "bind":
            sources.append(volume["source"])
    return sources


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert COMPOSE_SCHEMA.is_file(), f"{COMPOSE_SCHEMA} is missing from the repository"
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The schema says "$schema": "https://json-schema.org/draft-07/schema", a spelling
    # jsonschema does not recognise (its meta-schema id is http://...#), so without a
    # default validator_for would pick the newest draft instead of draft-07.
    validator_class = validator_for(schema, default=jsonschema.Draft7Validator)
    validator_class.check_schema(schema)
    errors = sorted(
        validator_class(schema).iter_errors(compose), key=lambda error: list(error.path)
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, error.path)) or '<root>'}: {error.message}" for error in errors
    )
    # `version` is obsolete in the Compose Specification; compose warns about it.
    assert "version" not in compose


def test_every_embedded_service_has_a_compose_service(services: dict[str, Any]) -> None:
    from streamhouse.runtime.services import SERVICE_NAMES

    missing = [name for name in (*SERVICE_NAMES, *PROJECT_PROCESSES) if name not in services]
    assert not missing, f"services the embedded runtime runs but compose does not: {missing}"


def test_streamhouse_environment_names_real_settings_fields(services: dict[str, Any]) -> None:
    problems = [
        f"{service_name}: {problem}"
        for service_name, service in services.items()
        for env_name in _environment(service)
        if env_name.upper().startswith(ENV_PREFIX)
        and (problem := _settings_field_problem(env_name.upper()))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("service_name", PROJECT_PROCESSES)
def test_project_service_environment_loads_into_settings(
    services: dict[str, Any], service_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values parse, and Settings reads each one where compose meant it to go."""
    environment = {
        name.upper(): _with_defaults(value)
        for name, value in _environment(services[service_name]).items()
        if name.upper().startswith(ENV_PREFIX)
    }
    assert environment, f"{service_name} sets no {ENV_PREFIX}* settings"
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    settings = Settings(_env_file=None)

    for name, raw in environment.items():
        if _settings_field_problem(name):
            continue  # reported by test_streamhouse_environment_names_real_settings_fields
        read: Any = settings
        model: type[BaseModel] = Settings
        owner: type[BaseModel] = Settings
        annotation: Any = None
        for part in _settings_path(name):
            owner = model
            annotation = model.model_fields[part].annotation
            read = getattr(read, part)
            model = _section_model(annotation) or model
        if owner is Settings:
            expected = TypeAdapter(annotation).validate_python(raw)
        else:  # the section's own validators apply (an empty value meaning "unset", say)
            expected = getattr(owner.model_validate({part: raw}), part)
        assert read == expected, f"{service_name}: {name}={raw!r} read as {read!r}"


def test_every_dependency_waits_for_a_healthcheck(services: dict[str, Any]) -> None:
    problems = []
    for service_name, service in services.items():
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, list):
            problems.append(f"{service_name}: depends_on without conditions {depends_on}")
            continue
        for target, dependency in depends_on.items():
            condition = dependency.get("condition")
            if condition == "service_completed_successfully":
                # A one-shot step (configuration written before a service starts).
                if services.get(target, {}).get("restart") != "no":
                    problems.append(
                        f"{service_name} -> {target}: waits for a one-shot that restarts"
                    )
                continue
            if condition != "service_healthy":
                problems.append(f"{service_name} -> {target}: condition is not service_healthy")
            healthcheck = services.get(target, {}).get("healthcheck")
            if not healthcheck or healthcheck.get("disable") in (True, "true"):
                problems.append(f"{service_name} -> {target}: {target} has no healthcheck")
    assert not problems, "\n".join(problems)


def test_images_are_the_versions_the_embedded_runtime_runs(services: dict[str, Any]) -> None:
    runtime = RuntimeSettings()
    assert services["kafka"]["image"] == f"apache/kafka:{runtime.kafka_version}"
    assert services["registry"]["image"] == (
        f"apicurio/apicurio-registry:{runtime.registry_version}"
    )
    unpinned = [
        f"{name}: {service['image']}"
        for name, service in services.items()
        if "build" not in service
        and (":" not in service["image"] or service["image"].endswith(":latest"))
    ]
    assert not unpinned, f"images without a pinned tag: {unpinned}"


def test_bind_mounted_files_exist(services: dict[str, Any]) -> None:
    missing = [
        f"{name}: {source}"
        for name, service in services.items()
        for source in _bind_sources(service)
        if not (REPO_ROOT / source).exists()
    ]
    assert not missing, f"bind mounts of paths not in the repository: {missing}"


def test_prometheus_scrapes_the_project_processes_on_their_settings_ports() -> None:
    config = yaml.safe_load(PROMETHEUS_COMPOSE_CONFIG.read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    ports = ServicePorts()
    assert f"poller:{ports.poller_metrics}" in targets
    assert f"streaming:{ports.stream_metrics}" in targets
    assert f"alertmanager:{ports.alertmanager}" in targets
    assert f"pushgateway:{ports.pushgateway}" in targets
    assert f"postgres-exporter:{ports.postgres_exporter}" in targets
    assert f"kafka:{ports.kafka_metrics}" in targets
    assert "registry:8080" in targets  # the image's API port (published as ports.registry)
    assert f"node-exporter:{ports.node_exporter}" in targets
    assert "airflow-api:8080" in targets  # the plugin on the API server's port
    pushgateway = next(job for job in config["scrape_configs"] if job["job_name"] == "pushgateway")
    assert pushgateway.get("honor_labels") is True, "pushed job labels would be overwritten"
    alertmanagers = [
        target
        for manager in config["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    assert alertmanagers == [f"alertmanager:{ports.alertmanager}"]


def test_compose_keeps_secrets_and_admin_endpoints_out(services: dict[str, Any]) -> None:
    """Grafana's account comes from .env (required, no default); Prometheus has no lifecycle API."""
    grafana_env = _environment(services["grafana"])
    for name in ("GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD"):
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", grafana_env[name]), (name, grafana_env[name])
    assert not any("enable-lifecycle" in arg for arg in services["prometheus"]["command"])


def test_env_example_documents_every_variable_compose_reads() -> None:
    text = COMPOSE_FILE.read_text()
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    example = REPO_ROOT / ".env.example"
    documented = {
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    }
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().split()


def test_alertmanager_reads_what_its_configuration_step_writes(services: dict[str, Any]) -> None:
    step = services["alertmanager-config"]
    output = step["command"][step["command"].index("--output") + 1]
    config_arg = next(
        a for a in services["alertmanager"]["command"] if a.startswith("--config.file=")
    )
    assert config_arg == f"--config.file={output}/alertmanager.yml"
    mounts = {volume.split(":")[1] for volume in services["alertmanager"]["volumes"]}
    assert output in mounts and output in {v.split(":")[1] for v in step["volumes"]}
    assert (
        f"--web.listen-address=:{ServicePorts().alertmanager}"
        in services["alertmanager"]["command"]
    )


def test_grafana_provisioning_points_at_compose_services(services: dict[str, Any]) -> None:
    datasources = [
        source
        for path in sorted((GRAFANA_DIR / "provisioning" / "datasources").glob("*.y*ml"))
        for source in yaml.safe_load(path.read_text()).get("datasources", [])
    ]
    assert datasources, "no Grafana datasource is provisioned"
    for source in datasources:
        host = urlsplit(source["url"]).hostname
        assert host in services, f"datasource {source['name']} points at unknown host {host}"

    mounts = {
        volume.split(":")[1]: volume.split(":")[0]
        for volume in services["grafana"]["volumes"]
        if isinstance(volume, str)
    }
    providers = [
        provider
        for path in sorted((GRAFANA_DIR / "provisioning" / "dashboards").glob("*.y*ml"))
        for provider in yaml.safe_load(path.read_text()).get("providers", [])
    ]
    assert providers, "no Grafana dashboard provider is provisioned"
    for provider in providers:
        container_path = provider["options"]["path"]
        assert container_path in mounts, f"provider reads {container_path}, nothing mounted there"
        assert (REPO_ROOT / mounts[container_path]).resolve() == GRAFANA_DIR / "dashboards"


DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))


def test_there_is_a_dashboard() -> None:
    assert DASHBOARDS, f"no dashboard JSON in {GRAFANA_DIR / 'dashboards'}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_panels_query_a_provisioned_datasource(path: Path) -> None:
    datasource_uids = {
        source["uid"]
        for provisioning in (GRAFANA_DIR / "provisioning" / "datasources").glob("*.y*ml")
        for source in yaml.safe_load(provisioning.read_text()).get("datasources", [])
    }
    dashboard = json.loads(path.read_text())
    assert dashboard.get("uid") and dashboard.get("title"), f"{path.name}: no uid or title"
    panels = _panels(dashboard)
    assert panels, f"{path.name} has no panels"

    problems = []
    for panel in panels:
        title = panel.get("title", f"panel {panel.get('id')}")
        datasource = panel.get("datasource")
        if not isinstance(datasource, dict) or datasource.get("uid") not in datasource_uids:
            problems.append(f"{title}: datasource {datasource!r} is not provisioned")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{title}: no query")
        for target in targets:
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problems.append(f"{title}: query {target.get('refId')} has no PromQL expr")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_the_broker_loads_the_jmx_exporter_agent_the_one_shot_writes(
    services: dict[str, Any],
) -> None:
    """Compose's broker serves its metrics as the embedded one does: the same agent and
    configuration (copied by `streamhouse jars --jmx-agent-to`), on the settings' port."""
    from streamhouse.runtime.services import KAFKA_METRICS_CONFIG

    one_shot, kafka = services["kafka-jmx-agent"], services["kafka"]
    command = one_shot["command"]
    agent_dir = command[command.index("--jmx-agent-to") + 1]
    volume = next(v.split(":")[0] for v in one_shot["volumes"] if v.split(":")[1] == agent_dir)
    mount = next(v.split(":")[1] for v in kafka["volumes"] if v.split(":")[0] == volume)
    agent = f"-javaagent:{mount}/jmx_prometheus_javaagent.jar"
    expected = f"{agent}={ServicePorts().kafka_metrics}:{mount}/{KAFKA_METRICS_CONFIG.name}"
    assert kafka["environment"]["KAFKA_OPTS"] == expected
    assert kafka["depends_on"]["kafka-jmx-agent"]["condition"] == "service_completed_successfully"


def test_the_node_exporter_runs_the_embedded_runtime_s_collectors(
    services: dict[str, Any], tmp_path: Path
) -> None:
    from core.settings import Settings
    from streamhouse.runtime.process import ServicePaths
    from streamhouse.runtime.services import build_services

    settings = Settings(state_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    embedded = build_services(settings)["node-exporter"].prepare(ServicePaths(tmp_path / "n"))
    flags = {arg for arg in embedded[1:] if arg.startswith("--collector")}
    composed = services["node-exporter"]["command"]
    # "$$" is how compose writes a "$" it must not interpolate.
    assert {arg.replace("$$", "$") for arg in composed if arg.startswith("--collector")} == flags


def test_the_image_creates_the_mount_point_of_each_named_volume_it_writes(
    services: dict[str, Any],
) -> None:
    """A fresh named volume takes the ownership of its mount point in the image; one the
    image lacks is root's, and the image's unprivileged user cannot write to it."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    created = set(re.findall(r"(/(?:data|cache)[\w/.-]*)", dockerfile))
    missing = []
    for name, service in services.items():
        if "build" not in service or str(service.get("user", "")).split(":")[0] in ("0", "root"):
            continue
        for volume in service.get("volumes", []):
            source, target, *mode = volume.split(":")
            if source.startswith((".", "/")) or mode == ["ro"]:
                continue
            if not any(path == target or path.startswith(target + "/") for path in created):
                missing.append(f"{name}: {source}:{target}")
    assert not missing, f"mount points the Dockerfile does not create: {missing}"


def test_every_dollar_sign_is_an_interpolation_or_escaped() -> None:
    """Compose interpolates "$VAR" and "${VAR}" and refuses any other "$" ("$$" is a "$")."""
    lines = COMPOSE_FILE.read_text().splitlines()
    stray = [
        line
        for line in lines
        if not line.lstrip().startswith("#")
        and re.search(r"\$(?![${A-Za-z_])", line.replace("$$", ""))
    ]
    assert not stray, stray
