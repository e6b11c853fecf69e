"""User errors and exit codes: one error type, one exit-code table, one place that prints them.

Library code raises `UserError` (or a subclass) with a one-line message that names the file,
line, track or option and says what is valid. `tagfold.cli.main` turns it into one line on
stderr, `tagfold COMMAND: message`, and the exit code below; no user error prints a traceback.
The README's exit-code table is this one.
"""
from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_FAILURE = 1        # bad input data, a missing/unreadable/damaged file, a full disk or read-only folder
EXIT_USAGE = 2          # an option or argument out of its documented range (argparse uses 2 as well)
EXIT_LOCKED = 3         # the output folder is in use by another tagfold run
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)
EXIT_CLOSED_PIPE = 141  # stdout closed early (`tagfold query rock | head -3`; 128 + SIGPIPE)

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "bad input data, a missing, unreadable or damaged file, a full disk or read-only folder",
    EXIT_USAGE: "an option or argument outside its documented range or format (nothing was run)",
    EXIT_LOCKED: "the output folder is in use by another tagfold run",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_CLOSED_PIPE: "the reader of stdout went away (output piped into `head`); ends quietly",
}


class UserError(ValueError):
    """Something the user can fix: the message is the whole story, a traceback would bury it.

    A ValueError, so callers that catch ValueError around library calls keep working.
    """

    exit_code = EXIT_FAILURE


class UsageError(UserError):
    """An option value or combination the command does not accept."""

    exit_code = EXIT_USAGE


def os_error_line(e: OSError) -> str:
    """One line naming the path and the cause of an OS error (permission, full disk, ...)."""
    cause = e.strerror or str(e)
    hint = {errno.ENOSPC: " (free some space and re-run; no partial output was kept)",
            errno.EDQUOT: " (free some space and re-run; no partial output was kept)",
            errno.EROFS: " (choose a writable output folder)",
            errno.EISDIR: " (give a file, not a folder)"}.get(e.errno, "")
    path = e.filename if e.filename is not None else ""
    if e.filename2 is not None:
        path = f"{path} -> {e.filename2}"
    return f"{path}: {cause}{hint}" if path else f"{cause}{hint}"
