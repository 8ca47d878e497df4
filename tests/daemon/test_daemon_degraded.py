"""A damaged journal does not take the daemon down (issue 12, defect 9).

With `default_profile` set, the start path used to apply the profile over a journal that
cannot be read: the JournalError escaped and the service died at every start. Now the daemon
serves, monitors, changes nothing, and says why (status's daemon.degraded, the events).
"""

from __future__ import annotations

import json
import os

import pytest

from halotune.daemon.client import ApiError

from .conftest import machine_digest

CONFIG = '[daemon]\ndefault_profile = "quiet"\n'


def _damaged_journal(state_dir: str, sim_root: str, kind: str) -> str:
    os.makedirs(state_dir, mode=0o700)
    path = os.path.join(state_dir, "journal.json")
    if kind == "garbage":
        content = "{not json"
    else:   # an edited original: valid JSON whose checksum no longer matches
        content = json.dumps({
            "version": 1, "root": os.path.abspath(sim_root), "active": None, "txn": None,
            "baseline": {"power.stapm_w": {"state": 900.0, "boot_id": None, "boot_time": False,
                                           "side_effect": False}},
            "checksum": "sha256:" + "0" * 64})
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
    return path


@pytest.mark.parametrize("kind", ["garbage", "edited"])
def test_corrupt_journal_with_default_profile_keeps_the_daemon_running(start_daemon, sim_root,
                                                                       tmp_path, kind):
    state_dir = str(tmp_path / "state")
    path = _damaged_journal(state_dir, sim_root, kind)
    before = machine_digest(sim_root)
    d = start_daemon(CONFIG, state_dir=state_dir)
    status = d.call("status")
    degraded = status["daemon"]["degraded"]
    assert degraded and path in degraded and "damaged" in degraded, status["daemon"]
    assert status["daemon"]["profile"] is None
    assert any(path in e["message"] for e in d.events("error")), d.events()
    # A change asked for through the API is refused with the reason; the daemon stays up.
    with pytest.raises(ApiError) as e:
        d.call("apply", {"profile": "llm-max"})
    assert path in str(e.value)
    assert d.proc.poll() is None
    assert d.call("status")["daemon"]["degraded"] == degraded
    assert machine_digest(sim_root) == before
    with open(path, encoding="utf-8") as f:
        assert f.read().startswith("{"), "the damaged journal is left for inspection"


def test_a_healthy_daemon_is_not_degraded(start_daemon):
    d = start_daemon()
    assert d.call("status")["daemon"]["degraded"] is None
