"""The pure parts of the rules: arbitration, process matching, and the event sources over the
simulated root (no daemon)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from halotune.daemon.rules.arbitration import PRIORITY, Candidate, arbitrate, outranks
from halotune.daemon.rules.thermal import ThermalGuard, tdp_of
from halotune.machine.eventsources import (ClockSource, PowerSupplySource, SimUevents,
                                           send_sim_uevent)
from halotune.machine.processes import ProcessSource, ProcInfo, conflicting
from halotune.machine.rootfs import RootFS

from .conftest import wait_for


# --- arbitration -----------------------------------------------------------------------------

def test_priority_order_is_the_issue_s():
    # Battery above the process rules (issue 15: anyone can start a matching process).
    assert PRIORITY == ("hold", "manual", "thermal", "battery", "process", "power", "default")


def test_arbitrate_picks_the_highest_priority():
    default = Candidate("default", "llm-efficient")
    power = Candidate("power", "quiet")
    process = Candidate("process", "llm-max")
    manual = Candidate("manual", "bench-stable")
    assert arbitrate([]) == (None, None)
    assert arbitrate([None, default]) == ("llm-efficient", "default")
    assert arbitrate([default, power]) == ("quiet", "power")
    assert arbitrate([power, default, process]) == ("llm-max", "process")
    assert arbitrate([process, manual, power, default]) == ("bench-stable", "manual")
    # No rule ever makes a "hold" candidate: a hold stops the rules before they decide
    # (Rules.on_sample returns while hold_active()). What a hold really does, on the real daemon,
    # is tested in test_rules_hold.py (a process rule does not switch while it lasts).
    # first candidate wins a tie (process rules in configuration order)
    assert arbitrate([Candidate("process", "a"), Candidate("process", "b")]) == ("a", "process")


def test_outranks():
    assert outranks("thermal", "process") and outranks("thermal", "default")
    assert not outranks("thermal", "manual")
    assert outranks("default", None)
    with pytest.raises(ValueError):
        Candidate("cron", "x")


class _Fired:
    def __init__(self):
        self.events = []

    def fire(self, rule, message, kind="rule", **data):
        self.events.append((rule, message, data))


class _ThermalCfg:
    enabled, limit_c, seconds, step_w, min_w = True, 90.0, 2.0, 10.0, 100.0


def test_thermal_steps_down_to_the_floor_and_overlays_the_profile():
    from halotune.tuning.loader import ProfileStore
    fired = _Fired()
    guard = ThermalGuard(fired, _ThermalCfg())
    base = ProfileStore().load("llm-max")
    values = tdp_of(base, {})
    assert values == {"power.stapm_w": 120.0, "power.slow_w": 120.0, "power.fast_w": 120.0}
    guard._hot_since, guard.temp = 0.0, 95.0
    assert guard.due(2.0) and not guard.due(1.0)
    guard.step(values, 2.0)
    assert guard.cap == {k: 110.0 for k in values}
    eff = guard.overlay(base, {})
    assert eff.name.startswith("llm-max+thermal-110")
    assert eff.values["power.stapm_w"] == 110.0 and eff.values["cpu.governor"] == "performance"
    guard.step(values, 4.0)
    assert guard.cap == {k: 100.0 for k in values}                    # the floor (min_w)
    guard.step(values, 6.0)
    assert guard.cap == {k: 100.0 for k in values}
    assert "floor" in fired.events[-1][1]
    # a base profile already below the ceiling needs no override
    quiet = ProfileStore().load("quiet")
    assert guard.overlay(quiet, {}) is None
    # no profile: the machine's own limits are capped
    eff = guard.overlay(None, {"power.stapm_w": 120.0, "power.slow_w": 120.0,
                               "power.fast_w": 140.0})
    assert eff.values == {"power.stapm_w": 100.0, "power.slow_w": 100.0, "power.fast_w": 100.0}


# --- processes -------------------------------------------------------------------------------

def test_process_names_and_patterns():
    p = ProcInfo(10, 1, "llama-server", ("/opt/llama/bin/llama-server", "-m", "x.gguf"))
    assert p.matches("llama-server") and p.matches("llama-*") and not p.matches("ollama")
    assert p.matches("-m x.gguf") and p.matches("/opt/llama/")
    v = ProcInfo(11, 1, "python3", ("/usr/bin/python3", "-m", "vllm.entrypoints.openai.api_server"))
    assert v.matches("vllm") and "vllm.entrypoints.openai.api_server" in v.names
    s = ProcInfo(12, 1, "vllm", ("/usr/bin/python3", "/usr/local/bin/vllm", "serve", "m"))
    assert s.matches("vllm") and s.matches("vllm serve")
    lemonade = ProcInfo(13, 1, "python3", ("python3", "-u", "/usr/bin/lemonade-server", "serve"))
    assert lemonade.matches("lemonade-server") and lemonade.matches("lemonade*")


def test_conflicting_daemons_are_recognised():
    table = {1: ProcInfo(1, 0, "systemd", ("/sbin/init",)),
             700: ProcInfo(700, 1, "power-profiles-", ("/usr/libexec/power-profiles-daemon",)),
             800: ProcInfo(800, 1, "tuned", ("/usr/bin/python3", "-Es", "/usr/sbin/tuned", "-l"))}
    found = conflicting(table)
    assert [p.pid for p, _ in found] == [700, 800]
    assert "platform_profile" in found[0][1]


def test_process_source_sees_others_but_not_its_own_children(tmp_path):
    import shutil
    exe = tmp_path / "llama-server"
    shutil.copy("/bin/sleep", exe)
    child = subprocess.Popen([str(exe), "30"])
    try:
        ours = ProcessSource()                                # this process: a parent of it
        theirs = ProcessSource(exclude_pid=-1)

        def seen(src):
            return [p.pid for p in src.matching(["llama-server"])]
        assert wait_for(lambda: child.pid in seen(theirs), 5, what="the child seen")
        assert child.pid not in seen(ours)
        assert os.getpid() not in ours.snapshot()
        info = theirs.snapshot()[child.pid]
        assert info.name == "llama-server" and info.cmdline[1] == "30"
    finally:
        child.kill()
        child.wait()
    assert wait_for(lambda: child.pid not in theirs.snapshot(), 5, what="the exit seen")


def test_process_source_skips_zombies_and_holders_children(tmp_path):
    """An exited, unreaped child (no init reaps in a container) runs nothing; a hold owner's
    children (also_exclude) are never reported."""
    import shutil
    exe = tmp_path / "llama-server"
    shutil.copy("/bin/sleep", exe)
    child = subprocess.Popen([str(exe), "30"])
    try:
        src = ProcessSource(exclude_pid=-1)
        assert wait_for(lambda: child.pid in src.snapshot(), 5, what="the child seen")
        src.also_exclude = {os.getpid()}
        assert child.pid not in src.snapshot() and os.getpid() not in src.snapshot()
        src.also_exclude = set()
        assert child.pid in src.snapshot()
        child.kill()
        time.sleep(0.2)                                    # exited, not reaped: a zombie
        with open(f"/proc/{child.pid}/stat") as f:
            assert f.read().split(") ")[1].startswith("Z")
        fresh = ProcessSource(exclude_pid=-1)
        assert child.pid not in fresh.snapshot()
    finally:
        child.kill()
        child.wait()


def test_process_source_notices_an_exec_after_the_first_poll(tmp_path):
    import shutil
    exe = tmp_path / "ollama"
    shutil.copy("/bin/sleep", exe)
    src = ProcessSource(exclude_pid=-1)
    # a shell that execs the workload a little later
    sh = subprocess.Popen(["/bin/sh", "-c", f"sleep 0.6; exec {exe} 30"])
    try:
        src.snapshot()
        assert not src.matching(["ollama"])
        assert wait_for(lambda: src.matching(["ollama"]), 5, what="the exec seen")
    finally:
        sh.kill()
        sh.wait()


def test_process_source_without_psutil(tmp_path):
    src = ProcessSource(proc="/proc/.")          # not exactly /proc: the plain reader
    assert src._psutil is None
    table = src.snapshot()
    assert os.getpid() not in table and table
    assert any(p.name for p in table.values())


# --- power supply, uevents, clock -------------------------------------------------------------

def _supply(root, name, typ, online=None, scope=None):
    d = os.path.join(root, "sys/class/power_supply", name)
    os.makedirs(d, exist_ok=True)
    for attr, value in (("type", typ), ("online", online), ("scope", scope)):
        if value is not None:
            with open(os.path.join(d, attr), "w") as f:
                f.write(f"{value}\n")


def test_power_supply_states(sim_root, tmp_path):
    fs = RootFS(sim_root)
    src = PowerSupplySource(fs)
    assert src.read().on_ac                                   # ACAD online
    acad = os.path.join(sim_root, "sys/class/power_supply/ACAD/online")
    with open(acad, "w") as f:
        f.write("0\n")
    state = src.read()
    assert state.on_ac and "desktop" in state.reason          # no battery: still a desktop
    _supply(sim_root, "BAT0", "Battery")
    state = src.read()
    assert not state.on_ac and "BAT0" in state.reason and state.label == "battery"
    _supply(sim_root, "ucsi-source-psy-USBC000:001", "USB", online=1)
    assert src.read().on_ac                                   # charging over USB-C
    # no supply at all: a desktop
    empty = tmp_path / "empty"
    empty.mkdir()
    assert PowerSupplySource(RootFS(str(empty))).read().on_ac
    # a mouse's battery says nothing
    _supply(str(empty), "hidpp_battery_0", "Battery", scope="Device")
    assert PowerSupplySource(RootFS(str(empty))).read().on_ac


def test_sim_uevents_and_clock(sim_root):
    fs = RootFS(sim_root)
    send_sim_uevent(sim_root, "drm", "change", "/devices/old")     # before: not reported
    ev = SimUevents(fs)
    assert ev.poll() == []
    send_sim_uevent(sim_root, "drm", "change", "/devices/pci0000:00/card1", RESET="1")
    send_sim_uevent(sim_root, "power_supply", "change", "/devices/ACAD")
    got = ev.poll()
    assert [(e.subsystem, e.action) for e in got] == [("drm", "change"), ("power_supply", "change")]
    assert got[0].properties == {"RESET": "1"}
    assert ev.poll() == []
    clock = ClockSource(fs)
    before = clock.suspended_s()
    with open(os.path.join(sim_root, ".halotune-sim", "suspended_s"), "w") as f:
        f.write("42\n")
    assert clock.suspended_s() - before == pytest.approx(42, abs=0.5)
    assert ClockSource().suspended_s() > -0.01


def _snap(temp: float):
    from halotune.model.snapshot import CpuSnapshot, GpuSnapshot, Snapshot
    g = GpuSnapshot(card="card1", pci_slot=None, device_id="0x1586", gfx_target="gfx1151",
                    name="sim", edge_temp_c=temp - 2, soc_temp_c=temp)
    return Snapshot(time="t", root="/", gpus=[g], cpu=CpuSnapshot(temp_c=temp - 5))


def test_thermal_guard_timing_and_release():
    fired = _Fired()
    guard = ThermalGuard(fired, _ThermalCfg())               # 90 °C for 2 s, release 8 s
    values = {"power.stapm_w": 120.0, "power.slow_w": 120.0, "power.fast_w": 140.0}
    guard.update(_snap(95), 0.0)
    assert guard.temp == 95 and not guard.due(1.0)
    guard.update(_snap(89), 1.0)                             # a dip resets the clock
    guard.update(_snap(95), 1.5)
    assert not guard.due(3.0) and guard.due(3.5)
    guard.step(values, 3.5)
    assert guard.cap == {"power.stapm_w": 110.0, "power.slow_w": 110.0, "power.fast_w": 130.0}
    assert "TDP 120/120/140 W" in fired.events[-1][1] and "110/110/130" in fired.events[-1][1]
    assert not guard.due(4.5)                                # the step gets `seconds` to work
    guard.update(_snap(87), 5.0)                             # under the limit, not 5 °C under
    guard.update(_snap(80), 6.0)
    guard.update(_snap(80), 13.0)
    assert guard.cap is not None
    guard.update(_snap(80), 14.0)                            # 8 s cool: release begins
    assert "stepping the TDP back up" in fired.events[-1][1]
    assert guard.release_due(14.0)
    guard.step_up(values, 14.0)                              # one step of step_w gets there
    assert guard.cap is None and "are back" in fired.events[-1][1]


def test_thermal_guard_releases_in_steps_of_step_w():
    fired = _Fired()
    guard = ThermalGuard(fired, _ThermalCfg())               # 90 °C for 2 s, step 10 W
    values = {"power.stapm_w": 120.0, "power.slow_w": 120.0, "power.fast_w": 140.0}
    guard.update(_snap(95), 0.0)
    guard.step(values, 2.0)
    guard.update(_snap(95), 4.0)
    guard.step(values, 4.0)
    assert guard.cap == {"power.stapm_w": 100.0, "power.slow_w": 100.0, "power.fast_w": 120.0}
    guard.update(_snap(80), 5.0)
    guard.update(_snap(80), 13.0)                            # 8 s cool
    assert guard.release_due(13.0)
    guard.step_up(values, 13.0)
    assert guard.cap == {"power.stapm_w": 110.0, "power.slow_w": 110.0, "power.fast_w": 130.0}
    assert "still cool" in fired.events[-1][1]
    assert not guard.release_due(14.0)                       # each step gets `seconds`
    guard.update(_snap(95), 14.0)                            # hot again: release stops
    assert not guard.release_due(15.0)
    guard.update(_snap(80), 15.0)
    guard.update(_snap(80), 23.0)
    assert guard.release_due(23.0)
    guard.step_up(values, 23.0)
    assert guard.cap is None and "are back" in fired.events[-1][1]
