"""amdgpu power-management attributes (drivers/gpu/drm/amd/pm/amdgpu_pm.c, swsmu
amdgpu_smu.c, smu14/smu_v14_0.c and smu_v14_0_0_ppt.c; spec §1.4-1.6).

State kept like the driver keeps it: `od_sclk` is gfx_actual_hard_min/soft_max (what
pp_od_clk_voltage and the min/max lines of pp_dpm_sclk show, changed at once by `s`/`r`);
`sclk_range` is what the SMU enforces (changed by a performance level or by `c`).

Versions: the rules hold for 6.11-6.18 as far as the sources read show. Read were the 14.0.0
ppt before and after commit 1dd34092c1f1 ("enable more Pstates profile levels", July 2024,
which added smu_v14_0_common_set_performance_level and the UMD profile clocks), smu_v14_0.c's
od_edit_dpm_table, and the amdgpu_smu.c smu_adjust_power_state_dynamic of 6.11-6.13 (the short
lived `force_update` flag only concerns the init path). Two later changes are outside the
range and not modelled: amdgpu_pm.c matching the level words with sysfs_streq instead of a
prefix strncmp (patch of Feb 2026), and smu_v14_0_0_restore_user_od_settings keeping the OD
range across S0ix resume (Dec 2025). Whether 1dd34092c1f1 is in 6.11 or only in 6.12 was not
established; the profile_* levels send the UMD clocks in every modelled version.
"""

from __future__ import annotations

import re

from halotune.sim import hardware as hw
from halotune.sim.kparse import kstrtol
from halotune.sim.paths import DEV
from halotune.sim.rules import reject

_FULL = {"sclk": (hw.SCLK_MIN, hw.SCLK_MAX), "fclk": (hw.FCLK_LEVELS[0], hw.FCLK_LEVELS[-1]),
         "socclk": (hw.SOCCLK_LEVELS[0], hw.SOCCLK_LEVELS[-1])}


def _pin(which: str, end: int) -> tuple[int, int]:
    mhz = _FULL[which][end]
    return mhz, mhz


def _level_ranges(level: str) -> dict[str, tuple[int, int]] | None:
    """smu14/smu_v14_0_0_ppt.c smu_v14_0_common_set_performance_level (with
    smu_v14_0_common_get_dpm_ultimate_freq / get_dpm_profile_freq), 6.11-6.18: the sclk, fclk
    and socclk ranges a level sends. None for manual (it returns 0 and changes nothing)."""
    umd = {"sclk": (hw.SCLK_UMD_PSTATE,) * 2, "fclk": (hw.FCLK_UMD_PSTATE,) * 2,
           "socclk": (hw.SOCCLK_UMD_PSTATE,) * 2}
    return {
        "auto": dict(_FULL),
        "high": {k: _pin(k, 1) for k in _FULL},
        "low": {k: _pin(k, 0) for k in _FULL},
        "profile_peak": {k: _pin(k, 1) for k in _FULL},
        "profile_standard": umd,
        "profile_min_sclk": {**umd, "sclk": _pin("sclk", 0)},
        "profile_min_mclk": {**umd, "fclk": _pin("fclk", 0)},
        "manual": None,
    }[level]


def perf_level(state: dict, value: str, _m: re.Match) -> None:
    """power_dpm_force_performance_level, 6.11-6.18.

    amdgpu_pm.c amdgpu_set_power_dpm_force_performance_level: the words matched by prefix
    (strncmp) in the driver's order; the current level again is a successful no-op.
    amdgpu_smu.c smu_force_performance_level -> smu_enable_umd_pstate (profile_exit goes back
    to the level saved on entering a profile level) -> smu_handle_task(READJUST) ->
    smu_adjust_power_state_dynamic, which calls set_performance_level only when the level
    differs; then, for any level but manual, the user's forced clock masks are forgotten.

    smu_v14_0_common_set_performance_level sends the level's GFX range (SetHardMinGfxClk /
    SetSoftMaxGfxClk) and sets gfx_actual_hard_min_freq/soft_max_freq to it, so leaving
    `manual` overwrites an OD range, shown (OD_SCLK) and enforced alike: `auto` brings back the
    defaults (MinGfxClk/MaxGfxClk, the OD_RANGE), `high`/`low` pin both ends, the profile_*
    levels the UMD clocks. `manual` itself keeps whatever range the previous level left.
    """
    word = next((w for w in hw.PERF_LEVEL_WORDS if value.startswith(w)), None)
    if word is None:
        reject()
    gpu = state["gpu"]
    current = gpu["perf_level"]
    if word == current:
        return  # amdgpu_pm.c: the current level again is a successful no-op
    if word == "profile_exit":
        if current not in hw.PROFILE_LEVELS:
            reject()  # "Currently not in any profile mode!"
        word = gpu["saved_perf_level"]  # smu_enable_umd_pstate restores the level it left
    if word == "perf_determinism":
        reject()  # no case for it in smu_v14_0_common_set_performance_level
    if word in hw.PROFILE_LEVELS and current not in hw.PROFILE_LEVELS:
        gpu["saved_perf_level"] = current
    ranges = _level_ranges(word)
    if ranges is not None:
        gpu["sclk_range"], gpu["od_sclk"] = list(ranges["sclk"]), list(ranges["sclk"])
        gpu["fclk_range"] = list(ranges["fclk"])
        gpu["socclk_range"] = list(ranges["socclk"])
        gpu["fclk_mask"] = gpu["socclk_mask"] = None  # smu_force_performance_level resets them
    gpu["perf_level"] = word


