"""Write the suites of ``quality/suites.py`` into the GX file context in ``quality/gx``.

Run ``python -m quality.build_context`` after changing a suite and commit
what it writes; ``tests/quality`` fails while the two differ. For each suite:
a Spark DataFrame asset of the ``lake`` data source (each run hands GX the
interval's DataFrame), its batch definition, the suite, a validation
definition and a checkpoint whose actions update the Data Docs and alert
people on failure.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from core.settings import DOCS_INDEX_LIMIT, Settings
from quality.context import (
    BATCH_DEFINITION,
    DATASOURCE,
    DOCS_SITE,
    DOCS_VARIABLE,
    RESULTS_VARIABLE,
    file_context,
)
from quality.suites import Suite, all_suites

ALERT_ACTION = "alert_people"
DOCS_ACTION = "update_data_docs"


def project_config(existing: dict[str, Any]) -> dict[str, Any]:
    """``great_expectations.yml`` with this platform's stores, docs site and no analytics.

    The fluent data sources GX keeps in the same file are left as they are.
    """
    config = dict(existing)
    stores = dict(config.get("stores") or {})
    stores["validation_results_store"] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": f"${{{RESULTS_VARIABLE}}}",
        },
    }
    config["stores"] = stores
    config["data_docs_sites"] = {
        DOCS_SITE: {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": f"${{{DOCS_VARIABLE}}}",
            },
            "site_index_builder": {
                "class_name": "DefaultSiteIndexBuilder",
                # The default of the settings; quality.context applies the running one.
                "validation_results_limit": DOCS_INDEX_LIMIT,
            },
        }
    }
    config["analytics_enabled"] = False
    # tqdm bars would fill the Airflow task logs with carriage returns.
    config["progress_bars"] = {"globally": False, "metric_calculations": False}
    return config


def _write_project_config(gx_dir: Path) -> None:
    path = gx_dir / "great_expectations.yml"
    existing = yaml.safe_load(path.read_text()) if path.exists() else {}
    header = (
        "# The GX file context of streamhouse (quality/README.md). Written by\n"
        "# `python -m quality.build_context`: suites are defined in quality/suites.py.\n"
        "# Validation results and Data Docs go where quality/context.py points the\n"
        "# two variables (under the state directory); usage analytics are off.\n"
    )
    path.write_text(header + yaml.safe_dump(project_config(existing or {}), sort_keys=False))


def _gx_suite(suite: Suite) -> Any:
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    expectations = [
        ExpectationConfiguration(
            type=e.type, kwargs=dict(e.kwargs), notes=e.notes or None
        ).to_domain_obj()
        for e in suite.expectations
    ]
    return gx.ExpectationSuite(
        name=suite.name,
        expectations=expectations,
        meta={"layer": suite.layer, "description": suite.description},
    )


def build(settings: Settings) -> list[str]:
    """(Re)write every suite, validation definition and checkpoint; their names."""
    import great_expectations as gx
    from great_expectations.checkpoint.actions import UpdateDataDocsAction

    from quality.actions import StreamhouseAlertAction

    gx_dir = settings.quality.project_dir / "gx"
    if not (gx_dir / "great_expectations.yml").exists():
        gx.get_context(mode="file", project_root_dir=str(settings.quality.project_dir))
    _write_project_config(gx_dir)
    names = []
    with file_context(settings) as context:
        datasource = context.data_sources.add_or_update_spark(name=DATASOURCE)
        for suite in all_suites():
            asset_names = {asset.name for asset in datasource.assets}
            asset = (
                datasource.get_asset(suite.name)
                if suite.name in asset_names
                else datasource.add_dataframe_asset(name=suite.name)
            )
            definitions = {d.name for d in asset.batch_definitions}
            batch = (
                asset.get_batch_definition(BATCH_DEFINITION)
                if BATCH_DEFINITION in definitions
                else asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
            )
            gx_suite = context.suites.add_or_update(_gx_suite(suite))
            validation = context.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=suite.name, data=batch, suite=gx_suite)
            )
            context.checkpoints.add_or_update(
                gx.Checkpoint(
                    name=suite.name,
                    validation_definitions=[validation],
                    actions=[
                        UpdateDataDocsAction(name=DOCS_ACTION, site_names=[DOCS_SITE]),
                        StreamhouseAlertAction(name=ALERT_ACTION, notify_on="failure"),
                    ],
                    result_format="SUMMARY",
                )
            )
            names.append(suite.name)
    return names


def main() -> None:
    """Entry point of ``python -m quality.build_context``."""
    from spark_jobs.session import build_spark

    settings = Settings()
    # GX checks a Spark data source by starting a session: give it the platform's,
    # without the metastore (nothing here reads a table).
    build_spark(
        settings.model_copy(
            update={"catalog": settings.catalog.model_copy(update={"kind": "in-memory"})}
        ),
        "streamhouse-gx-build",
    )
    names = build(settings)
    sys.stdout.write(f"wrote {len(names)} suites and checkpoints: {', '.join(names)}\n")


if __name__ == "__main__":
    main()
