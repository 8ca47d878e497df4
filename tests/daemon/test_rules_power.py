"""Power source on the real daemon: a laptop's AC adapter and battery in the simulated tree."""

from __future__ import annotations

import os

from halotune.machine.eventsources import send_sim_uevent

from .conftest import wait_for

CONFIG = """
[rules]
min_switch_interval_s = 1

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


def test_a_local_users_process_never_holds_a_high_power_profile_on_battery(
        start_daemon, sim_root, fake_process):
    # Issue 15: process rules outranked the power source, so anyone could start a process
    # named llama-server and keep llm-max on battery.
    d = start_daemon(CONFIG + """
[[rules.process]]
name = "llama.cpp server"
match = ["llama-server"]
profile = "llm-max"
hold_s = 5
""")
    wait_for(lambda: d.profile() == "llm-max", 8, what="ac_profile at start")
    _write(sim_root, "sys/class/power_supply/BAT0/type", "Battery")
    _write(sim_root, "sys/class/power_supply/BAT0/status", "Discharging")
    _write(sim_root, "sys/class/power_supply/ACAD/online", "0")
    wait_for(lambda: d.profile() == "quiet", 8, what="battery_profile")
    fake_process("llama-server")
    d.wait_event(lambda e: e["kind"] == "rule" and "started" in e["message"], 8,
                 "the process rule noticing the server")
    d.wait_event(lambda e: e["kind"] == "rule" and "power source" in e["message"], 2)
    assert d.profile() == "quiet"
    assert not [e for e in d.events("apply") if "llama-server" in e["message"]]
