"""The sandbox runner: the only sparkgrade code that runs next to student code.

It is mounted read-only into the sandbox (this folder, at /run/sparkgrade) and started as
``python -I runner.py``; the call harness it runs in the kernel is harness.py beside it. It must stay self-contained
(stdlib, nbformat, nbclient, jupyter_client; torch, safetensors and transformers only inside the kernel): the
project's own packages are not visible in here, by design.

Protocol (JSON lines, one object per line):
- trusted -> runner on stdin: first a config object, then requests ``{"op": "calls", "id": N, "calls": [...]}``
  and finally ``{"op": "close"}``.
- runner -> trusted on stdout: ``hello``, ``kernel_ready``, ``executed`` and ``calls`` messages, each carrying the
  session token from the config so a stray write from student code is recognisable as junk.
Student output never reaches stdout: fds 0-2 are pointed at /dev/null before the kernel starts and the kernel
prints into the notebook through its iopub channel. Everything this runner says is still untrusted on the
other side: student code shares its uid.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

# nbformat validates through jsonschema, whose optional IRI format checker (rfc3987_syntax, installed for
# jupyter-events) builds a grammar at import: 2 CPU-seconds per sandbox, for a check no notebook schema uses.
# jsonschema imports it under suppress(ImportError); a None entry makes that import fail fast.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None: the documented "import fails"

MAX_REQUEST_BYTES = 1 << 20
ERROR_CHARS = 2000
TRUNCATION_NOTE = "\n[sparkgrade: output truncated: this cell printed more than {limit} bytes]\n"

# Runs inside the student's kernel for each call: harness.py, executed from its text in a fresh namespace (not the
# student's globals), then called once. Read at import (in the zygote: before any fork).
HARNESS = (Path(__file__).with_name("harness.py").read_text(encoding="utf-8")
           + "\n\n_sparkgrade_call(_ns, _call_dir, _function, _models_dir)\n")


def _make_undumpable() -> None:
    # Security: a non-dumpable runner cannot be ptraced and its /proc/<pid>/{fd,mem,environ} are unreadable to
    # student code running under the same uid, so the protocol pipes and the session token stay private.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def _set_rlimits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        which = getattr(resource, name)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            _, hard = resource.getrlimit(which)
            resource.setrlimit(which, (min(value, hard) if hard >= 0 else value, hard))


class Channel:
    """JSON lines on private duplicates of fds 0 and 1; the originals are pointed at /dev/null."""

    def __init__(self) -> None:
        self._in = os.fdopen(os.dup(0), "rb")
        self._out = os.dup(1)
        self._log = os.dup(2)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        self.token = ""

    def recv(self) -> dict[str, Any] | None:
        line = self._in.readline(MAX_REQUEST_BYTES)
        if not line:
            return None
        msg = json.loads(line)
        return msg if isinstance(msg, dict) else None

    def send(self, msg: dict[str, Any]) -> None:
        data = (json.dumps({**msg, "token": self.token}) + "\n").encode()
        while data:
            data = data[os.write(self._out, data) :]

    def log(self, text: str) -> None:
        try:
            os.write(self._log, (text.rstrip() + "\n").encode(errors="replace")[:4096])
        except OSError:
            pass


def _bounded_client_class() -> type:
    from nbclient import NotebookClient
    from nbformat.v4 import new_output

    class BoundedClient(NotebookClient):
        """nbclient that keeps at most ``cell_output_bytes`` of outputs per cell (an output flood stays small)."""

        sg_limit: int
        sg_used: dict[int, int]  # output bytes per cell index

        def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
            limit = self.sg_limit
            used = self.sg_used.get(cell_index, 0)
            if used > limit:
                return None
            out = super().output(outs, msg, display_id, cell_index)
            if out is None:
                return None
            size = len(json.dumps(out, default=str))
            if used + size > limit:
                if outs and outs[-1] is out:
                    outs.pop()
                if out.get("output_type") == "stream":
                    out["text"] = str(out.get("text", ""))[: max(0, limit - used)]
                    outs.append(out)
                note = TRUNCATION_NOTE.format(limit=limit)
                outs.append(new_output("stream", name="stderr", text=note))
                self.sg_used[cell_index] = limit + 1
                return None
            self.sg_used[cell_index] = used + size
            return out

    return BoundedClient


def _error_text(content: dict[str, Any]) -> str:
    return f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"[:ERROR_CHARS]


def _scan_fallback_reason(nb: Any) -> str | None:
    """Without a cgroup, a breached rlimit shows up as an exception in a cell: name the limit it hit."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            if out.get("ename") == "MemoryError":
                return "memory"
            if out.get("ename") == "BlockingIOError" and "fork" in "".join(out.get("traceback", [])):
                return "processes"
    return None


