"""Confirm-or-revert through the daemon (issue #12): the revert is armed whenever the journal
holds a deadline (an apply whose values drifted included), and a daemon (re)start arms the
deadline the journal holds again: a deadline still ahead is waited for, one already passed
reverts at once. The machine is compared byte for byte (machine_digest)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

from halotune.daemon.client import Client
from halotune.machine.rootfs import RootFS

from .conftest import machine_digest, wait_for

NO_RESTORE = "[daemon]\nrestore_on_exit = false\n"


def _journal(state_dir: str) -> dict:
    import json
    with open(os.path.join(state_dir, "journal.json"), encoding="utf-8") as f:
        return json.load(f)


def test_apply_that_drifted_is_still_reverted(sim_root, tmp_path, monkeypatch):
    """Another tool moves swappiness right after halotune writes it: the apply reports drift
    (ok false), and the unconfirmed profile must still be reverted at its deadline. The daemon
    serves in a thread of this process, so the racing tool is a patched RootFS.write_text."""
    from halotune.daemon.config import DaemonConfig
    from halotune.daemon.service import Daemon

    write_text = RootFS.write_text

    def racing_tool(self, rel, value):
        write_text(self, rel, value)
        if rel == "proc/sys/vm/swappiness" and value == "10":
            write_text(self, rel, "35")

    monkeypatch.setattr(RootFS, "write_text", racing_tool)
    original = machine_digest(sim_root)
    sock, state = str(tmp_path / "api.sock"), str(tmp_path / "dstate")
    cfg = DaemonConfig.model_validate({"daemon": {"sample_interval_s": 0.2,
                                                  "restore_on_exit": False},
                                       "api": {"socket_group": ""},
                                       "rules": {"drift": {"reassert": False,
                                                           "interval_s": 3600}}})
    d = Daemon(cfg, sim_root, state, sock)
    t = threading.Thread(target=lambda: asyncio.run(d.run()), daemon=True)
    t.start()
    try:
        def up():
            try:
                with Client(sock, timeout=2) as c:
                    return c.call("status") is not None
            except Exception:  # noqa: BLE001 - not up yet
                return False
        wait_for(up, 15.0, what="the daemon's socket")
        with Client(sock, timeout=30) as c:
            result = c.call("apply", {"profile": "llm-max", "confirm_s": 1})
        assert result["ok"] is False and "do not hold" in result["summary"], result
        assert _journal(state)["active"]["confirm_deadline"] is not None
        wait_for(lambda: _journal(state)["active"] is None, 10.0,
                 what="the revert of the unconfirmed, drifted apply")
        assert machine_digest(sim_root) == original
    finally:
        d.stop()
        t.join(15)


def _apply_then_kill(start_daemon, confirm_s: float):
    d = start_daemon(NO_RESTORE)
    result = d.call("apply", {"profile": "llm-max", "confirm_s": confirm_s})
    assert result["ok"], result
    deadline = _journal(d.state_dir)["active"]["confirm_deadline"]
    d.stop(signal.SIGKILL)             # a crash: systemd restarts the daemon
    return d, deadline


def test_restart_rearms_a_pending_deadline(start_daemon, sim_root):
    original = machine_digest(sim_root)
    d, _deadline = _apply_then_kill(start_daemon, 4)
    assert machine_digest(sim_root) != original
    d2 = start_daemon(NO_RESTORE, state_dir=d.state_dir)
    assert d2.profile() == "llm-max"          # still waiting for `halotune confirm`
    wait_for(lambda: _journal(d.state_dir)["active"] is None, 15.0,
             what="the revert armed again by the restarted daemon")
    assert machine_digest(sim_root) == original


def test_restart_after_the_deadline_reverts_at_once(start_daemon, sim_root):
    original = machine_digest(sim_root)
    d, deadline = _apply_then_kill(start_daemon, 0.5)
    time.sleep(max(0.0, deadline - time.time()) + 0.2)
    assert machine_digest(sim_root) != original, "nothing reverted while no daemon ran"
    start_daemon(NO_RESTORE, state_dir=d.state_dir)
    wait_for(lambda: _journal(d.state_dir)["active"] is None, 10.0,
             what="the revert of a deadline that passed while the daemon was down")
    assert machine_digest(sim_root) == original


def test_restart_does_not_apply_the_default_profile_over_a_pending_confirmation(start_daemon):
    """The default profile waits: applying it would replace the profile on trial and drop its
    deadline. The trial ends by its revert, as without a restart."""
    d, _deadline = _apply_then_kill(start_daemon, 3)
    d2 = start_daemon(NO_RESTORE + 'default_profile = "quiet"\n', state_dir=d.state_dir)
    assert d2.profile() == "llm-max"
    assert not d2.events("apply")
    d2.wait_event(lambda e: e["kind"] == "revert" and "was reverted" in e["message"], 15.0,
                  what="the revert of llm-max")
