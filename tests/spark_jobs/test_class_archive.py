"""The drivers' class archive (AppCDS): what it depends on, and that a driver really maps
Spark's classes from it with the catalog's entries on its class path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.postgres import store_password
from core.settings import PROJECT_ROOT, Settings
from spark_jobs import class_archive
from spark_jobs.session import driver_java_options


def _file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_key_changes_with_the_jdk_pyspark_and_the_jars(tmp_path: Path) -> None:
    java = _file(tmp_path / "java", "jvm")
    jar = _file(tmp_path / "delta.jar", "classes")
    venv = tmp_path / "venv" / "pyspark"
    key = class_archive.archive_key(java, venv, "4.1.1", [jar])
    assert key == class_archive.archive_key(java, venv, "4.1.1", [jar])
    assert key != class_archive.archive_key(java, venv, "4.1.2", [jar])
    assert key != class_archive.archive_key(java, venv, "4.1.1", [])
    # Another checkout's pyspark: its jars have other paths on the class path.
    assert key != class_archive.archive_key(java, tmp_path / "other" / "pyspark", "4.1.1", [jar])
    jar.write_text("other classes")  # a jar rebuilt in place
    assert key != class_archive.archive_key(java, venv, "4.1.1", [jar])
    key = class_archive.archive_key(java, venv, "4.1.1", [jar])
    os.utime(java, ns=(0, 0))  # the JDK upgraded in place
    assert key != class_archive.archive_key(java, venv, "4.1.1", [jar])


def _archive_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The archive's path moved to ``tmp_path`` (the real one is in the shared jar cache)."""
    archive = tmp_path / "class-archives" / "spark-driver-venv1-0.jsa"
    monkeypatch.setattr(class_archive, "archive_path", lambda _settings: archive)
    return archive


def test_the_archive_lives_in_the_jar_cache() -> None:
    settings = Settings()
    archive = class_archive.archive_path(settings)
    assert archive is not None and archive.parent == settings.jars_dir / "class-archives"
    assert archive.name.startswith(class_archive.ARCHIVE_PREFIX)


def test_drivers_map_the_archive_only_when_it_is_on_and_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(state_dir=tmp_path)
    archive = _archive_in(tmp_path, monkeypatch)
    assert class_archive.java_options(settings) == []  # not built
    assert driver_java_options(settings, None, "-Dx=1") == "-Dx=1"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"")
    assert class_archive.java_options(settings) == [
        f"-XX:SharedArchiveFile={archive}",
        "-Xshare:auto",
    ]
    assert driver_java_options(settings, "-Dlog=1", None, "-Dx=1") == (
        f"-XX:SharedArchiveFile={archive} -Xshare:auto -Dlog=1 -Dx=1"
    )
    off = settings.model_copy(
        update={"spark": settings.spark.model_copy(update={"class_archive": False})}
    )
    assert class_archive.java_options(off) == []


