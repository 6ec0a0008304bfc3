"""Typed records that cross from the sandbox layer to the rest of the grader."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard, get_args

Reason = Literal["timeout", "memory", "processes", "output", "crashed"]
CallStatus = Literal["ok", "error", "timeout", "died"]


def is_call_status(value: object) -> TypeGuard[CallStatus]:
    """One of the call statuses (a reply from the runner is untrusted JSON)."""
    return isinstance(value, str) and value in get_args(CallStatus)


@dataclass(frozen=True)
class Model:
    """An argument that names a model in the lab's models folder; the kernel loads it with
    ``AutoModelForCausalLM.from_pretrained(<models>/<name>)`` (cached per sandbox)."""

    name: str
    dtype: str | None = None  # a torch dtype name, e.g. "float32" or "bfloat16"
    # Variants a check may ask for (the kernel and autograder.checks.trusted build them alike):
    # config: config.json text; the model is built from it (AutoModelForCausalLM.from_config, torch seed 0)
    #         instead of loading <name>'s weights: random tiny architectures that no constant answer fits.
    # lora:   peft target_modules: the model comes wrapped by get_peft_model(LoraConfig(r=4, ...)).
    # freeze: a regular expression; parameters whose name it matches (re.search) get requires_grad False.
    config: str | None = None
    lora: tuple[str, ...] = ()
    freeze: str | None = None


@dataclass(frozen=True)
class Call:
    """One function call into the sandbox: ``function(*args, **kwargs)``.

    Arguments may be tensors, ints, floats, bools, None, strings, `Model`, and lists, tuples and str-keyed
    dicts of these. ``device`` moves every tensor argument (and models) there before the call.
    """

    function: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    device: str | None = None
    forbid: tuple[str, ...] = ()  # dotted names of callables traced while the function runs (rubric `forbid:`)


@dataclass(frozen=True)
class SandboxResult:
    """How running the notebook went. ``notebook`` is the executed notebook as written inside: untrusted bytes."""

    status: Literal["ok", "failed"]
    reason: Reason | None
    detail: str
    notebook: bytes | None
    start_s: float  # spawn until the kernel was ready
    run_s: float  # running the cells
    alive: bool  # the kernel still serves calls
    sandboxed: bool
    cells_executed: int = 0
    notebook_path: Path | None = None  # inside the sandbox's temp folder: gone after close()


@dataclass(frozen=True)
class CallResult:
    """The outcome of one call. ``value`` is the decoded return value: tensors, numbers, bools, None, strings,
    lists, tuples and str-keyed dicts only; it has been type-checked and was never unpickled."""

    status: CallStatus
    value: Any = None
    error: str | None = None
    wall_s: float = 0.0  # the function's own run time as the kernel measured it (untrusted)
    round_trip_s: float = 0.0  # the call through the kernel as the runner measured it
    stdout: str = ""
    stderr: str = ""
    sandboxed: bool = True
    forbidden: tuple[str, ...] = ()  # which of the call's ``forbid`` names ran (as reported from inside: untrusted)

    @property
    def ok(self) -> bool:
        return self.status == "ok"
