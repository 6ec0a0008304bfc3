"""The pytest plugin that turns a lab's hidden checks into CheckResults for one submission.

Fixtures a check can ask for:
    student     proxy: ``student.selective_scan(u, delta, ...)`` runs the student's function in the sandbox and
                returns its (validated) value, or raises StudentError
    rng         torch.Generator seeded from the submission's secret seed and the check's id (a regrade repeats it)
    rubric      the lab's Rubric (tolerances, hardware)
    tol         ``tol(dtype) -> (rtol, atol)`` from the rubric
    submission  SubmissionContext: the submitted files the checks may read as data (e.g. benchmarks.json)
    trusted_model  the lab's tiny models loaded on this side (autograder.checks.trusted)
    evidence    a dict the check fills with the numbers its verdict rests on (timings, ratios): kept in the
                result's details under "evidence", passed or failed, so an instructor can answer a complaint
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
import torch

from autograder.checks.api import (
    GRAD_OUTPUT,
    GRAD_WRT,
    PROBE,
    RETURN_ARGS,
    CheckFailed,
    Misconception,
    StudentError,
    Tolerance,
    plot_details,
    recording_tolerances,
)
from autograder.checks.diagnosis import FailedCheck, RecordedCall, diagnose_function
from autograder.records import CheckResult
from autograder.rubric import Rubric


class Caller(Protocol):
    """The sandbox (or a stand-in). ``forbid`` is passed only when the rubric forbids calls in the function; the
    result's ``forbidden`` says which of them ran."""

    def call(self, function: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
             timeout_s: float | None = None, device: str | None = None, forbid: Sequence[str] = ()) -> Any: ...


@dataclass(frozen=True)
class SubmissionContext:
    """What the checks know about the submission. ``files`` are the student's bytes: parse them as untrusted."""

    student: str
    lab: str
    files: dict[str, bytes] = field(default_factory=dict)
    hardware: str = "cpu"
    device: str = "cpu"
    # What the checks computed once for this submission and grading keeps (the benchmark Judgement, under
    # "benchmarks": judged by the first benchmark check, reused by the others, stored with the grade record).
    memo: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Probed:
    """A probed call's outcome: the value, what the harness observed in the kernel (untrusted: it shares the
    kernel with student code, so a check only ever lets tampering lose points), and the call's duration as the
    runner measured it outside the kernel."""

    value: Any
    observed: dict[str, Any]
    round_trip_s: float


@dataclass
class CallBudget:
    """The time the checks of one submission may spend in its functions, shared by every check's proxy.

    A function that timed out once is not called again: an infinite loop is an ordinary bug, and the 13 checks
    that call selective_scan would otherwise wait call_s each (13 minutes of one worker). Past ``deadline`` (the
    rubric's ``limits.checks_s`` after the checks started) no call starts, and each call's timeout is cut to the
    time left, so the whole submission's checks end within the budget."""

    call_s: float
    checks_s: float
    deadline: float  # time.monotonic()
    timed_out: set[str] = field(default_factory=set)
    refused: int = 0  # calls not started because the budget was spent (a busy machine can spend it: flagged)

    @classmethod
    def start(cls, call_s: float, checks_s: float) -> CallBudget:
        return cls(call_s, checks_s, time.monotonic() + checks_s)

    def timeout_for(self, function: str, requested: float | None) -> float:
        """The timeout of the next call of ``function``, or StudentError when it must not run at all."""
        if function in self.timed_out:
            raise StudentError(function, "timeout", f"{function} timed out earlier in this submission, so it was "
                                                    "not called again")
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.refused += 1
            raise StudentError(function, "timeout", f"not run: this submission's checks used up their time budget "
                                                    f"({self.checks_s:.0f} s)")
        return min(requested or self.call_s, left)


