"""Shared fixtures: the reference Strix Halo tree, copies of it, and the generated trees.

The reference tree (tests/fixtures/strix-halo) is only ever read in place; every test that
changes a file works on a copy made with symlinks kept (shutil.copytree(symlinks=True)), so
sys/class/drm/card1 and friends resolve inside the copy exactly as they do in the original.
The Navi 31 and Phoenix trees are written by tests/fixtures/trees/build_trees.py into tmp_path.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
FIXTURES = os.path.join(TESTS, "fixtures")
REFERENCE = os.path.join(FIXTURES, "strix-halo")
GOLDEN = os.path.join(FIXTURES, "golden")
# Root-relative device directory of the reference GPU (the real path, not the class symlink).
REF_DEV = "sys/devices/pci0000:00/0000:00:08.1/0000:c3:00.0"
REF_CARD_DEV = "sys/class/drm/card1/device"

sys.path.insert(0, os.path.join(FIXTURES, "trees"))

import build_trees  # noqa: E402  (tests/fixtures/trees, put on sys.path above)

import halotune.sim  # noqa: E402

# Writes under a simulated root are answered by the simulated kernel, as the CLI wires it.
halotune.sim.wire()

# The suite never touches the user's own cache and state (generated models, the probe's frozen
# calibration, the user history database): one private directory per session, set before any
# test runs so child processes inherit it too.
_PRIVATE_HOME = tempfile.mkdtemp(prefix="halotune-tests-")
atexit.register(shutil.rmtree, _PRIVATE_HOME, True)
for _var, _sub in (("XDG_CACHE_HOME", "cache"), ("XDG_STATE_HOME", "state"),
                   ("HALOTUNE_CACHE_DIR", "cache/halotune")):
    os.environ[_var] = os.path.join(_PRIVATE_HOME, _sub)


def copy_reference(dest: str) -> str:
    """A private copy of the reference tree with its symlinks kept; returns the root."""
    shutil.copytree(REFERENCE, dest, symlinks=True)
    return dest


@pytest.fixture
def reference_root() -> str:
    """The committed reference tree itself (read-only use)."""
    return REFERENCE


@pytest.fixture
def ref_copy(tmp_path) -> str:
    """A writable copy of the reference tree."""
    return copy_reference(str(tmp_path / "strix-halo"))


@pytest.fixture
def navi31_root(tmp_path) -> str:
    return build_trees.build_navi31(str(tmp_path / "navi31"))


@pytest.fixture
def phoenix_root(tmp_path) -> str:
    return build_trees.build_phoenix(str(tmp_path / "phoenix"))


@pytest.fixture
def empty_root(tmp_path) -> str:
    root = tmp_path / "empty"
    root.mkdir()
    return str(root)


@pytest.fixture
def subprocess_env():
    """Environment for running halotune as a child: this checkout importable, no inherited
    HALOTUNE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALOTUNE_")}
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
