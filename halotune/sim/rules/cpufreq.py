"""cpufreq and amd-pstate attributes (drivers/cpufreq/cpufreq.c, amd-pstate.c; spec §6).

Behaviour of the 6.15+ amd-pstate-epp driver: the performance governor forces EPP 0
("performance") and that value stays cached, so going back to powersave keeps reading
"performance" until a new preference is written.
"""

from __future__ import annotations

import errno
import re

from halotune.sim import cpu as cpumodel
from halotune.sim import hardware as hw
from halotune.sim.kparse import kstrtol, sscanf_ul
from halotune.sim.paths import BOOST, CPUFREQ, PSTATE_STATUS
from halotune.sim.rules import reject

_S32_MAX = 2**31 - 1


def _policy(state: dict, m: re.Match) -> dict:
    return state["cpu"]["policies"][int(m.group("n"))]


def _first_word(value: str, width: int) -> str:
    """sscanf(buf, "%<width>s"): the first white-space-delimited word, cut to width."""
    words = value.split()
    if not words:
        reject()
    return words[0][:width]


def governor(state: dict, value: str, m: re.Match) -> None:
    """scaling_governor: store_scaling_governor reads "%15s" and matches case-insensitively
    (cpufreq_parse_policy for amd-pstate-epp, find_governor for amd-pstate)."""
    name = _first_word(value, 15).lower()
    if name not in cpumodel.available_governors(state["cpu"]["pstate_mode"]):
        reject()
    pol = _policy(state, m)
    pol["governor"] = name
    if name == "performance" and state["cpu"]["pstate_mode"] == "active":
        pol["epp"] = "performance"  # amd_pstate_epp_update_limit: epp = 0, cached


def epp(state: dict, value: str, m: re.Match) -> None:
    """energy_performance_preference: "%20s" matched against energy_perf_strings; a non-zero
    EPP under the performance policy is -EBUSY ("default" means epp_default, non-zero)."""
    name = _first_word(value, 20)
    if name not in hw.EPP_CHOICES:
        reject()
    pol = _policy(state, m)
    resolved = hw.EPP_DEFAULT if name == "default" else name
    if resolved != "performance" and pol["governor"] == "performance":
        reject(errno.EBUSY)
    pol["epp"] = resolved


def freq_limit(state: dict, value: str, m: re.Match) -> None:
    """scaling_{min,max}_freq: sscanf "%lu" then a freq-QoS request; out-of-range requests
    are accepted and clamped when the policy is evaluated (see halotune.sim.cpu)."""
    try:
        khz = sscanf_ul(value)
    except ValueError:
        reject()
    khz &= 0xFFFFFFFF  # freq_qos_update_request takes an s32
    if khz > _S32_MAX:
        reject()  # negative after the s32 conversion
    _policy(state, m)[f"{m.group('which')}_req_khz"] = khz


def _boost_flag(value: str) -> int:
    """store_boost / store_local_boost: kstrtoint(base 10), then only 0 or 1."""
    try:
        on = kstrtol(value, base=10, bits=32)
    except ValueError:
        reject()
    if on not in (0, 1):
        reject()
    return on


def boost(state: dict, value: str, _m: re.Match) -> None:
    """cpufreq/boost: cpufreq_boost_trigger_state sets the driver flag and then every policy's
    flag, even when the global value does not change (kept in sync since 6.15)."""
    on = _boost_flag(value)
    state["cpu"]["boost"] = on
    for pol in state["cpu"]["policies"]:
        pol["boost"] = on


def policy_boost(state: dict, value: str, m: re.Match) -> None:
    """policyN/boost (per-policy boost, amd-pstate 6.11+): store_local_boost is -EINVAL while
    the global flag (cpufreq_driver->boost_enabled) is 0, whatever the value."""
    on = _boost_flag(value)
    if not state["cpu"]["boost"]:
        reject()
    _policy(state, m)["boost"] = on


# amd_pstate_mode_string, index order; status_store compares the first `size` bytes.
_MODE_STRINGS = ("undefined", "disable", "passive", "active", "guided")


def pstate_status(state: dict, value: str, _m: re.Match) -> None:
    """amd_pstate/status: amd_pstate_update_status; 6..7 characters before any newline."""
    text = value.split("\n", 1)[0]
    if not len("active") <= len(text) <= len("passive"):
        reject()
    mode = next((s for s in _MODE_STRINGS if s[:len(text)] == text), None)
    if mode is None:
        reject()
    cpu = state["cpu"]
    current = cpu["pstate_mode"]
    if mode in ("undefined", current):
        return  # no transition in mode_state_machine: success, nothing happens
    if mode == "disable":
        reject(errno.EOPNOTSUPP)  # the simulator does not model a machine without cpufreq
    if "active" in (mode, current):
        # amd_pstate_change_driver_mode: the driver re-registers, policies start afresh
        cpu["policies"] = [cpumodel.new_policy(mode, cpu["boost"]) for _ in range(hw.CPUS)]
    cpu["pstate_mode"] = mode


_POLICY = rf"{re.escape(CPUFREQ)}/policy(?P<n>[0-9]+)"
RULES = (
    (rf"{_POLICY}/scaling_governor", governor),
    (rf"{_POLICY}/energy_performance_preference", epp),
    (rf"{_POLICY}/scaling_(?P<which>min|max)_freq", freq_limit),
    (rf"{_POLICY}/boost", policy_boost),
    (re.escape(BOOST), boost),
    (re.escape(PSTATE_STATUS), pstate_status),
)
