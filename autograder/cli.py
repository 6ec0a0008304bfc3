"""The `sparkgrade` command line, and the only module that prints. Thin: it parses, calls into the engine (imported
lazily, so `sparkgrade --help` stays fast and a missing optional piece fails only its command), shows progress and
tables, and turns expected failures into one line."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autograder.errors import FileSystemError, UserError

if TYPE_CHECKING:
    from autograder.records import GradeRecord



def _add_init(p: argparse.ArgumentParser) -> None:
    p.add_argument("course_dir", help="folder for the new nbgrader course (an existing one is completed, never "
                                      "overwritten)")
    p.add_argument("--force", action="store_true",
                   help="replace the course's notebooks, nbgrader_config.py and sparkgrade.yaml with the product's; "
                        "the old ones are moved to COURSE_DIR/.sparkgrade/backups/<time>/ first")
    p.add_argument("--hardware", default=None, metavar="PROFILE",
                   help="what the students measure on (dgx-spark, h100-sxm, h200, a100-80gb, rtx-4090, l4, cpu): "
                        "kept in COURSE_DIR/sparkgrade.yaml; any GPU profile also grades the GPU labs on the GPU")


def _add_grade(p: argparse.ArgumentParser) -> None:
    p.add_argument("course_dir")
    p.add_argument("lab", help="lab id, e.g. lab-2.4.4-moe-router")
    p.add_argument("--student", action="append", default=None, metavar="ID", help="grade only these students")
    p.add_argument("--force", action="store_true", help="regrade even when content and rubric are unchanged")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run student code unconfined (trusted self-tests only; every result is marked)")
    p.add_argument("--workers", default=None, metavar="N",  # checked by the handler: one line, not a usage block
                   help="local worker processes, at least 1 (default: from cores and GPUs)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the tasks on a Dask distributed cluster, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--wait", action="store_true",
                   help="when another `sparkgrade grade` is grading this course, wait for it instead of refusing")
    p.add_argument("--hardware", default=None, metavar="PROFILE",
                   help="judge benchmark numbers against this profile instead of the course's (sparkgrade.yaml)")
    _add_db(p)


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", default=None,
                   help="grade database URL (default: SQLite in COURSE_DIR/.sparkgrade/grades.db), "
                        "e.g. postgresql+psycopg://user@host/course")


def _add_feedback(p: argparse.ArgumentParser) -> None:
    p.add_argument("course_dir")
    p.add_argument("lab")
    _add_db(p)


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("course_dir")
    p.add_argument("lab")
    _add_db(p)


def _add_overview(p: argparse.ArgumentParser) -> None:
    p.add_argument("course_dir")
    _add_db(p)


def _add_watch(p: argparse.ArgumentParser) -> None:
    p.add_argument("course_dir")
    p.add_argument("labs", nargs="*", metavar="LAB", help="the labs to watch (default: every lab of the course)")
    p.add_argument("--interval", type=float, default=5.0, metavar="S", help="seconds between collects (default 5)")
    p.add_argument("--once", action="store_true", help="one cycle, then exit (e.g. from cron)")
    p.add_argument("--no-sandbox", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=None, metavar="N", help="local worker processes")
    _add_db(p)


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("course_dir")
    p.add_argument("--assignment", metavar="LAB", help="only this lab (default: every lab)")
    p.add_argument("--format", choices=["json", "csv", "canvas"], default=None,
                   help="default: from the output file's suffix (.json, .csv), else json")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of to stdout")
    _add_db(p)


def _add_check_benchmarks(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a benchmarks.json written by a lab")
    p.add_argument("--hardware", default="dgx-spark", help="hardware profile the numbers were measured on")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON")


def _add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["pull"], help="pull: download the spark profile's checkpoints")
    p.add_argument("--lab", action="append", default=None, metavar="LAB", help="only this lab's (repeatable)")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="the mirror (default: $SPARKGRADE_HUB_ROOT, else ~/.cache/sparkgrade/hub); set "
                        "SPARKGRADE_HUB_ROOT to it for the labs to read it")
    p.add_argument("--course", default=None, metavar="COURSE_DIR",
                   help="pull this course's choice (COURSE_DIR/models.yaml, written by init) instead of the labs' "
                        "defaults")


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default="demo-course", help="where to build the demo course")


# -- handlers -------------------------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from rich.console import Console

    from autograder.course.config import CONFIG_NAME, for_hardware
    from autograder.course.create import init_course

    config = None
    if args.hardware is not None:  # checked before any work: a typo costs nothing
        try:
            config = for_hardware(args.hardware)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    console = Console(stderr=True)
    with console.status("init: starting") as status:
        def say(step: str) -> None:
            status.update(f"init: {step}")
            if not console.is_terminal:
                console.print(f"init: {step}")

        result = init_course(Path(args.course_dir), force=args.force, say=say, config=config)
    where = f"; hardware {config.hardware}{' (GPU labs on the GPU)' * config.gpu}" if config else ""
    if config is not None and CONFIG_NAME in result.kept:
        where = f"; {CONFIG_NAME} kept as it was, not set to {config.hardware} (edit it, or use --force)"
    print(f"course ready at {args.course_dir}: {len(result.labs)} labs in source/ and release/{where}")
    if result.replaced:
        print(f"replaced {len(result.replaced)}: {', '.join(result.replaced)}; the old versions are in {result.backup}")
    if result.kept:
        print(f"kept as they were: {', '.join(result.kept)} (`sparkgrade init --force` replaces them, after a "
              "backup)")
    return 0


@contextmanager
def _stopping_on_ctrl_c(what: str) -> Iterator[None]:
    """Say "stopping..." the moment Ctrl-C arrives (stopping workers and sandboxes takes a moment), then let the
    KeyboardInterrupt unwind as usual."""
    def handler(signum: int, frame: Any) -> None:
        print(f"\nstopping {what}... (results stored so far are kept)", file=sys.stderr, flush=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts the clean-up too
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (a test harness): no handler, Ctrl-C behaves as Python's default
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_grade(args: argparse.Namespace) -> int:
    from autograder import preflight

    # Every argument is checked before the engine (torch and friends) is imported: a mistake costs a second.
    course = preflight.course_folder(Path(args.course_dir))
    preflight.lab(args.lab)
    workers = None if args.workers is None else preflight.positive_int(args.workers)
    if args.hardware is not None:
        preflight.hardware(args.hardware)
    preflight.database_url(args.db)
    if args.scheduler:
        preflight.scheduler(args.scheduler)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from autograder.batch import grade_course
    from autograder.course.lock import grading_lock

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    stored = 0
    try:
        with grading_lock(course, wait=args.wait, on_wait=lambda why: print(why, file=sys.stderr, flush=True)), \
                _stopping_on_ctrl_c(f"grading {args.lab}"), Progress(*columns, transient=False) as bar:
            task_id = bar.add_task(f"grading {args.lab}", total=None)

            def shown(record: GradeRecord, done: int, total: int) -> None:
                nonlocal stored
                stored += 1
                bar.update(task_id, completed=done, total=total,
                           description=f"grading {args.lab}: {record.student} {record.score:g}/{record.max_score:g}")

            records = grade_course(course, args.lab, args.student, no_sandbox=args.no_sandbox, force=args.force,
                                   hardware=args.hardware, db_url=args.db, workers=workers,
                                   scheduler=args.scheduler, on_result=shown)
    except KeyboardInterrupt:
        print(f"sparkgrade grade: stopped; {stored} result(s) of this run are stored. Run the same command again to "
              "grade the rest.", file=sys.stderr)
        return 130
    if not records:
        print(f"no submissions of {args.lab} in {course / 'submitted'}")
        return 0
    table = Table(title=f"{args.lab}: {len(records)} submission(s)")
    for col in ("student", "status", "score", "flags"):
        table.add_column(col)
    for r in records:
        kinds = ", ".join(sorted({f.kind for f in r.flags}))
        table.add_row(r.student, r.status, f"{r.score:g} / {r.max_score:g}", kinds)
    Console().print(table)
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from autograder import preflight

    course_dir = preflight.course_folder(Path(args.course_dir))
    preflight.lab(args.lab)
    preflight.database_url(args.db)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from autograder.feedback import write_feedback_pages

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), transient=True) as bar:
        task_id = bar.add_task(f"feedback pages of {args.lab}", total=None)
        written, skipped = write_feedback_pages(
            course_dir, args.lab, args.db,
            on_page=lambda student, done, total: bar.update(task_id, completed=done, total=total))
    for student in skipped:
        print(f"skipped a record with an unusable student id {student!r}", file=sys.stderr)
    print(f"wrote {written} feedback page{'s' * (written != 1)} to {course_dir / 'feedback'}/<student>/{args.lab}/")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from autograder import preflight

    course_dir = preflight.course_folder(Path(args.course_dir))
    preflight.lab(args.lab)
    preflight.database_url(args.db)

    from autograder.feedback import write_class_report
    path, count = write_class_report(course_dir, args.lab, args.db)
    print(f"wrote the class report of {args.lab} ({count} submissions) to {path}")
    return 0


def cmd_overview(args: argparse.Namespace) -> int:
    from autograder.feedback.overview import write_overview

    course = Path(args.course_dir)
    if not course.is_dir():
        raise UserError(f"{course}: no such course folder")
    path, students, labs = write_overview(course, args.db)
    print(f"wrote the course overview ({students} students, {labs} labs) to {path}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from datetime import datetime

    from autograder.feedback.overview import course_labs
    from autograder.paths import check_lab
    from autograder.watch import Event, warm_up, watch

    course = Path(args.course_dir)
    if not (course / "nbgrader_config.py").is_file():
        raise UserError(f"{course} is not a course folder (no nbgrader_config.py): create one with `sparkgrade init`")
    labs = args.labs or course_labs(course, [])
    for lab in labs:
        check_lab(lab)

    def said(e: Event) -> None:
        print(f"{datetime.now():%H:%M:%S} {e.kind:10} {e.lab} {e.student} {e.detail}", flush=True)

    if not args.once:  # a long-running watch: the first submission should cost what the others do
        warm_up(course, labs, no_sandbox=args.no_sandbox, say=said)
    print(f"watching {', '.join(labs)} in {course} every {args.interval:g} s (Ctrl-C stops; a restart resumes)",
          flush=True)
    watch(course, labs, interval=args.interval, cycles=1 if args.once else None, no_sandbox=args.no_sandbox,
          db_url=args.db, workers=args.workers, say=said)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from autograder import preflight

    course_dir = preflight.course_folder(Path(args.course_dir))
    if args.assignment is not None:
        preflight.lab(args.assignment)
    fmt = preflight.export_format(args.format, args.output)
    output = preflight.output_file(args.output) if args.output else None
    preflight.database_url(args.db)

    from autograder.course.export import export_records
    from autograder.db.store import atomic_write
    export = export_records(course_dir, args.assignment, fmt, args.db)
    text, count = export.text, export.count
    if export.provisional:
        print(f"{export.provisional} of {count} total(s) are provisional: their written answers are not graded in "
              "formgrader yet (`final` is false; the total is autograded + written so far)", file=sys.stderr)
    if count == 0:
        print(f"no graded submissions{f' of {args.assignment}' if args.assignment else ''} in {course_dir}: "
              "run `sparkgrade grade` first", file=sys.stderr)
    if output is not None:
        atomic_write(output, text.encode("utf-8"), mode=0o644)
        print(f"wrote {count} record(s) to {output} ({fmt})", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from autograder.course.checkpoints import remote_code_checkpoints, spark_checkpoints
    from autograder.course.models import default_hub_root, human, pull, spark_checkpoints_from_sources
    from autograder.paths import assignments_root

    root = Path(args.root) if args.root else default_hub_root()
    course = Path(args.course) if args.course else None
    checkpoints = spark_checkpoints(course) if course else {}
    if checkpoints:  # the course's choice (models.yaml)
        trusted = remote_code_checkpoints(course) if course else set()
    else:  # the labs' defaults, from their profile cells
        source = course / "source" if course else assignments_root() / "source"
        if not source.is_dir():
            raise UserError(f"{source}: no lab sources there")
        checkpoints, trusted = spark_checkpoints_from_sources(source), set()
    pulled = pull(checkpoints, root, labs=args.lab, with_code=trusted, say=print)
    total = sum(p.size_bytes for p in pulled)
    print(f"{len(pulled)} checkpoint(s), {human(total)} in {root}: export SPARKGRADE_HUB_ROOT={root}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from autograder.course.demo import run_demo

    console = Console()
    console.rule("[bold]sparkgrade demo")
    course = Path(args.dir).resolve()
    result = run_demo(course, say=console.print)
    table = Table(title="grades (sparkgrade export shows the same)")
    for col in ("lab", "student", "status", "score", "flags", "first diagnosis"):
        table.add_column(col, overflow="fold")
    for lab, records in result.records.items():
        for r in records:
            diagnosis = next((c.diagnosis for c in r.checks if c.diagnosis), "")
            table.add_row(lab.split("-")[1], r.student, r.status, f"{r.score:g}/{r.max_score:g}",
                          ", ".join(sorted({f.kind for f in r.flags})), diagnosis.split(". ")[0][:70])
    console.print(table)
    console.print("open: " + "\n      ".join(f"{what:7} {where}" for what, where in result.pages))
    console.print(f"export: sparkgrade export {course} --format json | csv | canvas")
    console.print(f"done in {result.seconds:.0f} s")
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]] = {
    "init": ("create an nbgrader course with the labs", _add_init, "autograder.cli:cmd_init"),
    "grade": ("grade the submissions of one lab", _add_grade, "autograder.cli:cmd_grade"),
    "feedback": ("render one feedback page per graded submission", _add_feedback, "autograder.cli:cmd_feedback"),
    "report": ("render the class report of one lab for instructors", _add_report, "autograder.cli:cmd_report"),
    "overview": ("render the course overview for instructors: every student and lab, missing work, flags",
                 _add_overview, "autograder.cli:cmd_overview"),
    "watch": ("grade on submit: collect, grade and release feedback as submissions arrive", _add_watch,
              "autograder.cli:cmd_watch"),
    "export": ("export grades as json, csv or a Canvas gradebook", _add_export, "autograder.cli:cmd_export"),
    "check-benchmarks": (
        "check a benchmarks.json for physically impossible or suspicious numbers",
        _add_check_benchmarks,
        "autograder.plausibility:cmd_check_benchmarks",
    ),
    "models": ("download the spark profile's checkpoints into the local mirror", _add_models,
               "autograder.cli:cmd_models"),
    "demo": ("run the whole product on the embedded defaults", _add_demo, "autograder.cli:cmd_demo"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparkgrade",
        description="Autograder for the Efficient Architectures labs (Mamba and Mixture-of-Experts).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def _load(target: str) -> Callable[[argparse.Namespace], int] | None:
    import importlib

    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return getattr(module, func_name, None)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handler = _load(COMMANDS[args.command][2])
    if handler is None:
        print(f"sparkgrade {args.command}: not implemented yet (see the open issues)", file=sys.stderr)
        return 3
    try:
        return int(handler(args) or 0)
    except UserError as exc:
        return _fail(args.command, exc)
    except OSError as exc:  # the file system refused (read-only, full, permissions): what to do, in one line
        return _fail(args.command, FileSystemError(os_error_message(exc)))
    except KeyboardInterrupt:
        print(f"sparkgrade {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if _is_database_error(exc):
            from autograder.db.engine import database_error

            return _fail(args.command, database_error(getattr(args, "db", None) or "the grade database", exc,
                                                      "use"))
        raise  # a bug: the traceback is what a maintainer needs


def _fail(command: str, exc: UserError) -> int:
    text = " ".join(str(exc).split())  # one line, whatever a library put in the message
    print(f"sparkgrade {command}: {text}", file=sys.stderr)
    return exc.exit_code


# What to do about each file-system failure an instructor meets.
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space and run the command again (nothing half-written was kept)",
    errno.EDQUOT: "the disk quota is used up: free some space and run the command again",
    errno.EROFS: "the file system is read-only: run the command where the course folder can be written",
    errno.EACCES: "permission denied: run as a user who may write there, or fix the folder's permissions",
    errno.EPERM: "operation not permitted: run as a user who may write there, or fix the folder's permissions",
    errno.ENOENT: "no such file or folder: check the path",
    errno.EISDIR: "it is a folder, not a file: give a file name",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
}


def os_error_message(exc: OSError) -> str:
    where = exc.filename or ""
    hint = _OS_HINTS.get(exc.errno or 0) or (exc.strerror or type(exc).__name__)
    return f"{where}: {hint}" if where else hint


def _is_database_error(exc: Exception) -> bool:
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    return sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.DBAPIError)


if __name__ == "__main__":
    sys.exit(main())
