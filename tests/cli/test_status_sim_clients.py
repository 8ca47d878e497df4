"""The simulated machine's GPU client (sim/gpuclients.py): the demo's GPU-process panel shows a
llama-server whose GTT, VRAM and engine time follow the simulated load, while processes are
still read from the host's /proc (machine/processes.py process_root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from halotune.machine.drmclients import DrmClientReader
from halotune.machine.processes import ProcessSource
from halotune.machine.rootfs import RootFS
from halotune.sim import gpuclients
from halotune.sim.animate import Animator
from halotune.sim.tree import lay_out
from halotune.telemetry.sampler import Sampler

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _llama(processes: list[dict]) -> dict:
    rows = [p for p in processes if p["name"] == "llama-server"]
    assert len(rows) == 1, processes
    return rows[0]


class _Clock:
    def __init__(self):
        self.ns = 10**12

    def __call__(self) -> int:
        return self.ns


def test_engine_time_and_gtt_follow_a_set_load(tmp_path):
    root = str(tmp_path / "m")
    lay_out(root)
    animator = Animator(root)
    sampler = Sampler(RootFS(root), read_tdp=False)
    clock = _Clock()
    sampler.drm_clients.clock = clock
    try:
        seen = {}
        for load in (0.9, 0.2, 0.9):
            animator.set_load(load)
            animator.step(1.0)
            sampler.sample()
            clock.ns += 2 * 10**9                  # two seconds between the reads ...
            animator.step(2.0)                     # ... and of simulated time
            row = _llama(sampler.sample().processes)
            seen.setdefault(load, []).append(row)
        for load, rows in seen.items():
            for row in rows:
                assert row["engine_gfx_percent"] == pytest.approx(load * 100, abs=0.1), (load, row)
                assert row["pci_slot"] == "0000:c3:00.0" and row["driver"] == "amdgpu"
                assert row["vram_bytes"] == gpuclients.VRAM_BYTES
                assert row["gtt_bytes"] > 60 * 10**9            # the loaded model's weights
        # the KV cache grows while the GPU works: GTT rises from read to read
        gtt = [seen[0.9][0]["gtt_bytes"], seen[0.2][0]["gtt_bytes"], seen[0.9][1]["gtt_bytes"]]
        assert gtt == sorted(gtt) and gtt[0] < gtt[-1], gtt
    finally:
        sampler.close()


def test_no_model_loaded_no_client(tmp_path):
    root = str(tmp_path / "m")
    lay_out(root, "idle")
    rows = DrmClientReader.of(RootFS(root)).read()
    assert not [r for r in rows if r["pid"] == gpuclients.PID], rows


def test_processes_are_still_the_hosts(tmp_path):
    # The simulated client is no process table: the rules and preflight still read the
    # host's /proc under a simulated tree, and never see the simulated pid.
    root = str(tmp_path / "m")
    lay_out(root)
    source = ProcessSource.of(RootFS(root), exclude_pid=1)
    assert source.proc == "/proc"
    table = source.snapshot()
    assert os.getpid() in table and gpuclients.PID not in table


def test_status_json_on_a_simulated_tree_lists_the_llama_server(tmp_path):
    root = str(tmp_path / "m")
    lay_out(root)
    Animator(root).step()
    p = subprocess.run([sys.executable, "-m", "halotune", "status", "--json", "--root", root],
                       capture_output=True, text=True, env=_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    row = _llama(json.loads(p.stdout)["processes"])
    assert row["pid"] == gpuclients.PID and row["gtt_bytes"] > 0 and row["vram_bytes"] > 0


def test_status_demo_json_shows_engine_time(tmp_path):
    p = subprocess.run([sys.executable, "-m", "halotune", "status", "--demo", "--json"],
                       capture_output=True, text=True, env=_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    row = _llama(json.loads(p.stdout)["processes"])
    assert row["gtt_bytes"] > 0
    assert row["engine_gfx_percent"] is not None and row["engine_gfx_percent"] > 0, row
