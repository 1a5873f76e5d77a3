"""Resolve jars from Maven Central once, into a local cache.

Each named *bundle* (the Kafka broker, the Spark connectors, ...) is a set of
Maven coordinates resolved with their runtime dependencies into its own folder
of the cache. A bundle that resolved before is not resolved again: a marker
file records the coordinates it was resolved for, so a job start never
downloads anything. Maven itself does the resolution (``mvn`` is on every
machine the platform supports) through a small generated POM, because
``dependency:get`` also pulls test jars that are not published for every
artifact.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

from core.errors import UserFacingError
from core.jars import Coordinate, JarBundle

_POM_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.streamhouse.resolve</groupId>
  <artifactId>{bundle}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""

_DEPENDENCY_TEMPLATE = """    <dependency>
      <groupId>{group}</groupId>
      <artifactId>{artifact}</artifactId>
      <version>{version}</version>{extra}
      <exclusions>{exclusions}
      </exclusions>
    </dependency>"""

_EXCLUSION_TEMPLATE = """
        <exclusion><groupId>{group}</groupId><artifactId>{artifact}</artifactId></exclusion>"""


def render_pom(bundle: str, coordinates: list[Coordinate]) -> str:
    """The POM whose runtime dependencies are the bundle's jars."""
    deps = []
    for coord in coordinates:
        extra = ""
        if coord.packaging != "jar":
            extra += f"\n      <type>{coord.packaging}</type>"
        if coord.classifier:
            extra += f"\n      <classifier>{coord.classifier}</classifier>"
        exclusions = "".join(
            _EXCLUSION_TEMPLATE.format(group=g, artifact=a)
            for g, a in (e.split(":", 1) for e in coord.exclusions)
        )
        deps.append(
            _DEPENDENCY_TEMPLATE.format(
                group=coord.group,
                artifact=coord.artifact,
                version=coord.version,
                extra=extra,
                exclusions=exclusions,
            )
        )
    return _POM_TEMPLATE.format(bundle=bundle, dependencies="\n".join(deps))


def resolve_bundle(cache_dir: Path, bundle: JarBundle, maven_cmd: str = "mvn") -> Path:
    """Resolve ``bundle``'s coordinates and their runtime dependencies into the cache.

    Returns the folder of jars (and unpacked archives). Nothing is downloaded
    when the folder already holds a resolution of the same coordinates.
    """
    target = bundle.folder(cache_dir)
    if bundle.is_resolved(cache_dir):
        return target
    coordinates = list(bundle.coordinates)
    include_groups, exclude_artifacts = bundle.include_groups, bundle.exclude_artifacts
    name = bundle.name
    if shutil.which(maven_cmd) is None:
        raise UserFacingError(
            f"Maven ('{maven_cmd}') is not on PATH: install it (apt-get install maven) "
            f"so the {name} jars can be resolved from Maven Central."
        )
    work = cache_dir / f".{name}.resolve"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    staging = work / "out"
    staging.mkdir()
    plugin = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
    jars = [c for c in coordinates if c.packaging == "jar"]
    if jars:
        (work / "pom.xml").write_text(render_pom(name, jars))
        cmd = [
            maven_cmd,
            "-B",
            "-q",
            "-f",
            str(work / "pom.xml"),
            f"{plugin}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        if include_groups:
            cmd.append(f"-DincludeGroupIds={','.join(include_groups)}")
        if exclude_artifacts:
            cmd.append(f"-DexcludeArtifactIds={','.join(exclude_artifacts)}")
        _run_maven(cmd, work, name, jars)
    for archive in (c for c in coordinates if c.packaging != "jar"):
        # An archive (a server distribution) is fetched alone, without reading its
        # POM: the parent POM of some (Apicurio 3.0.x) is not on Maven Central, and
        # every 3.x goal reads it. The 2.8 `get` goal with `dest` copies the file.
        cmd = [
            maven_cmd,
            "-B",
            "-q",
            "org.apache.maven.plugins:maven-dependency-plugin:2.8:get",
            f"-Dartifact={archive}",
            "-Dtransitive=false",
            f"-Ddest={staging}/",
        ]
        _run_maven(cmd, work, name, [archive])
    for tarball in list(staging.glob("*.tar.gz")):
        with tarfile.open(tarball) as tar:
            tar.extractall(staging / tarball.name.removesuffix(".tar.gz"), filter="data")
        tarball.unlink()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    (target / ".resolved").write_text(bundle.fingerprint + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return target


def _run_maven(cmd: list[str], work: Path, bundle: str, coordinates: list[Coordinate]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=work)
    if result.returncode != 0:
        log = work / "mvn.log"
        log.write_text(" ".join(cmd) + "\n" + result.stdout + result.stderr)
        raise UserFacingError(
            f"Maven could not resolve the {bundle} jars ({', '.join(map(str, coordinates))}); "
            f"check the network reaches Maven Central, details in {log}"
        )
