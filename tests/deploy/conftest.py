"""Shared by the packaging tests: the repository, and the rule for missing tools.

A tool these tests drive (promtool, dpkg-buildpackage, ansible-playbook) may be absent on a
developer's machine: the test skips and says which. In CI (CI=true) .ci/run installs them, so
an absent tool is a failure there, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def need(condition: bool, why: str) -> None:
    """Skip (fail in CI) unless `condition`."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"{why} (CI=true: .ci/run must provide it)")
    pytest.skip(why)


def require_tool(name: str, path: str | None = None) -> str:
    """The full path of executable `name` (searched in `path`, else PATH)."""
    found = shutil.which(name, path=path)
    need(found is not None, f"{name} not installed")
    return found


def clean_env() -> dict:
    """This environment without the test run's Python settings (PYTHONPATH points into the
    checkout; VIRTUAL_ENV at the test venv) or halotune's."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "HALOTUNE_")) and k != "VIRTUAL_ENV"}


def copy_tree(dest: str) -> None:
    """The project's files (git's view when there is one: no .venv, no build leftovers)."""
    if os.path.exists(os.path.join(REPO, ".git")):
        files = subprocess.run(["git", "-C", REPO, "ls-files", "-co", "--exclude-standard", "-z"],
                               capture_output=True, check=True).stdout.split(b"\0")
        for rel in filter(None, (f.decode() for f in files)):
            src, dst = os.path.join(REPO, rel), os.path.join(dest, rel)
            if not os.path.lexists(src):
                continue                  # deleted in the work tree
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            else:
                shutil.copy2(src, dst)
    else:
        shutil.copytree(REPO, dest, symlinks=True, ignore=shutil.ignore_patterns(
            ".venv", ".venv-ansible", ".git", "__pycache__", "*.egg-info", "build",
            ".halotune-*"))
