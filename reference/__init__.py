"""Trusted reference maths for the Efficient Architectures labs. Never visible to students.

Every function states its shapes and dtype policy in its docstring (FACTS.md has the sources). On CPU the torch
implementations are the reference; on a CUDA machine with mamba-ssm installed, its kernels are used for the scan.
"""

from reference.scan import mamba_ssm_available, resolve_backend, selective_scan, selective_state_update
from reference.ssd import ssd_chunk_scan, ssd_sequential

__all__ = [
    "mamba_ssm_available",
    "resolve_backend",
    "selective_scan",
    "selective_state_update",
    "ssd_chunk_scan",
    "ssd_sequential",
]
