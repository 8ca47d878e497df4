"""cpufreq, amd-pstate and CPU hotplug attributes (drivers/cpufreq/cpufreq.c, amd-pstate.c,
drivers/base/core.c, kernel/cpu.c; spec §6). Every rule names the kernel function it follows
and the versions (6.11-6.18) it was checked against.

Offline CPUs: cpufreq_offline (cpufreq.c) keeps the policy directory and the cpuN/cpufreq
symlink (only cpufreq_remove_dev drops them) but leaves the policy inactive, and show()/store()
answer -EBUSY for every attribute of an inactive policy. The simulator cannot fail a read of a
plain file with EBUSY, so publish.py turns each attribute of an inactive policy into an empty
directory (a read fails with EISDIR, which RootFS reports as a failed read like EBUSY), and the
write rules below answer EBUSY, as store() does.
"""

from __future__ import annotations

import errno
import re

from halotune.sim import cpu as cpumodel
from halotune.sim import hardware as hw
from halotune.sim.kparse import kstrtol, sscanf_ul, sysfs_streq
from halotune.sim.paths import BOOST, CPU, CPUFREQ, PSTATE_STATUS, SMT_CONTROL
from halotune.sim.rules import reject

_S32_MAX = 2**31 - 1


def _policy(state: dict, m: re.Match) -> dict:
    """The policy an attribute write lands on. cpufreq.c store() (6.11-6.18): -EBUSY while
    policy_is_inactive(), i.e. its only CPU is offline (one policy per CPU with amd-pstate)."""
    n = int(m.group("n"))
    if not cpumodel.online(state, n):
        reject(errno.EBUSY)
    return state["cpu"]["policies"][n]


def _first_word(value: str, width: int) -> str:
    """sscanf(buf, "%<width>s"): the first white-space-delimited word, cut to width."""
    words = value.split()
    if not words:
        reject()
    return words[0][:width]


def governor(state: dict, value: str, m: re.Match) -> None:
    """scaling_governor: cpufreq.c store_scaling_governor reads "%15s" and matches
    case-insensitively (cpufreq_parse_policy for amd-pstate-epp, find_governor for amd-pstate).

    EPP on a governor change, amd-pstate.c amd_pstate_epp_set_policy ->
    amd_pstate_epp_update_limit, the same outcome in every modelled version:
    - 6.11-6.13: the EPP is taken from cppc_req_cached (amd_pstate_get_epp(cpudata, value)),
      forced to 0 under CPUFREQ_POLICY_PERFORMANCE and written back into cppc_req_cached;
    - 6.14-6.18: `epp = 0` under performance, else READ_ONCE(cpudata->epp_cached), and
      amd_pstate_update_perf/msr_update_perf stores the written EPP in epp_cached.
    Either way the performance governor sets EPP 0 ("performance") and that value stays in
    the cache, so going back to powersave keeps reading "performance" until a preference is
    written. No version check is needed here.
    """
    pol = _policy(state, m)
    name = _first_word(value, 15).lower()
    if name not in cpumodel.available_governors(state["cpu"]["pstate_mode"]):
        reject()
    pol["governor"] = name
    if name == "performance" and state["cpu"]["pstate_mode"] == "active":
        pol["epp"] = "performance"


def epp(state: dict, value: str, m: re.Match) -> None:
    """energy_performance_preference: amd-pstate.c store_energy_performance_preference
    (6.11-6.18) reads "%20s", match_string()s it against energy_perf_strings, and
    amd_pstate_set_energy_pref_index writes the EPP: index 0 ("default") writes
    cpudata->epp_default, a real write, and the file then reads back as that value's name
    (show_energy_performance_preference maps the EPP byte back: from the MSR until 6.13, from
    epp_cached since 6.14), never "default". epp_default is the firmware's EPP read at driver
    init (6.11-6.14) or AMD_CPPC_EPP_BALANCE_PERFORMANCE on a non-server FADT profile
    (6.15+); both are balance_performance on this machine. A non-zero EPP under the
    performance policy is -EBUSY."""
    pol = _policy(state, m)
    name = _first_word(value, 20)
    if name not in hw.EPP_CHOICES:
        reject()
    resolved = pol.get("epp_default", hw.EPP_DEFAULT) if name == "default" else name
    if resolved != "performance" and pol["governor"] == "performance":
        reject(errno.EBUSY)
    pol["epp"] = resolved


def freq_limit(state: dict, value: str, m: re.Match) -> None:
    """scaling_{min,max}_freq: cpufreq.c store_scaling_{min,max}_freq (6.11-6.18) sscanf "%lu"
    then freq_qos_update_request; out-of-range requests are accepted and clamped when the
    policy is evaluated (see halotune.sim.cpu)."""
    pol = _policy(state, m)
    try:
        khz = sscanf_ul(value)
    except ValueError:
        reject()
    khz &= 0xFFFFFFFF  # freq_qos_update_request takes an s32
    if khz > _S32_MAX:
        reject()  # negative after the s32 conversion
    pol[f"{m.group('which')}_req_khz"] = khz


def _boost_flag(value: str) -> int:
    """cpufreq.c store_boost / store_local_boost (6.11-18): kstrtoint(base 10), only 0 or 1."""
    try:
        on = kstrtol(value, base=10, bits=32)
    except ValueError:
        reject()
    if on not in (0, 1):
        reject()
    return on


def boost(state: dict, value: str, _m: re.Match) -> None:
    """cpufreq/boost: cpufreq.c store_boost -> cpufreq_boost_trigger_state sets the driver flag
    and then the flag of every policy in for_each_active_policy (6.11-6.18): an inactive
    policy (its CPU offline) keeps its own flag. Done even when the global value does not
    change (kept in sync since 6.15)."""
    on = _boost_flag(value)
    state["cpu"]["boost"] = on
    for n, pol in enumerate(state["cpu"]["policies"]):
        if cpumodel.online(state, n):
            pol["boost"] = on


