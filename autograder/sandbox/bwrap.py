"""The bubblewrap command line for one sandbox, and the check that bubblewrap works on this host.

`build_argv` is a pure function of its inputs so the mount table can be read and unit-tested without a GPU.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import select
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from autograder.errors import UserError
from autograder.sandbox.gpus import MIG_CAPS_DIR, GpuSlot

INSIDE_WORK = "/submission"
INSIDE_MODELS = "/lab/models"
INSIDE_RUNNER_DIR = "/run/sparkgrade"
INSIDE_RUNNER = f"{INSIDE_RUNNER_DIR}/runner.py"
SANDBOX_UID = 65534  # nobody
# The host uid a warm sandbox's uid maps onto when the grader runs as root (it would be host root otherwise):
# nobody's, unless SPARKGRADE_SANDBOX_HOST_UID names another unprivileged uid (never 0).
DEFAULT_HOST_ID = 65534


def sandbox_host_id() -> int | None:
    """The unprivileged host uid (and gid) of a sandbox, or None when the grader is not root: an unprivileged
    grader can map the sandbox only onto its own uid, which is then already nobody special on the host."""
    if os.geteuid() != 0:
        return None
    try:
        uid = int(os.environ.get("SPARKGRADE_SANDBOX_HOST_UID", DEFAULT_HOST_ID))
    except ValueError:
        uid = DEFAULT_HOST_ID
    return uid if uid > 0 else DEFAULT_HOST_ID


@dataclass(frozen=True)
class RootMap:
    """A cold start by a root grader. bubblewrap run by root would map the sandbox uid onto root, and run by an
    unprivileged uid it could not reach a Python or venv under a folder only root can traverse (/root). So bwrap
    stays root for the set-up and waits on ``block_fd``; the grader writes the new user namespace's map itself
    (0 -> 0 for that set-up, sandbox uid -> ``host_id``, unprivileged), and the command is setpriv, which becomes the
    sandbox uid with no capabilities left (bwrap keeps only CAP_SETUID, CAP_SETGID, CAP_SETPCAP and
    CAP_DAC_READ_SEARCH for it) and no new privileges before Python starts. bwrap cannot combine --disable-userns
    with --userns-block-fd: the seccomp program on ``seccomp_fd`` refuses nested user namespaces instead."""

    host_id: int
    block_fd: int  # bwrap reads one byte here once the map is written
    info_fd: int  # bwrap writes {"child-pid": ...} here
    seccomp_fd: int  # a BPF program (seccomp_no_userns), read once by bwrap
    block_w: int = -1  # the grader's ends of block_fd and info_fd
    info_r: int = -1

    @property
    def child_fds(self) -> tuple[int, ...]:
        return self.block_fd, self.info_fd, self.seccomp_fd


def seccomp_no_userns(machine: str | None = None) -> bytes:
    """A classic-BPF seccomp program: unshare/clone with CLONE_NEWUSER fail with EPERM; clone3 (whose flags BPF cannot
    read) and other ABIs (x32, 32-bit calls) fail with ENOSYS, so libc falls back to clone; everything else runs."""
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|JGE|JSET|K, BPF_RET|K
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    known = {"x86_64": (0xC000003E, 272, 56), "aarch64": (0xC00000B7, 97, 220)}  # audit arch, unshare, clone
    arch, unshare, clone = known[machine or platform.machine()]
    program = [
        (ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, enosys),  # seccomp_data.arch
        (ld, 0, 0, 0), (jge, 0, 1, 0x40000000), (ret, 0, 0, enosys),  # seccomp_data.nr; x32 calls
        (jeq, 0, 1, 435), (ret, 0, 0, enosys),  # clone3
        (jeq, 1, 0, unshare), (jeq, 0, 2, clone),
        (ld, 0, 0, 16), (jset, 1, 0, 0x10000000),  # args[0] (flags), low word: CLONE_NEWUSER
        (ret, 0, 0, allow), (ret, 0, 0, eperm),
    ]
    return b"".join(struct.pack("HBBI", *op) for op in program)


def open_root_map(host_id: int, work: Path) -> RootMap:
    """The work folder given to ``host_id`` (give_work_dir) and the pipes of a RootMap."""
    give_work_dir(work, host_id)
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    seccomp_r, seccomp_w = os.pipe()
    os.write(seccomp_w, seccomp_no_userns())  # 112 bytes: fits any pipe buffer
    os.close(seccomp_w)
    return RootMap(host_id, block_r, info_w, seccomp_r, block_w, info_r)


def release_root_map(root_map: RootMap, timeout_s: float) -> str | None:
    """After bwrap started: read its child's pid, write the uid and gid maps, let it go on. None when done, else why
    not (bwrap then exits or is killed by the caller; nothing runs as the wrong uid: bwrap waits for the map)."""
    for fd in root_map.child_fds:
        os.close(fd)
    block_w, info_r = root_map.block_w, root_map.info_r
    try:
        data = b""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([info_r], [], [], left)[0]:
                return "bubblewrap did not report its sandbox in time"
            chunk = os.read(info_r, 4096)
            if not chunk:
                break
            data += chunk
        pid = json.loads(data)["child-pid"]
        mapping = f"0 0 1\n{SANDBOX_UID} {root_map.host_id} 1\n".encode()
        for name in ("uid_map", "gid_map"):
            fd = os.open(f"/proc/{int(pid)}/{name}", os.O_WRONLY)
            try:
                os.write(fd, mapping)
            finally:
                os.close(fd)
        os.write(block_w, b"1")
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"could not map the sandbox uid onto host uid {root_map.host_id}: {exc}"
    finally:
        os.close(block_w)
        os.close(info_r)

# Only what the dynamic loader, Python and the kernel need from /etc: no shadow, no host names, no machine id.
ETC_FROM_HOST = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/fonts",
    "/etc/mime.types",
    "/etc/ssl/certs",
)
SETPRIV = "/usr/bin/setpriv"  # util-linux: on every Debian and Ubuntu
GPU_CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")


@dataclass(frozen=True)
class Mounts:
    """Host paths the sandbox gets to see."""

    work_dir: Path  # the submission's private folder, writable, at /submission
    etc_dir: Path  # generated passwd/group/hosts, read-only
    runner_dir: Path  # sandbox/inside/ (runner.py, harness.py), read-only
    python_dirs: tuple[Path, ...]  # the Python installation and the venv, read-only at their own paths
    models_dir: Path | None = None  # read-only at /lab/models


def sandbox_env(threads: int, python_bin: str) -> dict[str, str]:
    """The whole environment inside: nothing of the grader's (secrets, tokens, paths) crosses."""
    return {
        "PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp/home",
        "USER": "student",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": "/tmp",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
        "JUPYTER_PLATFORM_DIRS": "1",
        "IPYTHONDIR": "/tmp/ipython",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": "/tmp/hf",
        "TOKENIZERS_PARALLELISM": "false",
    }


