"""``python -m reference.tiny OUT_DIR [--force]``: build the tiny offline models and data into OUT_DIR."""

from __future__ import annotations

import argparse
import json
import time

from . import build_models, load_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference.tiny", description=__doc__)
    parser.add_argument("out_dir", help="folder to write the models, tokenizer and data into")
    parser.add_argument("--force", action="store_true", help="rebuild even if the manifest says it is current")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    paths = build_models(args.out_dir, force=args.force)
    manifest = load_manifest(args.out_dir) or {}
    for name, path in paths.items():
        info = manifest.get("models", {}).get(name, {})
        summary = {k: info[k] for k in ("params", "valid_perplexity") if k in info}
        print(f"{name:12s} {path}  {json.dumps(summary) if summary else ''}")
    for name, reason in manifest.get("skipped", {}).items():
        print(f"{name:12s} skipped: {reason}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
