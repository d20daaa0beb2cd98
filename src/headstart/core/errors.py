"""The one project exception for user errors: the CLI prints its message (no traceback) and exits 2."""


class UserError(Exception):
    """A problem with the user's input or environment, with a message that names it and the fix."""


class DamagedFile(UserError):
    """A file headstart wrote earlier (a unit's result.json, split.json, a cache entry) that no longer parses:
    callers that can rebuild it do, the others pass the message (file and fix) to the user."""


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (library messages run to many lines), cut at a word with '…'
    when longer than `limit`."""
    line = (str(e).strip().splitlines() or [""])[0]
    if len(line) <= limit:
        return line
    cut = line[:limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"


def one_line(e: BaseException, limit: int = 300) -> str:
    """An unexpected exception as one line for results and logs: its type and the first line of its message."""
    return f"{type(e).__name__}: {first_line(e, limit)}".rstrip(": ")[:limit]