def _system_dirs() -> list[str]:
    """/usr read-only; /bin, /lib, /lib64, /sbin as on the host (symlinks into /usr on merged-/usr systems)."""
    argv = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        path = Path(top)
        if path.is_symlink():
            argv += ["--symlink", str(path.readlink()), top]
        elif path.is_dir():
            argv += ["--ro-bind", top, top]
    return argv


def build_argv(
    mounts: Mounts,
    env: dict[str, str],
    *,
    tmp_bytes: int,
    gpu: int | GpuSlot | None = None,
    python: str | None = None,
    bwrap: str = "bwrap",
    uid: int | None = SANDBOX_UID,
    root_map: RootMap | None = None,
) -> list[str]:
    """The full bwrap command that starts the runner for one submission; with ``root_map``, as a root grader's
    (RootMap: the sandbox uid becomes ``root_map.host_id`` on the host, and ``uid`` is not used)."""
    argv = [
        bwrap,
        "--unshare-all",  # no --share-net: the sandbox has only a loopback of its own
        "--unshare-user",
        "--die-with-parent",
        "--new-session",  # no TIOCSTI into the grader's terminal
        "--clearenv",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
    ]
    if root_map is None:
        argv.insert(3, "--disable-userns")  # no nested user namespaces: less kernel surface for student code
        if uid is not None:
            argv += ["--uid", str(uid), "--gid", str(uid)]
    else:
        argv += ["--userns-block-fd", str(root_map.block_fd), "--info-fd", str(root_map.info_fd)]
        argv += ["--seccomp", str(root_map.seccomp_fd)]  # instead of --disable-userns
        # For --chdir into the sandbox uid's 0700 work folder and for setpriv alone, which drops them all.
        for cap in ("CAP_DAC_READ_SEARCH", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):
            argv += ["--cap-add", cap]
    argv += _system_dirs()
    argv += ["--proc", "/proc", "--dev", "/dev"]
    # /tmp before any bind below it: a later --tmpfs /tmp would hide such a bind.
    # Made by root (a RootMap), tmpfs and folders are root's 0755 unless told: the sandbox uid writes in /tmp.
    sticky = ["--perms", "1777"] if root_map is not None else []
    argv += ["--size", str(tmp_bytes), *sticky, "--tmpfs", "/tmp"]
    argv += ["--size", str(min(tmp_bytes, 64 << 20)), *sticky, "--tmpfs", "/dev/shm"]
    if root_map is not None:
        argv += ["--perms", "0755", "--dir", "/etc"]  # else as the grader's private temporary folder: 0700
    for name in ("passwd", "group", "hosts"):
        argv += ["--ro-bind", str(mounts.etc_dir / name), f"/etc/{name}"]
    for path in ETC_FROM_HOST:
        argv += ["--ro-bind-try", path, path]
    if root_map is not None:  # bwrap gives a mount point's missing parents the host's modes: /root would be 0700
        argv += _open_parents((*mounts.python_dirs, Path(INSIDE_RUNNER_DIR), Path(INSIDE_MODELS)))
    for d in mounts.python_dirs:
        argv += ["--ro-bind", str(d), str(d)]
    argv += ["--ro-bind", str(mounts.runner_dir), INSIDE_RUNNER_DIR]
    if mounts.models_dir is not None:
        argv += ["--ro-bind", str(mounts.models_dir), INSIDE_MODELS]
    argv += ["--bind", str(mounts.work_dir), INSIDE_WORK]
    if gpu is not None:
        # An int is the device minor (gpus.py: never the CUDA index, which CUDA_VISIBLE_DEVICES renumbers).
        slot = gpu if isinstance(gpu, GpuSlot) else GpuSlot(minor=int(gpu), visible_id="")
        # --dev-bind, not --bind: device nodes must stay usable. Only the assigned GPU's node is visible.
        argv += ["--dev-bind", slot.node, slot.node]
        for node in GPU_CONTROL_NODES:
            argv += ["--dev-bind-try", node, node]
        if slot.mig:  # a MIG instance is opened through its capability nodes
            argv += ["--dev-bind-try", MIG_CAPS_DIR, MIG_CAPS_DIR]
        argv += ["--ro-bind", "/sys", "/sys"]
        if slot.visible_id:  # inside, the one GPU is cuda:0 whatever its number outside
            env = {**env, "CUDA_VISIBLE_DEVICES": slot.visible_id}
    argv += ["--remount-ro", "/"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv += ["--chdir", INSIDE_WORK, "--"]
    if root_map is not None:
        argv += [SETPRIV, f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs", "--"]
    argv += [python or str(sandbox_python()), "-I", INSIDE_RUNNER]
    return argv


def _open_parents(dirs: tuple[Path, ...]) -> list[str]:
    """--perms 0755 --dir for the folders above ``dirs`` that are not already in the view (/usr and its like)."""
    argv: list[str] = []
    done: set[Path] = set()
    for d in dirs:
        for parent in reversed(d.parents[:-1]):  # outermost first, without "/"
            if parent in done or parent.parts[1] in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "etc", "tmp"):
                continue
            done.add(parent)
            argv += ["--perms", "0755", "--dir", str(parent)]
    return argv


def sandbox_python() -> Path:
    """This interpreter as the sandbox sees it: inside the resolved venv. Only resolved folders are mounted, so a venv
    reached through a symlink (sys.executable under the link) must be started by its real path, where its
    pyvenv.cfg still makes it the venv's interpreter."""
    exe = Path(sys.executable)
    try:
        return Path(sys.prefix).resolve() / exe.relative_to(sys.prefix)
    except ValueError:  # an interpreter outside its prefix: it is mounted where it is
        return exe


def python_dirs() -> tuple[Path, ...]:
    """The Python installation and the venv. The venv's editable install of this project points at the source
    tree, which is not mounted: `import autograder` / `import reference` fail inside."""
    dirs = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()]
    unique: list[Path] = []
    for d in dirs:
        if not any(d == u or u in d.parents for u in unique):
            unique.append(d)
    return tuple(unique)


