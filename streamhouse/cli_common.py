"""What every command module of the CLI shares: the consoles, reading settings, error handling.

The command modules (``cli``, ``cli_load``) import this one and never each other
the other way round, so the command tree has no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer
from pydantic import ValidationError

from core.errors import UserFacingError
from core.settings import Settings
from streamhouse import rendering

# soft_wrap: a path or a sentence is never broken across lines (copy-paste, grep). Both
# are 200 columns wide in a file or a pipe, not rich's 80 (``rendering``).
console = rendering.console(stderr=True, soft_wrap=True)
out = rendering.console()
T = TypeVar("T")


def load_settings() -> Settings:
    """Read the settings, turning a bad value into one sentence."""
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        where = "__".join(str(p).upper() for p in first["loc"])
        raise UserFacingError(
            f"Setting STREAMHOUSE_{where} is invalid ({first['msg']}): fix it in the "
            "environment or .env."
        ) from None


def guarded(action: Callable[[], T]) -> T:
    """Run ``action``; print a user-facing error as one red sentence and exit 1."""
    try:
        return action()
    except UserFacingError as error:
        console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("interrupted")
        raise typer.Exit(130) from None


def report(message: str) -> None:
    """One progress line of a command, on stderr."""
    console.print(f"[cyan]•[/] {message}")
