"""The mutation harness over every lab's hidden checks, run in this process with tests/test_rubrics.py's LocalCaller.

A lab's variants are its catalogued misconceptions (rubrics/<lab>/misconceptions.py: diagnosable, named) and its
MUTANTS (rubrics/<lab>/mutants.py: wrong but not worth a name, e.g. a constant); checks of the submitted
benchmarks.json get two file variants instead (none submitted, a fabricated one). Shared by tests/test_mutation.py
and benchmarks/mutation_score.py, which prints the score per lab."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from test_rubrics import HONEST_FILES, _fabricated, grade_locally, solution_namespace

from autograder.checks.api import Misconception
from autograder.checks.diagnosis import MATCH_PREFIX
from autograder.checks.runner import load_misconceptions, load_mutants
from autograder.rubric import load_rubric

# Owned elsewhere and timed for real (seconds per call): proven by test_rubrics.py's dishonest-benchmark tests and
# by their owner's checks, not by mutants here.
NOT_MUTATED = frozenset({"benchmark_generation"})


@dataclass(frozen=True)
class Outcome:
    """How one variant fared: the checks it failed (status other than passed), and whether any got a name."""

    variant: str
    function: str
    catalogued: bool
    failed: frozenset[str]
    named: bool


def variants(lab: str) -> list[tuple[Misconception, bool]]:
    """(variant, catalogued) for every misconception and mutant of the lab."""
    return [(m, True) for m in load_misconceptions(lab)] + [(m, False) for m in load_mutants(lab)]


def function_checks(lab: str) -> set[str]:
    """The checks the harness must see fail: all but those of NOT_MUTATED functions."""
    return {cid for cid, c in load_rubric(lab).checks.items() if c.function not in NOT_MUTATED}


def verdicts(lab: str, m: Misconception | None, seed: str) -> dict[str, str]:
    """check -> status for the course's answer (m None: every check) or one variant (its function's checks: that
    a variant costs no other function points is test_rubrics.py's business), under one seed."""
    ns = solution_namespace(lab)
    skip = NOT_MUTATED | {"benchmarks"}
    if m is not None:
        ns[m.function] = m.mutant
        skip = frozenset(c.function for c in load_rubric(lab).checks.values()) - {m.function}
    _, results = grade_locally(lab, ns, seed=seed, skip_functions=skip)
    return {k: r.status for k, r in results.items()}


def run_variant(lab: str, m: Misconception, seed: str = "mutation") -> Outcome:
    ns = solution_namespace(lab)
    ns[m.function] = m.mutant
    _, results = grade_locally(lab, ns, seed=seed, skip_functions=NOT_MUTATED | {"benchmarks"})
    failed = frozenset(k for k, r in results.items() if r.status != "passed")
    named = any(results[k].diagnosis.startswith(MATCH_PREFIX) for k in failed)
    return Outcome(m.name, m.function, True, failed, named)


def file_outcomes(lab: str) -> list[Outcome]:
    """Checks of function "benchmarks": no file, and a fabricated file (needs HONEST_FILES measured)."""
    rubric = load_rubric(lab)
    if not any(c.function == "benchmarks" for c in rubric.checks.values()):
        return []
    ns = solution_namespace(lab)
    files = {"no benchmarks.json": {}}
    if lab in HONEST_FILES:
        files["fabricated benchmarks.json"] = {"benchmarks.json": _fabricated(HONEST_FILES[lab]["benchmarks.json"])}
    out = []
    for name, content in files.items():
        others = frozenset(c.function for c in rubric.checks.values()) - {"benchmarks"}
        _, results = grade_locally(lab, ns, files=content, skip_functions=others)
        failed = frozenset(k for k, r in results.items() if r.status != "passed" and r.function == "benchmarks")
        out.append(Outcome(name, "benchmarks", False, failed, False))
    return out


@dataclass(frozen=True)
class Score:
    lab: str
    functions: int
    catalogued: int
    killed: int
    mutants: int
    covered: int
    checks: int
    named: int
    failing_catalogued: int
    named_all: int
    failing_all: int
    uncovered: tuple[str, ...]
    survivors: tuple[str, ...]

    def line(self) -> str:
        return (f"{self.lab}: functions {self.functions}, catalogued mistakes {self.catalogued}, "
                f"mutation score {self.killed}/{self.mutants} mutants killed, {self.covered}/{self.checks} checks "
                f"failed by some mutant; named: {self.named}/{self.failing_catalogued} failing catalogued mistakes, "
                f"{self.named_all}/{self.failing_all} of all failing code variants (catalogue + MUTANTS)"
                + (f"; UNCOVERED {list(self.uncovered)}" if self.uncovered else "")
                + (f"; SURVIVORS {list(self.survivors)}" if self.survivors else ""))


def score(lab: str, outcomes: Iterable[Outcome]) -> Score:
    outcomes = list(outcomes)
    checks = function_checks(lab)
    covered = set().union(*(o.failed for o in outcomes)) & checks if outcomes else set()
    code = [o for o in outcomes if o.function != "benchmarks"]
    catalogued = [o for o in code if o.catalogued]
    functions = {c.function for c in load_rubric(lab).checks.values()} - {"benchmarks"} - NOT_MUTATED
    return Score(lab, len(functions), len(load_misconceptions(lab)), sum(1 for o in outcomes if o.failed),
                 len(outcomes), len(covered), len(checks), sum(1 for o in catalogued if o.failed and o.named),
                 sum(1 for o in catalogued if o.failed), sum(1 for o in code if o.failed and o.named),
                 sum(1 for o in code if o.failed), tuple(sorted(checks - covered)),
                 tuple(f"{o.function}:{o.variant}" for o in outcomes if not o.failed))


def all_outcomes(lab: str) -> list[Outcome]:
    out = []
    for m, catalogued in variants(lab):
        o = run_variant(lab, m)
        out.append(Outcome(o.variant, o.function, catalogued, o.failed, o.named))
    return out + file_outcomes(lab)
