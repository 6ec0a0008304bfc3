"""`make gpu-check` on a machine without a GPU: one line that says so, and a non-zero exit (CI must not mistake it for
a pass). On a GPU box the script itself is the test (it runs every GPU test and writes its report)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this box has a GPU: run `make gpu-check` itself")
def test_gpu_check_without_a_gpu_says_so_in_one_line_and_fails(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--report", str(report)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA GPU on this machine"), lines
    assert not report.exists()  # nothing that could be read as a report of a run
