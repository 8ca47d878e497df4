"""The daemon's udev path under umockdev: halotune's UdevUevents (a pyudev netlink Monitor)
receives the uevents an umockdev testbed sends, and the rules act on them as on a laptop.

udev/scenario.py runs in a child under umockdev's preload (a faked /sys and uevent socket) and
reports what the rules saw and did; the assertions are here. What power-profiles-daemon tests
with umockdev, for halotune: an AC adapter's `online` 1 -> 0 with its change uevent puts the
power-source rule on battery (and it was the uevent, not a poll: polling is set an hour
apart), a drm change uevent of a recovered GPU reset (WEDGED=none) re-applies the active
profile, a connector hotplug (HOTPLUG=1) or a DRM lease (LEASE=1) does not. Resume is not a udev event in halotune (the
clock rule sees it) and is tested with the simulator in test_rules_resume.py.

Needs umockdev (Debian/Ubuntu package `umockdev`: umockdev-wrapper and libumockdev.so.0);
bootstrap.sh installs it for the test suite.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SCENARIO = os.path.join(HERE, "udev", "scenario.py")
DEVICES = os.path.join(HERE, "udev", "laptop.umockdev")
CARD1 = "/devices/pci0000:00/0000:00:08.1/0000:c3:00.0/drm/card1"
ACAD = "/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0003:00/power_supply/ACAD"


def _umockdev_missing() -> str | None:
    if shutil.which("umockdev-wrapper") is None:
        return "umockdev is not installed (apt-get install umockdev): no umockdev-wrapper"
    try:
        ctypes.CDLL("libumockdev.so.0")
    except OSError as e:
        return f"umockdev is not installed (apt-get install umockdev): {e}"
    try:
        import pyudev  # noqa: F401
    except ImportError:
        return "pyudev is not installed"
    return None


pytestmark = pytest.mark.skipif(_umockdev_missing() is not None,
                                reason=_umockdev_missing() or "")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> dict:
    profiles = tmp_path_factory.mktemp("profiles")        # no admin profiles of this host
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [REPO] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    for k in [k for k in env if k.startswith("HALOTUNE_")]:
        del env[k]
    r = subprocess.run(["umockdev-wrapper", sys.executable, SCENARIO, DEVICES, str(profiles)],
                       capture_output=True, text=True, timeout=120, env=env, cwd=str(profiles))
    assert r.returncode == 0, f"scenario failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout)


def test_the_rules_read_udev_through_pyudev(scenario):
    assert scenario["uevent_source"] == "udev"
    assert scenario["timeouts"] == []
    assert [(e["subsystem"], e["action"], e["devpath"]) for e in scenario["uevents"]] == [
        ("power_supply", "change", ACAD)] + [("drm", "change", CARD1)] * 3


def test_ac_adapter_offline_uevent_puts_the_power_rule_on_battery(scenario):
    steps = scenario["steps"]
    assert steps["start"]["power"] == "AC"
    assert steps["start"]["applied"] == [{"profile": "llm-max", "reason": "rule: power source: AC"}]
    # online reads 0 but no uevent came: the rule has not looked again
    assert steps["offline_without_uevent"]["power"] == "AC"
    unplugged = steps["unplugged"]
    assert unplugged["power"] == "battery"
    assert unplugged["reason"] == "ACAD offline, running on BAT0"
    assert unplugged["applied"][-1] == {"profile": "quiet", "reason": "rule: power source: battery"}
    assert scenario["uevents"][0]["properties"] == {"POWER_SUPPLY_ONLINE": "0"}
    assert any(e["rule"] == "power" and e["on_ac"] is False
               and e["message"].startswith("power source: battery (ACAD offline")
               for e in scenario["events"])


def test_drm_hotplug_is_not_a_reset(scenario):
    assert scenario["uevents"][1]["properties"] == {"HOTPLUG": "1"}
    assert scenario["steps"]["hotplug"]["applied"] == []


def test_drm_lease_is_not_a_reset(scenario):
    """drm_sysfs_lease_event(): LEASE=1 on the primary minor when a lease (a VR headset's
    compositor) is granted or revoked; nothing was reset."""
    assert scenario["uevents"][2]["properties"] == {"LEASE": "1"}
    assert scenario["steps"]["lease"]["applied"] == []


def test_gpu_reset_uevent_reapplies_the_active_profile(scenario):
    assert scenario["uevents"][3]["properties"] == {"WEDGED": "none"}
    assert scenario["steps"]["gpu_reset"]["applied"] == [
        {"profile": "quiet", "reason": f"GPU reset (drm change {CARD1})"}]
    assert any(e["rule"] == "resume" and e.get("devpath") == CARD1 for e in scenario["events"])
