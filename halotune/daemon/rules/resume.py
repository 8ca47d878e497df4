"""Resume and GPU reset: the firmware and the driver put runtime values back to their own
defaults, so the active profile is applied again.

Resume: the seconds spent suspended (CLOCK_BOOTTIME - CLOCK_MONOTONIC) jumped between two
polls (no uevent announces a resume). GPU reset: the drm `change` uevent of
drm_dev_wedged_event() (drivers/gpu/drm/drm_drv.c, Linux 6.14+), sent on the primary minor
with WEDGED=none once amdgpu recovered the GPU (amdgpu_device_gpu_recover, a ring or queue
reset); WEDGED=<method> (rebind, bus-reset, ...) means the device still needs recovery, so
nothing is re-applied to it. The other drm change uevents are not resets: HOTPLUG=1
(drm_sysfs.c, a connector) and LEASE=1 (drm_sysfs_lease_event, a DRM lease granted or
revoked). Before 6.14 amdgpu sends no uevent on a reset; the drift rule finds the values then.
"""

from __future__ import annotations

JUMP_S = 1.0            # a jump this large between two polls is a suspend (clock noise is µs)
DEBOUNCE_S = 2.0        # one re-apply for a burst of drm uevents


class ResumeRule:
    def __init__(self, rules):
        self.rules = rules
        self.pending: str | None = None       # why a re-apply is due
        self._last: float | None = None
        self._last_reset = -1e9

    def update(self, now: float) -> None:
        offset = self.rules.sources.clock.suspended_s()
        if self._last is not None and offset - self._last > JUMP_S:
            why = f"resume after {offset - self._last:.0f} s of suspend"
            self.rules.fire("resume", why + ": re-applying the active profile")
            self.pending = why
        self._last = offset

    def uevent(self, ev, now: float) -> None:
        if ev.subsystem != "drm" or ev.action != "change":
            return
        wedged = ev.properties.get("WEDGED")
        if wedged is None:
            return                              # a hotplug (HOTPLUG=1), a lease (LEASE=1)
        if str(wedged) != "none":
            self.rules.fire("resume", f"GPU wedged ({ev.describe()}): the driver asks for "
                            f"recovery by {wedged}; nothing is re-applied until it is back",
                            devpath=ev.devpath, wedged=str(wedged))
            return
        if now - self._last_reset < DEBOUNCE_S:
            return
        self._last_reset = now
        why = f"GPU reset ({ev.describe()})"
        self.rules.fire("resume", why + ": re-applying the active profile", devpath=ev.devpath)
        self.pending = why

    def take(self) -> str | None:
        why, self.pending = self.pending, None
        return why
