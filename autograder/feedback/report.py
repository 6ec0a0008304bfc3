"""The instructor's class page for one lab: score distribution, status counts, where the class fails, the most
common misconceptions, flagged and slowest submissions. pandas does the table maths; pure functions of records."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from autograder.course.totals import Total
from autograder.db.store import atomic_write
from autograder.feedback import figures
from autograder.feedback.page import feedback_dir, split_diagnosis
from autograder.feedback.render import render
from autograder.order import natural_key
from autograder.records import GradeRecord
from autograder.rubric import Rubric
from autograder.similarity import Pair

SLOWEST = 10
TIMING_KEYS = ("sandbox_start_s", "notebook_s", "checks_s", "total_s")
STATUSES = ("graded", "error", "timeout", "invalid")


def submissions_frame(records: Iterable[GradeRecord]) -> pd.DataFrame:
    rows = [{"student": r.student, "status": r.status, "score": r.score, "max_score": r.max_score,
             "reason": r.reason, "flags": len(r.flags), "machine": r.machine,
             **{k: r.timings.get(k) for k in TIMING_KEYS}} for r in records]
    return pd.DataFrame(rows, columns=["student", "status", "score", "max_score", "reason", "flags", "machine",
                                       *TIMING_KEYS])


def checks_frame(records: Iterable[GradeRecord]) -> pd.DataFrame:
    rows = []
    for r in records:
        for c in r.checks:
            name, _ = split_diagnosis(c.diagnosis or "")
            rows.append({"student": r.student, "check": c.id, "function": c.function, "status": c.status,
                         "points": c.points, "max_points": c.max_points, "misconception": name,
                         "diagnosis": c.diagnosis or ""})
    return pd.DataFrame(rows, columns=["student", "check", "function", "status", "points", "max_points",
                                       "misconception", "diagnosis"])


def verdicts_frame(records: Iterable[GradeRecord]) -> pd.DataFrame:
    """One row per stored benchmark verdict (records graded without a benchmarks.json have none)."""
    rows = [{"student": r.student, "record": v.record, "rule": v.rule, "severity": v.severity,
             "ratio": (v.value / v.bound) if v.value is not None and v.bound else None}
            for r in records for v in (r.verdicts or ())]
    return pd.DataFrame(rows, columns=["student", "record", "rule", "severity", "ratio"])


def benchmark_summary(records: list[GradeRecord]) -> dict[str, Any]:
    """How the class's benchmark numbers fared: submissions with stored verdicts, and per rule and severity how
    many students and verdicts, with the median measured/bound ratio (how far past the bound numbers typically
    were)."""
    verdicts = verdicts_frame(records)
    judged = sum(r.verdicts is not None for r in records)
    rules: list[dict[str, Any]] = []
    for (rule, severity), g in verdicts.groupby(["rule", "severity"]) if len(verdicts) else []:
        ratios = g["ratio"].dropna()
        rules.append({"rule": rule, "severity": severity, "students": int(g["student"].nunique()),
                      "verdicts": len(g), "median_ratio": float(ratios.median()) if len(ratios) else None,
                      "who": sorted(g["student"].unique(), key=natural_key)})
    rules.sort(key=lambda x: (x["severity"] != "impossible", -x["students"], x["rule"]))
    return {"judged": judged, "rules": rules}


def report_context(records: list[GradeRecord], rubric: Rubric, feedback_links: dict[str, str],
                   totals: dict[str, Total] | None = None) -> dict[str, Any]:
    subs = submissions_frame(records)
    checks = checks_frame(records)
    scores = subs["score"].astype(float)
    max_score = float(subs["max_score"].max()) if len(subs) else rubric.max_score

    status_counts = {s: int((subs["status"] == s).sum()) for s in STATUSES}

    per_check: list[dict[str, Any]] = []
    if len(checks):
        counts = checks.pivot_table(index="check", columns="status", values="student", aggfunc="count", fill_value=0)
        ordered = [c for c in rubric.checks if c in counts.index] + [c for c in counts.index if c not in rubric.checks]
        for cid in ordered:
            row = counts.loc[cid]
            n = int(row.sum())
            spec = rubric.checks.get(cid)
            per_check.append({"id": cid, "title": spec.title if spec and spec.title else cid,
                              "function": spec.function if spec else "?",
                              "passed": int(row.get("passed", 0)), "failed": int(row.get("failed", 0)),
                              "error": int(row.get("error", 0)), "n": n,
                              "rate": 100.0 * int(row.get("passed", 0)) / n if n else 0.0})
        per_check.sort(key=lambda c: (c["rate"], c["id"]))

    misconceptions: list[dict[str, Any]] = []
    named = checks[checks["misconception"] != ""]
    if len(named):
        for name, g in named.groupby("misconception"):
            misconceptions.append({
                "name": name, "students": int(g["student"].nunique()), "checks": len(g),
                "functions": ", ".join(sorted(g["function"].unique())),
                "explanation": split_diagnosis(g["diagnosis"].iloc[0])[1],
                "who": sorted(g["student"].unique(), key=natural_key),
            })
        misconceptions.sort(key=lambda m: (-m["students"], -m["checks"], m["name"]))
    unexplained = checks[(checks["status"] == "failed") & (checks["misconception"] == "")]

    flagged = [{"student": r.student, "status": r.status, "flags": list(r.flags)} for r in records if r.flags]
    slowest = (subs.dropna(subset=["total_s"]).sort_values("total_s", ascending=False).head(SLOWEST)
               .to_dict("records"))
    not_graded = sorted(subs[subs["status"] != "graded"].to_dict("records"),
                        key=lambda r: (r["status"], natural_key(r["student"])))

    hist = figures.data_uri(figures.score_histogram_png(scores.tolist(), max_score)) if len(subs) else ""
    return {
        "title": f"{rubric.lab}: class report",
        "lab": rubric.lab,
        "n": len(subs),
        "max_score": max_score,
        "mean": float(scores.mean()) if len(subs) else 0.0,
        "median": float(scores.median()) if len(subs) else 0.0,
        "full_marks": int((scores >= max_score).sum()) if len(subs) else 0,
        "status_counts": status_counts,
        "histogram": hist,
        "per_check": per_check,
        "misconceptions": misconceptions,
        "unexplained_failures": len(unexplained),
        "flagged": flagged,
        "benchmarks": benchmark_summary(records),
        "slowest": slowest,
        "not_graded": not_graded,
        "links": feedback_links,
        "rubric_version": rubric.version,
        "written_max": max((t.written_max for t in (totals or {}).values()), default=0.0),
        "final_totals": sum(t.final for t in (totals or {}).values()),
    }


def report_path(course_dir: Path, lab: str) -> Path:
    # Outside feedback/: nbgrader's release_feedback would hand every *.html there to students.
    return Path(course_dir) / "reports" / f"{lab}.html"


def write_report(course_dir: Path, records: list[GradeRecord], rubric: Rubric,
                 totals: dict[str, Total] | None = None, similar: list[Pair] | None = None,
                 similarity_threshold: float = 0.0) -> Path:
    """The class page; ``similar``: the pairs of autograder.similarity to list (None: no similarity section)."""
    path = report_path(course_dir, rubric.lab)
    links = {}
    for r in records:
        page = feedback_dir(course_dir, r.student, rubric.lab) / f"{rubric.lab}.html"
        if page.is_file():
            links[r.student] = "../feedback/" + "/".join(quote(p, safe="") for p in (r.student, rubric.lab, page.name))
    context = report_context(records, rubric, links, totals)
    if similar is not None:
        context.update(similar=similar, similarity_threshold=similarity_threshold)
    atomic_write(path, render("report.html.j2", **context).encode("utf-8"), mode=0o644)  # readable by a TA account
    return path
