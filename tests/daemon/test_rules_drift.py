"""Drift on the real daemon: another actor's change is re-asserted within the interval and
named in an event; a persistent fight backs off with ONE "keeps winning" event."""

from __future__ import annotations

import threading
import time

from halotune.machine.rootfs import RootFS

from .conftest import read, wait_for

CONFIG = '[daemon]\ndefault_profile = "llm-max"\n\n[rules.drift]\ninterval_s = 1\n'
SWAPPINESS = "proc/sys/vm/swappiness"


def test_changed_value_is_reasserted_and_named(start_daemon, sim_root, fake_process):
    tuned = fake_process("tuned")                         # a conflicting daemon runs
    time.sleep(0.1)
    d = start_daemon(CONFIG)
    ev = d.wait_event(lambda e: e.get("data", {}).get("rule") == "conflict", 5, "the conflict")
    assert ev["kind"] == "drift" and f"tuned (pid {tuned.pid})" in ev["message"]
    assert "TuneD" in ev["message"]
    assert d.profile() == "llm-max" and read(sim_root, SWAPPINESS) == "10"
    RootFS(sim_root).write_text(SWAPPINESS, "60")                 # another actor
    t0 = time.monotonic()
    wait_for(lambda: read(sim_root, SWAPPINESS) == "10", 5, what="the re-assert")
    assert time.monotonic() - t0 < 2.5                             # within the drift interval
    ev = d.wait_event(lambda e: e["kind"] == "drift" and "changed by another actor" in e["message"])
    assert "vm.swappiness" in ev["message"] and "60" in ev["message"]
    assert ev["data"]["keys"] == ["sysctl.vm.swappiness"]
    d.wait_event(lambda e: e["kind"] == "apply" and "drift re-assert" in e["message"])
    assert d.call("status")["daemon"]["verified"] is True


def test_platform_profile_drift_is_reasserted(start_daemon, sim_root):
    d = start_daemon('[daemon]\ndefault_profile = "quiet"\n')
    assert read(sim_root, "sys/firmware/acpi/platform_profile") == "low-power"
    RootFS(sim_root).write_text("sys/firmware/acpi/platform_profile", "performance")
    wait_for(lambda: read(sim_root, "sys/firmware/acpi/platform_profile") == "low-power", 5,
             what="platform_profile re-asserted")
    ev = d.wait_event(lambda e: e["kind"] == "drift" and "changed by another actor" in e["message"])
    assert "power.platform_profile" in ev["message"]


def test_persistent_fight_backs_off_with_one_event(start_daemon, sim_root):
    d = start_daemon(CONFIG)
    stop = threading.Event()

    def fight():
        fs = RootFS(sim_root)
        while not stop.is_set():
            if read(sim_root, SWAPPINESS) != "60":
                fs.write_text(SWAPPINESS, "60")
            stop.wait(0.05)

    t = threading.Thread(target=fight)
    t.start()
    try:
        ev = d.wait_event(lambda e: "keeps winning" in e["message"], 12, "the keeps-winning event")
        assert ev["kind"] == "drift" and "vm.swappiness" in ev["message"]
        time.sleep(2.0)                                   # the fight goes on...
    finally:
        stop.set()
        t.join()
    events = d.events()
    assert len([e for e in events if "keeps winning" in e["message"]]) == 1
    # back-off: far fewer re-asserts than one a second
    reasserts = [e for e in events if e["kind"] == "apply" and "drift re-assert" in e["message"]]
    assert 3 <= len(reasserts) <= 5, [e["message"] for e in reasserts]
