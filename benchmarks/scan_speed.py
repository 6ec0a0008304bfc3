"""Time the reference selective scan on CPU: the sequential oracle vs the chunked backend.

Batch 2, dim 256, N 16, variable B/C, L = 512, 2048, 8192. Best of --repeats runs each; prints the speed-ups and
the largest difference between the two outputs. Usage: python benchmarks/scan_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import platform
import time

import torch

from reference.scan import selective_scan


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    args = parser.parse_args()
    batch, dim, N = 2, 256, 16
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"batch {batch}, dim {dim}, N {N}, fp32, variable B/C, delta_softplus, D and z on")
    print(f"{'L':>6} {'sequential s':>13} {'chunked s':>10} {'speed-up':>9} {'max |diff|':>11}")
    g = torch.Generator().manual_seed(0)
    for L in args.lengths:
        u = torch.randn(batch, dim, L, generator=g)
        delta = torch.randn(batch, dim, L, generator=g) - 4.0  # softplus(delta) ~ 0.02: Mamba's dt range
        A = -torch.exp(torch.rand(dim, N, generator=g) * 2.7)  # -1 .. -16 as Mamba's A_log init
        B, C = torch.randn(batch, N, L, generator=g), torch.randn(batch, N, L, generator=g)
        D, z = torch.randn(dim, generator=g), torch.randn(batch, dim, L, generator=g)
        scan_args = (u, delta, A, B, C, D, z, None, True)
        out = {b: selective_scan(*scan_args, backend=b) for b in ("sequential", "chunked")}
        t_seq = best_time(functools.partial(selective_scan, *scan_args, backend="sequential"), args.repeats)
        t_chk = best_time(functools.partial(selective_scan, *scan_args, backend="chunked"), args.repeats)
        diff = (out["sequential"] - out["chunked"]).abs().max().item()
        print(f"{L:>6} {t_seq:>13.4f} {t_chk:>10.4f} {t_seq / t_chk:>8.1f}x {diff:>11.2e}")


if __name__ == "__main__":
    main()
