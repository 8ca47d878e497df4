"""What the daemon's rules react to, behind small polling interfaces over the root.

- PowerSupplySource: AC or battery, from ROOT/sys/class/power_supply/*/{type,online,scope}.
- UeventSource: kernel uevents (power_supply and drm). On the host with pyudev installed, a
  udev netlink monitor (imported lazily, read without blocking); on a simulated root, the
  simulator's feed file `.halotune-sim/uevents` (one JSON object a line: subsystem, action,
  devpath, and any properties), so a test can send a GPU reset; elsewhere nothing.
- ClockSource: seconds the machine spent suspended, as CLOCK_BOOTTIME - CLOCK_MONOTONIC (the
  boot-time clock keeps counting in suspend, the monotonic one does not). On a simulated root
  the simulator's `.halotune-sim/suspended_s` (a number, seconds) is added, so a test can
  model a suspend and resume.

Every source is cheap to poll (a few small file reads) and never raises for a missing file.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

from halotune.machine.rootfs import SIM_MARKER, RootFS

log = logging.getLogger(__name__)

POWER_SUPPLY = "sys/class/power_supply"
SIM_UEVENTS = f"{SIM_MARKER}/uevents"
SIM_SUSPENDED = f"{SIM_MARKER}/suspended_s"


# --- power supply --------------------------------------------------------------------------

@dataclass(frozen=True)
class PowerState:
    on_ac: bool
    reason: str                              # "ACAD online", "BAT0 discharging", "no supply"
    supplies: tuple[tuple[str, str, str | None], ...] = ()   # (name, type, online)

    @property
    def label(self) -> str:
        return "AC" if self.on_ac else "battery"


class PowerSupplySource:
    """AC/battery. Any external supply (Mains, USB*, Wireless) online means AC; otherwise a
    system battery (not a peripheral's: scope Device) means battery; no supply at all is a
    desktop, on AC."""

    def __init__(self, fs: RootFS):
        self.fs = fs

    def read(self) -> PowerState:
        supplies = []
        for name in self.fs.listdir(POWER_SUPPLY):
            base = f"{POWER_SUPPLY}/{name}"
            typ = self.fs.read_text(f"{base}/type") or "Unknown"
            if (self.fs.read_text(f"{base}/scope") or "").lower() == "device":
                continue           # a mouse's or a headset's battery says nothing about us
            supplies.append((name, typ, self.fs.read_text(f"{base}/online")))
        external = [s for s in supplies if s[1] not in ("Battery", "UPS")]
        online = [s for s in external if s[2] == "1"]
        if online:
            return PowerState(True, f"{online[0][0]} online", tuple(supplies))
        batteries = [s for s in supplies if s[1] == "Battery"]
        if batteries:
            why = (f"{', '.join(s[0] for s in external)} offline, " if external else "")
            return PowerState(False, why + f"running on {batteries[0][0]}", tuple(supplies))
        if external:
            return PowerState(True, "no battery: a desktop on mains "
                              f"({external[0][0]} reads offline)", tuple(supplies))
        return PowerState(True, "no power supply: a desktop on mains", tuple(supplies))


# --- uevents -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Uevent:
    subsystem: str
    action: str
    devpath: str = ""
    properties: dict = field(default_factory=dict, hash=False, compare=False)

    def describe(self) -> str:
        return f"{self.subsystem} {self.action} {self.devpath}".strip()


class UeventSource:
    """Nothing to report (a root that is neither the host nor simulated)."""

    kind = "none"

    def poll(self) -> list[Uevent]:
        return []

    def close(self) -> None:
        pass


class UdevUevents(UeventSource):
    """The host's udev monitor (pyudev), for `subsystems`; polled without blocking."""

    kind = "udev"

    def __init__(self, subsystems=("power_supply", "drm")):
        import pyudev   # optional: lazily imported, absent without udev

        self._monitor = pyudev.Monitor.from_netlink(pyudev.Context())
        for s in subsystems:
            self._monitor.filter_by(s)
        self._monitor.start()

    def poll(self) -> list[Uevent]:
        out = []
        for _ in range(256):
            try:
                dev = self._monitor.poll(timeout=0)
            except OSError as e:
                log.debug("udev monitor: %s", e)
                break
            if dev is None:
                break
            out.append(Uevent(dev.subsystem or "", dev.action or "", dev.device_path or "",
                              dict(dev.properties)))
        return out


class SimUevents(UeventSource):
    """The simulator's uevent feed: lines appended to ROOT/.halotune-sim/uevents after this
    source was opened."""

    kind = "simulated"

    def __init__(self, fs: RootFS):
        self.path = fs.path(SIM_UEVENTS)
        try:
            self._offset = os.path.getsize(self.path)
        except OSError:
            self._offset = 0

    def poll(self) -> list[Uevent]:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self._offset:         # truncated: start again
                    self._offset = 0
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1             # a half-written last line waits for the next poll
        self._offset += end
        out = []
        for line in data[:end].splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if isinstance(d, dict):
                props = {k: v for k, v in d.items() if k not in ("subsystem", "action", "devpath")}
                out.append(Uevent(str(d.get("subsystem", "")), str(d.get("action", "")),
                                  str(d.get("devpath", "")), props))
        return out


def open_uevents(fs: RootFS) -> UeventSource:
    if fs.is_simulated:
        return SimUevents(fs)
    if fs.is_host:
        try:
            return UdevUevents()
        except (ImportError, OSError) as e:   # no pyudev, no netlink (containers)
            log.info("no udev events (%s): polling power supplies instead", e)
    return UeventSource()


def send_sim_uevent(root: str, subsystem: str, action: str, devpath: str = "", **props) -> None:
    """Append one uevent to a simulated machine's feed (tests, demos)."""
    line = json.dumps({"subsystem": subsystem, "action": action, "devpath": devpath, **props})
    with open(os.path.join(root, SIM_UEVENTS), "a", encoding="utf-8") as f:
        f.write(line + "\n")


# --- clocks --------------------------------------------------------------------------------

class ClockSource:
    """Seconds spent suspended since boot (CLOCK_BOOTTIME - CLOCK_MONOTONIC); a jump between
    two polls is a suspend and resume."""

    def __init__(self, fs: RootFS | None = None):
        self._sim = fs.path(SIM_SUSPENDED) if fs is not None and fs.is_simulated else None

    def suspended_s(self) -> float:
        value = time.clock_gettime(time.CLOCK_BOOTTIME) - time.clock_gettime(time.CLOCK_MONOTONIC)
        if self._sim is not None:
            try:
                with open(self._sim, encoding="ascii") as f:
                    value += float(f.read().strip() or 0)
            except (OSError, ValueError):
                pass
        return value
