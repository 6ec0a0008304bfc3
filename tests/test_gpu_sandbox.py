"""A GPU sandbox gets exactly its own GPU and cannot starve the host: the device node by minor (never the CUDA
index), CUDA_VISIBLE_DEVICES respected, MIG capability nodes, a machine-wide cap on GPU sandboxes, a CUDA allocator cap
set before student code, and a watchdog on the host's available memory. The logic runs here on the driver's text and
on an ordinary allocation; the tests that need a GPU skip with the reason and run on a CUDA box (`make gpu-check`)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

from autograder.errors import UserError
from autograder.sandbox import Limits, Sandbox, build_argv, check_sandbox_available
from autograder.sandbox import bwrap as bw
from autograder.sandbox.gpus import (
    Gpu,
    GpuError,
    GpuSlot,
    gpu_sandbox_slot,
    parse_information,
    parse_mig_parents,
    resolve_slot,
    slot_for,
    visible_entries,
    worker_gpu,
)
from autograder.sandbox.inside.runner import install_cuda_cap
from autograder.sandbox.watchdog import GIB, HostMemoryWatchdog, default_reserve, parse_meminfo, starving

try:
    check_sandbox_available()
    HAVE_BWRAP = True
except UserError:
    HAVE_BWRAP = False
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP, reason="bubblewrap cannot create a sandbox on this host")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU box)")

# /proc/driver/nvidia/gpus/0000:41:00.0/information on a two-GPU box (the format the 5xx drivers write)
INFO_41 = """Model: \t\t NVIDIA H100 80GB HBM3
IRQ:   \t\t 180
GPU UUID: \t GPU-41aaaaaa-1111-2222-3333-444444444444
Video BIOS: \t 96.00.5e.00.01
Bus Type: \t PCIe
DMA Size: \t 52 bits
DMA Mask: \t 0xfffffffffffff
Bus Location: \t 0000:41:00.0
Device Minor: \t 3
GPU Excluded:\t No
"""
GPUS = [Gpu("GPU-41aaaaaa-1111-2222-3333-444444444444", 3, "0000:41:00.0"),
        Gpu("GPU-01bbbbbb-1111-2222-3333-444444444444", 0, "0000:01:00.0")]
SMI_L = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-01bbbbbb-1111-2222-3333-444444444444)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-41aaaaaa-1111-2222-3333-444444444444)
  MIG 3g.40gb     Device  0: (UUID: MIG-c0ffee00-aaaa-bbbb-cccc-dddddddddddd)
"""


def test_driver_information_gives_uuid_minor_and_bus():
    assert parse_information(INFO_41) == Gpu("GPU-41aaaaaa-1111-2222-3333-444444444444", 3, "0000:41:00.0",
                                             "NVIDIA H100 80GB HBM3")
    assert parse_information("Model: x\n") is None


def test_visible_devices_follow_cuda_visible_devices_not_the_minor():
    assert visible_entries({}, GPUS) == [GPUS[1].uuid, GPUS[0].uuid]  # bus order, as nvidia-smi numbers them
    assert visible_entries({"CUDA_VISIBLE_DEVICES": "1"}, GPUS) == [GPUS[0].uuid]
    assert visible_entries({"CUDA_VISIBLE_DEVICES": "GPU-41aa,0"}, GPUS) == [GPUS[0].uuid, GPUS[1].uuid]
    assert visible_entries({"CUDA_VISIBLE_DEVICES": "0,7,1"}, GPUS) == [GPUS[1].uuid]  # CUDA stops at a bad entry
    assert visible_entries({"CUDA_VISIBLE_DEVICES": ""}, GPUS) == []


def test_a_worker_gets_the_node_of_its_gpu_by_minor():
    # CUDA_VISIBLE_DEVICES=1: the worker's GPU 0 is the bus's second GPU, whose node is /dev/nvidia3, not nvidia0
    slot = slot_for(0, {"CUDA_VISIBLE_DEVICES": "1"}, GPUS, {})
    assert slot == GpuSlot(minor=3, visible_id=GPUS[0].uuid) and slot.node == "/dev/nvidia3"
    assert slot_for(GPUS[1].uuid, {}, GPUS, {}).minor == 0
    with pytest.raises(GpuError, match="GPU 1 asked for, but 1 visible"):
        slot_for(1, {"CUDA_VISIBLE_DEVICES": "0"}, GPUS, {})


def test_a_mig_instance_runs_on_its_parents_node_with_the_capability_nodes():
    mig = "MIG-c0ffee00-aaaa-bbbb-cccc-dddddddddddd"
    assert parse_mig_parents(SMI_L) == {mig: GPUS[0].uuid}
    slot = slot_for(0, {"CUDA_VISIBLE_DEVICES": mig}, GPUS, parse_mig_parents(SMI_L))
    assert slot == GpuSlot(minor=3, visible_id=mig, mig=True)
    mounts = bw.Mounts(work_dir=Path("/w"), etc_dir=Path("/e"), runner_dir=Path("/r"), python_dirs=())
    argv = build_argv(mounts, {}, tmp_bytes=1 << 20, gpu=slot)
    dev = [argv[i + 1] for i, a in enumerate(argv) if a in ("--dev-bind", "--dev-bind-try")]
    assert dev[0] == "/dev/nvidia3" and "/dev/nvidia-caps" in dev and "/dev/nvidia0" not in dev
    env = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--setenv"}
    assert env["CUDA_VISIBLE_DEVICES"] == mig  # inside, its one device is cuda:0
    plain = build_argv(mounts, {}, tmp_bytes=1 << 20, gpu=GpuSlot(minor=0, visible_id=GPUS[1].uuid))
    assert "/dev/nvidia-caps" not in plain


