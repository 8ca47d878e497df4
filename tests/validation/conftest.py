"""Fixtures for validate and sweep on the simulated Strix Halo with the `simulated` probe
backend (every document these tests check says backend "simulated").

- `sim_root`: a fresh simulated machine (on tmpfs when available).
- `venv`: no HALOTUNE_* from outside, no daemon socket, XDG cache (the generated "ci" model,
  shared by the whole session) and XDG state (calibration, user history) in tmp.
- `fast_ryzenadj`: the simulator's RyzenAdj stand-in run in-process (same code, same output,
  no interpreter start per call).
- `machine_state(root)`: every file's bytes and symlink's target under the root (the
  simulator's and the state directory left out) plus the TDP limits the stand-in reports:
  equal states = the machine is byte-for-byte the same.
- `run_cli(*args)`: `halotune ARGS` in-process -> (rc, stdout, stderr).
- PROBE_ARGS: the fast probe used throughout (preset ci, short budget).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile

import pytest

from halotune.machine import programs as _programs
from halotune.sim import ryzenadj as _sim_ryzenadj
from halotune.sim.tree import lay_out
from tuning.conftest import fast_run

EXCLUDED_TOP = (".halotune-sim", ".halotune-state")
PROBE_ARGS = ("--backend", "simulated", "--preset", "ci", "--budget", "5")


def machine_state(root: str) -> dict[str, str]:
    root = os.path.abspath(root)
    state: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in EXCLUDED_TOP]
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.islink(path):
                state[rel] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    state[rel] = hashlib.sha1(f.read()).hexdigest()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = _sim_ryzenadj.main(["-i"], root)
    state["(ryzenadj -i)"] = f"exit {rc}\n{out.getvalue()}"
    return state


def differences(a: dict, b: dict) -> list[str]:
    return [f"{k}: {a.get(k, '(absent)')} -> {b.get(k, '(absent)')}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


@pytest.fixture
def sim_root(tmp_path):
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
        base = tempfile.mkdtemp(prefix="halotune-validate-", dir="/dev/shm")
    else:
        base = str(tmp_path)
    root = os.path.join(base, "root")
    lay_out(root)
    yield root
    if base != str(tmp_path):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture
def venv(monkeypatch, tmp_path, model_cache):
    for k in list(os.environ):
        if k.startswith("HALOTUNE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("HALOTUNE_SOCKET", str(tmp_path / "no-daemon.sock"))
    monkeypatch.setenv("XDG_CACHE_HOME", model_cache)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture
def fast_ryzenadj(monkeypatch):
    monkeypatch.setattr(_programs.Programs, "run", fast_run)


@pytest.fixture
def run_cli(capsys, venv, fast_ryzenadj):
    from halotune.cli.main import main

    def run(*args):
        capsys.readouterr()
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        cap = capsys.readouterr()
        return rc, cap.out, cap.err

    return run


@pytest.fixture
def engine(sim_root, tmp_path, fast_ryzenadj):
    from halotune.machine.rootfs import RootFS
    from halotune.tuning.engine import Engine

    return Engine(RootFS(sim_root), str(tmp_path / "state"))


def write_profile(directory: str, name: str, text: str) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{name}.toml"), "w", encoding="utf-8") as f:
        f.write(text)
