"""Expected failures: shown to the person as one line, never as a traceback."""


class UserError(Exception):
    """Something the user can fix (a wrong path, a mistyped lab id, a missing system package)."""

    exit_code = 2
