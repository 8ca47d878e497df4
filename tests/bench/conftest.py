"""Fixtures for the bench tests: a simulated Strix Halo, a private environment, and a fast
preflight (its observation window shortened; the checks are the real ones)."""

from __future__ import annotations

import functools
import os

import pytest

from halotune.sim.tree import lay_out


@pytest.fixture
def hist_env(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith("HALOTUNE_") or k in ("SUDO_UID", "SUDO_GID", "SUDO_USER"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("HALOTUNE_SOCKET", str(tmp_path / "no-daemon.sock"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("STANDIN_SLEEP", "0.3")
    return tmp_path


@pytest.fixture
def sim(hist_env, monkeypatch) -> str:
    root = str(hist_env / "machine")
    lay_out(root)
    try:
        from halotune.checks import preflight
    except ImportError:
        return root
    monkeypatch.setattr(preflight, "run_preflight",
                        functools.partial(preflight.run_preflight, window_s=0.3))
    return root
