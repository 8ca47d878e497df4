"""CPU hotplug and SMT control on the simulated machine (kernel/cpu.c, drivers/base/core.c),
what an offline CPU does to its cpufreq policy (drivers/cpufreq/cpufreq.c show()/store():
EBUSY for an inactive policy), and amd-pstate EPP across governor changes per kernel version."""

from __future__ import annotations

import os

import pytest

from halotune.machine.rootfs import RootFS
from halotune.sim import paths, store
from halotune.sim.tree import lay_out

from .test_kernel import write

CPU = "sys/devices/system/cpu"
POL = f"{CPU}/cpufreq"


def _read(root: str, rel: str) -> str:
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return f.read()


def _read_errno(root: str, rel: str) -> int | None:
    """errno of a plain open()+read() of the file, None when it reads."""
    try:
        _read(root, rel)
    except OSError as e:
        return e.errno
    return None


def _log_tail(root: str) -> dict:
    return [e for e in store.read_log(root) if "path" in e][-1]


def test_smt_off_offlines_the_siblings_and_leaves_inactive_policies(sim_root, sim_fs):
    assert _read(sim_root, paths.SMT_CONTROL) == "on\n"
    assert _read(sim_root, f"{CPU}/online") == "0-31\n"
    assert write(sim_fs, paths.SMT_CONTROL, "off\n") == "ok"
    assert _read(sim_root, paths.SMT_CONTROL) == "off\n"
    assert _read(sim_root, paths.SMT_ACTIVE) == "0\n"
    assert _read(sim_root, f"{CPU}/online") == "0-15\n"
    assert _read(sim_root, f"{CPU}/offline") == "16-31\n"
    assert _read(sim_root, f"{CPU}/cpu15/online") == "1\n"
    assert _read(sim_root, f"{CPU}/cpu16/online") == "0\n"
    # the policy directory and the cpuN/cpufreq link stay (only cpufreq_remove_dev drops them)
    assert os.path.isdir(os.path.join(sim_root, POL, "policy16"))
    assert os.readlink(os.path.join(sim_root, CPU, "cpu16/cpufreq")) == "../cpufreq/policy16"
    # every attribute of the inactive policy fails to read; RootFS says so
    for attr in ("scaling_governor", "energy_performance_preference", "boost", "affected_cpus"):
        assert _read_errno(sim_root, f"{POL}/policy16/{attr}") is not None, attr
        assert sim_fs.read_text(f"{POL}/policy16/{attr}") is None
    assert _read(sim_root, f"{POL}/policy15/affected_cpus") == "15\n"
    # writes to it: EBUSY, logged
    for attr, value in (("scaling_governor", "performance"), ("boost", "0"),
                        ("energy_performance_preference", "power"),
                        ("scaling_max_freq", "3000000")):
        assert write(sim_fs, f"{POL}/policy16/{attr}", value) == "EBUSY", attr
        assert _log_tail(sim_root)["result"] == "EBUSY"
    # the active policies are untouched and writable
    assert write(sim_fs, f"{POL}/policy15/scaling_governor", "performance") == "ok"


def test_smt_on_brings_the_policies_back_with_their_settings(sim_root, sim_fs):
    assert write(sim_fs, f"{POL}/policy20/energy_performance_preference", "power") == "ok"
    assert write(sim_fs, paths.SMT_CONTROL, "off") == "ok"
    assert write(sim_fs, paths.SMT_CONTROL, "on") == "ok"
    assert _read(sim_root, f"{CPU}/online") == "0-31\n"
    assert _read(sim_root, f"{CPU}/offline") == "\n"
    assert _read(sim_root, paths.SMT_ACTIVE) == "1\n"
    assert _read(sim_root, f"{POL}/policy20/energy_performance_preference") == "power\n"
    assert _read(sim_root, f"{POL}/policy20/scaling_governor") == "powersave\n"


def test_global_boost_skips_inactive_policies(sim_root, sim_fs):
    """cpufreq_boost_trigger_state walks for_each_active_policy."""
    assert write(sim_fs, paths.SMT_CONTROL, "off") == "ok"
    assert write(sim_fs, paths.BOOST, "0") == "ok"
    assert _read(sim_root, f"{POL}/policy3/boost") == "0\n"
    assert write(sim_fs, paths.SMT_CONTROL, "on") == "ok"
    assert _read(sim_root, f"{POL}/policy19/boost") == "1\n"


