"""A toy lab that exists only in the tests: a rubric folder and a source notebook, built in a temporary folder.
It proves the engine is generic (a lab is data) and keeps engine tests fast."""

from __future__ import annotations

from pathlib import Path

from assignments import nbbuild

LAB = "lab-9.9.9-toy"

RUBRIC = """
lab: lab-9.9.9-toy
version: "1"
limits: {notebook_s: 60, call_s: 20}
checks:
  softmax_rows: {function: softmax, points: 2}
  softmax_shape: {function: softmax, points: 1}
  clip_norm_value: {function: clip_norm, points: 1}
"""

CHECKS = '''
import torch
from autograder.checks.api import expect_close, expect_number


def test_softmax_rows(student, rng):
    x = torch.randn(4, 7, generator=rng) * 3
    expect_close(student.softmax(x), torch.softmax(x, -1), name="probs", rtol=1e-5, atol=1e-6, axes=("row", "col"))


def test_softmax_shape(student, rng):
    x = torch.randn(2, 3, 5, generator=rng)
    expect_close(student.softmax(x), torch.softmax(x, -1), name="probs", rtol=1e-5, atol=1e-6)


def test_clip_norm_value(student):
    expect_number(student.clip_norm(3.0, 4.0, 1.0), 1.0, name="clipped norm")
'''

MISCONCEPTIONS = '''
import torch
from autograder.checks.api import Misconception

MISCONCEPTIONS = [
    Misconception("softmax over the wrong axis", "softmax",
                  "the probabilities must sum to one over the last axis (the classes), not the first.",
                  lambda x: torch.softmax(x, 0)),
]
REFERENCES = {"softmax": lambda x: torch.softmax(x, -1)}
'''

SETUP = "import torch\nEPS = 1e-12"
SOLUTION_SOFTMAX = """
def softmax(x):
    ### BEGIN SOLUTION
    e = torch.exp(x - x.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)
    ### END SOLUTION
"""
SOLUTION_CLIP = """
def clip_norm(a, b, max_norm):
    ### BEGIN SOLUTION
    n = (a * a + b * b) ** 0.5
    return min(n, max_norm)
    ### END SOLUTION
"""
VISIBLE = "assert softmax(torch.zeros(1, 2)).sum() == 1"


def source_cells(softmax=SOLUTION_SOFTMAX, clip=SOLUTION_CLIP, setup=SETUP, visible=VISIBLE, extra=()):
    return [nbbuild.md("# Toy lab"), nbbuild.locked("setup", setup), nbbuild.solution("softmax", softmax),
            nbbuild.visible_tests("test_softmax", visible, points=3), nbbuild.solution("clip_norm", clip),
            *extra]


def notebook_bytes(path: Path, **kw) -> bytes:
    nbbuild.write(path, source_cells(**kw), title="toy")
    return path.read_bytes()


def make_toy_lab(root: Path) -> Path:
    rub = root / "rubrics" / LAB
    rub.mkdir(parents=True)
    (rub / "rubric.yaml").write_text(RUBRIC)
    (rub / "test_toy.py").write_text(CHECKS)
    (rub / "misconceptions.py").write_text(MISCONCEPTIONS)
    src = root / "assignments" / "source" / LAB
    src.mkdir(parents=True)
    notebook_bytes(src / f"{LAB}.ipynb")
    return root
