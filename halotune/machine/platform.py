"""Machine-wide facts: ACPI platform profile, AC power, kernel identity.

Interfaces: sys/firmware/acpi/platform_profile(+_choices) (Linux >= 5.12, space-separated
choices); sys/class/power_supply/*/{type,online} (`Mains`, 1 = on AC); /proc/cmdline;
proc/sys/kernel/osrelease and proc/sys/kernel/random/boot_id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from halotune.machine import parse
from halotune.machine.rootfs import RootFS


@dataclass
class PlatformReading:
    platform_profile: str | None = None
    platform_profile_choices: list[str] = field(default_factory=list)
    on_ac_power: bool | None = None      # None: no mains supply reported (typical desktop)
    kernel_release: str | None = None
    boot_id: str | None = None
    cmdline: dict[str, str] = field(default_factory=dict)


def read_platform(fs: RootFS) -> PlatformReading:
    r = PlatformReading()
    r.platform_profile = fs.read_text("sys/firmware/acpi/platform_profile")
    r.platform_profile_choices = fs.read_list("sys/firmware/acpi/platform_profile_choices") or []
    r.on_ac_power = read_ac_power(fs)
    r.kernel_release = read_kernel_release(fs)
    r.boot_id = fs.read_text("proc/sys/kernel/random/boot_id")
    r.cmdline = parse.parse_cmdline(fs.read_text("proc/cmdline"))
    return r


def read_ac_power(fs: RootFS) -> bool | None:
    mains = [s for s in fs.glob("sys/class/power_supply/*") if fs.read_text(f"{s}/type") == "Mains"]
    if not mains:
        return None
    return any(fs.read_int(f"{s}/online") == 1 for s in mains)


def read_kernel_release(fs: RootFS) -> str | None:
    release = fs.read_text("proc/sys/kernel/osrelease")
    if release:
        return release
    version = fs.read_text("proc/version")   # "Linux version 6.17.0-5-generic (...)"
    parts = version.split() if version else []
    return parts[2] if len(parts) > 2 and parts[:2] == ["Linux", "version"] else None
