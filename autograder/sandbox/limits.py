"""What one submission may use. The defaults fit a lab notebook that loads a small model on one GPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandbox (one submission)."""

    notebook_s: float = 300.0  # wall time for running every cell of the notebook
    call_s: float = 60.0  # wall time for one function call, unless the call names its own
    memory_bytes: int = 4 * GIB  # everything the sandbox holds, tmpfs included
    max_processes: int = 64  # tasks (processes and threads) in the sandbox's cgroup
    file_bytes: int = 256 * MIB  # largest file the student may write (RLIMIT_FSIZE)
    cell_output_bytes: int = 64 * KIB  # outputs kept per cell of the executed notebook
    call_output_bytes: int = 64 * MIB  # largest out.safetensors / out.json a call may return
    call_text_bytes: int = 16 * KIB  # stdout / stderr kept per call
    tmp_bytes: int = 512 * MIB  # size of the private /tmp tmpfs
    threads: int = 2  # OMP / MKL threads inside
    # Cores' worth of CPU time the sandbox may use (cgroup cpu.max): its worker's share, one core, as the batch runs
    # one worker per core; a thread storm then slows only its own submission.
    cpus: float = 1.0
    # Wall time for all the hidden checks of one submission together; checks past it fail at once.
    checks_s: float = 600.0
    startup_s: float = 60.0  # kernel start allowance on top of notebook_s
    interrupt_grace_s: float = 5.0  # how long a timed-out call may take to honour an interrupt
    # GPU sandboxes: the kernel's CUDA allocator is capped at this many bytes (a per-process memory fraction set
    # before student code), since unified memory escapes the cgroup (watchdog.py).
    gpu_memory_bytes: int = 24 * GIB
    # The host keeps this much MemAvailable: below it the sandbox is killed with reason "memory". 0: GPU sandboxes
    # use watchdog.default_reserve and CPU sandboxes rely on their cgroup alone (no watchdog).
    host_reserve_bytes: int = 0

    def __post_init__(self) -> None:
        for name in ("notebook_s", "call_s", "startup_s", "interrupt_grace_s", "cpus", "checks_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive")
        for name in ("memory_bytes", "max_processes", "file_bytes", "cell_output_bytes", "call_output_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive")


NICE_WITHOUT_QUOTA = 10  # without a cgroup CPU quota, the nearest equivalent: the sandbox yields to other workers


def rlimits_for(lim: Limits, *, cgroup: bool, gpu: bool) -> dict[str, int]:
    """The rlimits the runner sets on the kernel: what a cgroup does not already bound."""
    rlimits = {"RLIMIT_FSIZE": lim.file_bytes, "RLIMIT_CORE": 0}
    if not cgroup:
        rlimits["RLIMIT_NPROC"] = lim.max_processes
        if not gpu:  # RLIMIT_AS breaks CUDA, whose driver reserves huge virtual ranges
            rlimits["RLIMIT_AS"] = lim.memory_bytes
    return rlimits


class RunnerLimits(TypedDict):
    """The limits part of the runner's configuration message (sandbox/inside/runner.py reads it as JSON)."""

    notebook_timeout_s: float
    startup_timeout_s: float
    cell_output_bytes: int
    call_text_bytes: int
    interrupt_grace_s: float
    rlimits: dict[str, int]  # resource.RLIMIT_* name -> soft and hard limit
    limits_by_cgroup: bool
    cuda_memory_bytes: int  # 0: no GPU
    nice: int


class RunnerConfig(RunnerLimits):
    """The runner's configuration message, the first line the grader sends it (Sandbox._config)."""

    token: str  # marks the runner's own protocol lines (student code can write into the pipe)
    notebook: str
    executed_name: str
    work_dir: str
    models_dir: str  # "" without models


def runner_limits(lim: Limits, rlimits: dict[str, int], *, inside: bool, cgroup: bool, gpu: bool,
                  cpu_quota: bool) -> RunnerLimits:
    """The limits part of the runner's configuration message (sandbox/inside/runner.py reads it)."""
    return {
        "notebook_timeout_s": lim.notebook_s,
        "startup_timeout_s": lim.startup_s,
        "cell_output_bytes": lim.cell_output_bytes,
        "call_text_bytes": lim.call_text_bytes,
        "interrupt_grace_s": lim.interrupt_grace_s,
        "rlimits": rlimits,
        "limits_by_cgroup": cgroup or not inside,
        "cuda_memory_bytes": lim.gpu_memory_bytes if gpu else 0,
        "nice": NICE_WITHOUT_QUOTA if inside and not cpu_quota else 0,
    }
