"""The `sparkgrade` command line, and the only module that prints. Thin: it parses, calls into the engine (imported
lazily, so `sparkgrade --help` stays fast and a missing optional piece fails only its command), shows progress and
tables, and turns expected failures into one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.errors import UserError

if TYPE_CHECKING:
    from autograder.records import GradeRecord



def _add_init(p: argparse.ArgumentParser) -> None:
    p.add_argument("course_dir", help="folder for the new nbgrader course")
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
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local worker processes (default: from cores and GPUs)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the tasks on a Dask distributed cluster, e.g. tcp://10.0.0.5:8786")
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
    p.add_argument("--assignment", metavar="LAB")
    p.add_argument("--format", choices=["json", "csv", "canvas"], default="json")
    p.add_argument("-o", "--output", metavar="FILE")
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
                   help="read the model ids from this course's lab sources instead of the product's")


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default="demo-course", help="where to build the demo course")


# -- handlers -------------------------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from autograder.course.config import for_hardware, save_config
    from autograder.course.create import init_course

    config = None
    if args.hardware is not None:  # checked before any work: a typo costs nothing
        try:
            config = for_hardware(args.hardware)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    labs = init_course(Path(args.course_dir))
    if config is not None:
        save_config(Path(args.course_dir), config)
    where = f"; hardware {config.hardware}{' (GPU labs on the GPU)' * config.gpu}" if config else ""
    print(f"course ready at {args.course_dir}: {len(labs)} labs in source/ and release/{where}")
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from autograder.batch import grade_course

    course = Path(args.course_dir)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task_id = bar.add_task(f"grading {args.lab}", total=None)

        def shown(record: GradeRecord, done: int, total: int) -> None:
            bar.update(task_id, completed=done, total=total,
                       description=f"grading {args.lab}: {record.student} {record.score:g}/{record.max_score:g}")

        records = grade_course(course, args.lab, args.student, no_sandbox=args.no_sandbox, force=args.force,
                               hardware=args.hardware, db_url=args.db, workers=args.workers,
                               scheduler=args.scheduler, on_result=shown)
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
    from autograder.feedback import write_feedback_pages

    course_dir = Path(args.course_dir)
    written, skipped = write_feedback_pages(course_dir, args.lab, args.db)
    for student in skipped:
        print(f"skipped a record with an unusable student id {student!r}", file=sys.stderr)
    print(f"wrote {written} feedback page{'s' * (written != 1)} to {course_dir / 'feedback'}/<student>/{args.lab}/")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from autograder.feedback import write_class_report

    path, count = write_class_report(Path(args.course_dir), args.lab, args.db)
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
    from autograder.watch import Event, watch

    course = Path(args.course_dir)
    if not (course / "nbgrader_config.py").is_file():
        raise UserError(f"{course} is not a course folder (no nbgrader_config.py): create one with `sparkgrade init`")
    labs = args.labs or course_labs(course, [])
    for lab in labs:
        check_lab(lab)

    def said(e: Event) -> None:
        print(f"{datetime.now():%H:%M:%S} {e.kind:10} {e.lab} {e.student} {e.detail}", flush=True)

    print(f"watching {', '.join(labs)} in {course} every {args.interval:g} s (Ctrl-C stops; a restart resumes)",
          flush=True)
    watch(course, labs, interval=args.interval, cycles=1 if args.once else None, no_sandbox=args.no_sandbox,
          db_url=args.db, workers=args.workers, say=said)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from autograder.course.export import export_records

    text, count = export_records(Path(args.course_dir), args.assignment, args.format, args.db)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {count} record(s) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from autograder.course.models import default_hub_root, human, pull, spark_checkpoints_from_sources
    from autograder.paths import assignments_root

    source = Path(args.course) / "source" if args.course else assignments_root() / "source"
    if not source.is_dir():
        raise UserError(f"{source}: no lab sources there")
    root = Path(args.root) if args.root else default_hub_root()
    pulled = pull(spark_checkpoints_from_sources(source), root, labs=args.lab, say=print)
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
        print(f"sparkgrade {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"sparkgrade {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
