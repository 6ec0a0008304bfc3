"""One submission in one sandbox: run its notebook, then serve function calls into its kernel.

    with Sandbox(notebook_bytes, models_dir=lab / "models") as sb:
        result = sb.run()                      # SandboxResult: status, reason, executed notebook
        out = sb.call("scale", (x, 2.0))       # CallResult: value is a checked tensor / number / ...

Everything that comes back is treated as hostile data (see codec.py). A breach of a limit kills every process
of the sandbox and is recorded as the reason; the caller goes on with the next submission.
Start and use a Sandbox from one long-lived thread: --die-with-parent ties bwrap to the thread that spawned it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from autograder.sandbox import bwrap as bw
from autograder.sandbox import gpus, watchdog, zygote
from autograder.sandbox.calls import Call, CallResult, Reason, SandboxResult, is_call_status
from autograder.sandbox.cgroup import Cgroup
from autograder.sandbox.codec import (
    OutputError,
    as_number,
    as_text,
    encode_call,
    open_dir,
    read_bounded,
    read_call_reply,
    write_call_inputs,
)
from autograder.sandbox.limits import Limits, RunnerConfig, rlimits_for, runner_limits

INSIDE_DIR = Path(__file__).parent / "inside"  # everything that runs next to student code
RUNNER = INSIDE_DIR / "runner.py"
CALLS_DIR = ".sparkgrade-calls"
MAX_LINE = 8 << 20  # longest protocol line we parse
MAX_JUNK = 1 << 20  # bytes of foreign writes on the protocol pipe before we call it an output flood
EXECUTED_NAME = "executed.ipynb"


class _Died(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Sandbox:
    """A sandbox for one submission; see the module docstring."""

    def __init__(
        self,
        notebook: bytes | Path,
        *,
        notebook_name: str = "submission.ipynb",
        files: Mapping[str, bytes | Path] | None = None,
        models_dir: Path | None = None,
        limits: Limits | None = None,
        gpu: int | str | None = None,  # the worker's GPU: a position among the visible GPUs, or a UUID (gpus.py)
        no_sandbox: bool = False,
        warm: bool | None = None,
    ) -> None:
        if "/" in notebook_name or notebook_name.startswith("."):
            raise ValueError(f"bad notebook name {notebook_name!r}")
        self.limits = limits or Limits()
        self.gpu = gpu
        self.no_sandbox = no_sandbox
        self.warm = zygote.enabled() if warm is None else warm  # fork from the warm zygote (CPU sandboxes)
        self._notebook = notebook.read_bytes() if isinstance(notebook, Path) else bytes(notebook)
        self._notebook_name = notebook_name
        self._files = dict(files or {})
        self._models_dir = models_dir.resolve() if models_dir is not None else None
        self._token = secrets.token_hex(16)
        self._root: Path | None = None
        self._work_fd: int | None = None
        self._proc: subprocess.Popen[bytes] | zygote.ZygoteProcess | None = None
        self._cgroup: Cgroup | None = None
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr_tail: deque[bytes] = deque(maxlen=64)
        self._junk = 0
        self._dead: _Died | None = None
        self._alive = False
        self._next_id = 0
        self._host_id: int | None = None  # the host uid that owns the work folder (warm start as root)
        self.result: SandboxResult | None = None
        self.timings: dict[str, float] = {}
        self._watchdog: watchdog.HostMemoryWatchdog | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def work_dir(self) -> Path:
        if self._root is None:
            raise RuntimeError("the sandbox has not started")
        return self._root / "work"

    def _prepare(self) -> None:
        self._root = bw.make_root(self._notebook_name, self._notebook, self._files, CALLS_DIR)
        self._work_fd = open_dir(str(self._root / "work"))

    def _spawn(self) -> None:
        """Start the runner by one of three launch paths: plain (trusted self-tests), warm (a fork of the zygote)
        or cold (bubblewrap). Warm and cold build the same view; a warm start that is unavailable falls back to
        cold."""
        assert self._root is not None
        env = bw.sandbox_env(self.limits.threads, str(bw.sandbox_python().parent))
        if self._models_dir is not None:
            env["SPARKGRADE_MODELS"] = bw.INSIDE_MODELS  # the labs read their models from here
        if self.no_sandbox:
            self._spawn_plain(env)
            return
        bwrap = bw.check_sandbox_available()
        if self._models_dir is not None and bw.sandbox_host_id() is not None and (
                why := bw.open_models_to_others(self._models_dir)) is not None:
            sys.stderr.write(f"sparkgrade: {why}\n")
        mounts = bw.Mounts(work_dir=self._root / "work", etc_dir=self._root / "etc", runner_dir=INSIDE_DIR,
                           python_dirs=bw.python_dirs(), models_dir=self._models_dir)
        self._cgroup = Cgroup.create(self.limits.memory_bytes, self.limits.max_processes, self.limits.cpus)
        self._watchdog = watchdog.watchdog_for(self.limits.host_reserve_bytes, self.gpu is not None, self._starved)
        # Warm: CPU sandboxes on hosts with cgroups (a fork inherits the zygote's address space, so the
        # RLIMIT_AS fallback would count the libraries it shares; such hosts start cold).
        if self.warm and self.gpu is None and self._cgroup is not None and self._spawn_warm(mounts, env):
            return
        self._spawn_cold(mounts, env, bwrap)

    def _starved(self, detail: str) -> None:
        """From the watchdog's thread: kill now (the grader may be busy in a check), report at the next wait."""
        self._dead, self._alive = self._dead or _Died("memory", detail), False
        self._terminate()

    def _spawn_plain(self, env: dict[str, str]) -> None:
        """Trusted self-tests only: the same runner in a plain subprocess, still without the grader's environment."""
        assert self._root is not None
        env = {**env, "HOME": str(self._root / "home"), "JUPYTER_RUNTIME_DIR": str(self._root / "runtime"),
               "IPYTHONDIR": str(self._root / "ipython"), "MPLCONFIGDIR": str(self._root / "mpl"),
               "TMPDIR": str(self._root), "HF_HOME": str(self._root / "hf")}
        if self._models_dir is not None:
            env["SPARKGRADE_MODELS"] = str(self._models_dir)
        self._popen([sys.executable, "-I", str(RUNNER)], env, cwd=str(self._root / "work"))

    def _spawn_cold(self, mounts: bw.Mounts, env: dict[str, str], bwrap: str) -> None:
        """bubblewrap builds the sandbox; with a cgroup, a tiny launcher joins it first and then becomes bwrap, so
        every sandbox process starts inside it."""
        slot = gpus.resolve_slot(self.gpu) if self.gpu is not None else None  # GpuError: the set-up is wrong, stop
        self._host_id = bw.sandbox_host_id()  # a root grader: the sandbox uid maps onto this unprivileged host uid
        root_map = bw.open_root_map(self._host_id, self.work_dir) if self._host_id is not None else None
        argv = bw.build_argv(mounts, env, tmp_bytes=self.limits.tmp_bytes, gpu=slot, bwrap=bwrap, root_map=root_map)
        if self._cgroup is not None:
            files = self._cgroup.procs_files()
            script = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 97; shift; n=$((n-1)); done; '
            script += 'exec "$@"'
            argv = ["/bin/sh", "-c", script, "sh", str(len(files)), *files, *argv]
        self._popen(argv, {"PATH": "/usr/bin:/bin"}, cwd=None, pass_fds=root_map.child_fds if root_map else ())
        if root_map is not None and (failed := bw.release_root_map(root_map, self.limits.startup_s)) is not None:
            self._stderr_tail.append(f"sparkgrade: {failed}\n".encode())  # the wait for the runner's hello reports it
            self._terminate()

    def _popen(self, argv: list[str], env: dict[str, str], cwd: str | None, pass_fds: tuple[int, ...] = ()) -> None:
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=env, cwd=cwd, start_new_session=True, pass_fds=pass_fds)
        self._start_protocol()

    def _spawn_warm(self, mounts: bw.Mounts, env: dict[str, str]) -> bool:
        """Fork the sandbox from the warm zygote; False (start it cold) where the warm start is unavailable."""
        assert self._root is not None
        newroot = self._root / "root"
        newroot.mkdir()
        host_id = bw.sandbox_host_id()
        spec = zygote.sandbox_spec(mounts, env, tmp_bytes=self.limits.tmp_bytes, newroot=newroot,
                                   rlimits=self._rlimits(), host_id=host_id)
        procs = self._cgroup.procs_files() if self._cgroup is not None else []
        self._host_id = host_id
        if host_id is not None:
            bw.give_work_dir(self._root / "work", host_id)
        try:
            self._proc = zygote.get(self.limits.threads).spawn(spec, procs, timeout_s=self.limits.startup_s)
        except (zygote.ZygoteOff, zygote.ZygoteError) as exc:
            if host_id is not None:  # a cold start runs as our own uid: the folder goes back to us
                bw.give_work_dir(self._root / "work", None)
                self._host_id = None
            if isinstance(exc, zygote.ZygoteError):
                zygote.mark_broken(str(exc))  # this host cannot do it: the rest of this process starts cold
                sys.stderr.write(f"sparkgrade: warm start unavailable, starting sandboxes cold: {exc}\n")
            return False
        self.timings["warm_start"] = 1.0
        self._start_protocol()
        return True

    def _start_protocol(self) -> None:
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self._send(self._config())

    def _rlimits(self) -> dict[str, int]:
        return rlimits_for(self.limits, cgroup=self._cgroup is not None, gpu=self.gpu is not None)

    def _config(self) -> RunnerConfig:
        inside = not self.no_sandbox
        quota = self._cgroup is not None and self._cgroup.cpu_quota is not None
        return {"token": self._token, "notebook": self._notebook_name, "executed_name": EXECUTED_NAME,
                "work_dir": bw.INSIDE_WORK if inside else str(self.work_dir),
                "models_dir": bw.INSIDE_MODELS if inside else str(self._models_dir or ""),
                **runner_limits(self.limits, self._rlimits() if inside else {"RLIMIT_CORE": 0}, inside=inside,
                                cgroup=self._cgroup is not None, gpu=self.gpu is not None, cpu_quota=quota)}

    # -- the protocol channel -------------------------------------------------------------------------------------

    def _send(self, msg: Mapping[str, object]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write((json.dumps(msg) + "\n").encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stream = self._proc.stdout
        while True:
            line = stream.readline(MAX_LINE)
            if not line:
                break
            msg: Any = None
            if line.endswith(b"\n"):
                try:
                    msg = json.loads(line)
                except ValueError:
                    msg = None
            # Student code can write into the pipe via /proc/1/fd/1: without our token a line is junk.
            if isinstance(msg, dict) and msg.get("token") == self._token:
                self._lines.put(msg)
            else:
                self._junk += len(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self._proc is not None and isinstance(self._proc.stderr, io.BufferedReader)  # both kinds: buffered
        while chunk := self._proc.stderr.read1(4096):
            self._stderr_tail.append(chunk)

    def stderr_tail(self) -> str:
        return b"".join(self._stderr_tail).decode(errors="replace")[-4096:]

    def _wait_for(self, kind: str, deadline: float, msg_id: int | None = None) -> dict[str, Any]:
        """The next message of ``kind``; raises _Died on a breach, a deadline or the runner's exit."""
        if self._dead is not None:
            raise self._dead
        while True:
            breach = self._cgroup.breach() if self._cgroup is not None else None
            if breach is not None:
                self._kill(breach, f"the sandbox hit its {breach} limit")
            if self._junk > MAX_JUNK:
                self._kill("output", "the sandbox flooded the grader's protocol channel")
            if time.monotonic() > deadline:
                self._kill("timeout", f"no '{kind}' from the sandbox in time")
            try:
                msg = self._lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if msg is None:
                self._lines.put(None)  # stay at end-of-stream for later waits
                reason = self._cgroup.breach() if self._cgroup is not None else None
                self._kill(reason or "crashed", "the sandbox exited" + (f" ({reason} limit)" if reason else ""))
            if msg.get("type") == kind and (msg_id is None or msg.get("id") == msg_id):
                return msg

    def _kill(self, reason: Reason, detail: str) -> NoReturn:
        self._terminate()
        self._alive = False
        self._dead = self._dead or _Died(reason, detail)  # a watchdog's kill keeps its reason, not "crashed"
        raise self._dead

    def _terminate(self) -> None:
        if self._cgroup is not None:
            self._cgroup.kill()
        if self._proc is not None and self._proc.poll() is None:
            if isinstance(self._proc, zygote.ZygoteProcess):
                self._proc.kill()  # the warm sandbox's pid-namespace init dies, taking every process along
            else:
                try:
                    os.killpg(self._proc.pid, 9)  # bwrap's pid-namespace init dies, taking every process along
                except ProcessLookupError:
                    pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    # -- running the notebook --------------------------------------------------------------------------------

    def run(self) -> SandboxResult:
        """Start the sandbox and run every cell; returns how it went (also kept as ``self.result``)."""
        if self.result is not None:
            return self.result
        spawn = time.monotonic()
        self._prepare()
        self._spawn()
        lim = self.limits
        start_s = run_s = 0.0
        cells = 0
        reason: Reason | None = None
        detail = ""
        try:
            self._wait_for("hello", spawn + lim.startup_s)
            self.timings["runner_up_s"] = time.monotonic() - spawn
            ready = self._wait_for("kernel_ready", spawn + lim.startup_s)
            start_s = time.monotonic() - spawn
            self.timings["kernel_start_s"] = as_number(ready.get("kernel_start_s"))
            t_run = time.monotonic()
            done = self._wait_for("executed", t_run + lim.notebook_s + lim.interrupt_grace_s + 10)
            run_s = time.monotonic() - t_run
            cells = int(as_number(done.get("cells_executed")))
            reported = done.get("reason")
            reason = reported if reported in ("timeout", "memory", "processes", "output", "crashed") else None
            detail = str(done.get("detail") or "")[:2000]
            self._alive = bool(done.get("alive")) and reason not in ("memory", "processes", "crashed")
            breach = self._cgroup.breach() if self._cgroup is not None else None
            if breach is not None:
                self._kill(breach, f"the sandbox hit its {breach} limit")
            if not self._alive and reason is None:
                reason, detail = "crashed", detail or "the kernel is no longer alive"
        except _Died as died:
            reason, detail = died.reason, died.detail
            if start_s == 0.0:
                start_s = time.monotonic() - spawn
            else:
                run_s = time.monotonic() - spawn - start_s
        notebook = self._read_executed()
        if notebook is None and reason is None:
            reason, detail = "output", "the executed notebook is missing or over the size limit"
        self.result = SandboxResult(
            status="ok" if reason is None else "failed",
            reason=reason,
            detail=detail,
            notebook=notebook,
            start_s=start_s,
            run_s=run_s,
            alive=self._alive,
            sandboxed=not self.no_sandbox,
            cells_executed=cells,
            notebook_path=self.work_dir / EXECUTED_NAME,
        )
        return self.result

    def _read_executed(self) -> bytes | None:
        assert self._work_fd is not None
        limit = len(self._notebook) + 4 * (1 << 20) + self.limits.cell_output_bytes * 256
        try:
            return read_bounded(self._work_fd, EXECUTED_NAME, min(limit, self.limits.file_bytes))
        except OutputError:
            return None

    # -- calls ---------------------------------------------------------------------------------------------------

    def call(
        self,
        function: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        device: str | None = None,
        forbid: Sequence[str] = (),
    ) -> CallResult:
        """Call the student's ``function(*args, **kwargs)`` inside the kernel; ``forbid``: see CallResult.forbidden."""
        return self.call_many([Call(function, tuple(args), dict(kwargs or {}), timeout_s, device, tuple(forbid))])[0]

    def call_many(self, calls: Sequence[Call]) -> list[CallResult]:
        """Several calls in one round trip, run in order; a call that kills the kernel fails the rest."""
        if self.result is None:
            self.run()
        sandboxed = not self.no_sandbox
        if not self._alive or self._dead is not None:
            why = self._dead.detail if self._dead is not None else (self.result.detail if self.result else "")
            return [CallResult("died", error=f"the sandbox is not running: {why}", sandboxed=sandboxed) for _ in calls]
        assert self._work_fd is not None
        requests = []
        prepared: list[tuple[str, CallResult | None]] = []
        total_timeout = 0.0
        for call in calls:
            call_id = secrets.token_hex(12)
            try:
                spec, tensors = encode_call(call.args, call.kwargs, call.device, call.forbid)
            except (TypeError, ValueError) as exc:
                prepared.append((call_id, CallResult("error", error=f"bad call: {exc}", sandboxed=sandboxed)))
                continue
            try:
                write_call_inputs(self._work_fd, CALLS_DIR, call_id, spec, tensors, owner=self._host_id)
            except OSError as exc:  # student code replaced the call folder (a link, a file): its own doing
                why = f"the submission removed or replaced the grader's call folder ({exc.strerror})"
                prepared.append((call_id, CallResult("error", error=why, sandboxed=sandboxed)))
                continue
            timeout = float(call.timeout_s or self.limits.call_s)
            total_timeout += timeout + self.limits.interrupt_grace_s
            inside = bw.INSIDE_WORK if sandboxed else str(self.work_dir)
            requests.append(
                {"function": call.function, "dir": f"{inside}/{CALLS_DIR}/{call_id}", "timeout_s": timeout}
            )
            prepared.append((call_id, None))
        replies: list[Any] = []
        if requests:
            self._next_id += 1
            msg_id = self._next_id
            self._send({"op": "calls", "id": msg_id, "calls": requests})
            try:
                answer = self._wait_for("calls", time.monotonic() + total_timeout + 10, msg_id)
                listed = answer.get("results")
                replies = listed if isinstance(listed, list) else []
                if not answer.get("alive", False):
                    self._alive = False
            except _Died as died:
                replies = []
                failed = "timeout" if died.reason == "timeout" else "died"
                detail = f"the sandbox was stopped: {died.detail}"
                replies = [{"status": failed, "error": detail}] * len(requests)
        results: list[CallResult] = []
        it = iter(replies)
        for call_id, early in prepared:
            if early is not None:
                results.append(early)
                continue
            reply = next(it, {"status": "died", "error": "no reply from the sandbox"})
            results.append(self._collect(call_id, reply if isinstance(reply, dict) else {}))
        return results

    def _collect(self, call_id: str, reply: dict[str, Any]) -> CallResult:
        status = reply.get("status")
        text = self.limits.call_text_bytes
        common = CallResult("died", error=as_text(reply.get("error"), 2000) or None, sandboxed=not self.no_sandbox,
                            round_trip_s=as_number(reply.get("round_trip_s")),
                            stdout=as_text(reply.get("stdout"), text), stderr=as_text(reply.get("stderr"), text))
        if status != "ok":
            return dataclasses.replace(common, status=status if is_call_status(status) else "died")
        assert self._work_fd is not None
        limit = self.limits.call_output_bytes
        try:
            value, wall_s, forbidden = read_call_reply(self._work_fd, CALLS_DIR, call_id, limit)
        except (OutputError, OSError) as exc:
            return dataclasses.replace(common, status="error", error=f"rejected output: {exc}")
        return dataclasses.replace(common, status="ok", value=value, wall_s=wall_s, forbidden=forbidden)

    # -- teardown ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the runner (politely, then by force), remove the cgroup and the work folder."""
        if self._watchdog is not None:
            self._watchdog.stop()
        if self._proc is not None:
            if self._proc.poll() is None and self._dead is None:
                self._send({"op": "close"})
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            self._terminate()
            for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
            self._proc = None
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None
        if self._work_fd is not None:
            os.close(self._work_fd)
            self._work_fd = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
        self._alive = False
