"""The one project exception for user errors: the CLI prints its message (no traceback) and exits 2."""


class UserError(Exception):
    """A problem with the user's input or environment, with a message that names it and the fix."""


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (library messages run to many lines)."""
    return (str(e).strip().splitlines() or [""])[0][:limit]


def one_line(e: BaseException, limit: int = 300) -> str:
    """An unexpected exception as one line for results and logs: its type and the first line of its message."""
    return f"{type(e).__name__}: {first_line(e, limit)}".rstrip(": ")[:limit]
