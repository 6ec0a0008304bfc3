"""Rebuild every lab's source notebook: runs build() of each builder in assignments/labs/ (lab_*.py).

    python assignments/build.py            # all labs
    python assignments/build.py 2.4.1      # the labs whose id contains "2.4.1"

A builder is a module with LAB_ID and build(source_root) -> Path; adding a lab means adding one such file.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABS = HERE / "labs"


def builders() -> list:
    """The builder modules, sorted by lab id."""
    for path in (str(HERE), str(LABS)):
        if path not in sys.path:
            sys.path.insert(0, path)
    modules = [importlib.import_module(p.stem) for p in sorted(LABS.glob("lab_*.py"))]
    return sorted(modules, key=lambda m: m.LAB_ID)


def main(argv: list[str]) -> int:
    wanted = argv[1:]
    for module in builders():
        if wanted and not any(w in module.LAB_ID for w in wanted):
            continue
        path = module.build(HERE / "source")
        print(f"{module.LAB_ID}: {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
