"""Machine-wide facts: ACPI platform profile, AC power, kernel identity.

Interfaces: sys/firmware/acpi/platform_profile(+_choices) (Linux >= 5.12, space-separated
choices); sys/class/power_supply/*/{type,online} (`Mains`, 1 = on AC); /proc/cmdline;
proc/sys/kernel/osrelease and proc/sys/kernel/random/boot_id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from halotune.machine import parse
from halotune.machine.rootfs import RootFS

PROFILE = "sys/firmware/acpi/platform_profile"


@dataclass
class PlatformReading:
    platform_profile: str | None = None
    platform_profile_choices: list[str] = field(default_factory=list)
    on_ac_power: bool | None = None      # None: no mains supply reported (typical desktop)
    kernel_release: str | None = None
    boot_id: str | None = None
    cmdline: dict[str, str] = field(default_factory=dict)


class PlatformReader:
    """Identity and choices are fixed per boot and read once; the rest every sample."""

    def __init__(self, fs: RootFS):
        self.fs = fs
        self.kernel_release = read_kernel_release(fs)
        self.boot_id = fs.read_text("proc/sys/kernel/random/boot_id")
        self.cmdline = parse.parse_cmdline(fs.read_text("proc/cmdline"))
        self.profile_choices = fs.read_list(f"{PROFILE}_choices") or []
        self.mains = [s for s in fs.glob("sys/class/power_supply/*")
                      if fs.read_text(f"{s}/type") == "Mains"]

    def read(self) -> PlatformReading:
        fs = self.fs
        r = PlatformReading(kernel_release=self.kernel_release, boot_id=self.boot_id,
                            cmdline=self.cmdline,
                            platform_profile_choices=list(self.profile_choices))
        r.platform_profile = fs.hot_text(PROFILE)
        if self.mains:
            r.on_ac_power = any(fs.hot_int(f"{s}/online") == 1 for s in self.mains)
        return r


def read_kernel_release(fs: RootFS) -> str | None:
    release = fs.read_text("proc/sys/kernel/osrelease")
    if release:
        return release
    version = fs.read_text("proc/version")   # "Linux version 6.17.0-5-generic (...)"
    parts = version.split() if version else []
    return parts[2] if len(parts) > 2 and parts[:2] == ["Linux", "version"] else None
