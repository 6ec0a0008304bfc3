"""The instructor's side of the command line: nothing overwritten, nothing hidden, nothing left as a traceback.
Each bad input an instructor met (issue 19) is a named case here; the toy lab keeps these tests fast."""

from __future__ import annotations

from toylab import LAB, notebook_bytes

from autograder import cli
from autograder.intake.submission import find_submissions, read_submission_folder
from autograder.order import natural_key


def one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# -- every submitted folder is a submission ------------------------------------------------------------------------


def test_student_ids_sort_naturally():
    assert sorted(["s10", "s7", "S11", "s2", "alice"], key=natural_key) == ["alice", "s2", "s7", "s10", "S11"]


def test_a_folder_without_the_expected_notebook_is_found_and_says_what_it_holds(tmp_path):
    course = tmp_path / "course"
    for student, name in (("s10", f"{LAB}.ipynb"), ("s7", "Untitled.ipynb"), ("s8", None)):
        folder = course / "submitted" / student / LAB
        folder.mkdir(parents=True)
        (folder / "timestamp.txt").write_text("2026-11-30 10:00:00 UTC")
        if name:
            (folder / name).write_text("{}")
    found = find_submissions(course, LAB, None)
    assert [s for s, _ in found] == ["s7", "s8", "s10"]
    misnamed = read_submission_folder("s7", LAB, found[0][1])
    assert misnamed.problem == (f"found Untitled.ipynb, expected {LAB}.ipynb: rename the notebook to {LAB}.ipynb "
                                "and submit again")
    empty = read_submission_folder("s8", LAB, found[1][1])
    assert empty.problem.startswith("found no notebook in the submitted folder, expected")
    assert read_submission_folder("s10", LAB, found[2][1]).problem == ""
    assert misnamed.content_hash != empty.content_hash  # renaming it is new content, graded again


def test_misnamed_notebook_is_stored_invalid_and_exported(toy, tmp_path, capsys):
    import json

    course = tmp_path / "course"
    (course / "submitted" / "s7" / LAB).mkdir(parents=True)
    notebook_bytes(course / "submitted" / "s7" / LAB / "Untitled.ipynb")
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    assert cli.main(["grade", str(course), LAB]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(course), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["student"] == "s7" and row["status"] == "invalid" and row["score"] == 0
    assert "found Untitled.ipynb, expected" in row["checks"][0]["message"]
