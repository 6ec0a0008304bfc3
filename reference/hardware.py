"""Hardware profiles: the limits a benchmark number is judged against.

Each profile gives the device's memory, its peak memory bandwidth and its dense BF16 tensor throughput (no 2:4
sparsity). Figures are the vendors' (docs/facts.md, "Hardware"); bandwidth is decimal (GB/s = 1e9 B/s).

Memory is stated generously on purpose: the profiles set *upper* bounds ("peak memory <= device memory"), and vendors
write "80 GB" for what the driver reports as 80 GiB. So marketing "GB" of HBM/GDDR is read as GiB here.

    device            memory                      bandwidth   BF16 dense
    dgx-spark (GB10)  128 GB unified, ~119.7 to CUDA  273 GB/s   ~125 TFLOP/s (estimated, not published)
    h100-sxm          80 GB                       3350 GB/s   989 TFLOP/s
    h200              141 GB                      4800 GB/s   989 TFLOP/s
    a100-80gb (SXM)   80 GB                       2039 GB/s   312 TFLOP/s
    rtx-4090          24 GB                       1008 GB/s   165 TFLOP/s (330 with FP16 accumulate)
    l4                24 GB                        300 GB/s   121 TFLOP/s
    cpu               8 TiB                       2000 GB/s  1000 TFLOP/s  (a generous ceiling, see below)
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = 2**30
GB = 10**9
TB_S = 10**12
TFLOPS = 10**12


@dataclass(frozen=True)
class HardwareProfile:
    """One device's limits. ``cuda_visible_bytes`` is what CUDA may allocate when it is less than the memory."""

    name: str
    display_name: str
    memory_bytes: int
    bandwidth_bytes_s: float
    bf16_flops: float
    cuda_visible_bytes: int | None = None
    flops_estimated: bool = False  # True when bf16_flops is our estimate, not a published figure
    # GeForce cards run FP16 (and FP8) tensor ops with FP16 accumulation at twice the rate of FP32 accumulation,
    # and inference engines (llama.cpp) use it; the bf16_flops above are FP32-accumulate figures.
    fp16_accumulate_speedup: float = 1.0
    notes: str = ""

    @property
    def usable_memory_bytes(self) -> int:
        """The most a benchmark can allocate: CUDA-visible memory where it is less than the physical memory."""
        return self.cuda_visible_bytes if self.cuda_visible_bytes is not None else self.memory_bytes

    def peak_flops(self, dtype_bytes: float = 2, *, fp16_accumulate: bool = False) -> float:
        """Dense tensor peak for a weight width: FP8/INT8 run at 2x BF16, 4-bit at 4x, FP32 (TF32) taken as BF16.

        FP32 is not made slower here: the number is used as a ceiling, and a ceiling may only be generous.
        ``fp16_accumulate`` gives the peak with FP16 accumulation where the device runs it faster (RTX 4090: 330
        TFLOP/s FP16 against 165 with FP32 accumulation), the ceiling for engines that use it.
        """
        base = self.bf16_flops * (self.fp16_accumulate_speedup if fp16_accumulate else 1.0)
        if dtype_bytes <= 0.5:
            return base * 4
        if dtype_bytes <= 1:
            return base * 2
        return base


PROFILES: dict[str, HardwareProfile] = {
    p.name: p
    for p in (
        HardwareProfile(
            name="dgx-spark",
            display_name="NVIDIA DGX Spark (GB10)",
            memory_bytes=128 * GiB,
            # docs/facts.md: "about 119.7 GB visible to CUDA"; read as GiB, the larger reading, because it is a ceiling.
            cuda_visible_bytes=int(119.7 * GiB),
            bandwidth_bytes_s=273 * GB,
            bf16_flops=125 * TFLOPS,
            flops_estimated=True,
            notes="128 GB LPDDR5x unified with the CPU; BF16 peak not published: ~125 TFLOP/s estimated "
            "(~188 TFLOP/s FP8 measured). nvidia-smi shows no memory use: use torch.cuda.max_memory_allocated.",
        ),
        HardwareProfile(
            name="h100-sxm",
            display_name="NVIDIA H100 SXM 80GB",
            memory_bytes=80 * GiB,
            bandwidth_bytes_s=3350 * GB,
            bf16_flops=989 * TFLOPS,
        ),
        HardwareProfile(
            name="h200",
            display_name="NVIDIA H200 141GB",
            memory_bytes=141 * GiB,
            bandwidth_bytes_s=4800 * GB,
            bf16_flops=989 * TFLOPS,
        ),
        HardwareProfile(
            name="a100-80gb",
            display_name="NVIDIA A100 80GB SXM",
            memory_bytes=80 * GiB,
            bandwidth_bytes_s=2039 * GB,
            bf16_flops=312 * TFLOPS,
        ),
        HardwareProfile(
            name="rtx-4090",
            display_name="NVIDIA GeForce RTX 4090",
            memory_bytes=24 * GiB,
            bandwidth_bytes_s=1008 * GB,
            bf16_flops=165 * TFLOPS,
            # Ada whitepaper, RTX 4090: 165.2 TFLOP/s FP16/BF16 tensor with FP32 accumulate, 330.3 with FP16
            # accumulate (dense); FP8 660.6 with FP16 accumulate.
            fp16_accumulate_speedup=2.0,
        ),
        HardwareProfile(
            name="l4",
            display_name="NVIDIA L4",
            memory_bytes=24 * GiB,
            bandwidth_bytes_s=300 * GB,
            bf16_flops=121 * TFLOPS,
        ),
        HardwareProfile(
            name="cpu",
            display_name="CPU (generous server ceiling)",
            # A ceiling, not a model of any CPU: no honest CPU measurement may come near it.
            # Memory: a two-socket server holds at most ~8 TB of DDR5.
            memory_bytes=8 * 2**40,
            # Bandwidth: two 12-channel DDR5-6400 sockets give ~1.2 TB/s; rounded up to 2 TB/s because small models
            # run partly from multi-hundred-MB L3 caches.
            bandwidth_bytes_s=2 * TB_S,
            # Compute: two 128-core sockets with AMX at ~1k BF16 FLOP/cycle/core and 2 GHz is ~0.5 PFLOP/s; doubled.
            bf16_flops=1000 * TFLOPS,
            notes="A generous upper bound for any server CPU, so that only impossible CPU numbers are flagged.",
        ),
    )
}


def get_profile(name: str) -> HardwareProfile:
    """The profile called ``name`` (case-insensitive); a ValueError naming the valid profiles otherwise."""
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(f"unknown hardware profile {name!r}; valid names: {', '.join(PROFILES)}")
    return PROFILES[key]
