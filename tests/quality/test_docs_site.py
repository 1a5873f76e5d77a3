"""The docs site ``lakehouse_daily``'s publish_docs task writes: the dbt docs the build
generated, GX's Data Docs, one index, and no dbt run (so no Spark JVM) of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import UserFacingError
from core.settings import Settings
from marts.profiles import dbt_work_dir
from orchestration.daily import publish_docs


def test_the_site_is_published_from_the_build_s_docs_without_spark(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    target = dbt_work_dir(settings) / "target"
    target.mkdir(parents=True)
    for name, text in (
        ("static_index.html", "<html>dbt docs</html>"),
        ("manifest.json", "{}"),
        ("catalog.json", '{"nodes": {}}'),
    ):
        (target / name).write_text(text)

    index = Path(publish_docs(settings, "a test"))

    assert index == settings.docs_site_dir / "index.html"
    assert "a test" in index.read_text()
    assert (index.parent / "dbt" / "index.html").read_text() == "<html>dbt docs</html>"
    assert (index.parent / "dbt" / "catalog.json").is_file()
    assert (index.parent / "gx" / "index.html").is_file()


def test_without_the_build_s_docs_it_says_to_build_the_marts(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    with pytest.raises(UserFacingError, match="build the marts first"):
        publish_docs(settings, "a test")
    assert not (settings.docs_site_dir / "index.html").exists()
