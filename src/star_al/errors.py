"""The one exception type for mistakes a user can make; the CLI prints it as one line."""


class StarError(Exception):
    """A problem with the user's input (path, file content, option); never our bug."""
