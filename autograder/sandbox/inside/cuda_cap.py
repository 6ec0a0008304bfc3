"""Copied by the runner into the kernel's IPython startup folder: runs before the notebook's first cell.

Unified memory (the DGX Spark) escapes the sandbox's cgroup, so CUDA's caching allocator is capped for the kernel
process at SPARKGRADE_CUDA_MEMORY_BYTES (set by the runner from the grader's config): past it an allocation raises
torch.OutOfMemoryError in the student's cell instead of taking the host's memory. Student code could lift the cap
again; the grader's memory watchdog (sandbox/watchdog.py) is the backstop for that.
"""


def _sparkgrade_cap_cuda() -> None:
    import os

    limit = int(os.environ.pop("SPARKGRADE_CUDA_MEMORY_BYTES", "0") or 0)
    if limit <= 0:
        return
    import torch

    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total), 0)


_sparkgrade_cap_cuda()
del _sparkgrade_cap_cuda
