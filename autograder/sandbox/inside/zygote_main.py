"""The warm start: a trusted process that imports the kernel's libraries once and forks a sandbox per submission.

Started by the grader as ``python -I zygote_main.py`` with a clean environment and one Unix socket on fd 3. It
imports torch, transformers, matplotlib, pandas, ipykernel and the sandbox runner (runner.py), runs no tensor op
(no OpenMP pool, no CUDA context; the one other thread is OpenBLAS's idle pool, which re-forms itself after a fork
through its own pthread_atfork handlers), and then only forks. It never runs student code.

Per request (a JSON spec plus the submission's stdin/stdout/stderr pipes and a control socket, passed as fds):

    zygote --fork--> C1: new user (uid 65534, one id mapped: ours, or an unprivileged host uid when we are root),
        mount, pid, net, ipc and uts namespaces
        C1 --fork--> C2 = pid 1 of the new pid namespace: sends its credentials on the control socket (the grader
            reads its host pid, puts it in the submission's cgroup) and waits for "go"; then builds the same view
            bubblewrap builds (../bwrap.py): a tmpfs root with /usr, the Python dirs and the lab's models read-only,
            /submission read-write, a private /tmp, /dev/shm, /dev and a /proc of its own; pivot_root; loopback up;
            no further user namespaces; every capability dropped; no_new_privs; a session of its own.
        C2 --fork--> K, the ipykernel (before the runner has read its session token), and C2 runs runner.main().

Isolation is bubblewrap's: each sandbox sees only its own processes, folders and loopback. What is shared is the
zygote's memory image at fork time: imported library code, copy-on-write.
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib.util
import json
import os
import platform
import signal
import socket
import struct
import sys
import traceback
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP = 0x02000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME = 1 << 18, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 4, 24, 38, 47
SYSCALLS = {"x86_64": {"pivot_root": 155, "capset": 126}, "aarch64": {"pivot_root": 41, "capset": 91}}
SANDBOX_UID = 65534
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
PROC_COVERS = ("sys", "sysrq-trigger", "irq", "bus")  # read-only inside, as bwrap leaves them

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.syscall.restype = ctypes.c_long


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if v is None else v.encode() for v in (source, target, fstype, data)]
    _check(libc.mount(enc[0], enc[1], enc[2], flags, enc[3]), f"mount {source} on {target}")


def _prctl(option: int, arg: int) -> None:
    _check(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def _locked_flags(path: str) -> int:
    """The flags a read-only remount of a bind of ``path`` must keep (inside a user namespace they are locked)."""
    f = os.statvfs(path).f_flag
    flags = 0
    for st, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                   (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)):
        if f & st:
            flags |= ms
    return flags


def _bind(source: str, target: str, *, readonly: bool, is_dir: bool = True) -> None:
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            with open(target, "w"):
                pass
    _mount(source, target, None, MS_BIND | MS_REC)
    if readonly:
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | _locked_flags(target))


def _tmpfs(target: str, size: int, mode: str = "1777") -> None:
    os.makedirs(target, exist_ok=True)
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode={mode}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _enter_namespaces(host_id: int | None) -> None:
    """C1: a user namespace with one id, and fresh mount/pid/net/ipc/uts namespaces.

    The sandbox uid maps onto ours, or, when the grader runs as root, onto ``host_id``, an unprivileged host uid:
    the sandbox must not be host root. Only a process in the parent namespace may write a map that names another
    host uid, so a helper forked before the unshare writes it. That map also keeps 0 -> 0 for the set-up alone:
    C2 builds the view as root (an unmapped uid cannot create the mount points, EOVERFLOW, and the bind mounts may
    come from folders only root can traverse, a Python under /root), then becomes the sandbox uid and drops every
    capability (_drop_privileges) before anything else runs; with no_new_privs, an empty bounding set and nosuid
    mounts nothing inside can become uid 0 again."""
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if host_id is None:
        uid, gid = os.geteuid(), os.getegid()
        _check(libc.unshare(flags), "unshare")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{SANDBOX_UID} {uid} 1\n")
        _write("/proc/self/gid_map", f"{SANDBOX_UID} {gid} 1\n")
        return
    ready, go = os.pipe()
    helper = os.fork()
    if helper == 0:  # still in the parent user namespace
        code = 1
        try:
            os.close(go)
            if os.read(ready, 1) == b"u":
                c1 = os.getppid()
                _write(f"/proc/{c1}/setgroups", "deny")
                _write(f"/proc/{c1}/uid_map", f"0 0 1\n{SANDBOX_UID} {host_id} 1\n")
                _write(f"/proc/{c1}/gid_map", f"0 0 1\n{SANDBOX_UID} {host_id} 1\n")
                code = 0
        finally:
            os._exit(code)
    os.close(ready)
    try:
        _check(libc.unshare(flags), "unshare")
        os.write(go, b"u")
    finally:
        os.close(go)
    _, status = os.waitpid(helper, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(f"could not map the sandbox uid onto host uid {host_id}")


def _build_root(spec: dict[str, Any]) -> None:
    """C2 (pid 1 of the new pid namespace): the sandbox's file system, as bwrap.build_argv lays it out."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    new = spec["newroot"]
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    r = new.rstrip("/")
    _bind("/usr", r + "/usr", readonly=True)
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            os.symlink(os.readlink(top), r + top)
        elif os.path.isdir(top):
            _bind(top, r + top, readonly=True)
    # /proc of our own pid namespace, with bwrap's read-only covers.
    os.makedirs(r + "/proc")
    _mount("proc", r + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # No user namespaces below this one (less kernel surface, as bwrap --disable-userns); before /proc/sys goes
    # read-only. The limit belongs to our user namespace: only its root may change it, and it drops its caps.
    _write(r + "/proc/sys/user/max_user_namespaces", "0")
    for name in PROC_COVERS:
        p = f"{r}/proc/{name}"
        if os.path.exists(p):
            _bind(p, p, readonly=True, is_dir=os.path.isdir(p))
    # /dev: the harmless character devices, a devpts of our own, /dev/shm.
    _tmpfs(r + "/dev", 1 << 20, "0755")
    for dev in DEVICES:
        if os.path.exists(f"/dev/{dev}"):
            _bind(f"/dev/{dev}", f"{r}/dev/{dev}", readonly=False, is_dir=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")):
        os.symlink(target, f"{r}/dev/{name}")
    os.makedirs(r + "/dev/pts")
    try:
        _mount("devpts", r + "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    except OSError:
        pass
    _tmpfs(r + "/tmp", int(spec["tmp_bytes"]))
    _tmpfs(r + "/dev/shm", min(int(spec["tmp_bytes"]), 64 << 20))
    for name in ("passwd", "group", "hosts"):
        _bind(os.path.join(spec["etc_dir"], name), f"{r}/etc/{name}", readonly=True, is_dir=False)
    for path in spec["etc_from_host"]:
        if os.path.exists(path):
            _bind(path, r + path, readonly=True, is_dir=os.path.isdir(path))
    for d in spec["python_dirs"]:
        _bind(d, r + d, readonly=True)
    if spec.get("models_dir"):
        _bind(spec["models_dir"], r + spec["inside_models"], readonly=True)
    _bind(spec["work_dir"], r + spec["inside_work"], readonly=False)
    os.chdir(new)
    _check(libc.syscall(SYSCALLS[platform.machine()]["pivot_root"], b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "umount the old root")
    os.chdir("/")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(spec["inside_work"])


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0))  # SIOCGIFFLAGS
        flags = struct.unpack("16sH22x", ifr)[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))  # SIOCSIFFLAGS |= IFF_UP


def _drop_privileges(become: int | None = None) -> None:
    """No capabilities, no new privileges; with ``become``, that uid and gid first (needs CAP_SETUID, which the
    capability bounding set drop below leaves in the effective set until capset clears it)."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    if become is not None:
        os.setresgid(become, become, become)
        os.setresuid(become, become, become)
    libc.prctl(PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = ctypes.create_string_buffer(24)  # two all-zero {effective, permitted, inheritable}
    _check(libc.syscall(SYSCALLS[platform.machine()]["capset"], header, data), "capset")


def _reseed() -> None:
    """Forked children share the zygote's random state: give each its own (random reseeds itself at fork)."""
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(int.from_bytes(os.urandom(4), "little"))


def _sandbox_child(spec: dict[str, Any], fds: list[int], inner: Any) -> int:
    """C2: pid 1 of the sandbox. Returns the runner's exit status."""
    stdin, stdout, stderr, ctl = fds
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_DUMPABLE, 0)
    sock = socket.socket(fileno=ctl)
    # The grader reads our host pid from these credentials (for the cgroup and the kill), then says go.
    sock.send(b"c")  # the grader's end has SO_PASSCRED: the kernel attaches our pid, in its pid namespace
    if sock.recv(1) != b"g":
        return 3
    _check(libc.unshare(CLONE_NEWCGROUP), "unshare the cgroup namespace")  # now inside the submission's cgroup
    _build_root(spec)
    socket.sethostname("sandbox")
    _loopback_up()
    _drop_privileges(SANDBOX_UID if spec.get("host_id") is not None else None)
    os.setsid()
    sock.send(b"r")  # set up: from here on a failure is the submission's, not the grader's
    sock.close()
    os.environ.clear()
    os.environ.update(spec["env"])
    inner._set_rlimits(spec["rlimits"])
    for key in ("HOME", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
        os.makedirs(os.environ[key], exist_ok=True)
    for i, fd in enumerate((stdin, stdout, stderr)):
        os.dup2(fd, i)
        os.close(fd)
    _reseed()
    kernel = inner.fork_kernel(spec["inside_work"])  # before the runner reads its token: the kernel never has it
    return int(inner.main(kernel=kernel))


def _serve_one(spec: dict[str, Any], fds: list[int], inner: Any) -> None:
    """C1: enter the namespaces, fork pid 1, wait for it, exit with its status."""
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        _prctl(PR_SET_DUMPABLE, 0)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        host_id = spec.get("host_id")
        _enter_namespaces(int(host_id) if host_id is not None else None)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _sandbox_child(spec, fds, inner)
            except BaseException:
                try:
                    os.write(fds[2], traceback.format_exc().encode()[-4000:])
                except OSError:
                    pass
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    except BaseException:
        try:
            os.write(fds[2], traceback.format_exc().encode()[-4000:])
        except OSError:
            pass
        os._exit(1)


def _load_runner() -> Any:
    spec = importlib.util.spec_from_file_location("sparkgrade_runner", Path(__file__).with_name("runner.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _warm(modules: list[str]) -> list[str]:
    """Import what the labs' kernels import; what fails to import is simply left to the notebook."""
    failed = []
    for name in modules:
        try:
            __import__(name)
        except Exception:
            failed.append(name)
    return failed


def main() -> int:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_DUMPABLE, 0)
    sock = socket.socket(fileno=int(sys.argv[1]))
    config = json.loads(sock.recv(1 << 20))
    runner = _load_runner()  # first: importing it keeps jsonschema's IRI grammar out (see runner.py)
    failed = _warm(config.get("modules", []))
    runner.warm()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the C1s reap themselves
    sock.sendall(json.dumps({"ready": True, "pid": os.getpid(), "failed": failed}).encode() + b"\n")
    while True:
        fds: list[int] = []
        try:
            msg, anc, _flags, _addr = sock.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 4))
        except InterruptedError:
            continue
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += list(struct.unpack(f"{len(data) // 4}i", data[: len(data) - len(data) % 4]))
        if not msg:
            return 0
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            continue
        spec = json.loads(msg)
        if os.fork() == 0:
            sock.close()
            _serve_one(spec, fds, runner)
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
