"""The trust boundary: student notebooks run in here, behind bubblewrap; nothing in here decides a grade.

inside/ holds the only code that runs next to student code: the runner, the call harness it runs in the kernel, and
the warm-start zygote that forks each sandbox and builds its namespaces before any student code runs. Everything
else in this package runs outside, in the grader: the bubblewrap command line (bwrap.py), cgroups (cgroup.py), the
codec for what crosses (codec.py, calls.py), the warm-start client (zygote.py) and the Sandbox that drives it all.
"""

from __future__ import annotations

from autograder.sandbox.bwrap import build_argv, check_sandbox_available
from autograder.sandbox.calls import Call, CallResult, Model, Reason, SandboxResult
from autograder.sandbox.limits import Limits
from autograder.sandbox.sandbox import Sandbox

__all__ = [
    "Call",
    "CallResult",
    "Limits",
    "Model",
    "Reason",
    "Sandbox",
    "SandboxResult",
    "build_argv",
    "check_sandbox_available",
]