def give_work_dir(work: Path, host_id: int | None) -> None:
    """The work folder (and what the grader put in it) owned by the sandbox's host uid and writable for it only
    (0700; the grader, root, still reads and writes it); None gives it back to us, for a cold start."""
    owner = host_id if host_id is not None else os.geteuid()
    for path in (work, *work.rglob("*")):
        if not path.is_symlink():
            os.chown(path, owner, owner)
    work.chmod(0o700 if host_id is not None else 0o755)


@functools.cache
def open_models_to_others(models_dir: Path) -> str | None:
    """A root grader's sandbox uid is nobody on the host, so it reads the lab's models only where others may: add
    o+r (files) and o+rx (folders) where missing, once per folder and process. They are the public weights the
    sandbox is given to read anyway (save_pretrained writes 0600 files). None when done, else why not."""
    try:
        for top, _dirs, files in os.walk(models_dir, followlinks=True):
            for name in (top, *(os.path.join(top, f) for f in files)):
                mode = os.stat(name).st_mode
                want = 0o005 if stat.S_ISDIR(mode) else 0o004
                if mode & want != want:
                    os.chmod(name, stat.S_IMODE(mode) | want)
    except OSError as exc:
        return f"the models folder {models_dir} is not readable by the sandbox's host uid ({exc}): chmod -R o+rX it"
    return None


