"""The checks' data files (thresholds.toml, doctor.toml) travel with halotune as package data."""

from __future__ import annotations

import fnmatch
import os
import tomllib
from importlib import resources

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = ("thresholds.toml", "doctor.toml")


def test_data_files_found_with_importlib_resources():
    d = resources.files("halotune.checks")
    for name in DATA:
        assert d.joinpath(name).read_text("utf-8").strip()


def test_data_files_declared_as_package_data():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"].get("package-data", {})
    patterns = data.get("halotune.checks", [])
    for name in DATA:
        assert any(fnmatch.fnmatch(name, p) for p in patterns), (
            f'pyproject.toml [tool.setuptools.package-data] needs "halotune.checks" = ["*.toml"] '
            f"for {name}")
