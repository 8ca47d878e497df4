"""Authorisation (SO_PEERCRED): a member of the socket group may read, not change anything."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import tempfile

import pytest

from halotune.daemon.client import ApiError, Client


def _as_nobody(path: str, gid: int, uid: int) -> dict:
    """Fork; the child drops to uid/gid and calls status and apply; returns what it saw."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # the child: never returns
        os.close(r)
        out = {}
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            out["uid"] = os.getuid()
            with Client(path, timeout=10) as c:
                out["status_schema"] = c.call("status")["schema"]
                out["can_mutate"] = c.call("hello")["peer"]["can_mutate"]
                try:
                    c.call("apply", {"profile": "llm-max"})
                    out["apply"] = "accepted"
                except ApiError as e:
                    out["apply"] = [e.code, e.message]
                try:
                    c.call("hold", {"owner": "nobody"})
                    out["hold"] = "accepted"
                except ApiError as e:
                    out["hold"] = [e.code, e.message]
        except BaseException as e:  # noqa: BLE001 - report everything to the parent
            out["error"] = repr(e)
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def test_group_member_reads_but_may_not_apply(start_daemon):
    if os.geteuid() != 0:
        pytest.skip("needs root (CI runs as root): the test drops to nobody")
    try:
        nogroup = grp.getgrnam("nogroup").gr_gid
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no nogroup/nobody on this system")
    # The socket's directory must be reachable for nobody (tmp_path is 0700 root's).
    sockdir = tempfile.mkdtemp(prefix="halotune-auth-")
    os.chmod(sockdir, 0o755)
    path = os.path.join(sockdir, "api.sock")
    try:
        d = start_daemon('[api]\nsocket_group = "nogroup"\n', socket=path)
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert (st.st_uid, st.st_gid) == (0, nogroup)

        seen = _as_nobody(path, nogroup, nobody)
        assert "error" not in seen, seen
        assert seen["uid"] == nobody
        assert seen["status_schema"] == "halotune.status/1"
        assert seen["can_mutate"] is False
        code, message = seen["apply"]
        assert code == "EPERM" and f"uid {nobody}" in message, message
        assert seen["hold"][0] == "EPERM"

        auth = d.events("auth")
        assert any("apply" in e["message"] and f"uid {nobody}" in e["message"] for e in auth), auth
        assert d.profile() is None                       # nothing was applied
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.rmdir(sockdir) if not os.listdir(sockdir) else None