def find_bwrap() -> str | None:
    return shutil.which("bwrap") or (str(Path("/usr/bin/bwrap")) if Path("/usr/bin/bwrap").exists() else None)


@functools.cache
def _probe(bwrap: str) -> tuple[int, str]:
    argv = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--clearenv"]
    argv += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), *_system_dirs(), "--proc", "/proc"]
    argv += ["--dev", "/dev", "--", "/usr/bin/true"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return proc.returncode, proc.stderr.strip()


def check_sandbox_available() -> str:
    """Return the bwrap path, or raise UserError with a one-line fix."""
    bwrap = find_bwrap()
    if bwrap is None:
        raise UserError("bubblewrap (bwrap) is not installed: install it: apt-get install bubblewrap")
    rc, err = _probe(bwrap)
    if rc == 0:
        return bwrap
    restricted = Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    if restricted.exists() and restricted.read_text().strip() == "1":
        raise UserError(
            "bubblewrap cannot create namespaces: AppArmor restricts unprivileged user namespaces (Ubuntu 23.10+): "
            "add an AppArmor profile for /usr/bin/bwrap with 'userns,' or run the grader as root"
        )
    first = err.splitlines()[0] if err else f"exit status {rc}"
    raise UserError(f"bubblewrap cannot create a sandbox here ({first}): check that user namespaces are enabled")


def make_root(notebook_name: str, notebook: bytes, files: Mapping[str, bytes | Path], calls_dir: str) -> Path:
    """A fresh host folder for one sandbox: work/ (the notebook, the lab's files, the calls folder; mounted
    writable at /submission) and etc/ (the passwd, group and hosts the sandbox sees)."""
    root = Path(tempfile.mkdtemp(prefix="sparkgrade-"))
    work = root / "work"
    etc = root / "etc"
    work.mkdir(mode=0o755)
    etc.mkdir()
    (work / notebook_name).write_bytes(notebook)
    for name, content in files.items():
        target = (work / name).resolve()
        if work.resolve() not in target.parents:
            raise ValueError(f"lab file {name!r} would land outside the work folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.read_bytes() if isinstance(content, Path) else content)
    (work / calls_dir).mkdir()
    uid = SANDBOX_UID
    (etc / "passwd").write_text(f"student:x:{uid}:{uid}:student:/tmp/home:/usr/sbin/nologin\n")
    (etc / "group").write_text(f"student:x:{uid}:\n")
    (etc / "hosts").write_text("127.0.0.1 localhost sandbox\n::1 localhost\n")
    return root
