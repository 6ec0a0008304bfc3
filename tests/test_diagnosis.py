"""Diagnosis is never wrong: a misconception is named only when its mutant explains every failed check of the
function under the check's own tolerance and differs from the reference there; several explanations are all named.

Unit tests on a synthetic catalogue (pure and fast), and the Mixtral case from a real rubric."""

from __future__ import annotations

import torch

from autograder.checks.api import EXACT, Misconception, Tolerance
from autograder.checks.diagnosis import FailedCheck, RecordedCall, close_structures, diagnose_function

DTYPE_TOL = {torch.float32: (1e-5, 1e-6)}.get


def reference(x):
    return 2 * x


def agrees_on_positive_inputs(x):
    return 2 * x if x > 0 else 3 * x


def off_by_a_little(x):
    return 2 * x + 1e-7 * abs(x)


CATALOGUE = [
    Misconception("agrees on positives", "f", "", agrees_on_positive_inputs),
    Misconception("off by a little", "f", "", off_by_a_little),
    Misconception("thrice", "f", "", lambda x: 3 * x),
    Misconception("crashes", "f", "", lambda x: 1 / 0),
]
REFERENCES = {"f": reference}


def failed(check, calls, tolerances=(EXACT,)):
    return FailedCheck(check, "f", tuple(RecordedCall("f", (x,), {}, v) for x, v in calls), tuple(tolerances))


def names(checks):
    return diagnose_function(checks, CATALOGUE, REFERENCES, DTYPE_TOL)


def test_a_mutant_that_agrees_with_the_reference_on_the_inputs_is_never_named_from_them():
    # The check failed (say on the type of the answer) although the value equals the reference's: the first
    # mutant reproduces it, but so does the reference, so it explains nothing.
    text = names([failed("c", [(4.0, 8.0)], [Tolerance(1e-4, 0)])])
    assert "agrees on positives" not in text["c"]
    assert text["c"].startswith("no known misconception matches")


def test_the_mutant_must_explain_every_failed_check_of_the_function():
    # On negatives the first mutant differs from the reference and matches; on a second failed check it does not.
    assert "agrees on positives" in names([failed("a", [(-1.0, -3.0)])])["a"]
    text = names([failed("a", [(-1.0, -3.0)]), failed("b", [(5.0, 11.0)])])
    assert not any("agrees on positives" in t for t in text.values())


def test_integers_compared_exactly_where_the_check_demands_exact_equality():
    # 1e-7 relative: within a loose tolerance, but the check compared exactly, so only an exact match names it.
    value = 10**9
    near = 2 * value + 100  # what off_by_a_little gives
    assert "off by a little" in names([failed("c", [(value, int(near))])])["c"]
    assert "off by a little" not in names([failed("c", [(value, int(near) + 1)])])["c"]
    assert not close_structures(2 * value + 1, 2 * value, EXACT, DTYPE_TOL)
    assert close_structures(2.0 * value + 1, 2.0 * value, Tolerance(1e-6, 0), DTYPE_TOL)


def test_a_difference_under_the_checks_tolerance_names_nothing():
    # off_by_a_little is within the check's rtol of the reference: the check could not have failed for it.
    assert "off by a little" not in names([failed("c", [(-3.0, off_by_a_little(-3.0))], [Tolerance(1e-4, 0)])])["c"]


def test_several_matching_mutants_are_all_named():
    # On -2 both "agrees on positives" (-6) and "thrice" (-6) reproduce the student's -6.
    text = names([failed("c", [(-2.0, -6.0)])])["c"]
    assert "agrees on positives or thrice" in text and "cannot tell them apart" in text


def test_tensors_of_integers_compare_exactly_and_floats_by_the_checks_tolerance():
    ints = torch.tensor([3, 4])
    assert not close_structures(ints + 1, ints, Tolerance(0.5, 0.5), DTYPE_TOL)
    x = torch.tensor([1.0, 2.0])
    assert close_structures(x * (1 + 1e-5), x, Tolerance(1e-4, 0), DTYPE_TOL)
    assert not close_structures(x * (1 + 1e-3), x, Tolerance(1e-4, 0), DTYPE_TOL)
    assert close_structures(x * (1 + 1e-6), x, None, DTYPE_TOL)  # no recorded tolerance: the dtype's


def test_a_mixtral_count_that_forgets_the_router_is_not_called_a_shared_expert_mistake():
    """Mixtral-8x7B without its routers is 2.2e-5 off: within 1e-4, and "shared expert not counted as active"
    equals the reference on Mixtral (it has no shared expert). The exact check must not name it."""
    from test_rubrics import grade_locally, solution_namespace

    from autograder.checks.runner import load_misconceptions

    lab = "lab-2.4.3-moe-exploration"
    router = next(m for m in load_misconceptions(lab) if m.name == "router weights forgotten")
    ns = solution_namespace(lab)
    ns["moe_param_counts"] = router.mutant
    _, results = grade_locally(lab, ns, select_check="params_mixtral_8x7b")
    check = results["params_mixtral_8x7b"]
    assert check.status == "failed"
    assert "shared expert" not in check.diagnosis
    assert "router weights forgotten" in check.diagnosis


def test_a_mutant_that_blows_up_where_the_student_does_still_matches():
    blown = torch.tensor([1.0, float("nan"), float("inf")])
    assert close_structures(blown.clone(), blown, Tolerance(1e-4, 0), DTYPE_TOL)
    assert not close_structures(torch.tensor([1.0, 2.0, float("inf")]), blown, Tolerance(1e-4, 0), DTYPE_TOL)
