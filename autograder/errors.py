"""Expected failures: shown to the person as one line, never as a traceback. Each kind has its own exit code, so a
script around sparkgrade can tell a typo from a full disk from an unreachable cluster (README: "Exit codes")."""


class UserError(Exception):
    """Something the user can fix (a wrong path, a mistyped lab id, a missing system package)."""

    exit_code = 2


class FileSystemError(UserError):
    """A file or folder could not be read or written: permissions, a read-only or full disk, a missing folder."""

    exit_code = 4


class DatabaseError(UserError):
    """The grade database cannot be opened, is missing, or refused a read or write."""

    exit_code = 5


class NetworkError(UserError):
    """A remote service (the Dask scheduler, a PostgreSQL server) cannot be reached."""

    exit_code = 6


class BusyError(UserError):
    """Another sparkgrade process holds the course (a second `grade` of the same course)."""

    exit_code = 7
