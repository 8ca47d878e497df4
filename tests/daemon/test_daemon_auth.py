"""Authorisation (SO_PEERCRED): a member of the socket group may read, not change anything."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import tempfile

import pytest

from halotune.daemon.client import ApiError, Client

from .conftest import in_child_as


def _as_nobody(path: str, gid: int, uid: int) -> dict:
    """In a child dropped to uid/gid: status, then apply and hold; returns what it saw."""
    def calls() -> dict:
        out = {"uid": os.getuid()}
        with Client(path, timeout=10) as c:
            out["status_schema"] = c.call("status")["schema"]
            out["can_mutate"] = c.call("hello")["peer"]["can_mutate"]
            for method, params in (("apply", {"profile": "llm-max"}),
                                   ("hold", {"owner": "nobody"})):
                try:
                    c.call(method, params)
                    out[method] = "accepted"
                except ApiError as e:
                    out[method] = [e.code, e.message]
        return out
    return in_child_as(uid, gid, calls)


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


def _as_user(path: str, uid: int, gid: int, groups: list[int]) -> dict:
    """In a child dropped to uid/gid with supplementary `groups`: apply llm-max and roll back
    through the API; returns what it saw."""
    def calls() -> dict:
        out = {"groups": sorted(os.getgroups())}
        with Client(path, timeout=60) as c:
            out["can_mutate"] = c.call("hello")["peer"]["can_mutate"]
            for method, params in (("apply", {"profile": "llm-max"}), ("rollback", {})):
                try:
                    out[method] = c.call(method, params)
                except ApiError as e:
                    out[method] = [e.code, e.message]
                if method == "apply":
                    out["profile_after_apply"] = c.call("status")["daemon"]["profile"]
        return out
    return in_child_as(uid, gid, calls, groups)


def test_admin_group_member_applies_and_rolls_back_others_cannot(start_daemon, sim_root):
    # admin_group was in no test: a non-root member of it may change the machine.
    if os.geteuid() != 0:
        pytest.skip("needs root (CI runs as root): the test drops to nobody")
    try:
        nogroup = grp.getgrnam("nogroup").gr_gid
        adm = grp.getgrnam("adm").gr_gid
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no nogroup/adm/nobody on this system")
    from .conftest import machine_digest, read

    original = machine_digest(sim_root)
    sockdir = tempfile.mkdtemp(prefix="halotune-admin-")
    os.chmod(sockdir, 0o755)
    path = os.path.join(sockdir, "api.sock")
    try:
        d = start_daemon('[api]\nsocket_group = "nogroup"\nadmin_group = "adm"\n', socket=path)

        outsider = _as_user(path, nobody, nogroup, [])
        assert "error" not in outsider, outsider
        assert outsider["can_mutate"] is False
        assert outsider["apply"][0] == "EPERM" and "adm" in outsider["apply"][1], outsider
        assert outsider["rollback"][0] == "EPERM"
        assert d.profile() is None and machine_digest(sim_root) == original

        admin = _as_user(path, nobody, nogroup, [adm])
        assert "error" not in admin, admin
        assert admin["groups"] == [adm]
        assert admin["can_mutate"] is True
        assert admin["apply"]["ok"] is True, admin["apply"]
        assert admin["profile_after_apply"] == "llm-max"
        assert admin["rollback"]["ok"] is True, admin["rollback"]
        assert d.profile() is None
        assert machine_digest(sim_root) == original
        applies = [e for e in d.events() if e["kind"] == "apply"]
        assert applies and f"uid {nobody}" in applies[-1]["message"], applies
        assert read(sim_root, "proc/sys/vm/swappiness") != "10"
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.rmdir(sockdir) if not os.listdir(sockdir) else None
