"""Fixtures of the TUI tests; the data itself is in tuidata.py."""

from __future__ import annotations

import copy
import os
import tempfile

import pytest

from .tuidata import reference_doc as _reference_doc

_CACHE: dict = {}


@pytest.fixture
def reference_doc() -> dict:
    """The frozen reference snapshot (a fresh copy per test: tests may change it)."""
    if "doc" not in _CACHE:
        _CACHE["doc"] = _reference_doc()
    return copy.deepcopy(_CACHE["doc"])


def pytest_configure(config):
    """pytest-textual-snapshot writes its failure report into the working directory (the
    checkout) by default: put it in the temporary directory instead."""
    if getattr(config.option, "snapshot_report", None) == "snapshot_report.html":
        config.option.snapshot_report = os.path.join(tempfile.gettempdir(),
                                                     "halotune-snapshot-report.html")
