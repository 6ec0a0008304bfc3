"""The grader's side of the warm start (inside/zygote_main.py): one zygote per grader process, a sandbox per fork.

A cold sandbox spends most of its seconds importing torch, transformers, matplotlib and ipykernel. The zygote
imports them once; each submission's sandbox is a fork of it that builds bubblewrap's view of the file system in
namespaces of its own (see inside/zygote_main.py). ``spawn`` returns a Popen-like handle with the three pipes the runner
protocol uses, so Sandbox drives a warm sandbox exactly as a cold one.

Warm starts are for CPU sandboxes (a GPU sandbox binds its own device nodes: it starts cold). Where the zygote
cannot start or fork (no user namespaces, a missing library), ``spawn`` raises ZygoteError and the caller starts
the sandbox cold. SPARKGRADE_WARM_START=0 turns warm starts off.
"""

from __future__ import annotations

import array
import atexit
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TypedDict

from autograder.sandbox import bwrap as bw

ZYGOTE_MAIN = Path(__file__).parent / "inside" / "zygote_main.py"
# What the labs' kernels import; imported once in the zygote. Generic deep-learning stack, no lab code.
WARM_MODULES = (
    "numpy",
    "torch",
    "safetensors.torch",
    "pandas",
    "matplotlib",
    "matplotlib.pyplot",
    "transformers",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    # torch.autograd.grad(..., grad_outputs) imports this (and with it sympy) on its first call: 3-5 s that every
    # sandbox of a lab with a gradient check paid in its first gradient call (2.4.2's scan_gradients).
    "torch.fx.experimental.symbolic_shapes",
)


def forbid_modules() -> list[str]:
    """The modules that hold what the labs' rubrics forbid (rubric.yaml ``forbid:``, e.g.
    transformers.models.mixtral.modeling_mixtral): the call harness imports them in the kernel to trace a forbidden
    function, which cost each sandbox of lab 2.4.4 several seconds in its first load_balancing_loss call. Only
    modules of the packages WARM_MODULES already imports (a GPU kernel package such as mamba_ssm is left to the
    kernel: the zygote imports no CUDA extension); one that fails to import is skipped without a word."""
    from autograder.paths import lab_ids
    from autograder.rubric import load_rubric

    packages = {m.split(".")[0] for m in WARM_MODULES}
    modules: list[str] = []
    for lab in lab_ids():
        try:
            names = [n for spec in load_rubric(lab).forbid.values() for n in spec.calls]
        except Exception:  # a broken rubric says so where it is graded; here it only warms nothing
            continue
        for name in names:
            module = name.rsplit(".", 1)[0]
            if "." in name and module.split(".")[0] in packages and module not in modules:
                modules.append(module)
    return modules


class WarmSpec(TypedDict):
    """One warm sandbox's layout as the zygote reads it (inside/zygote_main.py): bwrap.build_argv's mounts as data."""

    host_id: int | None  # the host uid the sandbox uid maps onto when the grader is root
    newroot: str
    work_dir: str
    etc_dir: str
    python_dirs: list[str]
    models_dir: str | None
    inside_work: str
    inside_models: str
    etc_from_host: list[str]
    tmp_bytes: int
    env: dict[str, str]
    rlimits: dict[str, int]


class ZygoteError(RuntimeError):
    """The warm start failed for this sandbox; start it cold."""


class ZygoteOff(ZygoteError):
    """Warm starts are off, or failed before in this process: start cold, nothing new to report."""


def enabled() -> bool:
    return os.environ.get("SPARKGRADE_WARM_START", "1") not in ("0", "false", "no", "off")


