"""Which physical GPU a sandbox gets, and which device nodes that means.

The device node of a GPU is /dev/nvidia<minor>, where the minor is the driver's (``Device Minor`` in
/proc/driver/nvidia/gpus/<bus id>/information), not the CUDA index: under CUDA_VISIBLE_DEVICES=2,3 CUDA's index 0
is the GPU with minor 2 (or another: CUDA orders fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID). Binding
/dev/nvidia<cuda index> can hand a sandbox a GPU another worker owns. So a GPU is named by its UUID, which both CUDA
and the driver report, and the minor is looked up by UUID. A MIG instance (CUDA_VISIBLE_DEVICES=MIG-...) runs on its
parent GPU's node plus the capability nodes under /dev/nvidia-caps.

Pure parsing functions plus one discovery function at the edge (``discover``), so the logic is tested on CPU with the
driver's text and the GPU test checks it against torch on a real box.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from autograder.errors import UserError

PROC_GPUS = Path("/proc/driver/nvidia/gpus")
MIG_CAPS_DIR = "/dev/nvidia-caps"


@dataclass(frozen=True)
class Gpu:
    """One physical GPU as the driver lists it."""

    uuid: str  # "GPU-8d9e..."
    minor: int  # /dev/nvidia<minor>
    bus_id: str = ""
    model: str = ""


@dataclass(frozen=True)
class GpuSlot:
    """What one sandbox is given: the GPU's node, and the name CUDA_VISIBLE_DEVICES uses inside (a GPU or MIG UUID)."""

    minor: int
    visible_id: str  # what the sandbox's CUDA_VISIBLE_DEVICES says: the one device it sees is its cuda:0
    mig: bool = False

    @property
    def node(self) -> str:
        return f"/dev/nvidia{self.minor}"


class GpuError(UserError):
    """The GPU asked for does not exist or cannot be matched to a device node: the grader's set-up, not a
    submission's doing, so the command stops with one line."""


def parse_information(text: str) -> Gpu | None:
    """One /proc/driver/nvidia/gpus/*/information file."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    try:
        return Gpu(uuid=fields["GPU UUID"], minor=int(fields["Device Minor"]), bus_id=fields.get("Bus Location", ""),
                   model=fields.get("Model", ""))
    except (KeyError, ValueError):
        return None


MIG_LINE = re.compile(r"^\s+MIG .*\(UUID: (MIG-[^)\s]+)\)", re.M)
GPU_LINE = re.compile(r"^GPU \d+: .*\(UUID: (GPU-[^)\s]+)\)", re.M)


def parse_mig_parents(smi_list: str) -> dict[str, str]:
    """MIG UUID -> its parent GPU's UUID, from `nvidia-smi -L` (MIG lines are indented under their GPU)."""
    parents: dict[str, str] = {}
    current = None
    for line in smi_list.splitlines():
        if m := GPU_LINE.match(line):
            current = m.group(1)
        elif (m := MIG_LINE.match(line)) and current is not None:
            parents[m.group(1)] = current
    return parents


def visible_entries(env: Mapping[str, str], gpus: list[Gpu]) -> list[str]:
    """The GPUs this process may use, in CUDA_VISIBLE_DEVICES order, as UUIDs (GPU-... or MIG-...). Without the
    variable, every GPU in bus order. Integer entries index the driver's bus order, as nvidia-smi numbers them."""
    by_bus = sorted(gpus, key=lambda g: g.bus_id)
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return [g.uuid for g in by_bus]
    out = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            break  # CUDA stops at the first empty or invalid entry
        if entry.isdigit():
            if int(entry) >= len(by_bus):
                break
            out.append(by_bus[int(entry)].uuid)
            continue
        matches = [g.uuid for g in gpus if g.uuid.startswith(entry if entry.startswith("GPU-") else "GPU-" + entry)]
        if entry.startswith("MIG-"):
            out.append(entry)
        elif len(matches) == 1:  # CUDA accepts a unique UUID prefix
            out.append(matches[0])
        else:
            break
    return out


def slot_for(index: int | str, env: Mapping[str, str], gpus: list[Gpu], mig_parents: Mapping[str, str]) -> GpuSlot:
    """The slot for a worker's GPU: ``index`` is a position among the visible GPUs (what a worker is numbered by)
    or a GPU/MIG UUID."""
    visible = visible_entries(env, gpus)
    if isinstance(index, int) or str(index).isdigit():
        i = int(index)
        if not 0 <= i < len(visible):
            raise GpuError(f"GPU {i} asked for, but {len(visible)} visible (CUDA_VISIBLE_DEVICES="
                           f"{env.get('CUDA_VISIBLE_DEVICES', 'unset')})")
        uuid = visible[i]
    else:
        uuid = str(index)
    mig = uuid.startswith("MIG-")
    parent = mig_parents.get(uuid) if mig else uuid
    minor = next((g.minor for g in gpus if parent is not None and g.uuid == parent), None)
    if minor is None:
        raise GpuError(f"no device node for {uuid} (the driver lists {', '.join(g.uuid for g in gpus) or 'no GPU'})")
    return GpuSlot(minor=minor, visible_id=uuid, mig=mig)


def discover(proc_dir: Path = PROC_GPUS) -> list[Gpu]:
    """The driver's GPUs (empty without the NVIDIA driver)."""
    if not proc_dir.is_dir():
        return []
    found = (parse_information(p.read_text(errors="replace")) for p in sorted(proc_dir.glob("*/information")))
    return [g for g in found if g is not None]


def _mig_parents() -> dict[str, str]:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_mig_parents(out)


def resolve_slot(index: int | str, env: Mapping[str, str] | None = None) -> GpuSlot:
    """The slot for this process's GPU ``index`` on this machine."""
    env = os.environ if env is None else env
    want_mig = "MIG-" in env.get("CUDA_VISIBLE_DEVICES", "") or str(index).startswith("MIG-")
    return slot_for(index, env, discover(), _mig_parents() if want_mig else {})


def worker_gpu(env: Mapping[str, str] | None = None) -> int | str:
    """The GPU a GPU worker owns: SPARKGRADE_GPU (a position among the visible GPUs, or a UUID), else the first
    visible one. Start one worker per GPU, each with its own CUDA_VISIBLE_DEVICES or SPARKGRADE_GPU."""
    env = os.environ if env is None else env
    named = env.get("SPARKGRADE_GPU", "").strip()
    if not named:
        return 0
    return int(named) if named.isdigit() else named


def own_gpu(index: int | str) -> int:
    """Make this worker process see only its GPU, so its trusted checks' ``cuda:0`` and its sandboxes' node are the
    same device; returns the position to hand the sandbox (0 once narrowed). Called before CUDA is initialised in
    the process (spawned pool workers, a Dask worker's first task); afterwards CUDA_VISIBLE_DEVICES has no effect, so
    the position is kept as given."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return int(index) if str(index).isdigit() else 0
    slot = resolve_slot(index)
    os.environ["CUDA_VISIBLE_DEVICES"] = slot.visible_id
    return 0


SLOTS_DIR = Path(tempfile.gettempdir()) / "sparkgrade-gpu-slots"


@contextmanager
def gpu_sandbox_slot(cap: int, lock_dir: Path = SLOTS_DIR, poll_s: float = 0.2) -> Iterator[int]:
    """Hold one of ``cap`` machine-wide slots while a GPU sandbox runs (flock on a file per slot, so every grader
    process and worker on the machine shares the count, and a killed holder frees its slot). Waits for a free one."""
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    while True:
        for i in range(max(1, cap)):
            fd = os.open(lock_dir / f"slot-{i}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield i
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        time.sleep(poll_s)
