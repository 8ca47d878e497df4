"""Resume and GPU reset: the firmware and the driver put runtime values back to their own
defaults, so the active profile is applied again.

Resume: the seconds spent suspended (CLOCK_BOOTTIME - CLOCK_MONOTONIC) jumped between two
polls. GPU reset: a drm `change` uevent that is not a connector hotplug (HOTPLUG=1).
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
        if str(ev.properties.get("HOTPLUG", "")) == "1":
            return                              # a monitor plugged in, not a reset
        if now - self._last_reset < DEBOUNCE_S:
            return
        self._last_reset = now
        why = f"GPU reset ({ev.describe()})"
        self.rules.fire("resume", why + ": re-applying the active profile", devpath=ev.devpath)
        self.pending = why

    def take(self) -> str | None:
        why, self.pending = self.pending, None
        return why
