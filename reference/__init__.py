"""Trusted reference maths for the Efficient Architectures labs. Never visible to students.

Every function states its shapes and dtype policy in its docstring (docs/facts.md has the sources). On CPU the torch
implementations are the reference; on a CUDA machine with mamba-ssm installed, its kernels are used for the scan.
"""

from reference import hardware
from reference.losses import (
    deepseek_device_balance_loss,
    deepseek_expert_balance_loss,
    load_balancing_loss,
    router_z_loss,
    switch_load_balancing_loss,
)
from reference.memory import kv_cache_bytes, mamba_state_bytes
from reference.moe import expert_activation_counts, moe_param_counts
from reference.perplexity import perplexity
from reference.routing import deepseek_v3_routing, switch_routing, top_k_routing
from reference.scan import mamba_ssm_available, resolve_backend, selective_scan, selective_state_update
from reference.ssd import ssd_chunk_scan, ssd_sequential

__all__ = [
    "deepseek_device_balance_loss",
    "deepseek_expert_balance_loss",
    "deepseek_v3_routing",
    "expert_activation_counts",
    "hardware",
    "kv_cache_bytes",
    "load_balancing_loss",
    "mamba_ssm_available",
    "mamba_state_bytes",
    "moe_param_counts",
    "perplexity",
    "resolve_backend",
    "router_z_loss",
    "selective_scan",
    "selective_state_update",
    "ssd_chunk_scan",
    "ssd_sequential",
    "switch_load_balancing_loss",
    "switch_routing",
    "top_k_routing",
]