class ZygoteProcess:
    """A warm sandbox's pid 1, seen from the grader: pipes like a Popen, a pidfd for poll and kill."""

    def __init__(self, pid: int, stdin: IO[bytes], stdout: IO[bytes], stderr: IO[bytes]) -> None:
        self.pid = pid
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self._pidfd = os.pidfd_open(pid)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._pidfd], [], [], 0)[0]:
            self.returncode = -signal.SIGKILL  # not our child: the exit status is its parent's to reap
            os.close(self._pidfd)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"sandbox pid {self.pid}", timeout or 0)
            self.poll()
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        """SIGKILL pid 1 of the sandbox's pid namespace: the kernel takes every process in it along."""
        if self.returncode is None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Zygote:
    """One zygote process. Thread-safe: each spawn is one message on the zygote's socket."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="sparkgrade-zygote-"))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = bw.sandbox_env(threads, str(bw.sandbox_python().parent))
        env["MPLCONFIGDIR"] = str(self._dir / "matplotlib")  # its font cache, built once, inherited by every fork
        self._log = self._dir / "zygote.log"
        try:
            with open(self._log, "wb") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", str(ZYGOTE_MAIN), str(theirs.fileno())],
                    pass_fds=[theirs.fileno()],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    env=env,
                    cwd=self._dir,
                    start_new_session=True,
                )
        finally:
            theirs.close()
        self._sock = ours
        optional = [m for m in forbid_modules() if m not in WARM_MODULES]
        ours.send(json.dumps({"modules": [*WARM_MODULES, *optional]}).encode())
        ours.settimeout(300)
        try:
            ready = json.loads(ours.recv(1 << 16) or b"{}")
        except (OSError, ValueError) as exc:
            self.close()
            raise ZygoteError(f"the warm-start zygote did not start: {exc}") from exc
        finally:
            ours.settimeout(None)
        if not ready.get("ready"):
            err = self._stderr()
            self.close()
            raise ZygoteError(f"the warm-start zygote did not start: {err or 'no reply'}")
        failed = [m for m in ready.get("failed") or () if m in WARM_MODULES]
        if failed:  # not fatal: a notebook that needs them imports them itself
            sys.stderr.write(f"sparkgrade: the warm-start zygote could not import {', '.join(failed)}\n")

    def _stderr(self) -> str:
        """The last line the zygote wrote (its traceback's last line, when it died)."""
        try:
            lines = self._log.read_bytes()[-(1 << 16):].decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def alive(self) -> bool:
        return self._proc.poll() is None

    def spawn(self, spec: WarmSpec, procs_files: Iterable[str] = (), timeout_s: float = 60.0) -> ZygoteProcess:
        """Fork a sandbox for ``spec`` (see zygote_main._build_root); put its pid 1 in the given cgroups."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ctl, ctl_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ctl.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        theirs = [in_r, out_w, err_w, ctl_theirs.fileno()]
        ours = [in_w, out_r, err_r]
        try:
            with self._lock:
                try:
                    self._sock.sendmsg([json.dumps(spec).encode()],
                                       [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", theirs))])
                except OSError as exc:
                    raise ZygoteError(f"the warm-start zygote is gone: {exc}") from exc
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs[:3]:
                os.close(fd)
            ctl_theirs.close()
        try:
            pid = _read_pid(ctl, timeout_s)
            handle = ZygoteProcess(pid, os.fdopen(in_w, "wb"), os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"))
        except BaseException:
            ctl.close()
            for fd in ours:
                os.close(fd)
            raise
        try:
            for path in procs_files:
                Path(path).write_text(str(pid))
            ctl.sendall(b"g")
            if ctl.recv(1) != b"r":  # it could not build the sandbox: nothing of the student's has run yet
                raise ZygoteError(f"the warm sandbox could not set itself up: {_tail(handle)}")
        except BaseException as exc:
            handle.kill()
            for stream in (handle.stdin, handle.stdout, handle.stderr):
                stream.close()
            if isinstance(exc, OSError):
                raise ZygoteError(f"the warm sandbox did not start: {exc}") from exc
            raise
        finally:
            ctl.close()
        return handle

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self._dir, ignore_errors=True)


def _tail(handle: ZygoteProcess) -> str:
    """The last line the failed set-up wrote on the sandbox's stderr (its traceback's last line)."""
    try:
        handle.wait(timeout=5)
        lines = handle.stderr.read(1 << 16).decode(errors="replace").strip().splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return "no detail"
    return lines[-1] if lines else "no detail"


def _read_pid(ctl: socket.socket, timeout_s: float) -> int:
    """The sandbox's pid 1 says hello on the control socket; the kernel stamps its host pid on the message."""
    ctl.settimeout(timeout_s)
    try:
        msg, anc, _flags, _addr = ctl.recvmsg(1, socket.CMSG_SPACE(struct.calcsize("iII")))
    except OSError as exc:
        raise ZygoteError(f"the warm sandbox did not start: {exc}") from exc
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and msg == b"c":
            pid, _uid, _gid = struct.unpack("iII", data[: struct.calcsize("iII")])
            if isinstance(pid, int) and pid > 0:
                return pid
    raise ZygoteError("the warm sandbox did not start (no hello from its pid 1)")