def policy_boost(state: dict, value: str, m: re.Match) -> None:
    """policyN/boost (per-policy boost, cpufreq.c store_local_boost, 6.11-6.18): -EBUSY for an
    inactive policy (store()), then -EINVAL while the global flag
    (cpufreq_driver->boost_enabled) is 0, whatever the value."""
    pol = _policy(state, m)
    on = _boost_flag(value)
    if not state["cpu"]["boost"]:
        reject()
    pol["boost"] = on


# amd_pstate_mode_string, index order; status_store compares the first `size` bytes.
_MODE_STRINGS = ("undefined", "disable", "passive", "active", "guided")


def pstate_status(state: dict, value: str, _m: re.Match) -> None:
    """amd_pstate/status: amd-pstate.c status_store -> amd_pstate_update_status (6.11-6.18);
    6..7 characters before any newline, compared with strncmp; mode_state_machine."""
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
        # amd_pstate_change_driver_mode: the driver re-registers, policies start afresh. UNMODELLED:
        # 6.11-6.14 re-read epp_default from the MSR at init, which may hold what the passive
        # driver or the user left there; the simulator starts from the firmware default.
        cpu["policies"] = [cpumodel.new_policy(mode, cpu["boost"]) for _ in range(hw.CPUS)]
    cpu["pstate_mode"] = mode


def _kstrtobool(value: str) -> bool:
    """lib/kstrtox.c kstrtobool: only the first one or two characters count; y/n/1/0/on/of[f],
    t/f since 5.19, e/d (enable/disable) since 6.2 (UNCONFIRMED version, present in 6.11+)."""
    first, second = value[:1], value[1:2]
    if first and first in "eEyYtT1":
        return True
    if first and first in "dDnNfF0":
        return False
    if first and first in "oO" and second:
        if second in "nN":
            return True
        if second in "fF":
            return False
    reject()


def _cpu_up(state: dict, n: int) -> None:
    state["cpu"]["offline"] = [c for c in state["cpu"].get("offline", ()) if c != n]


def _cpu_down(state: dict, n: int) -> None:
    # cpufreq_offline: the policy stays, inactive, with its settings (last_governor); the
    # amd-pstate-epp ->offline callback's EPP changes on re-online are not modelled.
    state["cpu"]["offline"] = sorted({*state["cpu"].get("offline", ()), n})


def cpu_online(state: dict, value: str, m: re.Match) -> None:
    """cpuN/online: drivers/base/core.c online_store (6.11-6.18) parses kstrtobool, then
    device_online/device_offline -> drivers/base/cpu.c cpu_subsys_online/offline ->
    kernel/cpu.c cpu_device_up/cpu_device_down. Onlining a CPU that is already online (or
    offlining an offline one) succeeds and changes nothing. cpu_up refuses an SMT sibling
    while SMT is off (cpu_bootable() false: -EPERM). cpu0 has no online file on x86
    (arch_register_cpu: hotpluggable = cpu > 0), so the last CPU is never offlined here."""
    n = int(m.group("n"))
    up = _kstrtobool(value)
    if up == cpumodel.online(state, n):
        return
    if up:
        if n >= hw.CORES and cpumodel.smt_control(state) != "on":
            reject(errno.EPERM)
        _cpu_up(state, n)
    else:
        _cpu_down(state, n)


def smt_control(state: dict, value: str, _m: re.Match) -> None:
    """smt/control: kernel/cpu.c control_store -> __store_smt_control (6.11-6.18): -EPERM once
    "forceoff"; sysfs_streq "on"/"off"/"forceoff", anything else -EINVAL (numbers need
    CONFIG_SMT_NUM_THREADS_DYNAMIC, which x86 does not have). Only a change of the thread
    count acts: "on" from 1 thread runs cpuhp_smt_enable, which onlines every offline CPU
    (topology_is_core_online is always true on x86); "off"/"forceoff" from 2 threads (or
    "forceoff" from "off") runs cpuhp_smt_disable, which offlines every online CPU that is
    not a primary thread (cpu16-31 here) and then sets cpu_smt_control."""
    current = cpumodel.smt_control(state)
    if current == "forceoff":
        reject(errno.EPERM)
    word = next((w for w in ("on", "off", "forceoff") if sysfs_streq(value, w)), None)
    if word is None:
        reject()
    threads_now = 2 if current == "on" else 1
    threads = 2 if word == "on" else 1
    if threads > threads_now:
        for n in range(hw.CPUS):
            _cpu_up(state, n)
    elif threads < threads_now or (word == "forceoff" and current != "forceoff"):
        for n in range(hw.CORES, hw.CPUS):
            _cpu_down(state, n)
    else:
        return
    state["cpu"]["smt_control"] = word


_POLICY = rf"{re.escape(CPUFREQ)}/policy(?P<n>[0-9]+)"
RULES = (
    (rf"{_POLICY}/scaling_governor", governor),
    (rf"{_POLICY}/energy_performance_preference", epp),
    (rf"{_POLICY}/scaling_(?P<which>min|max)_freq", freq_limit),
    (rf"{_POLICY}/boost", policy_boost),
    (re.escape(BOOST), boost),
    (re.escape(PSTATE_STATUS), pstate_status),
    (rf"{re.escape(CPU)}/cpu(?P<n>[1-9][0-9]*)/online", cpu_online),
    (re.escape(SMT_CONTROL), smt_control),
)