class StudentProxy:
    """Attribute access gives a function that calls into the sandbox; every call is recorded for diagnosis."""

    def __init__(self, caller: Caller, device: str, budget: CallBudget | None = None,
                 forbid: dict[str, tuple[str, ...]] | None = None,
                 forbidden: dict[str, list[str]] | None = None) -> None:
        self._caller = caller
        self._device = device
        self._budget = budget
        self._forbid = forbid or {}  # function -> dotted names the harness traces during its calls
        self.forbidden = forbidden if forbidden is not None else {}  # function -> names it was seen calling
        self.calls: list[RecordedCall] = []

    def gradients(self, function: str, *args: Any, wrt: Sequence[int], grad_output: torch.Tensor,
                  **kwargs: Any) -> Any:
        """d(first output . grad_output) / d(args[i]) for i in ``wrt``, by autograd through the student's function
        inside the sandbox: a tuple of tensors shaped like those arguments."""
        extra = {GRAD_WRT: list(wrt), GRAD_OUTPUT: grad_output}
        return getattr(self, function)(*args, **kwargs, **extra)

    def _call(self, function: str, args: Sequence[Any], kwargs: dict[str, Any], timeout_s: float | None) -> Any:
        budget = self._budget
        timeout_s = budget.timeout_for(function, timeout_s) if budget is not None else timeout_s
        extra = {"forbid": self._forbid[function]} if self._forbid.get(function) else {}
        result = self._caller.call(function, args, kwargs, timeout_s=timeout_s,
                                   device=None if self._device == "cpu" else self._device, **extra)
        if result.status == "timeout" and budget is not None:
            budget.timed_out.add(function)
        for name in getattr(result, "forbidden", ()) if extra else ():
            seen = self.forbidden.setdefault(function, [])
            if name not in seen:
                seen.append(name)
        if result.status != "ok":
            what = {"error": f"{function} raised {result.error}",
                    "timeout": f"{function} did not return in time",
                    "died": f"{function} could not run: {result.error}"}.get(result.status, str(result.error))
            raise StudentError(function, result.status, what)
        return result

    def counting_forwards(self, function: str, *args: Any, _timeout_s: float | None = None,
                          **kwargs: Any) -> Probed:
        """Call the student's function with forward hooks on every model argument: ``observed["forwards"]`` holds
        (tokens given, start s, end s) per forward call in order, on the kernel's clock from the start of the call,
        and ``observed["call_s"]`` the call's length on that clock (sandbox/inside/harness.py)."""
        result = self._call(function, args, {**kwargs, PROBE: "forwards"}, _timeout_s)
        got = result.value
        if not isinstance(got, dict) or "value" not in got:
            raise CheckFailed(f"{function}: the sandbox did not hand back what the grader observed during the call")
        self.calls.append(RecordedCall(function, args, kwargs, got["value"]))
        return Probed(got["value"], {"forwards": _forwards(got.get("forwards")), "call_s": _seconds(got.get("call_s"))},
                      result.round_trip_s)

    def reference_generation(self, model: Any, input_ids: torch.Tensor, new_tokens: int, *,
                             _timeout_s: float | None = None) -> Probed:
        """The grader's own greedy-generation timing of ``model`` on ``input_ids``, run by trusted harness code in
        the same kernel as the student's calls: dict(ttft_s, decode_tok_s). No student function is called."""
        result = self._call("reference_generation", (model, input_ids, new_tokens),
                            {PROBE: "reference_generation"}, _timeout_s)
        return Probed(result.value, {}, result.round_trip_s)

    def updating(self, function: str, *args: Any, returned: Sequence[int], **kwargs: Any) -> tuple[Any, list[Any]]:
        """(value, [args[i] for i in ``returned``] as the function left them): observes in-place updates."""
        got = getattr(self, function)(*args, **kwargs, **{RETURN_ARGS: list(returned)})
        if not isinstance(got, tuple | list) or len(got) != 2 or not isinstance(got[1], list):
            raise CheckFailed(f"{function}: the sandbox did not hand back the updated arguments")
        return got[0], got[1]

    def __getattr__(self, function: str) -> Callable[..., Any]:
        if function.startswith("_"):
            raise AttributeError(function)

        def call(*args: Any, _timeout_s: float | None = None, **kwargs: Any) -> Any:
            result = self._call(function, args, kwargs, _timeout_s)
            self.calls.append(RecordedCall(function, args, kwargs, result.value))
            return result.value

        return call


def _seconds(value: Any) -> float:
    return float(value) if type(value) in (int, float) and 0 <= value < 1e9 else -1.0


def _forwards(value: Any) -> list[tuple[int, float, float]]:
    """The harness's forward records, as untrusted data: malformed entries are dropped."""
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        if isinstance(item, list) and len(item) == 3 and type(item[0]) is int:
            out.append((item[0], _seconds(item[1]), _seconds(item[2])))
    return out


