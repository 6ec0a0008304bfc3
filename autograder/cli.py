"""The `sparkgrade` command line. Thin: it parses, calls into the engine, and turns expected failures into one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from autograder.errors import UserError

# Commands of DESIGN.md. Each entry: (help, function that adds its arguments, handler module:function).
# A handler is imported lazily so `sparkgrade --help` stays fast and a missing optional piece fails only its command.


def _add_init(p: argparse.ArgumentParser) -> None:
    p.add_argument("course_dir", help="folder for the new nbgrader course")


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


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default="demo-course", help="where to build the demo course")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]] = {
    "init": ("create an nbgrader course with the six labs", _add_init, "autograder.course:cmd_init"),
    "grade": ("grade the submissions of one lab", _add_grade, "autograder.grading:cmd_grade"),
    "feedback": ("render one feedback page per graded submission", _add_feedback, "autograder.feedback:cmd_feedback"),
    "report": ("render the class report of one lab for instructors", _add_report, "autograder.feedback:cmd_report"),
    "export": ("export grades as json, csv or a Canvas gradebook", _add_export, "autograder.export:cmd_export"),
    "check-benchmarks": (
        "check a benchmarks.json for physically impossible or suspicious numbers",
        _add_check_benchmarks,
        "autograder.plausibility:cmd_check_benchmarks",
    ),
    "demo": ("run the whole product on the embedded defaults", _add_demo, "autograder.demo:cmd_demo"),
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
