"""Power source on the real daemon: a laptop's AC adapter and battery in the simulated tree."""

from __future__ import annotations

import os

from halotune.machine.eventsources import send_sim_uevent

from .conftest import wait_for

CONFIG = """
[rules.power_source]
ac_profile = "llm-max"
battery_profile = "quiet"
"""


def _write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")


def test_battery_and_back_to_ac(start_daemon, sim_root):
    d = start_daemon(CONFIG)
    wait_for(lambda: d.profile() == "llm-max", 8, what="ac_profile at start")
    ev = d.wait_event(lambda e: e["kind"] == "rule" and e["message"].startswith("power source: AC"))
    assert "ACAD online" in ev["message"]

    # unplugged: a battery appears (a laptop), the adapter goes offline; found by polling
    _write(sim_root, "sys/class/power_supply/BAT0/type", "Battery")
    _write(sim_root, "sys/class/power_supply/BAT0/status", "Discharging")
    _write(sim_root, "sys/class/power_supply/ACAD/online", "0")
    wait_for(lambda: d.profile() == "quiet", 8, what="battery_profile")
    ev = d.wait_event(lambda e: e["message"].startswith("power source: battery"))
    assert "BAT0" in ev["message"] and ev["data"]["on_ac"] is False

    # plugged in again, announced by a power_supply uevent: no wait for the next poll
    _write(sim_root, "sys/class/power_supply/ACAD/online", "1")
    send_sim_uevent(sim_root, "power_supply", "change", "/devices/LNXSYSTM:00/ACAD")
    wait_for(lambda: d.profile() == "llm-max", 4, what="ac_profile again")
