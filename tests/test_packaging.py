"""A non-editable install works: the wheel carries the engine, its templates, and the course's data (rubrics/ and
assignments/ as package data), and finds them with no source tree in sight.

The wheel is built without build isolation (the venv's setuptools; nothing is downloaded) and installed with
--no-deps into a fresh venv. That venv sees the dependencies (torch, transformers, ...) through a .pth line naming
this venv's site-packages: a plain path line, so this venv's editable install of the project (a meta-path finder set
up by its own .pth file) is not activated there and cannot shadow the wheel. pip does see that editable install's
metadata, so it installs with --ignore-installed: it puts the wheel in the fresh venv and never touches, let alone
uninstalls, anything outside it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from autograder.paths import lab_ids

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{argv[:3]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel installed; returns its bin folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    # From a clean copy: an in-tree build leaves build/lib behind, and a later wheel would ship stale modules from it.
    src = tmp / "src"
    junk = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                                  ".hypothesis")
    shutil.copytree(ROOT, src, ignore=junk)
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
          "--disable-pip-version-check", "-q", "-w", str(tmp / "dist")], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("sparkgrade-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    py = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "--ignore-installed",
          "-q", "--disable-pip-version-check", str(wheel)], cwd=tmp)
    return env_dir / "bin"


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH and no override of the data folders: the installed package must find its own."""
    drop = {"PYTHONPATH", "SPARKGRADE_RUBRICS", "SPARKGRADE_ASSIGNMENTS"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_the_installed_wheel_runs_the_cli_and_finds_every_lab_without_the_source_tree(installed: Path,
                                                                                        tmp_path: Path) -> None:
    env = _clean_env()
    assert "grade" in _run([str(installed / "sparkgrade"), "--help"], cwd=tmp_path, env=env)
    probe = ("import json, autograder, autograder.paths as p, autograder.feedback.render as r;"
             "print(json.dumps({'engine': autograder.__file__, 'rubrics': str(p.rubrics_root()),"
             " 'labs': p.lab_ids(), 'templates': r.environment().list_templates()}))")
    found = json.loads(_run([str(installed / "python"), "-c", probe], cwd=tmp_path, env=env))
    site = str(installed.parent)
    assert found["engine"].startswith(site) and found["rubrics"].startswith(site)  # the wheel's, not this tree's
    assert found["labs"] == lab_ids() and found["labs"]
    assert "feedback.html.j2" in found["templates"]  # Jinja's PackageLoader reads them from the wheel


def test_the_wheel_carries_templates_checks_and_source_notebooks(installed: Path, tmp_path: Path) -> None:
    site = next((installed.parent / "lib").glob("python3*/site-packages"))
    for lab in lab_ids():
        assert (site / "sparkgrade_rubrics" / lab / "rubric.yaml").is_file()
        assert list((site / "sparkgrade_rubrics" / lab).glob("test_*.py")), lab
        assert (site / "sparkgrade_assignments" / "source" / lab / f"{lab}.ipynb").is_file()
    assert list((site / "autograder" / "feedback" / "templates").glob("*.html.j2"))
    assert (site / "autograder" / "sandbox" / "inside" / "harness.py").is_file()
    (wheel,) = (installed.parents[1] / "dist").glob("*.whl")  # bytecode is the installer's business, not the wheel's
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if "__pycache__" in n or n.endswith(".pyc")]
