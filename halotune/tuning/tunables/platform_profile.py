"""power.platform_profile: the ACPI platform profile (amd-pmf, and the OEM driver if any).

Interfaces (drivers/acpi/platform_profile.c):
- sys/firmware/acpi/platform_profile (rw) and platform_profile_choices (space separated),
  Linux >= 5.12. Before 6.14 only one driver registers. From 6.14 it aggregates every
  handler: it reads "custom" when they disagree, a write sets every handler, "custom" is
  EINVAL and a name outside the handlers' common choices EOPNOTSUPP.
- sys/class/platform-profile/platform-profile-N/{name,profile,choices}, Linux >= 6.14: one
  directory per handler; a `profile` write sets that handler only.

State: the legacy file's word with one handler (as journals always held), and with several a
mapping handler name -> profile (N follows registration order, so names survive a reboot that
renumbers them). A target is written once through the legacy file, which sets every handler;
a rollback to handlers that disagreed writes each class device's `profile`. "custom" is never
written. Writing a profile makes amd-pmf re-send its slider limits (its profile_set runs for a
legacy and a class write alike), so it goes before the TDP limits both ways, followed by a
settle delay.
"""

from __future__ import annotations

import re
import time

from halotune.tuning.tunables.base import Context, Tunable, WriteFailed, choices_error, show_state

PROFILE = "sys/firmware/acpi/platform_profile"
CLASS = "sys/class/platform-profile"
KEY = "power.platform_profile"
CUSTOM = "custom"   # what the legacy file reads when handlers differ; never writable there


def handlers(ctx: Context) -> dict[str, str]:
    """Handler key -> class device directory, in platform-profile-N order. The key is the
    handler's `name`; a name seen twice keys its later devices by directory."""
    found = {}
    devices = ctx.fs.glob(f"{CLASS}/platform-profile-*")
    devices.sort(key=lambda d: int(m.group(1)) if (m := re.search(r"-(\d+)$", d)) else -1)
    for device in devices:
        name = ctx.fs.read_text(f"{device}/name")
        if name is None:
            continue
        found[device.rsplit("/", 1)[-1] if name in found else name] = device
    return found


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

        # One word as the file reads (low-power, balanced, performance, custom...), or with
        # several handlers (Linux >= 6.14) one such word per handler name.
        def word(v) -> bool:
            return isinstance(v, str) and re.fullmatch(r"[a-z0-9][a-z0-9_+-]*", v) is not None

        if state is None or word(state):
            return None
        if isinstance(state, dict) and state and all(
                isinstance(h, str) and re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", h) and word(v)
                for h, v in state.items()):
            return None
        return ("must be one platform profile name (one lowercase word), or a table of one "
                "such name per handler")

    def read(self, ctx):
        devices = handlers(ctx)
        if len(devices) < 2:       # one handler (or a kernel before 6.14): the legacy file
            return {KEY: ctx.fs.read_text(PROFILE)}
        return {KEY: {h: ctx.fs.read_text(f"{d}/profile") for h, d in devices.items()}}

    def plan(self, ctx, targets, planned, current):
        value = str(targets[KEY])
        where = f"{PROFILE}_choices"
        choices = ctx.fs.read_list(where) or []
        if value == CUSTOM or value not in choices:
            # "custom" is only what the legacy file reads when handlers disagree
            raise choices_error(KEY, value, [c for c in choices if c != CUSTOM], where)
        now = current.get(KEY)
        return {KEY: {h: value for h in now} if isinstance(now, dict) else value}

    def write(self, ctx: Context, states, current):
        target = states[KEY]
        values = set(target.values()) if isinstance(target, dict) else {target}
        devices = handlers(ctx)
        if CUSTOM in values or None in values:
            raise WriteFailed(KEY, PROFILE, str(target),
                              "the recorded state names no writable profile for every handler "
                              "(an older halotune journaled 'custom', what the legacy file "
                              f"reads when handlers disagree); set each {CLASS}/*/profile "
                              "by hand")
        if not isinstance(target, dict) or (len(values) == 1 and set(target) == set(devices)):
            ctx.write(KEY, PROFILE, values.pop())          # sets every handler alike
        else:
            missing = [h for h in target if h not in devices]
            if missing:
                raise WriteFailed(KEY, CLASS, str(target),
                                  f"no platform-profile handler named {', '.join(missing)} "
                                  f"under {ctx.fs.path(CLASS)}")
            now = current.get(KEY) if isinstance(current.get(KEY), dict) else {}
            for h, device in devices.items():
                if h in target and now.get(h) != target[h]:
                    ctx.write(KEY, f"{device}/profile", target[h])
        if ctx.settle_s:
            time.sleep(ctx.settle_s)   # let amd-pmf/EC re-send limits before TDP is read back

    def matches(self, key, current, target):
        # A journal of one handler (a word) against several handlers now: all must hold it.
        if isinstance(current, dict) != isinstance(target, dict):
            word, mapping = (target, current) if isinstance(current, dict) else (current, target)
            return bool(mapping) and all(v == word for v in mapping.values())
        return current == target

    def show(self, key, state):
        if isinstance(state, dict) and len(set(state.values())) > 1:
            return ", ".join(f"{h} {p}" for h, p in state.items())
        return show_state(state)


TUNABLES = [PlatformProfile()]
