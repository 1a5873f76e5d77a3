"""The CLI's output keeps every name whole: in a log file, and in a narrow terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from lake.time_travel import Commit, TableProof
from streamhouse import rendering
from streamhouse.daily_run import DailyRun, show_run

NAMES = (
    "lake.quake_changes",
    "lake.quakes",
    "marts.fct_quake_revisions",
    "marts.fct_network_activity_daily",
    "marts.dim_magnitude_type",
)


def _run() -> DailyRun:
    """A run whose proof lists long table names next to a long list of commits."""
    commits = [
        Commit(3, "OPTIMIZE", "marker", {}),
        Commit(4, "VACUUM START", "marker", {}),
        Commit(5, "VACUUM END", "marker", {}),
    ]
    proofs = [TableProof(name, 2, 5, commits, [], 2062, 2062) for name in NAMES]
    return DailyRun("manual__2026-12-06T13:49:21.907041+00:00", "success", {}, None, proofs)


def _lines(output: str) -> list[str]:
    return output.splitlines()


def test_a_console_that_writes_to_a_pipe_is_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    made = rendering.console()  # pytest captures stdout: not a terminal
    assert not made.is_terminal
    assert made.width == rendering.PIPE_WIDTH


def test_columns_wins_over_the_pipe_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    assert rendering.console().width == 120


def test_the_proof_in_a_log_shows_each_table_whole_on_one_line() -> None:
    log = io.StringIO()
    show_run(_run(), Console(file=log, width=rendering.PIPE_WIDTH))
    text = log.getvalue()
    assert "…" not in text
    for name in NAMES:
        assert any(name in line for line in _lines(text)), (name, text)


def test_a_narrow_terminal_folds_a_name_instead_of_cutting_it() -> None:
    screen = io.StringIO()
    show_run(_run(), Console(file=screen, width=60, force_terminal=True, color_system=None))
    text = screen.getvalue()
    assert "…" not in text, text
    # Each name's characters are all there, folded over the first column's lines.
    first_column = "".join(
        line.split("│")[1].strip() for line in _lines(text) if line.count("│") > 2
    )
    for name in NAMES:
        assert name in first_column, (name, text)
