"""The GX file context in ``quality/gx``, opened with this platform's output folders.

The context's definitions (data source, suites, validation definitions,
checkpoints) are committed in the repository; what running it produces
(validation results, Data Docs) goes under the state directory. Its
``great_expectations.yml`` names those two folders with variables that
``file_context`` sets for the duration of the block, and turns GX's usage
analytics off: nothing is sent anywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from core.environment import temporary_environment
from core.settings import Settings

if TYPE_CHECKING:
    from great_expectations.data_context.data_context.file_data_context import FileDataContext

RESULTS_VARIABLE = "STREAMHOUSE_GX_RESULTS_DIR"
DOCS_VARIABLE = "STREAMHOUSE_GX_DOCS_DIR"
DATASOURCE = "lake"
BATCH_DEFINITION = "interval"
DOCS_SITE = "local_site"


def docs_dir(settings: Settings) -> Path:
    """Where GX writes its Data Docs: ``gx/`` of the one docs site."""
    return settings.docs_site_dir / "gx"


def results_dir(settings: Settings) -> Path:
    """Where GX keeps its validation results."""
    return settings.quality_results_dir / "validations"


@contextlib.contextmanager
def file_context(settings: Settings) -> Iterator[FileDataContext]:
    """The file context, its outputs under the state directory, the alert action registered."""
    results_dir(settings).mkdir(parents=True, exist_ok=True)
    docs_dir(settings).mkdir(parents=True, exist_ok=True)
    with temporary_environment(
        {
            RESULTS_VARIABLE: str(results_dir(settings)),
            DOCS_VARIABLE: str(docs_dir(settings)),
            "GX_ANALYTICS_ENABLED": "False",
        }
    ):
        import great_expectations as gx

        import quality.actions  # noqa: F401  (registers the streamhouse_alert action type)

        context = gx.get_context(mode="file", project_root_dir=str(settings.quality.project_dir))
        limit_docs_index(context, settings.quality.docs_index_limit)
        yield context


def limit_docs_index(context: FileDataContext, limit: int) -> None:
    """The docs site's index lists the latest ``limit`` validation results (for this context
    only: the committed ``great_expectations.yml`` keeps the default).

    GX rebuilds the index after every checkpoint run, reading each validation result the
    index lists; with no limit that is every result ever stored.
    """
    # The project's own config: ``context.variables`` hands out substituted copies.
    site = (context.config.data_docs_sites or {}).get(DOCS_SITE)
    if site is None:
        raise ValueError(f"the GX context has no docs site {DOCS_SITE!r}")
    index_builder = site.setdefault("site_index_builder", {"class_name": "DefaultSiteIndexBuilder"})
    index_builder["validation_results_limit"] = limit