#: A driver as the platform starts one (the Hive catalog's JDBC jar and hive-site.xml folder
#: on its class path), which logs where each class came from.
_DRIVER = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path
    from core.settings import Settings
    from spark_jobs.session import build_spark

    state, log = Path(sys.argv[1]), sys.argv[2]
    spark = build_spark(
        Settings(state_dir=state, lake_root=str(state / "lake")),
        "class-archive-check",
        extra_config={"spark.driver.extraJavaOptions": f"-Xlog:class+load=info:file={log}"},
    )
    spark.range(10).selectExpr("sum(id)").collect()
    # Set for the JVM's launch only: a process started later (another stack's) must not
    # inherit this stack's catalog entries.
    assert "SPARK_DIST_CLASSPATH" not in os.environ, os.environ["SPARK_DIST_CLASSPATH"]
    spark.stop()
    """
)


def test_a_driver_with_the_catalog_on_its_class_path_maps_spark_from_the_archive(
    tmp_path: Path,
) -> None:
    """Fails when the archive is not built (``make install`` builds it) or when the driver's
    class path does not start as the archive's (e.g. the catalog's folder put first)."""
    settings = Settings()
    archive = class_archive.archive_path(settings)
    assert archive is not None and archive.is_file(), (
        f"no class archive at {archive}: `make install` (streamhouse jars) builds it"
    )
    state = tmp_path / "state"
    store_password(
        Settings(state_dir=state), "metastore", SecretStr("not-used-no-query-reaches-it")
    )
    log = tmp_path / "class-load.log"
    env = {k: v for k, v in os.environ.items() if k != "SPARK_DIST_CLASSPATH"}
    run = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(state), str(log)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    sources = {}
    for line in log.read_text().splitlines():
        parts = line.split("] ", 1)[-1].split(" source: ", 1)
        if len(parts) == 2:
            sources[parts[0]] = parts[1]
    for name in ("org.apache.spark.SparkContext", "org.apache.spark.sql.classic.SparkSession"):
        assert sources.get(name) == "shared objects file (top)", (name, sources.get(name))
    # Most classes come from the archive, not from jar files (generated classes aside).
    mapped = sum(source == "shared objects file (top)" for source in sources.values())
    from_files = sum(source.startswith(("file:", "jar:")) for source in sources.values())
    assert mapped > 0.8 * (mapped + from_files), (mapped, from_files)


@pytest.mark.parametrize("on", [True, False])
def test_the_dbt_driver_gets_the_same_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on: bool
) -> None:
    from marts.profiles import dbt_env

    settings = Settings(
        state_dir=tmp_path, catalog={"kind": "in-memory"}, spark={"class_archive": on}
    )
    archive = _archive_in(tmp_path, monkeypatch)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"")
    options = dbt_env(settings)["STREAMHOUSE_DBT_DRIVER_JAVA_OPTIONS"]
    assert options == (f"-XX:SharedArchiveFile={archive} -Xshare:auto" if on else "")


def test_a_failed_build_says_where_its_log_is_and_leaves_no_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _archive_in(tmp_path, monkeypatch)

    def failing_job(command: list[str], **_kwargs: object) -> int:
        Path(command[-1]).write_bytes(b"half an archive")
        return 1

    monkeypatch.setattr(subprocess, "call", failing_job)
    said: list[str] = []
    assert class_archive.ensure(Settings(state_dir=tmp_path), said.append) is None
    assert said == [
        "Spark class archive: not built (exit 1), drivers start without it; "
        f"log: {tmp_path / 'logs' / 'class-archive.log'}"
    ]
    assert list(archive.parent.iterdir()) == []


def test_a_built_archive_replaces_the_stale_ones_and_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _archive_in(tmp_path, monkeypatch)
    archive.parent.mkdir(parents=True)
    stale = _file(archive.parent / "spark-driver-venv1-1.jsa", "old jdk")
    building = _file(archive.parent / "spark-driver-venv1-2.77.partial", "another build")
    other_checkout = _file(archive.parent / "spark-driver-venv2-1.jsa", "another pyspark")
    runs: list[list[str]] = []

    def job(command: list[str], **_kwargs: object) -> int:
        runs.append(command)
        Path(command[-1]).write_bytes(b"classes")
        return 0

    monkeypatch.setattr(subprocess, "call", job)
    said: list[str] = []
    settings = Settings(state_dir=tmp_path)
    assert class_archive.ensure(settings, said.append) == archive
    assert class_archive.ensure(settings, said.append) == archive  # twice: built once
    assert len(runs) == 1 and runs[0][1:3] == ["-m", "spark_jobs.class_archive"]
    assert archive.read_bytes() == b"classes" and not stale.exists()
    assert building.exists() and other_checkout.exists()
    assert said[0].startswith("Spark class archive: built in ")
    assert said[1] == f"Spark class archive: ready ({archive.name})"
