"""Fixtures for the history tests: a private environment (no daemon socket, the user database
under tmp_path, no sudo variables) and a fresh database path."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def hist_env(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith("HALOTUNE_") or k in ("SUDO_UID", "SUDO_GID", "SUDO_USER"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("HALOTUNE_SOCKET", str(tmp_path / "no-daemon.sock"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    return tmp_path


@pytest.fixture
def db_path(hist_env) -> str:
    return str(hist_env / "h" / "history.db")
