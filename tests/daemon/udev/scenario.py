"""Run under umockdev's preload (`umockdev-wrapper python scenario.py DEVICES PROFILES_DIR`):
the daemon's rules over the root "/", with the real udev path (halotune's UdevUevents, a
pyudev netlink Monitor) fed by an umockdev testbed. Prints one JSON document of what the rules
saw and did; test_udev_umockdev.py asserts on it.

The testbed is driven through libumockdev's C API (umockdev_testbed_*; the API that
gir1.2-umockdev wraps) with ctypes, so the venv's Python needs no python3-gi. With the preload,
/sys is the testbed's tree and a netlink uevent socket receives what the testbed sends.

laptop.umockdev (umockdev-record format written by hand: P sysfs path, N device node,
E udev property, A sysfs attribute; the format allows no comments) is a Strix Halo laptop:
- ACAD: the ACPI AC adapter (drivers/acpi/ac.c registers a POWER_SUPPLY_TYPE_MAINS supply
  named after the ACPI device, "ACAD" on ASUS firmware; attribute `online` 0/1), on AC;
- BAT0: the ACPI battery (drivers/acpi/battery.c, type Battery, scope System);
- card1: amdgpu's primary DRM minor (drm_sysfs.c: cardN under the PCI device,
  DEVTYPE=drm_minor, major 226), the kobject drm change uevents are sent on.

The uevents are the kernel's:
- power_supply: power_supply_changed() -> power_supply_changed_work() ->
  kobject_uevent(KOBJ_CHANGE) on the supply (drivers/power/supply/power_supply_core.c), with
  POWER_SUPPLY_NAME/TYPE/ONLINE from power_supply_uevent() (power_supply_sysfs.c); the ACPI AC
  driver calls it on an adapter notify (drivers/acpi/ac.c acpi_ac_notify). Linux 4.x-6.18.
- drm, GPU reset: drm_dev_wedged_event() (drivers/gpu/drm/drm_drv.c, 6.14+) sends
  kobject_uevent_env(&dev->primary->kdev->kobj, KOBJ_CHANGE, {"WEDGED=none"}) after
  amdgpu_device_gpu_recover() recovered the GPU (amdgpu_device.c).
- drm, connector hotplug: drm_sysfs_hotplug_event() (drm_sysfs.c) sends "HOTPLUG=1" on the
  same primary minor: not a reset; a DRM lease created or revoked (drm_lease.c ->
  drm_sysfs_lease_event()) sends "LEASE=1": not a reset either.
Resume does not arrive through udev in halotune's design (the rules see it as a jump of
CLOCK_BOOTTIME - CLOCK_MONOTONIC), so it is not part of this scenario.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import sys
import time

ACAD = "/sys/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0003:00/power_supply/ACAD"
CARD1 = "/sys/devices/pci0000:00/0000:00:08.1/0000:c3:00.0/drm/card1"
CONFIG = """
[rules.power_source]
ac_profile = "llm-max"
battery_profile = "quiet"

[rules.drift]
interval_s = 3600
"""


class Testbed:
    """The few umockdev_testbed_* calls the scenario needs."""

    def __init__(self):
        lib = ctypes.CDLL("libumockdev.so.0")
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        lib.umockdev_testbed_new.restype = vp
        lib.umockdev_testbed_get_root_dir.argtypes = [vp]
        lib.umockdev_testbed_get_root_dir.restype = cp
        lib.umockdev_testbed_add_from_file.argtypes = [vp, cp, ctypes.POINTER(vp)]
        lib.umockdev_testbed_add_from_file.restype = ctypes.c_int
        lib.umockdev_testbed_set_attribute.argtypes = [vp, cp, cp, cp]
        lib.umockdev_testbed_set_property.argtypes = [vp, cp, cp, cp]
        lib.umockdev_testbed_uevent.argtypes = [vp, cp, cp]
        self.lib = lib
        self.tb = lib.umockdev_testbed_new()        # sets $UMOCKDEV_DIR for the preload
        self.root = lib.umockdev_testbed_get_root_dir(self.tb).decode()

    def add_from_file(self, path: str) -> None:
        err = ctypes.c_void_p()
        if not self.lib.umockdev_testbed_add_from_file(self.tb, path.encode(), ctypes.byref(err)):
            # GError: guint32 domain, gint code, gchar *message
            msg = ctypes.cast(err.value + 8, ctypes.POINTER(ctypes.c_char_p))[0] \
                if err.value else b"?"
            raise RuntimeError(f"umockdev could not load {path}: {msg.decode()}")

    def set_attribute(self, dev: str, name: str, value: str) -> None:
        self.lib.umockdev_testbed_set_attribute(self.tb, dev.encode(), name.encode(),
                                                value.encode())

    def set_property(self, dev: str, name: str, value: str) -> None:
        self.lib.umockdev_testbed_set_property(self.tb, dev.encode(), name.encode(),
                                               value.encode())

    def uevent(self, dev: str, action: str, **env: str) -> None:
        """One uevent; `env` are the extra variables of this event only (kobject_uevent_env's
        envp): umockdev sends the device's uevent file, so they are added for the one send."""
        path = f"{self.root}{dev}/uevent"
        with open(path, encoding="utf-8") as f:
            base = f.read()
        try:
            if env:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(base + "".join(f"{k}={v}\n" for k, v in env.items()))
            self.lib.umockdev_testbed_uevent(self.tb, dev.encode(), action.encode())
        finally:
            with open(path, "w", encoding="utf-8") as f:
                f.write(base)


