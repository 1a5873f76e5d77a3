"""The stack's PostgreSQL and the catalog settings, without a server: secrets stay secret."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.errors import UserFacingError
from core.postgres import (
    metastore_credentials,
    password_file,
    store_password,
    stored_password,
    superuser_credentials,
)
from core.settings import Settings, redacted_variables, settings_env
from spark_jobs.session import (
    catalog_config,
    driver_classpath,
    driver_launch_environment,
    hive_site_dir,
)
from streamhouse.runtime import postgres
from streamhouse.runtime.process import ServicePaths
from streamhouse.runtime.services import build_services


def test_a_stored_password_is_the_owners_only(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    path = store_password(settings, "metastore", SecretStr("s3cr3t"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stored_password(settings, "metastore") == SecretStr("s3cr3t")
    # Replaced, not appended, and still 0600.
    store_password(settings, "metastore", SecretStr("other"))
    assert stored_password(settings, "metastore") == SecretStr("other")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_credentials_never_show_their_password(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, runtime={"ports": {"postgres": 15432}})
    store_password(settings, "metastore", SecretStr("s3cr3t"))
    credentials = metastore_credentials(settings)
    assert credentials.jdbc_url == "jdbc:postgresql://127.0.0.1:15432/metastore"
    assert "s3cr3t" not in repr(credentials) and "s3cr3t" not in str(credentials)
    assert "s3cr3t" not in str(credentials.sqlalchemy_url())
    assert credentials.sqlalchemy_url().get_secret_value() == (
        "postgresql+psycopg://metastore:s3cr3t@127.0.0.1:15432/metastore"
    )


def test_missing_credentials_are_one_sentence(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    with pytest.raises(UserFacingError, match="stack up postgres"):
        metastore_credentials(settings)
    with pytest.raises(UserFacingError, match="SUPERUSER_PASSWORD"):
        superuser_credentials(settings)
    with pytest.raises(UserFacingError, match="not a valid role name"):
        password_file(settings, "../etc/passwd")


def test_a_server_outside_the_stack_comes_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        postgres={"host": "db.example", "port": 6543, "superuser_password": "pw"},
        catalog={"password": "mpw"},
    )
    assert superuser_credentials(settings).host == "db.example"
    assert metastore_credentials(settings).password == SecretStr("mpw")
    assert metastore_credentials(settings).port == 6543


def test_settings_printed_masked_but_passed_to_children() -> None:
    settings = Settings(postgres={"superuser_password": "pw1"}, catalog={"password": "pw2"})
    shown = redacted_variables(settings)
    assert "pw1" not in shown.values() and "pw2" not in shown.values()
    assert shown["STREAMHOUSE_CATALOG__PASSWORD"] == "*****"
    assert "STREAMHOUSE_CATALOG__PASSWORD" not in settings_env(settings)
    child = settings_env(settings, secrets=True)
    assert child["STREAMHOUSE_POSTGRES__SUPERUSER_PASSWORD"] == "pw1"
    assert child["STREAMHOUSE_CATALOG__PASSWORD"] == "pw2"


def test_server_command_binds_the_runtime_address_and_holds_no_secret(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, runtime={"ports": {"postgres": 25432}})
    store_password(settings, "postgres", SecretStr("superpw"))
    command = postgres.server_command(settings, ServicePaths(tmp_path / "postgres"))
    assert command[0].endswith("/postgres")
    assert "listen_addresses=127.0.0.1" in command and "port=25432" in command
    assert "unix_socket_directories=" in command
    assert not any("superpw" in part for part in command)


def test_postgres_stops_by_fast_shutdown_of_the_postmaster_only() -> None:
    spec = build_services(Settings())["postgres"]
    assert spec.stop_signal == signal.SIGINT
    # The streaming job registers the lake in the catalog: it needs the server.
    assert "postgres" in build_services(Settings())["streaming"].depends_on
    in_memory = build_services(Settings(catalog={"kind": "in-memory"}))["streaming"]
    assert "postgres" not in in_memory.depends_on


def test_a_folder_the_server_account_cannot_enter_is_found(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    # The account owns every folder here (so its owner bits decide): all enterable but one.
    account = postgres.RunAs("someone", os.getuid(), os.getgid())
    closed.chmod(0o600)
    try:
        assert postgres._blocked_parent(closed / "inner" / "data", account) == closed
    finally:
        closed.chmod(0o700)
    assert postgres._blocked_parent(closed / "inner" / "data", account) is None


def test_missing_binaries_say_how_to_install_them(tmp_path: Path) -> None:
    settings = Settings(postgres={"bin_dir": tmp_path})
    with pytest.raises(UserFacingError, match="make install"):
        postgres.binary(settings, "initdb")


def test_hive_catalog_keeps_its_password_out_of_spark_settings(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, lake_root=str(tmp_path / "lake"))
    store_password(settings, "metastore", SecretStr("pw<&>'\""))
    config = catalog_config(settings)
    assert config["spark.sql.catalogImplementation"] == "hive"
    assert config["spark.sql.warehouse.dir"] == f"{tmp_path}/lake/_warehouse"
    # PySpark puts every setting on spark-submit's command line: none may hold it.
    assert not any("pw<" in value for value in config.values())
    classpath = driver_classpath(settings)
    assert any("postgresql-42.7" in entry for entry in classpath)
    # Appended after Spark's jars by the launcher, not put first (the class archive).
    assert "spark.driver.extraClassPath" not in config
    launch = driver_launch_environment(settings, {"SPARK_DIST_CLASSPATH": "/opt/hadoop/*"})
    assert launch == {"SPARK_DIST_CLASSPATH": os.pathsep.join(["/opt/hadoop/*", *classpath])}
    site = hive_site_dir(settings) / "hive-site.xml"
    assert str(site.parent) in classpath
    assert stat.S_IMODE(site.stat().st_mode) == 0o600
    assert stat.S_IMODE(site.parent.stat().st_mode) == 0o700
    text = site.read_text()
    assert "pw&lt;&amp;&gt;'\"" in text  # XML-escaped, still the same password
    assert "<value>false</value>" in text  # autoCreateAll off (the silent hang)
    assert f"jdbc:postgresql://127.0.0.1:{settings.runtime.ports.postgres}/metastore" in text


def test_in_memory_catalog_needs_no_service(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, catalog={"kind": "in-memory"})
    assert catalog_config(settings) == {"spark.sql.catalogImplementation": "in-memory"}
    assert driver_classpath(settings) == [] and driver_launch_environment(settings, {}) == {}