_zygotes: dict[int, Zygote] = {}
_zygotes_lock = threading.Lock()
_broken: list[str] = []


def get(threads: int) -> Zygote:
    """This process's zygote for ``threads`` (started on first use, restarted if it died); ZygoteError if the warm
    start does not work here (remembered: the process does not retry a zygote that failed to start)."""
    if not enabled():
        raise ZygoteOff("warm starts are off (SPARKGRADE_WARM_START=0)")
    with _zygotes_lock:
        if _broken:
            raise ZygoteOff(_broken[0])
        z = _zygotes.get(threads)
        if z is not None and z.alive():
            return z
        if z is not None:
            z.close()
        if not _zygotes:
            atexit.register(shutdown)  # stop it and remove its folder when the grader exits
        try:
            z = _zygotes[threads] = _start_in_keeper(threads)
        except (ZygoteError, OSError) as exc:
            _broken.append(str(exc))
            raise ZygoteError(str(exc)) from exc
        return z


def _start_in_keeper(threads: int) -> Zygote:
    """Start the zygote from a thread that lives as long as this process: its parent-death signal (and so every
    warm sandbox's) follows the thread that started it, and a grading worker thread may end before the batch."""
    made: list[Zygote] = []
    failed: list[BaseException] = []
    started = threading.Event()

    def keeper() -> None:
        try:
            made.append(Zygote(threads))
        except BaseException as exc:  # handed to the caller below
            failed.append(exc)
        started.set()
        threading.Event().wait()

    threading.Thread(target=keeper, name=f"sparkgrade-zygote-{threads}", daemon=True).start()
    started.wait()
    if failed:
        raise failed[0]
    return made[0]


def mark_broken(reason: str) -> None:
    """A warm sandbox failed to set itself up: every later sandbox of this process starts cold."""
    with _zygotes_lock:
        _broken.append(reason)


def shutdown() -> None:
    """Stop this process's zygotes and forget earlier failures (the next warm start tries afresh)."""
    with _zygotes_lock:
        for z in _zygotes.values():
            z.close()
        _zygotes.clear()
        _broken.clear()


def sandbox_spec(mounts: bw.Mounts, env: dict[str, str], *, tmp_bytes: int, newroot: Path,
                 rlimits: dict[str, int], host_id: int | None = None) -> WarmSpec:
    """The warm sandbox's layout: bwrap.build_argv's mounts, as data for the zygote. ``host_id``: the host uid
    the sandbox uid maps onto when the grader is root (bwrap.sandbox_host_id)."""
    return {
        "host_id": host_id,
        "newroot": str(newroot),
        "work_dir": str(mounts.work_dir),
        "etc_dir": str(mounts.etc_dir),
        "python_dirs": [str(d) for d in mounts.python_dirs],
        "models_dir": str(mounts.models_dir) if mounts.models_dir is not None else None,
        "inside_work": bw.INSIDE_WORK,
        "inside_models": bw.INSIDE_MODELS,
        "etc_from_host": list(bw.ETC_FROM_HOST),
        "tmp_bytes": tmp_bytes,
        "env": env,
        "rlimits": rlimits,
    }
