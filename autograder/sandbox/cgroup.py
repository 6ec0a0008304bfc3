"""A cgroup per sandbox: memory, task and CPU limits the kernel enforces, a breach we can see, and a kill for all.

cgroup v2 is preferred (memory.max, pids.max, cpu.max, memory.events, cgroup.kill). Hosts that still run the v1
hierarchies (some containers) get the same limits from the v1 memory, pids and cpu controllers (cpu.cfs_quota_us).
Where neither is writable the caller falls back to rlimits set by the runner inside the sandbox, and the runner
lowers its own scheduling priority (nice) instead of a CPU share: RLIMIT_CPU caps the total CPU seconds, not the
share, so it would not stop a thread storm from slowing the other workers.

The CPU limit is a bandwidth quota: ``cpus`` cores' worth of time per 100 ms period (cpu.max "quota period"). A
sandbox that starts a thread per core still gets only its worker's share; a host without the cpu controller keeps
the memory and task limits (the quota is best effort, the others are not).
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000


def _own_paths() -> dict[str, str]:
    """controller ('' for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for ctrl in parts[1].split(",") if parts[1] else [""]:
                paths[ctrl] = parts[2]
    return paths


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _read_counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, count = line.partition(" ")
            if name == key:
                return int(count)
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class Cgroup:
    """One sandbox's cgroup(s): one directory on v2, a memory and a pids directory on v1."""

    version: int
    dirs: tuple[Path, ...]  # v2: (the cgroup,); v1: (memory, pids) and the cpu one when the quota was set
    cpu_quota: float | None = None  # the cores' worth of CPU time the kernel enforces; None: no CPU limit

    @classmethod
    def create(cls, memory_bytes: int, max_processes: int, cpus: float | None = None) -> Cgroup | None:
        """Make and configure a fresh cgroup, or None where this host does not let us."""
        name = f"sparkgrade-{os.getpid()}-{secrets.token_hex(4)}"
        own = _own_paths()
        if (CGROUP_ROOT / "cgroup.controllers").exists():
            return cls._create_v2(name, own.get("", "/"), memory_bytes, max_processes, cpus)
        if (CGROUP_ROOT / "memory").is_dir() and (CGROUP_ROOT / "pids").is_dir():
            return cls._create_v1(name, own, memory_bytes, max_processes, cpus)
        return None

    @classmethod
    def _create_v2(cls, name: str, own: str, memory_bytes: int, max_processes: int,
                   cpus: float | None) -> Cgroup | None:
        # Our own cgroup first; the no-internal-processes rule often forbids enabling controllers there, so then a
        # "sparkgrade" parent below the root (which is exempt) that holds only sandboxes.
        candidates = [CGROUP_ROOT / own.lstrip("/"), CGROUP_ROOT / "sparkgrade"]
        for parent in candidates:
            try:
                parent.mkdir(exist_ok=True)
                enabled = (parent / "cgroup.subtree_control").read_text().split()
                if not {"memory", "pids"} <= set(enabled):
                    _write(parent / "cgroup.subtree_control", "+memory +pids")
                child = parent / name
                child.mkdir()
            except OSError:
                continue
            try:
                _write(child / "memory.max", str(memory_bytes))
                if (child / "memory.swap.max").exists():
                    _write(child / "memory.swap.max", "0")
                _write(child / "pids.max", str(max_processes))
            except OSError:
                _rmdir(child)
                continue
            quota = None
            if cpus is not None:
                try:
                    if "cpu" not in (parent / "cgroup.subtree_control").read_text().split():
                        _write(parent / "cgroup.subtree_control", "+cpu")
                    _write(child / "cpu.max", f"{_quota_us(cpus)} {CPU_PERIOD_US}")
                    quota = cpus
                except OSError:
                    pass  # no cpu controller delegated here: memory and task limits still hold
            return cls(2, (child,), quota)
        return None

    @classmethod
    def _create_v1(cls, name: str, own: dict[str, str], memory_bytes: int, max_processes: int,
                   cpus: float | None) -> Cgroup | None:
        mem = CGROUP_ROOT / "memory" / own.get("memory", "/").lstrip("/") / name
        pids = CGROUP_ROOT / "pids" / own.get("pids", "/").lstrip("/") / name
        made: list[Path] = []
        try:
            for d in (mem, pids):
                d.mkdir()
                made.append(d)
            _write(mem / "memory.limit_in_bytes", str(memory_bytes))
            if (mem / "memory.memsw.limit_in_bytes").exists():
                try:  # no swapping around the limit; absent when the host has swap accounting off
                    _write(mem / "memory.memsw.limit_in_bytes", str(memory_bytes))
                except OSError:
                    pass
            _write(pids / "pids.max", str(max_processes))
        except OSError:
            for d in made:
                _rmdir(d)
            return None
        cpu = CGROUP_ROOT / "cpu" / own.get("cpu", "/").lstrip("/") / name
        if cpus is not None and (CGROUP_ROOT / "cpu").is_dir():
            try:
                cpu.mkdir()
            except OSError:
                return cls(1, (mem, pids))
            try:
                _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(cpu / "cpu.cfs_quota_us", str(_quota_us(cpus)))
            except OSError:
                _rmdir(cpu)
                return cls(1, (mem, pids))
            return cls(1, (mem, pids, cpu), cpus)
        return cls(1, (mem, pids))

    def procs_files(self) -> list[str]:
        """The files a launcher writes its pid into before exec'ing bwrap (so every descendant is inside)."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def breach(self) -> Literal["memory", "processes"] | None:
        """'memory' after an OOM kill, 'processes' after a refused fork, else None."""
        if self.version == 2:
            (d,) = self.dirs
            if _read_counter(d / "memory.events", "oom_kill") or _read_counter(d / "memory.events", "oom"):
                return "memory"
            if _read_counter(d / "pids.events", "max"):
                return "processes"
            return None
        mem, pids = self.dirs[:2]
        if _read_counter(mem / "memory.oom_control", "oom_kill"):
            return "memory"
        if _read_counter(pids / "pids.events", "max"):
            return "processes"
        return None

    def kill(self) -> None:
        """SIGKILL every task in the cgroup (v2: cgroup.kill; v1: until cgroup.procs is empty)."""
        if self.version == 2 and (self.dirs[0] / "cgroup.kill").exists():
            try:
                _write(self.dirs[0] / "cgroup.kill", "1")
                return
            except OSError:
                pass
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for d in self.dirs:
            try:
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                pass
        return sorted(found)

    def remove(self) -> None:
        self.kill()
        for d in self.dirs:
            for _ in range(50):
                if _rmdir(d):
                    break
                time.sleep(0.05)


def _quota_us(cpus: float) -> int:
    return max(1000, int(cpus * CPU_PERIOD_US))  # the kernel refuses quotas under 1 ms


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
