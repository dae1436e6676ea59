"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class AivsrealError(Exception):
    """A problem the user can fix (bad path, bad layout, bad model file), not a bug."""
