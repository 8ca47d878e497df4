"""Fixtures for the simulated Strix Halo.

Laying out a tree creates some 550 files, which costs ~0.2 s on a disk-backed tmp. Laying out
again over an existing simulated machine only rewrites what differs (~5 ms), so the tests
share one tree per session and reset it to the reference moment before each test; that reset
is itself the documented lay_out behaviour under test.
"""

from __future__ import annotations

import pytest

from halotune.machine.rootfs import RootFS
from halotune.sim.tree import lay_out


@pytest.fixture(scope="session")
def _sim_tree(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("sim") / "root")
    lay_out(root)
    return root


@pytest.fixture
def sim_root(_sim_tree) -> str:
    """A simulated machine in the reference scenario, freshly reset."""
    lay_out(_sim_tree)
    return _sim_tree


@pytest.fixture
def sim_fs(sim_root) -> RootFS:
    return RootFS(sim_root)
