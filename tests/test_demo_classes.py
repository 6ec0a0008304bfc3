"""Every lab has a demo class (assignments/demo/<lab>.yaml), and each class's edits apply to the lab's answers: a
broken edit would stop `make demo` only after minutes of building and grading."""

from __future__ import annotations

import nbformat

from autograder.course.demo import demo_classes
from autograder.paths import assignments_root, lab_ids


def test_every_lab_has_a_demo_class_with_the_four_kinds_of_student() -> None:
    classes = demo_classes()
    assert sorted(classes) == lab_ids()
    for lab, klass in classes.items():
        students = klass["students"]
        assert len(students) == 4, lab
        assert sum(bool(s.get("late")) for s in students.values()) == 1, lab
        assert sum(bool(s.get("replace")) for s in students.values()) >= 1, lab  # a misconception
        assert sum(bool(s.get("code")) for s in students.values()) >= 1, lab  # the hostile one


def test_every_edit_applies_to_the_answers_it_names() -> None:
    for lab, klass in demo_classes().items():
        nb = nbformat.read(assignments_root() / "source" / lab / f"{lab}.ipynb", as_version=4)
        answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
                   if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
        for student, spec in klass["students"].items():
            assert set(spec.get("source", [])) <= set(answers), (lab, student)
            assert set(spec.get("code") or {}) <= set(answers), (lab, student)
            for name, edits in (spec.get("replace") or {}).items():
                assert name in spec.get("source", []), (lab, student, name)
                for old, _ in edits:
                    assert old in answers[name], (lab, student, old)
