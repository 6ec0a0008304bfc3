"""The thin shell of `sparkgrade check-benchmarks` (the lead moves CLI handlers to the CLI)."""

from __future__ import annotations

import argparse
import json

from autograder.errors import UserError
from autograder.plausibility.schema import load_records
from autograder.plausibility.verdicts import check_benchmarks, score_verdicts
from reference.hardware import get_profile


def cmd_check_benchmarks(args: argparse.Namespace) -> int:
    """`sparkgrade check-benchmarks FILE [--hardware NAME] [--json]`: exit 1 if any number is impossible."""
    try:
        profile = get_profile(args.hardware)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    records = load_records(args.file)
    score = score_verdicts(check_benchmarks(records, profile))
    if getattr(args, "json", False):
        print(json.dumps({"records": len(records), "verdicts": [v.as_json() for v in score.verdicts]}, indent=1))
    else:
        n_imp = sum(v.severity == "impossible" for v in score.verdicts)
        n_sus = len(score.verdicts) - n_imp
        print(f"{args.file}: {len(records)} record{'s' * (len(records) != 1)} on {profile.display_name}: "
              f"{n_imp} impossible, {n_sus} suspicious, {score.points_lost:g} points lost")
        for v in score.verdicts:
            print(f"[{v.severity}] {v.rule}: {v.message}")
    return 1 if any(v.severity == "impossible" for v in score.verdicts) else 0

