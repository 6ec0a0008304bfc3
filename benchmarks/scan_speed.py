"""Time the reference selective scan on CPU: the sequential oracle vs the chunked backend.

Batch 2, dim 256, N 16, variable B/C, L = 512, 2048, 8192. Best of --repeats runs each; prints the speed-ups and
the largest difference between the two outputs. Usage: python benchmarks/scan_speed.py [--repeats 3]

Timings on a shared VM drift by tens of percent within a minute, so the two backends are timed in alternation
(one sequential run, then one chunked run, --repeats times): "speed-up" is the ratio of the best times, "paired" the
median of the per-pair ratios, which drift affects least.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time

import torch

from reference.scan import selective_scan


def paired_times(fns, repeats: int) -> list[list[float]]:
    """Time each of ``fns`` once per round, in turn, for ``repeats`` rounds (after one warm-up round)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    args = parser.parse_args()
    batch, dim, N = 2, 256, 16
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"batch {batch}, dim {dim}, N {N}, fp32, variable B/C, delta_softplus, D and z on")
    print(f"{'L':>6} {'sequential s':>13} {'chunked s':>10} {'speed-up':>9} {'paired':>7} {'max |diff|':>11}")
    g = torch.Generator().manual_seed(0)
    for L in args.lengths:
        u = torch.randn(batch, dim, L, generator=g)
        delta = torch.randn(batch, dim, L, generator=g) - 4.0  # softplus(delta) ~ 0.02: Mamba's dt range
        A = -torch.exp(torch.rand(dim, N, generator=g) * 2.7)  # -1 .. -16 as Mamba's A_log init
        B, C = torch.randn(batch, N, L, generator=g), torch.randn(batch, N, L, generator=g)
        D, z = torch.randn(dim, generator=g), torch.randn(batch, dim, L, generator=g)
        scan_args = (u, delta, A, B, C, D, z, None, True)
        out = {b: selective_scan(*scan_args, backend=b) for b in ("sequential", "chunked")}
        seq, chk = paired_times([functools.partial(selective_scan, *scan_args, backend=b)
                                 for b in ("sequential", "chunked")], args.repeats)
        t_seq, t_chk = min(seq), min(chk)
        paired = statistics.median(s / c for s, c in zip(seq, chk, strict=True))
        diff = (out["sequential"] - out["chunked"]).abs().max().item()
        print(f"{L:>6} {t_seq:>13.4f} {t_chk:>10.4f} {t_seq / t_chk:>8.1f}x {paired:>6.1f}x {diff:>11.2e}")


if __name__ == "__main__":
    main()
