"""The trust boundary: student notebooks run in here, behind bubblewrap; nothing in here decides a grade.

`inner.py` is the only code that runs inside the sandbox; everything else in this package runs outside.
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
