"""Process rules narrowed by owner (users) and executable (exe) on the real daemon (issue 15):
any local user can start a process named llama-server; these conditions tell them apart."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from .conftest import wait_for

RULE = """
[rules]
min_switch_interval_s = 1

[[rules.process]]
name = "llama.cpp server"
match = ["llama-server"]
profile = "llm-max"
hold_s = 5
"""

REAL_SLEEP = os.path.realpath(shutil.which("sleep") or "/bin/sleep")


@pytest.fixture
def public_dir():
    """A directory every user can enter (pytest's tmp_path is 0700 for root)."""
    d = tempfile.mkdtemp(prefix="halotune-owner-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(5)


def _no_switch(d, seconds: float = 2.5) -> None:
    time.sleep(seconds)                          # more than two process polls (1 s apart)
    assert d.profile() is None
    assert not [e for e in d.events() if e["kind"] in ("rule", "apply")]


def test_exe_ignores_a_copy_named_llama_server_and_matches_the_real_path(
        start_daemon, public_dir, procs):
    copy = os.path.join(public_dir, "copy", "llama-server")
    os.makedirs(os.path.dirname(copy))
    shutil.copy(REAL_SLEEP, copy)
    link = os.path.join(public_dir, "link", "llama-server")   # comm llama-server, exe = sleep
    os.makedirs(os.path.dirname(link))
    os.symlink(REAL_SLEEP, link)
    d = start_daemon(RULE + f'exe = ["{REAL_SLEEP}", "/opt/llama.cpp/build/bin/*"]\n')

    fake = subprocess.Popen([copy, "60"])
    procs.append(fake)
    wait_for(lambda: os.readlink(f"/proc/{fake.pid}/exe") == copy, 5, what="the copy's exec")
    _no_switch(d)

    real = subprocess.Popen([link, "60"])
    procs.append(real)
    wait_for(lambda: d.profile() == "llm-max", 8, what="llm-max applied")
    started = d.wait_event(lambda e: e["kind"] == "rule" and "started" in e["message"])
    assert f"pid {real.pid}" in started["message"]


def test_exe_glob_matches_a_directory(start_daemon, public_dir, procs):
    path = os.path.join(public_dir, "build", "bin", "llama-server")
    os.makedirs(os.path.dirname(path))
    shutil.copy(REAL_SLEEP, path)
    d = start_daemon(RULE + f'exe = ["{public_dir}/build/bin/*"]\n')
    procs.append(subprocess.Popen([path, "60"]))
    wait_for(lambda: d.profile() == "llm-max", 8, what="llm-max applied")


def _as_nobody(argv: list[str]) -> subprocess.Popen:
    nobody = pwd.getpwnam("nobody")

    def drop():
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    return subprocess.Popen(argv, preexec_fn=drop)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_users_ignores_another_users_process(start_daemon, public_dir, procs):
    link = os.path.join(public_dir, "llama-server")
    os.symlink(REAL_SLEEP, link)
    me = pwd.getpwuid(os.getuid()).pw_name
    d = start_daemon(RULE + f'users = ["{me}"]\n')

    other = _as_nobody([link, "60"])
    procs.append(other)
    wait_for(lambda: os.readlink(f"/proc/{other.pid}/exe") == REAL_SLEEP, 5,
             what="nobody's exec")
    assert os.stat(f"/proc/{other.pid}").st_uid == pwd.getpwnam("nobody").pw_uid
    _no_switch(d)

    mine = subprocess.Popen([link, "60"])
    procs.append(mine)
    wait_for(lambda: d.profile() == "llm-max", 8, what="llm-max applied")
    started = d.wait_event(lambda e: e["kind"] == "rule" and "started" in e["message"])
    assert f"pid {mine.pid}" in started["message"]


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_users_by_uid_matches_that_user(start_daemon, public_dir, procs):
    link = os.path.join(public_dir, "llama-server")
    os.symlink(REAL_SLEEP, link)
    d = start_daemon(RULE + f'users = [{pwd.getpwnam("nobody").pw_uid}]\n')
    mine = subprocess.Popen([link, "60"])
    procs.append(mine)
    _no_switch(d)
    procs.append(_as_nobody([link, "60"]))
    wait_for(lambda: d.profile() == "llm-max", 8, what="llm-max applied")


def test_unknown_user_and_relative_exe_are_refused(tmp_path, daemon_env):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(RULE + 'users = ["no-such-user-halotune"]\nexe = ["llama-server"]\n')
    p = subprocess.run([sys.executable, "-m", "halotune", "daemon", "--check-config",
                        "--config", str(cfg)], capture_output=True, text=True, env=daemon_env,
                       timeout=30)
    assert p.returncode != 0
    assert "rules.process[0].users" in p.stderr and "no such user" in p.stderr, p.stderr
    assert "rules.process[0].exe" in p.stderr and "absolute" in p.stderr, p.stderr
