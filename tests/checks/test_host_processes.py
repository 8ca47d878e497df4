"""Where processes are read under --root (machine.processes.process_root, one rule for every
command): the host's for a simulated tree, a fake tree's own proc/<pid> when it carries one,
none for a recorded tree without processes. The host process here is real: a copy of
/bin/sleep named llama-server, so its comm and argv[0] are `llama-server`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from halotune.checks.facts import Facts
from halotune.daemon.rules.sources import Sources
from halotune.machine.processes import ProcessSource, process_root
from halotune.machine.rootfs import RootFS
from halotune.sim.tree import lay_out

from .conftest import add_process

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORDED = os.path.join(REPO, "tests", "fixtures", "strix-halo")


@pytest.fixture
def host_llama_server(tmp_path):
    """The pid of a real host process whose comm and argv[0] are llama-server. Started by a
    shell that exits at once, so it is not a descendant of this test (halotune leaves its own
    descendants out, and a user's server is no child of halotune either)."""
    exe = tmp_path / "bin" / "llama-server"
    exe.parent.mkdir()
    shutil.copy("/bin/sleep", exe)
    out = subprocess.run(["/bin/sh", "-c", f'"{exe}" 60 </dev/null >/dev/null 2>&1 & echo $!'],
                         capture_output=True, text=True, check=True).stdout
    pid = int(out)
    try:
        deadline = time.monotonic() + 5
        while True:                           # exec'd: /proc shows the new comm
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "llama-server":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the llama-server stand-in never started"
            time.sleep(0.01)
        yield pid
    finally:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def sim_tree(tmp_path) -> str:
    """A freshly laid-out simulated machine: no proc/<pid> of its own."""
    root = str(tmp_path / "sim")
    lay_out(root, "idle")
    return root


def _check(doc, cid):
    return next(c for c in doc["checks"] if c["id"] == cid)


def test_preflight_on_a_simulated_root_names_a_host_llama_server(run_cli, sim_tree,
                                                                  host_llama_server, tmp_path):
    r = run_cli("preflight", "--root", sim_tree, "--state-dir", str(tmp_path / "state"),
                "--window", "0.05", "--json")
    c = _check(r.json(), "llm_servers")
    assert c["status"] == "fail", c
    assert f"llama-server (pid {host_llama_server})" in c["value"]
    assert r.rc == 2, r


def test_doctor_and_daemon_read_the_same_table(sim_tree, host_llama_server):
    fs = RootFS(sim_tree)
    assert process_root(fs) == "/"
    assert host_llama_server in Facts(fs).processes
    sources = Sources.open(fs)
    try:
        # Other llama-servers may run on the host (another test's): ours must be among them.
        assert host_llama_server in [p.pid for p in sources.processes.matching(["llama-server"])]
    finally:
        sources.close()


def test_a_tree_with_its_own_process_table_hides_the_hosts(run_cli, sim_tree,
                                                           host_llama_server, tmp_path):
    """A test's fake processes stand in for the host's: read alone, never merged."""
    add_process(sim_tree, 1, "systemd", ["/sbin/init"], ppid=0)
    add_process(sim_tree, 5001, "ollama", ["/usr/bin/ollama", "serve"])
    fs = RootFS(sim_tree)
    assert process_root(fs) == fs.root
    assert set(ProcessSource.of(fs, exclude_pid=-1).snapshot()) == {1, 5001}
    r = run_cli("preflight", "--root", sim_tree, "--state-dir", str(tmp_path / "state"),
                "--window", "0.05", "--json")
    c = _check(r.json(), "llm_servers")
    assert c["status"] == "fail" and c["value"] == "ollama (pid 5001)", c


def test_a_recorded_tree_without_processes_has_none(run_cli, host_llama_server, tmp_path):
    """Another machine's record: this host's processes say nothing about it, and preflight
    says it did not look rather than "none"."""
    fs = RootFS(RECORDED)
    assert not fs.is_simulated and process_root(fs) is None
    assert ProcessSource.of(fs, exclude_pid=-1).snapshot() == {}
    assert Facts(fs).processes == {}
    r = run_cli("preflight", "--root", RECORDED, "--state-dir", str(tmp_path / "state"),
                "--window", "0", "--json")
    for cid in ("llm_servers", "gpu_clients"):
        c = _check(r.json(), cid)
        assert c["status"] == "skip" and "no processes" in c["value"], c
