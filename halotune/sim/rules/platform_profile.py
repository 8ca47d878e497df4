"""Platform-profile writes: the legacy file and (Linux >= 6.14) each handler's class device.

drivers/acpi/platform_profile.c; the state and what the files show: halotune/sim/
platform_profile.py.
"""

from __future__ import annotations

import errno
import re

from halotune.sim import hardware as hw
from halotune.sim import paths
from halotune.sim import platform_profile as pp
from halotune.sim.kparse import sysfs_streq
from halotune.sim.rules import reject


def _match(state: dict, value: str) -> str | None:
    """sysfs_match_string(profile_names, buf): the name, or None (-EINVAL)."""
    return next((p for p in pp.names(state) if sysfs_streq(value, p)), None)


def legacy(state: dict, value: str, _m: re.Match) -> None:
    """sys/firmware/acpi/platform_profile, platform_profile_store.

    6.14+: a name not in profile_names, and "custom", are -EINVAL; a name outside the AND of
    every handler's choices | hidden_choices (_aggregate_choices) is -EOPNOTSUPP; otherwise
    _store_and_notify sets every registered handler, in platform-profile-N order.
    6.11-6.13: -EINVAL for an unknown name (there is no "custom"), -EOPNOTSUPP outside
    cur_profile->choices, then cur_profile->profile_set.
    """
    name = _match(state, value)
    if name is None or name == "custom":
        reject()
    if name not in pp.legacy_accepted(state):
        reject(errno.EOPNOTSUPP)
    for handler in pp.registered(state):
        _profile_set(state, handler, name)


def class_profile(state: dict, value: str, m: re.Match) -> None:
    """sys/class/platform-profile/platform-profile-N/profile (6.14+), profile_store:
    -EINVAL for a name not in profile_names ("custom" is one), -EOPNOTSUPP for one outside
    this handler's choices | hidden_choices (_store_class_profile); only this handler is set.
    The device names the handler: `name` sits next to `profile`."""
    handler = next(h for h in pp.registered(state)
                   if pp.class_dir(state, h) == m.group("device"))
    name = _match(state, value)
    if name is None:
        reject()
    if name not in pp.accepted(state, handler):
        reject(errno.EOPNOTSUPP)
    _profile_set(state, handler, name)


def _profile_set(state: dict, handler: str, name: str) -> None:
    """The handler's ops->profile_set.

    amd-pmf (drivers/platform/x86/amd/pmf/sps.c amd_pmf_profile_set, 6.11-6.18): records the
    profile and, with the static slider (APMF_FUNC_STATIC_SLIDER_GRANULAR, as here),
    amd_pmf_set_sps_power_limits -> amd_pmf_update_slider sends the BIOS slider's SPL, FPPT,
    SPPT and SPPT_APU_ONLY (stapm, fast, slow, apu_slow) to the SMU, replacing any RyzenAdj
    limits. It runs for a class-device write as for a legacy one (both reach profile_set).
    amd_pmf_get_pprof_modes maps quiet to the power-saver slider and balanced-performance to
    the performance one (6.14+, with the hidden choices).
    asus-wmi (drivers/platform/x86/asus-wmi.c asus_wmi_platform_profile_set): the throttle
    thermal policy (quiet/balanced/performance); no SMU limits of its own here.
    """
    state["platform_profile"] = {**pp.profiles(state), handler: name}
    if handler == "amd-pmf":
        slider = {"quiet": "low-power", "balanced-performance": "performance"}.get(name, name)
        stapm, fast, slow = hw.PROFILE_LIMITS_MW[slider]
        state["limits"].update(stapm_mw=stapm, fast_mw=fast, slow_mw=slow, apu_slow_mw=slow)


_DEVICE = r"(?P<device>sys/devices/platform/[^/]+/platform-profile/platform-profile-\d+)"

RULES = (
    (re.escape(paths.PLATFORM_PROFILE), legacy),
    (rf"{_DEVICE}/profile", class_profile),
)
