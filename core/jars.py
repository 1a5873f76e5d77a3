"""Jars the platform runs, as Maven coordinates, and where the jar cache keeps them.

Pure description and look-up: the embedded runtime (``streamhouse.runtime.maven``)
resolves a bundle from Maven Central into the cache once (``make install``,
``streamhouse jars``, ``stack up``); a Spark job only reads the cache, so
starting one never downloads anything and ``spark_jobs`` never depends on
the runtime.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserFacingError

SPARK_VERSION = "4.1.1"
DELTA_VERSION = "4.4.0"


@dataclass(frozen=True)
class Coordinate:
    """One Maven artifact, ``group:artifact:version[:type[:classifier]]``."""

    group: str
    artifact: str
    version: str
    packaging: str = "jar"
    classifier: str | None = None
    exclusions: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, exclusions: tuple[str, ...] = ()) -> Coordinate:
        """Parse ``group:artifact:version[:type[:classifier]]``."""
        parts = text.split(":")
        if len(parts) not in (3, 4, 5):
            raise ValueError(f"not a Maven coordinate: {text!r}")
        packaging = parts[3] if len(parts) > 3 else "jar"
        classifier = parts[4] if len(parts) > 4 else None
        return cls(parts[0], parts[1], parts[2], packaging, classifier, exclusions)

    def __str__(self) -> str:
        text = f"{self.group}:{self.artifact}:{self.version}"
        if self.packaging != "jar" or self.classifier:
            text += f":{self.packaging}"
        if self.classifier:
            text += f":{self.classifier}"
        return text


def bundle_fingerprint(coordinates: list[Coordinate], *filters: tuple[str, ...]) -> str:
    """A stable digest of what a bundle was resolved for."""
    lines = sorted(f"{c}!{','.join(c.exclusions)}" for c in coordinates)
    lines += [",".join(f) for f in filters]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class JarBundle:
    """A named set of coordinates resolved, with their runtime dependencies, into one folder.

    ``include_groups`` keeps only jars of those group ids and
    ``exclude_artifacts`` drops some by artifact id: a connector for a runtime
    that ships its own libraries (Spark) must not bring second copies of them.
    """

    name: str
    coordinates: tuple[Coordinate, ...]
    include_groups: tuple[str, ...] = ()
    exclude_artifacts: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        """What the bundle is resolved for; a resolution of other coordinates is stale."""
        return bundle_fingerprint(
            list(self.coordinates), self.include_groups, self.exclude_artifacts
        )

    def folder(self, cache_dir: Path) -> Path:
        """The bundle's folder in the cache."""
        return cache_dir / self.name

    def is_resolved(self, cache_dir: Path) -> bool:
        """True when the cache holds a resolution of exactly these coordinates."""
        marker = self.folder(cache_dir) / ".resolved"
        return marker.is_file() and marker.read_text().strip() == self.fingerprint

    def cached_jars(self, cache_dir: Path) -> list[Path]:
        """The bundle's jars from the cache; a user-facing error when it was not resolved."""
        if not self.is_resolved(cache_dir):
            raise UserFacingError(
                f"The {self.name} jars are not in the jar cache ({self.folder(cache_dir)}): "
                "run `streamhouse jars` (or `make install`) to resolve them."
            )
        return sorted(self.folder(cache_dir).glob("*.jar"))


SPARK_CONNECTORS = JarBundle(
    f"spark-connectors-{SPARK_VERSION}-delta-{DELTA_VERSION}",
    (
        Coordinate.parse(f"io.delta:delta-spark_4.1_2.13:{DELTA_VERSION}"),
        Coordinate.parse(f"org.apache.spark:spark-sql-kafka-0-10_2.13:{SPARK_VERSION}"),
        Coordinate.parse(f"org.apache.spark:spark-avro_2.13:{SPARK_VERSION}"),
    ),
    # Spark ships scala, jackson, hadoop, parquet, log4j...: take only the connectors'
    # own jars, never second copies of what is on Spark's classpath already.
    include_groups=(
        "io.delta",
        "io.unitycatalog",
        "org.apache.spark",
        "org.apache.kafka",
        "org.apache.commons",
    ),
    exclude_artifacts=("spark-tags_2.13",),
)

POSTGRES_JDBC_VERSION = "42.7.8"

#: PostgreSQL's JDBC driver, for the Hive metastore every Spark process shares.
#: It must be on the driver's own class path (``spark_jobs.session.driver_classpath``):
#: DataNucleus asks ``DriverManager``, which does not see ``spark.jars``.
METASTORE_JDBC = JarBundle(
    f"postgresql-jdbc-{POSTGRES_JDBC_VERSION}",
    (Coordinate.parse(f"org.postgresql:postgresql:{POSTGRES_JDBC_VERSION}"),),
    # checker-qual is an annotation library the driver does not need at run time.
    include_groups=("org.postgresql",),
)

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


def spark_extra_bundle(packages: list[str]) -> JarBundle | None:
    """The bundle of ``spark.extra_packages`` (e.g. hadoop-aws for s3a://), None when empty."""
    if not packages:
        return None
    extra = tuple(Coordinate.parse(c) for c in packages)
    return JarBundle(
        f"spark-extra-{bundle_fingerprint(list(extra))}",
        extra,
        # Only what Spark does not already ship (see SPARK_CONNECTORS' groups).
        exclude_artifacts=_SPARK_PROVIDED,
    )


def spark_bundles(extra_packages: list[str]) -> list[JarBundle]:
    """Every bundle a Spark job puts on its classpath."""
    extra = spark_extra_bundle(extra_packages)
    return [SPARK_CONNECTORS, METASTORE_JDBC, *([extra] if extra else [])]
