"""The bubblewrap command line for one sandbox, and the check that bubblewrap works on this host.

`build_argv` is a pure function of its inputs so the mount table can be read and unit-tested without a GPU.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
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
) -> list[str]:
    """The full bwrap command that starts the runner for one submission."""
    argv = [
        bwrap,
        "--unshare-all",  # no --share-net: the sandbox has only a loopback of its own
        "--unshare-user",
        "--disable-userns",  # no nested user namespaces: less kernel surface for student code
        "--die-with-parent",
        "--new-session",  # no TIOCSTI into the grader's terminal
        "--clearenv",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
    ]
    if uid is not None:
        argv += ["--uid", str(uid), "--gid", str(uid)]
    argv += _system_dirs()
    argv += ["--proc", "/proc", "--dev", "/dev"]
    # /tmp before any bind below it: a later --tmpfs /tmp would hide such a bind.
    argv += ["--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    argv += ["--size", str(min(tmp_bytes, 64 << 20)), "--tmpfs", "/dev/shm"]
    for name in ("passwd", "group", "hosts"):
        argv += ["--ro-bind", str(mounts.etc_dir / name), f"/etc/{name}"]
    for path in ETC_FROM_HOST:
        argv += ["--ro-bind-try", path, path]
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
    argv += ["--chdir", INSIDE_WORK, "--", python or str(sandbox_python()), "-I", INSIDE_RUNNER]
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
