"""power.platform_profile: the ACPI platform profile (amd-pmf or the OEM driver).

Interface: sys/firmware/acpi/platform_profile (rw) and platform_profile_choices (space
separated), Linux >= 5.12. Writing a profile makes amd-pmf or the EC re-send their own power
limits, so it goes before the TDP limits both ways, followed by a settle delay.
"""

from __future__ import annotations

import time

from halotune.tuning.tunables.base import Context, Tunable, choices_error

PROFILE = "sys/firmware/acpi/platform_profile"
KEY = "power.platform_profile"


class PlatformProfile(Tunable):
    name = "platform_profile"
    keys = (KEY,)
    affects = ("power.stapm_w", "power.fast_w", "power.slow_w",   # amd-pmf re-sends limits
               "power.apu_slow_w")
    apply_rank = 10
    rollback_rank = 30

    def unavailable(self, ctx):
        if not ctx.fs.exists(PROFILE):
            return f"{ctx.fs.path(PROFILE)} does not exist (no platform profile driver)"
        return None

    def check_restore_state(self, key, state):
        import re

        # One word as the file reads (low-power, balanced, performance, custom...).
        if state is None or (isinstance(state, str) and re.fullmatch(r"[a-z0-9][a-z0-9_+-]*", state)):
            return None
        return "must be one platform profile name (one lowercase word)"

    def read(self, ctx):
        return {KEY: ctx.fs.read_text(PROFILE)}

    def plan(self, ctx, targets, planned, current):
        value = str(targets[KEY])
        choices = ctx.fs.read_list(f"{PROFILE}_choices") or []
        if value not in choices:
            raise choices_error(KEY, value, choices, f"{PROFILE}_choices")
        return {KEY: value}

    def write(self, ctx: Context, states, current):
        ctx.write(KEY, PROFILE, states[KEY])
        if ctx.settle_s:
            time.sleep(ctx.settle_s)   # let amd-pmf/EC re-send limits before TDP is read back


TUNABLES = [PlatformProfile()]