class Events:
    def __init__(self):
        self.items: list[dict] = []

    def add(self, kind, message, **data):
        self.items.append({"kind": kind, "message": message, **data})


class Daemon:
    """What Rules asks of the daemon; an apply is recorded instead of written (the root here
    is the host's /, with only /sys faked)."""

    def __init__(self, config, profiles_dir):
        from halotune.machine.rootfs import RootFS

        self.config = config
        self.root = "/"
        self.fs = RootFS(self.root)
        self.profiles_dir = profiles_dir
        self.events = Events()
        self.active_profile = None
        self.applied: list[dict] = []
        self._stop = None

    def hold_active(self):
        return False

    async def apply_profile(self, name, reason, profile=None):
        self.applied.append({"profile": name, "reason": reason})
        self.active_profile = name

    async def rollback(self, reason):
        self.applied.append({"profile": None, "reason": reason})
        self.active_profile = None


async def main(devices: str, profiles_dir: str) -> dict:
    import halotune.daemon.rules.power as power
    from halotune.daemon import config as daemon_config
    from halotune.daemon.rules import Rules

    bed = Testbed()
    bed.add_from_file(devices)
    # Polling far apart: a change is seen at once only when a uevent kicks the power rule.
    power.INTERVAL_S = 3600.0
    cfg_path = os.path.join(profiles_dir, "daemon.toml")
    with open(cfg_path, "w", encoding="utf-8") as f:
        f.write(CONFIG)
    daemon = Daemon(daemon_config.load(cfg_path), profiles_dir)
    rules = Rules(daemon)                       # Sources.open(RootFS("/")): udev on the host
    seen: list[dict] = []                       # every uevent the real source returned
    real_poll = rules.sources.uevents.poll

    def observed_poll():
        evs = real_poll()
        seen.extend({"subsystem": e.subsystem, "action": e.action, "devpath": e.devpath,
                     "properties": {k: v for k, v in e.properties.items()
                                    if k in ("HOTPLUG", "LEASE", "WEDGED", "POWER_SUPPLY_ONLINE")}}
                    for e in evs)
        return evs
    rules.sources.uevents.poll = observed_poll

    async def sample():
        await rules.on_sample(None)
        if rules._task is not None:
            await rules._task

    async def until(pred, what, timeout=5.0) -> bool:
        """Sample until `pred`; False (and noted in the output) when it never came."""
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                out["timeouts"].append(what)
                return False
            await sample()
            await asyncio.sleep(0.02)
        return True

    out: dict = {"uevent_source": rules.sources.uevents.kind, "steps": {}, "timeouts": []}
    try:
        await until(lambda: daemon.applied, "the first decision")
        out["steps"]["start"] = {"power": rules.power.state.label, "applied": list(daemon.applied)}

        # the adapter goes offline, no uevent yet: the rules do not read it again
        bed.set_attribute(ACAD, "online", "0")
        await sample()
        out["steps"]["offline_without_uevent"] = {"power": rules.power.state.label}

        # the kernel's power_supply change uevent
        bed.set_property(ACAD, "POWER_SUPPLY_ONLINE", "0")
        bed.uevent(ACAD, "change")
        await until(lambda: rules.power.state.label == "battery", "the power rule on battery")
        await until(lambda: len(daemon.applied) >= 2, "the battery profile")
        out["steps"]["unplugged"] = {"power": rules.power.state.label,
                                     "reason": rules.power.state.reason,
                                     "applied": list(daemon.applied)}

        # drm change uevents that are not resets re-apply nothing: a monitor plugged in
        # (HOTPLUG=1), a DRM lease granted or revoked (LEASE=1, a VR compositor)
        for step, prop in (("hotplug", "HOTPLUG"), ("lease", "LEASE")):
            n = len(daemon.applied)
            bed.uevent(CARD1, "change", **{prop: "1"})
            await until(lambda: any(e["properties"].get(prop) == "1" for e in seen),
                        f"the {step} uevent")
            await sample()
            out["steps"][step] = {"applied": daemon.applied[n:]}

        # a GPU reset the driver recovered from
        n = len(daemon.applied)
        bed.uevent(CARD1, "change", WEDGED="none")
        await until(lambda: len(daemon.applied) > n, "the re-apply after the reset")
        out["steps"]["gpu_reset"] = {"applied": daemon.applied[n:]}
    finally:
        out["uevents"] = seen
        out["events"] = daemon.events.items
        rules.sources.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
