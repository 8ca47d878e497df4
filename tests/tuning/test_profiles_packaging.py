"""The shipped profiles travel with halotune: as package data of `halotune.profiles` (wheel,
editable install), and from <repo>/profiles when halotune runs from an uninstalled tree."""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.resources
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from halotune.tuning import loader
from halotune.tuning.loader import ProfileStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(REPO, "profiles")
TOML_FILES = sorted(f for f in os.listdir(SHIPPED) if f.endswith(".toml"))


def test_importlib_resources_finds_the_profiles():
    # Works in the source tree (through the halotune/profiles link), in an editable install
    # (the bootstrap/CI path) and in an installed wheel alike.
    d = importlib.resources.files("halotune.profiles")
    found = sorted(t.name for t in d.iterdir() if t.name.endswith(".toml"))
    assert found == TOML_FILES
    for name in TOML_FILES:
        with open(os.path.join(SHIPPED, name), "rb") as f:
            assert d.joinpath(name).read_bytes() == f.read()


def test_default_store_uses_the_shipped_profiles(tmp_path):
    s = ProfileStore(str(tmp_path))            # no shipped_dir: found the way users get it
    assert s.names() == [f[:-5] for f in TOML_FILES]
    p = s.load("llm-max")
    assert p.display_path == "profiles/llm-max.toml"
    assert os.path.samefile(p.path, os.path.join(SHIPPED, "llm-max.toml"))


def test_source_tree_fallback_without_the_package(monkeypatch, tmp_path):
    # A checkout where halotune.profiles cannot be imported (e.g. the link was not checked
    # out): the loader falls back to <repo>/profiles next to the halotune package.
    def no_package(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.resources, "files", no_package)
    d = loader.shipped_profiles_dir()
    assert d is not None and os.path.samefile(str(d), SHIPPED)
    assert ProfileStore(str(tmp_path)).load("quiet").display_path == "profiles/quiet.toml"


def test_packaging_configuration_ships_every_profile():
    setuptools = pytest.importorskip("setuptools")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        cfg = tomllib.load(f)["tool"]["setuptools"]
    find = cfg["packages"]["find"]
    packages = setuptools.find_namespace_packages(where=REPO, include=find["include"],
                                                  exclude=find.get("exclude", ()))
    assert "halotune.profiles" in packages
    pkg_dir = os.path.join(REPO, *"halotune.profiles".split("."))
    assert os.path.samefile(pkg_dir, SHIPPED)
    patterns = cfg["package-data"]["halotune.profiles"]
    shipped = {os.path.basename(p) for pat in patterns
               for p in glob.glob(os.path.join(pkg_dir, pat))}
    assert set(TOML_FILES) <= shipped


def _can_build_offline() -> str | None:
    """Why a --no-build-isolation wheel build cannot run here, or None."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return "setuptools is not installed"
    major = int(version.split(".")[0])
    if major < 77:     # pyproject.toml uses a PEP 639 license string (setuptools >= 77)
        return f"setuptools {version} is too old to build this project without isolation"
    return None


@pytest.mark.skipif(_can_build_offline() is not None, reason=str(_can_build_offline()))
def test_wheel_carries_the_profiles(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(REPO, f), src / f)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(REPO, "halotune"), src / "halotune", symlinks=True, ignore=ignore)
    shutil.copytree(SHIPPED, src / "profiles", ignore=ignore)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "--no-index", "-q", "-w", str(tmp_path / "dist"), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = glob.glob(str(tmp_path / "dist" / "halotune-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in TOML_FILES:
        assert f"halotune/profiles/{f}" in names
    assert "halotune/profiles/__init__.py" in names
