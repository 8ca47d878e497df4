"""ProcessSource.owner and .exe: what a process rule with `users` or `exe` compares."""

from __future__ import annotations

import os
import subprocess
import sys

from halotune.machine.processes import ProcessSource


def test_owner_and_exe_of_a_real_process():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        source = ProcessSource(exclude_pid=1)
        source.snapshot()
        assert source.owner(child.pid) == os.getuid()
        assert source.exe(child.pid) == os.path.realpath(sys.executable)
    finally:
        child.kill()
        child.wait()


def test_owner_is_the_real_uid_of_the_status_line(tmp_path):
    # proc(5): "Uid:\treal\teffective\tsaved\tfs"; a fake table without an exe link.
    pid = tmp_path / "proc" / "4321"
    pid.mkdir(parents=True)
    (pid / "stat").write_text("4321 (llama-server) S 1 4321 4321 0 -1 0\n")
    (pid / "cmdline").write_bytes(b"llama-server\0")
    (pid / "comm").write_text("llama-server\n")
    (pid / "status").write_text("Name:\tllama-server\nUid:\t1001\t0\t0\t0\n"
                                "Gid:\t100\t100\t100\t100\n")
    source = ProcessSource(exclude_pid=1, proc=str(tmp_path / "proc"))
    assert 4321 in source.snapshot()
    assert source.owner(4321) == 1001
    assert source.exe(4321) is None              # unreadable: matches no exe rule
