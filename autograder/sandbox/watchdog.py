"""A host-side watchdog on available memory: kills a sandbox before it starves the host.

Why a cgroup is not enough on the DGX Spark: its 128 GB are unified, and CUDA allocations are not charged to the
sandbox cgroup's memory.max the way host pages are (12 GiB allocated under an 8 GB cap without an OOM kill; the whole
host hangs instead of the process being killed, open-gpu-kernel-modules#1358). RLIMIT_AS breaks CUDA. So the runner
caps the kernel's CUDA allocator (a per-process memory fraction, set before student code) and this thread watches the
host's MemAvailable, which does fall as unified memory is taken, and kills the sandbox's processes when it drops
below a reserve. Whichever sandbox is running when the host runs short is the one killed: a GPU course caps its
concurrent GPU sandboxes (course sparkgrade.yaml, gpu_sandboxes) so that this is the one that took the memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MEMINFO = Path("/proc/meminfo")
GIB = 1 << 30
POLL_S = 0.05  # unified memory can be taken at tens of GB/s: look often (reading meminfo costs ~20 us)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per field."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return out


def default_reserve(total_bytes: int) -> int:
    """What the host keeps for itself: 8 GiB or a tenth of its memory, the larger (the grader, the OS, the checks'
    own tensors; 12.8 GB on a Spark)."""
    return max(8 * GIB, total_bytes // 10)


def starving(meminfo: dict[str, int], reserve_bytes: int) -> str | None:
    """Why the host is short of memory, or None while MemAvailable stays above the reserve."""
    available = meminfo.get("MemAvailable")
    if available is None or available >= reserve_bytes:
        return None
    return (f"the host ran short of memory (available {available / GIB:.1f} GiB, below the {reserve_bytes / GIB:.1f} "
            "GiB it keeps): the sandbox was killed before the machine stalled")


@dataclass
class HostMemoryWatchdog:
    """Polls MemAvailable in a daemon thread; calls ``on_starve(detail)`` once when it falls below the reserve."""

    reserve_bytes: int
    on_starve: Callable[[str], None]
    meminfo: Path = MEMINFO
    poll_s: float = POLL_S

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> HostMemoryWatchdog:
        self._thread = threading.Thread(target=self._run, name="sparkgrade-memory-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                why = starving(parse_meminfo(self.meminfo.read_text()), self.reserve_bytes)
            except OSError:
                return  # no /proc/meminfo: nothing to watch
            if why is not None:
                self.on_starve(why)
                return


def host_total_bytes(meminfo: Path = MEMINFO) -> int:
    try:
        return parse_meminfo(meminfo.read_text()).get("MemTotal", 0)
    except OSError:
        return 0


def watchdog_for(reserve_bytes: int, gpu: bool, on_starve: Callable[[str], None]) -> HostMemoryWatchdog | None:
    """The started watchdog a sandbox gets: with the limit's reserve, else the default reserve for a GPU sandbox
    (unified memory escapes its cgroup), else none (a CPU sandbox's cgroup is enough)."""
    reserve = reserve_bytes or (default_reserve(host_total_bytes()) if gpu else 0)
    return HostMemoryWatchdog(reserve, on_starve).start() if reserve else None