@pytest.mark.parametrize(("value", "online"), [
    ("0", "0"), ("n", "0"), ("off", "0"), ("false\n", "0"),
    ("1", "1"), ("y", "1"), ("on", "1"), ("true", "1"),
])
def test_cpu_online_takes_kstrtobool(sim_root, sim_fs, value, online):
    if online == "1":
        assert write(sim_fs, f"{CPU}/cpu5/online", "0") == "ok"
    assert write(sim_fs, f"{CPU}/cpu5/online", value) == "ok"
    assert _read(sim_root, f"{CPU}/cpu5/online") == f"{online}\n"


@pytest.mark.parametrize("value", ["", "2", "maybe", "o", "x1"])
def test_cpu_online_refuses_what_kstrtobool_refuses(sim_fs, value):
    assert write(sim_fs, f"{CPU}/cpu5/online", value) == "EINVAL"


def test_cpu0_has_no_online_file(sim_root, sim_fs):
    assert not os.path.exists(os.path.join(sim_root, CPU, "cpu0/online"))
    assert write(sim_fs, f"{CPU}/cpu0/online", "0") == "ENOENT"


def test_one_cpu_offline_then_smt_on_does_nothing(sim_root, sim_fs):
    """6.7+ __store_smt_control acts on a change of the thread count only: "on" while on
    leaves a CPU offlined through cpuN/online offline."""
    assert write(sim_fs, f"{CPU}/cpu7/online", "0") == "ok"
    assert _read(sim_root, f"{CPU}/online") == "0-6,8-31\n"
    assert sim_fs.read_text(f"{POL}/policy7/scaling_governor") is None
    assert write(sim_fs, paths.SMT_CONTROL, "on") == "ok"
    assert _read(sim_root, f"{CPU}/cpu7/online") == "0\n"
    # off then on: cpuhp_smt_enable onlines every offline CPU, cpu7 included
    assert write(sim_fs, paths.SMT_CONTROL, "off") == "ok"
    assert write(sim_fs, paths.SMT_CONTROL, "on") == "ok"
    assert _read(sim_root, f"{CPU}/online") == "0-31\n"


def test_sibling_cannot_come_online_while_smt_is_off(sim_fs):
    assert write(sim_fs, paths.SMT_CONTROL, "off") == "ok"
    assert write(sim_fs, f"{CPU}/cpu16/online", "1") == "EPERM"   # cpu_bootable() false
    assert write(sim_fs, f"{CPU}/cpu3/online", "0") == "ok"         # primaries still can go
    assert write(sim_fs, f"{CPU}/cpu3/online", "1") == "ok"


@pytest.mark.parametrize(("value", "code"), [("of", "EINVAL"), ("1", "EINVAL"), ("", "EINVAL"),
                                             ("on off", "EINVAL")])
def test_smt_control_refuses(sim_fs, value, code):
    assert write(sim_fs, paths.SMT_CONTROL, value) == code


def test_forceoff_is_final(sim_root, sim_fs):
    assert write(sim_fs, paths.SMT_CONTROL, "forceoff") == "ok"
    assert _read(sim_root, paths.SMT_CONTROL) == "forceoff\n"
    assert _read(sim_root, f"{CPU}/online") == "0-15\n"
    assert write(sim_fs, paths.SMT_CONTROL, "on") == "EPERM"
    assert write(sim_fs, f"{CPU}/cpu16/online", "1") == "EPERM"


@pytest.mark.parametrize("kernel", ["6.11", "6.14", "6.17"])
def test_epp_across_governor_changes(tmp_path, kernel):
    """amd_pstate_epp_update_limit in every modelled version: the performance governor writes
    EPP 0 and it stays cached when the governor goes back to powersave; "default" writes the
    firmware's EPP, which then reads back by name; under performance it is EBUSY."""
    root = str(tmp_path / "root")
    lay_out(root, kernel=kernel)
    fs = RootFS(root)
    epp = f"{POL}/policy2/energy_performance_preference"
    gov = f"{POL}/policy2/scaling_governor"
    assert write(fs, epp, "power") == "ok"
    assert write(fs, gov, "performance") == "ok"
    assert _read(root, epp) == "performance\n"
    assert write(fs, epp, "default") == "EBUSY"
    assert write(fs, gov, "powersave") == "ok"
    assert _read(root, epp) == "performance\n"
    assert write(fs, epp, "default") == "ok"
    assert _read(root, epp) == "balance_performance\n"
    assert _log_tail(root) == {**_log_tail(root), "path": epp, "value": "default",
                               "result": "ok"}
