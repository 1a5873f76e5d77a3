"""``python -m marts.lint [PATH...]``: sqlfluff with the dbt templater on the dbt project.

The dbt templater compiles the project the way dbt runs it, so it needs what
``dbt/profiles.yml`` reads (``marts.profiles.dbt_env``) and a SparkSession:
dbt-spark's session method starts one in this process, with the cached jars
and Spark's in-memory catalog (lint needs no service, and every model compiles
as a full refresh: ``is_incremental()`` is false without the marts' tables).
dbt's target and log folders go to a temporary directory, not into ``dbt/``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from core.settings import PROJECT_ROOT, Settings
from marts.profiles import dbt_env


def main(argv: list[str]) -> int:
    """Lint ``argv`` (default: the project's models); sqlfluff's exit code."""
    from sqlfluff.cli.commands import cli

    with tempfile.TemporaryDirectory(prefix="streamhouse-lint-") as work:
        settings = Settings(state_dir=Path(work), catalog={"kind": "in-memory"})
        os.environ.update(dbt_env(settings))
        os.environ["DBT_TARGET_PATH"] = str(Path(work) / "target")
        os.environ["DBT_LOG_PATH"] = str(Path(work) / "logs")
        os.chdir(PROJECT_ROOT)
        paths = argv or [str(settings.marts.project_dir / "models")]
        try:
            cli.main(["lint", *paths], standalone_mode=False)
        except SystemExit as done:
            return int(done.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
