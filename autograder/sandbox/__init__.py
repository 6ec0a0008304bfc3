"""The trust boundary: student notebooks run in here, behind bubblewrap; nothing in here decides a grade.

`inner.py` (the runner) is the only code that runs inside the sandbox next to student code. `zygote_main.py` is the
warm start: a trusted process that forks each sandbox and builds its namespaces before any student code runs (see
zygote.py). Everything else in this package runs outside.
"""

from __future__ import annotations

from autograder.sandbox.bwrap import build_argv, check_sandbox_available
from autograder.sandbox.limits import Limits
from autograder.sandbox.records import Call, CallResult, Model, Reason, SandboxResult
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
