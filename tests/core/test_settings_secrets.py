"""Secrets are typed, redacted wherever settings are printed, and reach only the processes
that need them; the Java client gets Kafka security in its own property names."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from core.settings import Settings, redacted_variables, settings_env, settings_variables
from streamhouse.cli import app
from streamhouse.runtime.services import build_services

SECRET = 's3cr3t-"quoted"\\pw'


def secured() -> Settings:
    return Settings(
        kafka={
            "security_protocol": "sasl_ssl",
            "sasl_mechanism": "scram-sha-512",
            "sasl_username": "ingest",
            "sasl_password": SECRET,
            "ssl_ca_location": "/etc/ssl/kafka-ca.pem",
        },
        registry={"basic_auth_username": "reader", "basic_auth_password": SECRET},
    )


def test_secrets_are_never_in_a_printed_form() -> None:
    settings = secured()
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    shown = redacted_variables(settings)
    assert shown["STREAMHOUSE_KAFKA__SASL_PASSWORD"] == "*****"
    assert shown["STREAMHOUSE_REGISTRY__BASIC_AUTH_PASSWORD"] == "*****"
    assert SECRET not in "".join(shown.values())


def test_streamhouse_settings_prints_them_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    env = settings_variables(secured(), secrets=True)
    result = CliRunner().invoke(app, ["settings"], env=env)
    assert result.exit_code == 0, result.output
    assert "STREAMHOUSE_KAFKA__SASL_PASSWORD=*****" in result.output
    assert SECRET not in result.output


def test_only_the_processes_that_talk_to_kafka_get_the_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMHOUSE_KAFKA__SASL_PASSWORD", SECRET)  # inherited from the parent
    settings = secured()
    assert SECRET not in "".join(settings_env(settings).values())
    assert settings_env(settings, secrets=True)["STREAMHOUSE_KAFKA__SASL_PASSWORD"] == SECRET
    specs = build_services(settings)
    assert SECRET not in "".join(specs["simulator"].env.values())
    for name in ("poller", "streaming"):
        assert specs[name].env["STREAMHOUSE_KAFKA__SASL_PASSWORD"] == SECRET
    assert os.environ["STREAMHOUSE_KAFKA__SASL_PASSWORD"] == SECRET  # untouched


def test_the_java_client_gets_a_jaas_line_and_a_pem_truststore() -> None:
    java = secured().kafka.java_client_config()
    assert java["security.protocol"] == "SASL_SSL"
    assert java["sasl.mechanism"] == "SCRAM-SHA-512"
    assert java["sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="ingest" password="s3cr3t-\\"quoted\\"\\\\pw";'
    )
    assert (java["ssl.truststore.type"], java["ssl.truststore.location"]) == (
        "PEM",
        "/etc/ssl/kafka-ca.pem",
    )
    assert "sasl.username" not in java and "sasl.password" not in java
    librdkafka = secured().kafka.client_config()
    assert librdkafka["sasl.password"] == SECRET and librdkafka["ssl.ca.location"]


def test_spark_reads_kafka_with_the_java_properties() -> None:
    from spark_jobs.bronze_stream import kafka_reader_options

    options = kafka_reader_options(secured())
    assert options["kafka.sasl.jaas.config"].startswith("org.apache.kafka")
    assert "kafka.sasl.username" not in options and "kafka.sasl.password" not in options


def test_registry_auth_and_ca_reach_the_registry_client() -> None:
    config = Settings(
        registry={
            "basic_auth_username": "reader",
            "basic_auth_password": SECRET,
            "ssl_ca_location": "/etc/ssl/registry-ca.pem",
        }
    ).registry.client_config()
    assert config["basic.auth.user.info"] == f"reader:{SECRET}"
    assert config["ssl.ca.location"] == "/etc/ssl/registry-ca.pem"


def test_an_unknown_protocol_or_mechanism_is_refused() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        Settings(kafka={"security_protocol": "TLS"})
    with pytest.raises(ValueError, match="choose one of"):
        Settings(kafka={"sasl_mechanism": "GSSAPI"})
