"""Errors a user can cause, in a module that imports nothing heavy (the CLI needs them before anything else)."""


class DataError(ValueError):
    """Input data that cannot be used, with the reason in the message."""
