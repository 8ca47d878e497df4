"""Running the user's benchmark command: argv only (no shell), live lines, as the sudo caller."""

from __future__ import annotations

import os
import sys

import pytest

from halotune.machine import usercmd
from halotune.machine.usercmd import RunAs, UserCommandError, invoking_user, run_user_command

PY = sys.executable


def test_streams_lines_live_and_keeps_them():
    script = ("import sys, time\n"
              "for i in range(3):\n"
              "    print(f'out {i}', flush=True)\n"
              "    print(f'err {i}', file=sys.stderr, flush=True)\n"
              "    time.sleep(0.05)\n"
              "sys.exit(3)\n")
    seen = []
    res = run_user_command([PY, "-c", script], lambda s, line: seen.append((s, line)),
                           run_as=None)
    assert res.returncode == 3 and not res.ok
    assert res.stdout == "out 0\nout 1\nout 2\n"
    assert res.stderr == "err 0\nerr 1\nerr 2\n"
    assert [x for x in seen if x[0] == "stdout"] == [("stdout", f"out {i}") for i in range(3)]
    assert [x for x in seen if x[0] == "stderr"] == [("stderr", f"err {i}") for i in range(3)]
    assert res.duration_s >= 0.1


def test_no_shell_arguments_pass_through_verbatim():
    res = run_user_command([PY, "-c", "import sys; print(sys.argv[1:])", "$(id)", "a b", ";ls"],
                           run_as=None)
    assert res.stdout.strip() == "['$(id)', 'a b', ';ls']"


def test_command_found_on_path_and_missing_command_is_a_clear_error(monkeypatch):
    res = run_user_command(["true"], run_as=None)
    assert res.ok
    with pytest.raises(UserCommandError, match="no-such-bench: command not found"):
        run_user_command(["no-such-bench", "-p", "1"], run_as=None)
    with pytest.raises(UserCommandError, match="/nonexistent/llama-bench: no such file"):
        run_user_command(["/nonexistent/llama-bench"], run_as=None)


def test_timeout_kills_the_command():
    res = run_user_command([PY, "-c", "import time; time.sleep(30)"], run_as=None, timeout=0.5)
    assert res.timed_out and not res.ok and res.duration_s < 10


def test_a_broken_callback_loses_no_output():
    def boom(stream, line):
        raise RuntimeError("display failed")
    res = run_user_command([PY, "-c", "print('a'); print('b')"], boom, run_as=None)
    assert res.stdout == "a\nb\n"


def test_invoking_user_only_for_root_under_sudo(monkeypatch):
    env = {"SUDO_UID": "65534", "SUDO_GID": "65534"}
    monkeypatch.setattr(usercmd.os, "geteuid", lambda: 1000)
    assert invoking_user(env) is None                 # not root: run as we are
    monkeypatch.setattr(usercmd.os, "geteuid", lambda: 0)
    who = invoking_user(env)
    assert (who.uid, who.gid) == (65534, 65534)
    assert invoking_user({}) is None                  # root, not under sudo
    assert invoking_user({"SUDO_UID": "0", "SUDO_GID": "0"}) is None   # sudo from root
    assert invoking_user({"SUDO_UID": "x", "SUDO_GID": "1"}) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_under_sudo_the_command_runs_as_the_invoking_user():
    import pwd

    try:
        nobody = pwd.getpwuid(65534)
    except KeyError:
        pytest.skip("no uid 65534 on this system")
    env = dict(os.environ, SUDO_UID="65534", SUDO_GID="65534")
    res = run_user_command(["id"], env=env)
    assert res.ok, res.stderr
    assert res.run_as is not None and res.run_as.uid == 65534
    # uid, gid and the supplementary groups are the user's, none of root's
    assert "uid=65534" in res.stdout and "gid=65534" in res.stdout
    assert "(root)" not in res.stdout
    who = run_user_command(["sh", "-c", "echo $HOME $USER"], env=env, run_as=True)
    assert who.stdout.split() == [nobody.pw_dir, nobody.pw_name]


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_explicit_run_as_and_permission_denied(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    script = private / "bench"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o700)
    with pytest.raises(UserCommandError, match="permission denied"):
        run_user_command([str(script)], run_as=RunAs(65534, 65534, []))
    res = run_user_command(["id", "-u"], run_as=RunAs(65534, 65534, []))
    assert res.stdout.strip() == "65534"
