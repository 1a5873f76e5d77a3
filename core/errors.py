"""Errors a user can cause or fix, carried to the CLI as one clear sentence."""


class UserFacingError(Exception):
    """An error whose message tells the user what to do; the CLI prints it without a traceback."""
