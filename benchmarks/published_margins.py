"""Print the margins of the published-measurements suite: each printed number against the checker's bound.

    PYTHONPATH=. .venv/bin/python benchmarks/published_margins.py

decode: measured tok/s / bound (1.0 = the roofline); TTFT: bound / measured seconds (1.0 = the floor). The checker
calls a number impossible past 1.15 (DECODE_MARGIN, TTFT_MARGIN); suspicious past 0.95 (decode).
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from published import MEASUREMENTS, SOURCES, margin  # tests/published.py, on the path above


def main() -> None:
    rows = [margin(i, m) for i, m in enumerate(MEASUREMENTS)]
    print(f"{'#':>3} {'device':10} {'model':26} {'field':12} {'value':>10} {'bound':>10} {'ratio':>6}  side  source")
    for x, m in zip(rows, MEASUREMENTS, strict=True):
        side = "mem" if x.memory_bound else "flop"
        print(f"{x.index:>3} {x.device:10} {x.model[-26:]:26} {x.field:12} {x.value:>10.4g} {x.bound:>10.4g} "
              f"{x.ratio:>6.2f}  {side:4}  {m['source']}")
    by: dict[tuple[str, str], list[float]] = defaultdict(list)
    for x in rows:
        by[(x.device, x.field)].append(x.ratio)
    print("\nper device and field: n, min, median, max of the ratio")
    for (device, fld), ratios in sorted(by.items()):
        print(f"  {device:10} {fld:12} n={len(ratios):3} min={min(ratios):.2f} median={statistics.median(ratios):.2f} "
              f"max={max(ratios):.2f}")
    print(f"\n{len(rows)} measurements from {len(SOURCES)} sources")


if __name__ == "__main__":
    main()
