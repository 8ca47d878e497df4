"""Host activity counters: disk I/O, network receive, load average.

Read under the root like every other procfs file, twice over a window, and turned into rates:
- /proc/diskstats (Documentation/admin-guide/iostats.rst): `major minor name` then counters;
  field 6 is sectors read, field 10 sectors written, in 512-byte units whatever the device's
  sector size. Only whole disks are summed (a partition's I/O is also its disk's); virtual
  devices (loop, ram, zram, dm-, md) would count the same I/O twice.
- /proc/net/dev: two header lines, then `iface: rx_bytes rx_packets ... (8 receive fields)
  tx_bytes ...`. A download shows as receive bytes on one interface; the busiest interface is
  reported (a VPN or bridge carries the same bytes on two).
- /proc/loadavg: `1min 5min 15min running/total last_pid`.

These are system-wide kernel counters of the machine at the root (the simulator may publish
them, a test writes them): they follow the root like sysfs, not the process rule of
processes.py (which decides where /proc/<pid> is read).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from halotune.machine.rootfs import RootFS, clean_text

SECTOR = 512
_VIRTUAL = ("loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd")
# Partitions when sys/block is not there to say which names are disks.
_PARTITION = re.compile(r"^(?:[hsv]d[a-z]+\d+|xvd[a-z]+\d+|nvme\d+n\d+p\d+|mmcblk\d+p\d+)$")
_IGNORED_IFACES = ("lo",)


@dataclass
class Activity:
    t: float                                         # time.monotonic() of the read
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None
    net_rx_bytes: dict[str, int] = field(default_factory=dict)
    loadavg_1m: float | None = None


def _whole_disks(fs: RootFS) -> set[str] | None:
    names = fs.listdir("sys/block")
    return {n for n in names if not n.startswith(_VIRTUAL)} if names else None


def parse_diskstats(text: str | None,
                    disks: set[str] | None = None) -> tuple[int | None, int | None]:
    """(bytes read, bytes written) summed over whole physical disks; (None, None) without data."""
    if not text:
        return None, None
    read = written = 0
    seen = False
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10:
            continue
        name = f[2]
        if disks is not None:
            if name not in disks:
                continue
        elif name.startswith(_VIRTUAL) or _PARTITION.match(name):
            continue
        try:
            read += int(f[5]) * SECTOR
            written += int(f[9]) * SECTOR
        except ValueError:
            continue
        seen = True
    return (read, written) if seen else (None, None)


def parse_net_dev(text: str | None) -> dict[str, int]:
    """{interface: receive bytes} for every interface but loopback."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue
        name = name.strip()
        words = rest.split()
        if name in _IGNORED_IFACES or not words:
            continue
        try:
            out[name] = int(words[0])
        except ValueError:
            continue
    return out


def parse_loadavg(text: str | None) -> float | None:
    try:
        return float((text or "").split()[0])
    except (IndexError, ValueError):
        return None


def _text(fs: RootFS, rel: str) -> str | None:
    raw = fs.read_bytes(rel, 1 << 16)
    return None if raw is None else clean_text(raw)


class ActivityReader:
    def __init__(self, fs: RootFS, clock=time.monotonic):
        self.fs = fs
        self.clock = clock
        self.disks = _whole_disks(fs)

    def read(self) -> Activity:
        fs = self.fs
        a = Activity(t=self.clock())
        # Both files grow with the number of devices: read past the default page.
        a.disk_read_bytes, a.disk_write_bytes = parse_diskstats(_text(fs, "proc/diskstats"),
                                                                self.disks)
        a.net_rx_bytes = parse_net_dev(_text(fs, "proc/net/dev"))
        a.loadavg_1m = parse_loadavg(fs.read_text("proc/loadavg"))
        return a


def rates(a: Activity, b: Activity) -> dict:
    """Rates between two reads: {"disk_bytes_per_s", "net_rx_bytes_per_s", "net_iface"}; None
    where a counter is missing (or went backwards: a counter reset or a device removed)."""
    dt = b.t - a.t
    out: dict = {"disk_bytes_per_s": None, "net_rx_bytes_per_s": None, "net_iface": None,
                 "seconds": round(dt, 3)}
    if dt <= 0:
        return out
    if None not in (a.disk_read_bytes, b.disk_read_bytes, a.disk_write_bytes, b.disk_write_bytes):
        delta = (b.disk_read_bytes - a.disk_read_bytes) + (b.disk_write_bytes - a.disk_write_bytes)
        if delta >= 0:
            out["disk_bytes_per_s"] = int(delta / dt)
    best = None
    for iface, rx in b.net_rx_bytes.items():
        before = a.net_rx_bytes.get(iface)
        if before is None or rx < before:
            continue
        rate = int((rx - before) / dt)
        if best is None or rate > best[1]:
            best = (iface, rate)
    if best is not None:
        out["net_iface"], out["net_rx_bytes_per_s"] = best
    return out
