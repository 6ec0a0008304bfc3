"""What the command line checks before a command starts any work: lab ids, numbers, output files, the export
format, and whether a Dask scheduler answers. Each failure is one line (a UserError of the kind that says what to
do) raised before anything is built, graded or written."""

from __future__ import annotations

import difflib
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from autograder.errors import FileSystemError, NetworkError, UserError
from autograder.paths import lab_ids

# The export formats and the file suffixes that imply them (a Canvas gradebook is a .csv too).
FORMAT_SUFFIXES = {"json": (".json",), "csv": (".csv",), "canvas": (".csv",)}
SCHEDULER_TIMEOUT_S = 5.0  # a scheduler that has not accepted a connection by then is reported unreachable


def lab(value: str) -> str:
    """A known lab id, or one line listing them (with the closest one when the id looks mistyped)."""
    known = lab_ids()
    if value in known:
        return value
    close = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    raise UserError(f"unknown lab {value!r}; {hint}the labs are: {', '.join(known)}")


def hardware(value: str) -> str:
    """A known hardware profile name, or one line naming the profiles."""
    from reference.hardware import get_profile

    try:
        return get_profile(value).name
    except ValueError as exc:
        raise UserError(str(exc)) from None


def positive_int(value: str) -> int:
    """--workers: a whole number >= 1 (checked by the handler, so the error is one line)."""
    try:
        n = int(value)
    except ValueError:
        raise UserError(f"--workers takes a whole number of processes, not {value!r}") from None
    if n < 1:
        raise UserError(f"--workers must be at least 1 (got {n}); leave it out to use one per core")
    return n


def course_folder(path: Path) -> Path:
    if not path.exists():
        raise UserError(f"no course folder at {path}: give the folder `sparkgrade init` made")
    if not path.is_dir():
        raise UserError(f"{path} is a file, not a course folder")
    return path


def export_format(fmt: str | None, output: str | None) -> str:
    """The export format: as given, else from the output file's suffix, else JSON (to stdout); an error when the
    two contradict (JSON written into grades.csv) or the suffix says nothing."""
    suffix = Path(output).suffix.lower() if output else ""
    if fmt is not None:
        if output and suffix and suffix not in FORMAT_SUFFIXES[fmt]:
            raise UserError(f"--format {fmt} contradicts the file name {output} (a {fmt} export is a "
                            f"{' or '.join(FORMAT_SUFFIXES[fmt])} file): change one of them")
        return fmt
    if not output:
        return "json"
    by_suffix = [f for f, suffixes in FORMAT_SUFFIXES.items() if suffix in suffixes]
    if not by_suffix:
        raise UserError(f"cannot tell the format from the file name {output}: add --format json, csv or canvas")
    return by_suffix[0]  # .csv means the flat CSV; a Canvas gradebook is asked for with --format canvas


def output_file(output: str) -> Path:
    """A file the export can be written to: its folder exists and is writable, and it is not itself a folder."""
    path = Path(output)
    if path.is_dir():
        raise FileSystemError(f"{output} is a folder: give a file name for the export, e.g. {path / 'grades.csv'}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileSystemError(f"no folder {folder} to write {path.name} into: create it first, or give another path")
    if not os.access(folder, os.W_OK):
        raise FileSystemError(f"cannot write into {folder} (permission denied): give a path you can write to")
    return path


def database_url(url: str | None) -> str | None:
    """A --db URL written the way sparkgrade can open it (checked before any work; opening it comes later)."""
    if url is not None:
        from autograder.db.engine import parse_url

        parse_url(url)
    return url


def scheduler(address: str, timeout_s: float = SCHEDULER_TIMEOUT_S) -> str:
    """A Dask scheduler address that accepts connections now: an unreachable one fails in seconds with one line,
    not after distributed's 30 s connect timeout and a traceback."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls") or not parts.hostname:
        raise UserError(f"not a Dask scheduler address: {address!r} (e.g. tcp://10.0.0.5:8786)")
    try:
        port = parts.port or 8786
    except ValueError:
        raise UserError(f"not a Dask scheduler address: {address!r} (the port must be a number)") from None
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        why = exc.strerror or ("no answer" if isinstance(exc, TimeoutError) else type(exc).__name__)
        raise NetworkError(f"cannot reach the Dask scheduler at {address} ({why}): is `dask scheduler` running "
                           "there, and does the firewall let this machine in?") from None
    return address
