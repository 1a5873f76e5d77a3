"""Find a Java runtime and check its version before a JVM service starts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from core.errors import UserFacingError

_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def java_executable(java_home: Path | None) -> str:
    """The ``java`` command to run: ``java_home/bin/java`` or the one on PATH."""
    if java_home is not None:
        candidate = java_home / "bin" / "java"
        if not candidate.is_file():
            raise UserFacingError(
                f"No java at {candidate}: point STREAMHOUSE_RUNTIME__JAVA_HOME at a JDK folder."
            )
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise UserFacingError(
            "Java is not installed: install a JDK 17 or newer "
            "(apt-get install openjdk-17-jdk-headless) or set STREAMHOUSE_RUNTIME__JAVA_HOME."
        )
    return found


def parse_major_version(version_output: str) -> int:
    """The major version from ``java -version`` output (``1.8`` counts as 8)."""
    match = _VERSION.search(version_output)
    if match is None:
        raise ValueError(f"cannot read a Java version from: {version_output[:200]!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def check_java(java_home: Path | None, minimum: int) -> str:
    """Return the java command after checking it is at least ``minimum``."""
    java = java_executable(java_home)
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    major = parse_major_version(result.stderr + result.stdout)
    if major < minimum:
        raise UserFacingError(
            f"Java {major} at {java} is too old: the services need Java {minimum} or newer; "
            "install one or set STREAMHOUSE_RUNTIME__JAVA_HOME."
        )
    return java
