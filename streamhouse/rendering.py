"""How the command line renders: nothing a user reads or copies is cut to an ellipsis.

rich sizes a console that writes to a file or a pipe (a CI log, ``make demo >
demo.log``, ``| tee``) at 80 columns, and its tables end a cell that does not
fit in "…". The time-travel proof of ``streamhouse airflow run-daily`` then
printed every table as ``lake.quak…`` or ``marts.fct…``, and ``stack status``
every log path as ``/work/mai…``: the names a reader needs, gone. So:

- a console that is not a terminal is ``PIPE_WIDTH`` columns wide (a
  terminal keeps its own width; ``COLUMNS`` wins over both);
- every column of a table folds a cell too long for it onto the next line
  instead of cutting it.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.table import Column, Table

#: The width of a console writing to a file or a pipe, where lines cost nothing.
PIPE_WIDTH = 200


def console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    """A console ``PIPE_WIDTH`` wide when it does not write to a terminal."""
    made = Console(stderr=stderr, soft_wrap=soft_wrap)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = PIPE_WIDTH
    return made


def folding(header: str | Column) -> Column:
    """``header`` as a column whose long cells fold instead of ending in an ellipsis."""
    if isinstance(header, Column):
        header.overflow = "fold"
        return header
    return Column(header, overflow="fold")


def table(*headers: str | Column, **options: Any) -> Table:
    """A rich ``Table`` whose columns all fold (``options``: ``Table``'s, e.g. ``title``)."""
    return Table(*(folding(h) for h in headers), **options)
