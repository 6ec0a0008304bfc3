"""The Makefile's front door on other machines: it picks the newest python3.1x >= 3.11 that actually runs, and a new
TORCH_SPEC (the CUDA build on a GPU box) re-runs the setup instead of being ignored behind the install stamp. Only the
small rules run here (`make -n` or the torch stamp itself), never the setup."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def make(*args: str, venv: Path) -> str:
    proc = subprocess.run(["make", "-C", str(ROOT), f"VENV={venv}", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "MAKEFLAGS": ""})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_setup_uses_the_newest_python_that_runs_and_it_is_at_least_3_11(tmp_path):
    plan = make("-n", "setup", venv=tmp_path / "venv")
    (python,) = re.findall(r"\|\| (\S+) -m venv", plan)
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True)
    major, minor = map(int, out.stdout.split())
    assert (major, minor) >= (3, 11)
    for newer in range(minor + 1, 15):  # nothing newer on PATH runs (a pyenv shim of an absent version does not)
        other = shutil.which(f"python3.{newer}")
        assert other is None or subprocess.run([other, "-c", ""], capture_output=True).returncode != 0
    assert re.findall(r"\|\| (\S+) -m venv", make("-n", "setup", f"PYTHON={sys.executable}",
                                                   venv=tmp_path / "venv")) == [sys.executable]


def test_a_new_torch_spec_rewrites_the_torch_stamp_the_install_stamp_depends_on(tmp_path):
    venv = tmp_path / "venv"
    stamp = venv / ".sparkgrade-torch"
    make(str(stamp), "TORCH_SPEC=torch==2.13.0", venv=venv)
    assert stamp.read_text().strip() == "torch==2.13.0"
    os.utime(stamp, (1_000_000, 1_000_000))
    make(str(stamp), "TORCH_SPEC=torch==2.13.0", venv=venv)
    assert stamp.stat().st_mtime == 1_000_000  # same spec: untouched, so the setup is not re-run
    make(str(stamp), "TORCH_SPEC=torch==2.9.1", "TORCH_INDEX=https://download.pytorch.org/whl/cu130", venv=venv)
    assert stamp.read_text().strip() == "torch==2.9.1 https://download.pytorch.org/whl/cu130"
    assert stamp.stat().st_mtime > 1_000_000  # newer than the install stamp: the setup runs again
    plan = make("-n", "setup", "TORCH_SPEC=torch==2.9.1", "TORCH_INDEX=https://download.pytorch.org/whl/cu130",
                venv=venv)
    assert "--index-url https://download.pytorch.org/whl/cu130" in plan and "torch==2.9.1" in plan


def test_make_test_runs_everything_in_parallel_and_test_fast_skips_only_the_slow_tests(tmp_path):
    def pytest_line(*args: str) -> str:
        (line,) = [ln for ln in make("-n", *args, venv=tmp_path / "venv").splitlines() if " -m pytest" in ln]
        return line

    full, fast = pytest_line("test"), pytest_line("test-fast")
    assert "-n 3" in full and "--dist loadgroup" in full and "-m " not in full.split(" -m pytest", 1)[1]
    assert fast.startswith(full) and fast.endswith('-m "not slow"')
    assert "-n 0" in pytest_line("test", "TEST_WORKERS=0")


def test_the_modules_kept_on_one_worker_exist():
    # by path: under xdist a rubric folder's conftest.py can be the module named "conftest"
    spec = importlib.util.spec_from_file_location("tests_conftest", ROOT / "tests" / "conftest.py")
    assert spec and spec.loader
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    _ONE_WORKER_MODULES = conftest._ONE_WORKER_MODULES

    assert all((ROOT / "tests" / f"{name}.py").is_file() for name in _ONE_WORKER_MODULES), _ONE_WORKER_MODULES