def test_a_worker_owns_the_gpu_its_environment_names():
    assert worker_gpu({}) == 0
    assert worker_gpu({"SPARKGRADE_GPU": "2"}) == 2
    assert worker_gpu({"SPARKGRADE_GPU": "GPU-41aa"}) == "GPU-41aa"


def test_at_most_the_cap_of_gpu_sandboxes_run_at_once(tmp_path):
    running, most = [0], [0]
    lock = threading.Lock()

    def one():
        with gpu_sandbox_slot(2, tmp_path, poll_s=0.01):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.1)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 2


def test_watchdog_fires_below_the_reserve_only(tmp_path):
    text = "MemTotal:       131072000 kB\nMemAvailable:    6291456 kB\n"
    info = parse_meminfo(text)
    assert info["MemAvailable"] == 6 * GIB
    assert starving(info, 8 * GIB).startswith("the host ran short of memory (available 6.0 GiB")
    assert starving(info, 4 * GIB) is None
    assert default_reserve(128 * 10**9) == 128 * 10**9 // 10 and default_reserve(16 * GIB) == 8 * GIB
    fake = tmp_path / "meminfo"
    fake.write_text("MemAvailable:   16777216 kB\n")
    fired: list[str] = []
    dog = HostMemoryWatchdog(8 * GIB, fired.append, meminfo=fake, poll_s=0.01).start()
    time.sleep(0.1)
    assert fired == []
    fake.write_text("MemAvailable:   1048576 kB\n")
    deadline = time.monotonic() + 5
    while not fired and time.monotonic() < deadline:
        time.sleep(0.01)
    dog.stop()
    assert len(fired) == 1 and "1.0 GiB" in fired[0]


def test_the_cuda_cap_is_installed_before_any_cell_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path))
    monkeypatch.delenv("SPARKGRADE_CUDA_MEMORY_BYTES", raising=False)
    startup = tmp_path / "profile_default" / "startup"
    install_cuda_cap({"cuda_memory_bytes": 0})
    assert not startup.exists() and "SPARKGRADE_CUDA_MEMORY_BYTES" not in os.environ
    install_cuda_cap({"cuda_memory_bytes": 3 * GIB})
    (path,) = startup.iterdir()
    assert os.environ["SPARKGRADE_CUDA_MEMORY_BYTES"] == str(3 * GIB)  # what the kernel inherits
    code = path.read_text()
    assert "set_per_process_memory_fraction" in code
    exec(compile(code, str(path), "exec"), {})  # as IPython runs it: here without CUDA it is a no-op
    assert "SPARKGRADE_CUDA_MEMORY_BYTES" not in os.environ  # the startup took it out of the student's sight


def _hog_notebook(gib: float) -> bytes:
    cells = [new_code_cell(f"import time\nhog = b'\\x01' * int({gib} * (1 << 30))\ntime.sleep(60)")]
    return nbformat.writes(new_notebook(cells=cells)).encode()


@needs_bwrap
@pytest.mark.slow
def test_a_sandbox_that_eats_the_hosts_memory_is_killed_with_reason_memory_and_the_next_one_runs():
    """An ordinary allocation stands in for unified memory: the reserve is set 1.5 GiB under what the host has now,
    the notebook takes 3 GiB (well under its cgroup's 8 GiB, which therefore does not fire)."""
    available = parse_meminfo(Path("/proc/meminfo").read_text())["MemAvailable"]
    if available < 6 * GIB:
        pytest.skip(f"the host has {available / GIB:.1f} GiB available; this test takes 3 GiB")
    limits = Limits(notebook_s=60, memory_bytes=8 * GIB, host_reserve_bytes=available - int(1.5 * GIB))
    t0 = time.monotonic()
    with Sandbox(_hog_notebook(3), notebook_name="hog.ipynb", limits=limits) as sb:
        result = sb.run()
    assert result.reason == "memory" and "host ran short of memory" in result.detail, result
    assert time.monotonic() - t0 < 50  # killed, not left to sleep out its minute
    with Sandbox(_hog_notebook(0.01), notebook_name="ok.ipynb",
                 limits=Limits(notebook_s=5, memory_bytes=2 * GIB)) as sb:
        assert sb.run().reason == "timeout"  # the grader goes on: the next sandbox runs (to its own time limit)


# -- on a CUDA box ----------------------------------------------------------------------------------------------


@needs_cuda
def test_the_slot_of_cuda_device_0_is_the_gpu_torch_calls_0():
    slot = resolve_slot(0)
    uuid = str(torch.cuda.get_device_properties(0).uuid)
    assert slot.visible_id.removeprefix("GPU-").startswith(uuid.removeprefix("GPU-")[:8]) or slot.mig
    assert os.path.exists(slot.node)


@needs_cuda
@needs_bwrap
def test_a_gpu_sandbox_sees_one_gpu_and_its_allocator_is_capped():
    code = ("import torch\nprint('count', torch.cuda.device_count())\n"
            "x = torch.empty(256 << 20, dtype=torch.uint8, device='cuda')\nprint('small ok')\n"
            "try:\n    y = torch.empty(3 << 30, dtype=torch.uint8, device='cuda')\n    print('big ok')\n"
            "except torch.OutOfMemoryError:\n    print('big refused')\n")
    nb = nbformat.writes(new_notebook(cells=[new_code_cell(code)])).encode()
    with Sandbox(nb, notebook_name="gpu.ipynb", gpu=0,
                 limits=Limits(notebook_s=120, gpu_memory_bytes=1 << 30, memory_bytes=16 * GIB)) as sb:
        result = sb.run()
        assert result.reason is None, (result, sb.stderr_tail())
        text = result.notebook.decode()
    assert "count 1" in text and "small ok" in text and "big refused" in text and "big ok" not in text