def _numbers(text: str) -> list[int]:
    """amdgpu_pm.c amdgpu_set_pp_od_clk_voltage, 6.11-6.18: tokens split on " \\n" (strsep),
    each kstrtol(base 0)."""
    out = []
    for token in re.split(r"[ \n]", text):
        if not token:
            continue
        try:
            out.append(kstrtol(token))
        except ValueError:
            reject()
    return out


def od_clk_voltage(state: dict, value: str, _m: re.Match) -> None:
    """pp_od_clk_voltage, 6.11-6.18: `s 0|1 MHz`, `r`, `c`; everything else, and anything
    outside manual, is -EINVAL. amdgpu_pm.c amdgpu_set_pp_od_clk_voltage (at most 127 bytes,
    the command letter, the numbers; every failure is -EINVAL there) and smu14/smu_v14_0.c
    smu_v14_0_od_edit_dpm_table (manual only; `s` checked against the default hard min / soft
    max, `r` restores them, `c` sends the pair after checking min <= max)."""
    if not value or len(value) > 127:
        reject()
    command = value[0]
    if command not in "sprcm" and not value.startswith(("vc", "vo")):
        reject()
    params = _numbers(value[2 if value.startswith(("vc", "vo")) else 1:].lstrip())
    gpu = state["gpu"]
    if gpu["perf_level"] != "manual":
        reject()  # "Only allowed in manual mode"
    if command == "s":
        if len(params) != 2 or params[0] not in (0, 1):
            reject()
        which, mhz = params
        if (which == 0 and mhz < hw.SCLK_MIN) or (which == 1 and mhz > hw.SCLK_MAX):
            reject()  # below the default hard min / above the default soft max
        gpu["od_sclk"][which] = mhz
    elif command == "r" and not params:
        gpu["od_sclk"] = [hw.SCLK_MIN, hw.SCLK_MAX]  # restored, applied by the next `c`
    elif command == "c" and not params:
        lo, hi = gpu["od_sclk"]
        if lo > hi:
            reject()  # "The setting minimum sclk ... is greater than the setting maximum"
        gpu["sclk_range"] = [lo, hi]  # SetHardMinGfxClk + SetSoftMaxGfxClk
    else:
        reject()  # wrong argument count, or an edit type this APU lacks (-ENOSYS)


def _mask(value: str) -> int:
    """amdgpu_pm.c amdgpu_read_mask, 6.11-6.18: indices split on " \\n"; the first empty
    token ends the list; kstrtoul and at most 31 per index."""
    mask = 0
    for token in re.split(r"[ \n]", value):
        if not token:
            break
        try:
            level = kstrtol(token)
        except ValueError:
            reject()
        if not 0 <= level < 32:
            reject()
        mask |= 1 << level
    return mask


def dpm_levels(state: dict, value: str, m: re.Match) -> None:
    """pp_dpm_fclk / pp_dpm_socclk, 6.11-6.18: a level mask, manual only (amdgpu_smu.c
    smu_force_ppclk_levels); the SMU gets the range from the lowest to the highest chosen level
    (smu14/smu_v14_0_0_ppt.c smu_v14_0_0_force_clk_levels, ffs/fls, get_dpm_freq_by_index)."""
    clk = m.group("clk")
    levels = hw.FCLK_LEVELS if clk == "fclk" else hw.SOCCLK_LEVELS
    mask = _mask(value)
    gpu = state["gpu"]
    if gpu["perf_level"] != "manual":
        reject()  # "force clock level is for dpm manual mode only"
    lo = (mask & -mask).bit_length() - 1 if mask else 0
    hi = mask.bit_length() - 1 if mask else 0
    if hi >= len(levels):
        reject()  # get_dpm_freq_by_index: no such level
    gpu[f"{clk}_range"] = [levels[lo], levels[hi]]
    gpu[f"{clk}_mask"] = [i for i in range(hi + 1) if mask >> i & 1]


def dpm_not_forceable(state: dict, value: str, _m: re.Match) -> None:
    """pp_dpm_sclk/mclk/pcie/dcefclk, 6.11-6.18: smu14/smu_v14_0_0_ppt.c
    smu_v14_0_0_force_clk_levels has no case for them (-EINVAL)."""
    reject()


RULES = (
    (rf"{re.escape(DEV)}/power_dpm_force_performance_level", perf_level),
    (rf"{re.escape(DEV)}/pp_od_clk_voltage", od_clk_voltage),
    (rf"{re.escape(DEV)}/pp_dpm_(?P<clk>fclk|socclk)", dpm_levels),
    (rf"{re.escape(DEV)}/pp_dpm_(?:sclk|mclk|pcie|dcefclk)", dpm_not_forceable),
)
