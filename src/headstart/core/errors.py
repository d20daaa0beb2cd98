"""The one project exception for user errors: the CLI prints its message (no traceback) and exits 2."""


class UserError(Exception):
    """A problem with the user's input or environment, with a message that names it and the fix."""