KERNEL_PORTS = (50101, 50102, 50103, 50104, 50105)  # the sandbox has a loopback of its own: all ports are free


class _ForkedKernel:
    """The Popen-like handle jupyter_client's LocalProvisioner expects, for a kernel this runner forked."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -9
            else:
                if done:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                import subprocess

                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(9)

    def terminate(self) -> None:
        self.send_signal(15)


def warm() -> None:
    """In the zygote, before any fork: import what the runner and the kernel need, so no sandbox imports them."""
    import ipykernel.ipkernel
    import ipykernel.kernelapp  # noqa: F401
    import jupyter_client.manager
    import jupyter_client.provisioning.local_provisioner
    import nbformat  # noqa: F401
    from nbclient.exceptions import CellTimeoutError  # noqa: F401

    _bounded_client_class()
    jupyter_client.manager.AsyncKernelManager().kernel_spec  # noqa: B018  # the kernelspec lookup, once


def fork_kernel(work: str) -> dict[str, Any]:
    """Start the kernel by forking this (warm) process, as pid 2 next to the runner; returns how to reach it.

    Called before the runner reads its config, so the kernel's memory never holds the session token.
    """
    import secrets

    runtime = os.environ.get("JUPYTER_RUNTIME_DIR", "/tmp")
    os.makedirs(runtime, exist_ok=True)
    conn = os.path.join(runtime, "kernel-sandbox.json")
    names = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
    info = {"transport": "tcp", "ip": "127.0.0.1", "key": secrets.token_hex(32), "signature_scheme": "hmac-sha256",
            "kernel_name": "python3", **dict(zip(names, KERNEL_PORTS, strict=True))}
    with open(conn, "w", encoding="utf-8") as f:
        json.dump(info, f)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.closerange(3, 1 << 16)
            ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # dumpable again, as after exec: it is the student's process
            os.chdir(work)
            argv = ["-f", conn, "--HistoryManager.hist_file=:memory:"]  # as nbclient starts its kernels
            sys.argv = ["ipykernel_launcher", *argv]
            from ipykernel.kernelapp import IPKernelApp

            IPKernelApp.launch_instance(argv=argv)
        finally:
            os._exit(1)
    return {"pid": pid, "connection_file": conn}


def _adopt_kernel(kernel: dict[str, Any]) -> Any:
    """A kernel manager for the forked kernel, so nbclient drives it exactly as one it started itself."""
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_client.provisioning.local_provisioner import LocalProvisioner

    km = AsyncKernelManager(connection_file=kernel["connection_file"], kernel_name="python3")
    km.load_connection_file()
    prov = LocalProvisioner(kernel_id="sandbox", kernel_spec=km.kernel_spec, parent=km)
    prov.process = _ForkedKernel(kernel["pid"])  # type: ignore[assignment]  # duck-typed: the Popen calls it makes
    prov.pid = prov.pgid = kernel["pid"]
    prov.connection_info = km.get_connection_info()
    km.provisioner = prov
    return km


def execute_notebook(
    chan: Channel, cfg: dict[str, Any], kernel: dict[str, Any] | None = None
) -> tuple[Any, str | None, str]:
    """Run every code cell; returns (client with a live kernel or None, reason, detail)."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    work = cfg["work_dir"]
    nb_path = os.path.join(work, cfg["notebook"])
    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception as exc:
        return None, "crashed", f"the notebook cannot be read: {type(exc).__name__}: {exc}"[:ERROR_CHARS]
    client = _bounded_client_class()(
        nb,
        km=_adopt_kernel(kernel) if kernel is not None else None,
        kernel_name="python3",
        allow_errors=True,
        startup_timeout=cfg["startup_timeout_s"],
        record_timing=True,
        resources={"metadata": {"path": work}},
        shutdown_kernel="immediate",
    )
    client.sg_limit = cfg["cell_output_bytes"]
    client.sg_used = {}
    reason: str | None = None
    detail = ""
    start = time.monotonic()
    deadline = start + cfg["notebook_timeout_s"]
    try:
        cm = client.setup_kernel(cwd=work, cleanup_kc=False)
        cm.__enter__()
    except Exception as exc:
        return None, "crashed", f"the kernel did not start: {type(exc).__name__}: {exc}"[:ERROR_CHARS]
    chan.send({"type": "kernel_ready", "kernel_start_s": time.monotonic() - start})
    run_start = time.monotonic()
    executed = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            reason, detail = "timeout", f"the notebook ran past {cfg['notebook_timeout_s']:.0f} s"
            break
        client.timeout = max(1, int(remaining))
        try:
            client.execute_cell(cell, index, execution_count=executed + 1)
            executed += 1
        except CellTimeoutError:
            # A breach ends the run: the kernel may ignore the interrupt, so it serves no calls afterwards.
            reason = "timeout"
            detail = f"cell {index} was still running when the notebook's {cfg['notebook_timeout_s']:.0f} s ran out"
            break
        except DeadKernelError:
            reason, detail = "crashed", f"the kernel died while running cell {index}"
            break
        except Exception as exc:
            reason, detail = "crashed", f"cell {index}: {type(exc).__name__}: {exc}"[:ERROR_CHARS]
            break
    if reason is None and not cfg.get("limits_by_cgroup", True):
        fallback = _scan_fallback_reason(nb)
        if fallback:
            reason, detail = fallback, f"a cell hit the {fallback} limit"
    try:
        nbformat.write(nb, os.path.join(work, cfg["executed_name"]))
    except Exception as exc:
        chan.log(f"cannot write the executed notebook: {exc}")
    chan.send(
        {
            "type": "executed",
            "reason": reason,
            "detail": detail,
            "run_s": time.monotonic() - run_start,
            "cells_executed": executed,
            "alive": reason is None and _alive(client),
        }
    )
    return client, reason, detail