def _seed_for(seed: str, nodeid: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{nodeid}".encode()).digest()[:8], "little") & ((1 << 63) - 1)


RULES_PARAM = "benchmark_check"  # checks/benchmark_rules.py runs once per rule-declaring check, named by this


def check_id(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and RULES_PARAM in callspec.params:
        return str(callspec.params[RULES_PARAM])
    return item.name.removeprefix("test_")


class CheckPlugin:
    """Collects one CheckResult per hidden check, with diagnosis for failures."""

    def __init__(self, rubric: Rubric, caller: Caller, seed: str, context: SubmissionContext,
                 misconceptions: Sequence[Misconception],
                 references: Mapping[str, Callable[..., Any]] | None = None) -> None:
        self._rubric = rubric
        self.caller = caller
        self.seed = seed
        self.context = context
        self.misconceptions = list(misconceptions)
        self.references = dict(references or {})
        self.results: dict[str, CheckResult] = {}
        self.grader_errors: list[str] = []
        self._proxies: dict[str, StudentProxy] = {}
        self._evidence: dict[str, dict[str, Any]] = {}
        self._tolerances: dict[str, tuple[Tolerance, ...]] = {}
        self._failed: dict[str, FailedCheck] = {}
        limits = rubric.sandbox_limits
        self.budget = CallBudget.start(limits.call_s, limits.checks_s)
        self.forbid = {f: tuple(spec.calls) for f, spec in rubric.forbid.items()}
        self.forbidden: dict[str, list[str]] = {}  # shared by every proxy: function -> forbidden names it called

    def tolerance(self, dtype: torch.dtype) -> tuple[float, float]:
        return self._rubric.tolerance(str(dtype).removeprefix("torch."))

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """The shared benchmark test runs once per check the rubric declares by its rules."""
        if RULES_PARAM in metafunc.fixturenames:
            ids = [cid for cid in self._rubric.benchmark_rules]
            metafunc.parametrize(RULES_PARAM, ids, ids=ids)

    # -- fixtures ---------------------------------------------------------------------------------------------
    @pytest.fixture
    def student(self, request: pytest.FixtureRequest) -> StudentProxy:
        proxy = StudentProxy(self.caller, self.context.device, self.budget, self.forbid, self.forbidden)
        self._proxies[request.node.nodeid] = proxy
        return proxy

    @pytest.fixture
    def evidence(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        return self._evidence.setdefault(request.node.nodeid, {})

    @pytest.fixture
    def rng(self, request: pytest.FixtureRequest) -> torch.Generator:
        return torch.Generator().manual_seed(_seed_for(self.seed, check_id(request.node)))

    @pytest.fixture
    def rubric(self) -> Rubric:
        return self._rubric

    @pytest.fixture
    def tol(self) -> Callable[[torch.dtype], tuple[float, float]]:
        return self.tolerance

    @pytest.fixture
    def submission(self) -> SubmissionContext:
        return self.context

    @pytest.fixture
    def trusted_model(self) -> Callable[..., Any]:
        """``trusted_model(name, dtype=None)``: the model ``Model(name, dtype)`` names, loaded in this process."""
        from autograder.checks.trusted import trusted_model

        return trusted_model

    # -- outcomes ---------------------------------------------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        with recording_tolerances() as seen:
            yield
        self._tolerances[item.nodeid] = tuple(seen)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        outcome = yield
        report = outcome.get_result()
        cid = check_id(item)
        if cid in self.results and report.when != "teardown":
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.results[cid] = self._result(item, cid, report, call)

    def _result(self, item: pytest.Item, cid: str, report: pytest.TestReport,
                call: pytest.CallInfo[None]) -> CheckResult:
        spec = self._rubric.checks.get(cid)
        function = spec.function if spec else "?"
        max_points = spec.points if spec else 0.0
        # How the verdict was reached, passed or failed (e.g. the grader's timing, the student's and their ratio).
        kept = {"evidence": self._evidence[item.nodeid]} if self._evidence.get(item.nodeid) else {}
        if report.passed:
            return CheckResult(cid, function, max_points, max_points, "passed", details=kept)
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            return CheckResult(cid, function, 0.0, max_points, "error", f"not run: {reason}")
        exc = call.excinfo.value if call.excinfo else None
        if isinstance(exc, StudentError):
            return CheckResult(cid, function, 0.0, max_points, "error", _first_line(str(exc)))
        if isinstance(exc, AssertionError):
            details = exc.details if isinstance(exc, CheckFailed) else {}
            proxy = self._proxies.get(item.nodeid)
            # Diagnosed in finish(), once every failed check of the function is known.
            self._failed[cid] = FailedCheck(cid, function, tuple(proxy.calls if proxy else ()),
                                            self._tolerances.get(item.nodeid, ()), details)
            return CheckResult(cid, function, 0.0, max_points, "failed", _first_line(str(exc)) or "wrong answer",
                               "", {**plot_details(details), **kept})
        # The check itself crashed: never the student's fault, always worth an instructor's look.
        text = f"{type(exc).__name__}: {exc}" if exc else str(report.longrepr)[-500:]
        self.grader_errors.append(f"{cid}: {text}")
        return CheckResult(cid, function, 0.0, max_points, "error", f"the grader's check failed to run ({text})")

    def finish(self) -> None:
        """Diagnose the failed checks function by function: a misconception is named only if its mutant explains
        every failed check of that function (autograder.checks.diagnosis)."""
        by_function: dict[str, list[FailedCheck]] = {}
        for cid, one in self._failed.items():
            if self.results.get(cid) is not None and self.results[cid].status == "failed":
                by_function.setdefault(one.function, []).append(one)
        for failed in by_function.values():
            texts = diagnose_function(failed, self.misconceptions, self.references, self.tolerance)
            for cid, text in texts.items():
                self.results[cid] = dataclasses.replace(self.results[cid], diagnosis=text)


def _first_line(text: str, limit: int = 400) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]