def _alive(client: Any) -> bool:
    from jupyter_core.utils import run_sync

    try:
        return bool(client.km is not None and run_sync(client.km.is_alive)())
    except Exception:
        return False


def _interrupt(client: Any) -> None:
    from jupyter_core.utils import run_sync

    with contextlib.suppress(Exception):
        run_sync(client.km.interrupt_kernel)()


class _Excerpt:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.cut = False

    def add(self, text: str) -> None:
        room = max(self.limit - self.size, 0)
        self.parts.append(text[:room])
        self.size += min(len(text), room)
        self.cut = self.cut or len(text) > room

    def text(self) -> str:
        return "".join(self.parts) + ("\n[truncated]" if self.cut else "")


def run_call(kc: Any, client: Any, call: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """Execute one call through the kernel; status ok | error | timeout | died."""
    from queue import Empty

    code = (
        f"exec({HARNESS!r}, {{'__name__': '_sparkgrade_harness', '_ns': globals(), "
        f"'_call_dir': {call['dir']!r}, '_function': {call['function']!r}, '_models_dir': {cfg['models_dir']!r}}})"
    )
    stdout, stderr = _Excerpt(cfg["call_text_bytes"]), _Excerpt(cfg["call_text_bytes"])
    start = time.monotonic()
    deadline = start + float(call["timeout_s"])
    msg_id = kc.execute(code, silent=False, store_history=False, allow_stdin=False)
    reply: dict[str, Any] | None = None
    idle = False
    status = "ok"
    error = None
    interrupted_at: float | None = None
    while reply is None or not idle:
        now = time.monotonic()
        if interrupted_at is None and now > deadline:
            _interrupt(client)
            interrupted_at = now
            status, error = "timeout", f"the call ran past {float(call['timeout_s']):.1f} s"
        if interrupted_at is not None and now > interrupted_at + cfg["interrupt_grace_s"]:
            return _call_reply("timeout", error, stdout, stderr, now - start, kernel_dead=True)
        try:
            msg = kc.get_iopub_msg(timeout=0.05)
            if msg["parent_header"].get("msg_id") == msg_id:
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    (stdout if content.get("name") == "stdout" else stderr).add(content.get("text", ""))
                elif kind == "status" and content.get("execution_state") == "idle":
                    idle = True
        except Empty:
            pass
        if reply is None:
            try:
                msg = kc.get_shell_msg(timeout=0)
                if msg["parent_header"].get("msg_id") == msg_id:
                    reply = msg["content"]
            except Empty:
                pass
        if reply is None and not _alive(client):
            return _call_reply("died", "the kernel died during the call", stdout, stderr, now - start, True)
    if status == "ok" and reply.get("status") != "ok":
        status, error = "error", _error_text(reply)
    return _call_reply(status, error, stdout, stderr, time.monotonic() - start, False)


def _call_reply(
    status: str, error: str | None, stdout: _Excerpt, stderr: _Excerpt, wall: float, kernel_dead: bool
) -> dict[str, Any]:
    return {
        "status": status,
        "error": error,
        "stdout": stdout.text(),
        "stderr": stderr.text(),
        "round_trip_s": wall,
        "kernel_dead": kernel_dead,
    }


def serve_calls(chan: Channel, client: Any, cfg: dict[str, Any]) -> None:
    from jupyter_client.blocking.client import BlockingKernelClient

    kc = BlockingKernelClient()
    kc.load_connection_info(client.km.get_connection_info())
    kc.start_channels()
    kc.wait_for_ready(timeout=cfg["startup_timeout_s"])
    dead = False
    while True:
        msg = chan.recv()
        if msg is None or msg.get("op") == "close":
            return
        if msg.get("op") != "calls":
            continue
        results = []
        for call in msg.get("calls", []):
            if dead:
                results.append(_call_reply("died", "the kernel died earlier", _Excerpt(0), _Excerpt(0), 0.0, True))
                continue
            result = run_call(kc, client, call, cfg)
            dead = result["kernel_dead"]
            results.append(result)
        chan.send({"type": "calls", "id": msg.get("id"), "results": results, "alive": not dead})
        if dead:
            return


def install_cuda_cap(cfg: dict[str, Any]) -> None:
    """cuda_cap.py into the kernel's IPython startup folder when the grader asked for a cap (GPU sandboxes)."""
    limit, ipython_dir = int(cfg.get("cuda_memory_bytes") or 0), os.environ.get("IPYTHONDIR")
    if limit > 0 and ipython_dir:
        os.environ["SPARKGRADE_CUDA_MEMORY_BYTES"] = str(limit)  # the kernel inherits it; cuda_cap.py removes it
        (startup := Path(ipython_dir) / "profile_default" / "startup").mkdir(parents=True, exist_ok=True)
        (startup / "00-sparkgrade-cuda-cap.py").write_text(Path(__file__).with_name("cuda_cap.py").read_text())


def main(kernel: dict[str, Any] | None = None) -> int:
    """``kernel``: one already forked by the zygote (fork_kernel); None starts one the usual way."""
    chan = Channel()
    cfg = chan.recv()
    if cfg is None:
        return 2
    chan.token = str(cfg["token"])
    _make_undumpable()
    _set_rlimits(cfg.get("rlimits", {}))
    nice = cfg.get("nice", 0)
    if isinstance(nice, int) and 0 < nice <= 19:
        os.nice(nice)  # no CPU quota on this host: yield to the other workers (the kernel started below inherits it)
    for key in ("HOME", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
        if os.environ.get(key):
            os.makedirs(os.environ[key], exist_ok=True)
    install_cuda_cap(cfg)  # before the kernel starts: it runs the startup folder before any cell
    chan.send({"type": "hello", "pid": os.getpid()})
    client, _reason, _detail = execute_notebook(chan, cfg, kernel)
    if client is None:
        chan.send({"type": "executed", "reason": _reason, "detail": _detail, "run_s": 0.0, "alive": False})
        return 0
    try:
        if _reason is None and _alive(client):
            serve_calls(chan, client, cfg)
    finally:
        with contextlib.suppress(Exception):
            client._cleanup_kernel()
    return 0


if __name__ == "__main__":
    sys.exit(main())
