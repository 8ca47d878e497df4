"""SimKernel through RootFS.write_text (the simhook path): driver rules and their errnos."""

from __future__ import annotations

import errno
import os

import pytest

from halotune.machine.rootfs import RootFS
from halotune.sim import paths, store

CARD = "sys/class/drm/card1/device"
LEVEL = f"{CARD}/power_dpm_force_performance_level"
OD = f"{CARD}/pp_od_clk_voltage"
CPU3 = "sys/devices/system/cpu/cpu3/cpufreq"

# errno.errorcode calls 95 ENOTSUP; the kernel source says EOPNOTSUPP.
ERRNO_NAMES = {**errno.errorcode, errno.EOPNOTSUPP: "EOPNOTSUPP"}

OD_DEFAULT = (b"OD_SCLK:\n0:        600Mhz\n1:       2900Mhz\n"
              b"OD_RANGE:\nSCLK:     600Mhz       2900Mhz\n")


def write(fs: RootFS, rel: str, value: str) -> str:
    """The errno name the write fails with, or "ok"."""
    try:
        fs.write_text(rel, value)
    except OSError as e:
        assert e.filename == fs.path(rel)
        return ERRNO_NAMES[e.errno]
    return "ok"


@pytest.mark.parametrize(("rel", "value", "code"), [
    (LEVEL, "turbo", "EINVAL"),
    (LEVEL, "", "EINVAL"),
    (LEVEL, "profile_exit", "EINVAL"),          # not in a profile level
    (LEVEL, "perf_determinism", "EINVAL"),      # no case in smu_v14_0_common_set_performance_level
    (OD, "s 1 2000", "EINVAL"),                 # level is auto, not manual
    (OD, "c", "EINVAL"),
    (f"{CARD}/pp_dpm_fclk", "0 1", "EINVAL"),   # manual only
    (f"{CARD}/pp_dpm_socclk", "2", "EINVAL"),
    (f"{CARD}/pp_dpm_sclk", "1", "EINVAL"),     # not forceable on this ASIC
    (f"{CARD}/pp_dpm_mclk", "0", "EINVAL"),
    (paths.PLATFORM_PROFILE, "turbo", "EINVAL"),
    (paths.PLATFORM_PROFILE, "custom", "EINVAL"),
    (paths.PLATFORM_PROFILE, "cool", "EOPNOTSUPP"),
    (f"{CPU3}/scaling_governor", "schedutil", "EINVAL"),  # not offered by amd-pstate-epp
    (f"{CPU3}/energy_performance_preference", "fast", "EINVAL"),
    (f"{CPU3}/scaling_max_freq", "fast", "EINVAL"),
    (paths.BOOST, "2", "EINVAL"),
    (paths.PSTATE_STATUS, "auto", "EINVAL"),
    (f"{paths.TTM_PARAMS}/pages_limit", "-1", "EINVAL"),
    (f"{paths.TTM_PARAMS}/page_pool_size", "lots", "EINVAL"),
    (paths.GTTSIZE, "1.5", "EINVAL"),
    (paths.THP_ENABLED, "[always]", "EINVAL"),
    (paths.THP_DEFRAG, "sometimes", "EINVAL"),
    (paths.SWAPPINESS, "201", "EINVAL"),
    (paths.SWAPPINESS, "-1", "EINVAL"),
    (paths.COMPACTION_PROACTIVENESS, "101", "EINVAL"),
    (paths.NUMA_BALANCING, "5", "EINVAL"),      # proc_dointvec_minmax 0..4
    (paths.NUMA_BALANCING, "-1", "EINVAL"),
    (paths.NUMA_BALANCING, "on", "EINVAL"),
    (f"{CPU3}/boost", "2", "EINVAL"),
    (f"{CPU3}/boost", "yes", "EINVAL"),
    ("etc/passwd", "root::0:0::/root:/bin/sh", "EACCES"),   # only modprobe.d files are offered
    ("etc/modprobe.d/notes.txt", "x", "EACCES"),             # kmod reads *.conf only
    ("etc/modprobe.d/.hidden.conf", "x", "EACCES"),
    ("etc/sysctl.d/99-tune.conf", "vm.swappiness=10", "EACCES"),
    ("etc/modprobe.d", "x", "EISDIR"),
    (f"{CARD}/vendor", "0x1002", "EACCES"),     # read-only attributes
    (f"{CARD}/gpu_metrics", "x", "EACCES"),
    (f"{CPU3}/cpuinfo_max_freq", "5188000", "EACCES"),
    ("proc/meminfo", "1", "EACCES"),
    (f"{CARD}/pp_power_profile_mode", "1", "ENOENT"),  # absent on this APU
    ("sys/class/drm/card0/device/vendor", "1", "ENOENT"),
    ("sys/class/drm/card1", "1", "EISDIR"),
])
def test_refused_writes(sim_fs, rel, value, code):
    before = store.load_state(sim_fs.root)
    assert write(sim_fs, rel, value) == code
    assert store.load_state(sim_fs.root) == before
    assert [e["result"] for e in store.read_log(sim_fs.root)] == [code]


def test_levels_pin_the_clock_ranges(sim_fs):
    state = lambda: store.load_state(sim_fs.root)["gpu"]  # noqa: E731
    assert write(sim_fs, LEVEL, "high\n") == "ok"
    assert sim_fs.read_text(LEVEL) == "high"
    assert state()["sclk_range"] == [2900, 2900]
    assert sim_fs.read_bytes(OD).startswith(b"OD_SCLK:\n0:       2900Mhz\n1:       2900Mhz\n")
    assert write(sim_fs, LEVEL, "low") == "ok"
    assert (state()["sclk_range"], state()["fclk_range"]) == ([600, 600], [400, 400])
    assert write(sim_fs, LEVEL, "profile_standard") == "ok"
    assert state()["sclk_range"] == [700, 700]
    assert write(sim_fs, LEVEL, "profile_exit") == "ok"  # back to the level profiling left
    assert sim_fs.read_text(LEVEL) == "low"
    assert write(sim_fs, LEVEL, "auto") == "ok"
    assert sim_fs.read_bytes(OD) == OD_DEFAULT


def test_od_edits_are_manual_only_staged_and_rendered(sim_fs):
    assert write(sim_fs, OD, "s 1 2000") == "EINVAL"
    assert sim_fs.read_bytes(OD) == OD_DEFAULT
    assert write(sim_fs, LEVEL, "manual") == "ok"
    assert write(sim_fs, OD, "s 0 599") == "EINVAL"   # below OD_RANGE
    assert write(sim_fs, OD, "s 1 2901") == "EINVAL"  # above OD_RANGE
    assert write(sim_fs, OD, "s 2 1000") == "EINVAL"
    assert write(sim_fs, OD, "s 1") == "EINVAL"
    assert write(sim_fs, OD, "x") == "EINVAL"
    assert write(sim_fs, OD, "s 1 2000\n") == "ok"
    # Shown at once (gfx_actual_soft_max_freq), enforced only after the commit.
    assert sim_fs.read_bytes(OD) == (b"OD_SCLK:\n0:        600Mhz\n1:       2000Mhz\n"
                                     b"OD_RANGE:\nSCLK:     600Mhz       2900Mhz\n")
    assert sim_fs.read_bytes(f"{CARD}/pp_dpm_sclk") == b"0: 600Mhz \n1: 2743Mhz *\n2: 2000Mhz \n"
    assert store.load_state(sim_fs.root)["gpu"]["sclk_range"] == [600, 2900]
    assert write(sim_fs, OD, "c") == "ok"
    assert store.load_state(sim_fs.root)["gpu"]["sclk_range"] == [600, 2000]
    assert write(sim_fs, OD, "s 0 2500") == "ok"  # accepted alone ...
    assert write(sim_fs, OD, "c") == "EINVAL"     # ... but min > max cannot be committed
    assert write(sim_fs, OD, "r") == "ok"
    assert sim_fs.read_bytes(OD) == OD_DEFAULT
    assert write(sim_fs, OD, "c") == "ok"
    assert store.load_state(sim_fs.root)["gpu"]["sclk_range"] == [600, 2900]


def test_fclk_and_socclk_masks(sim_fs):
    assert write(sim_fs, LEVEL, "manual") == "ok"
    assert write(sim_fs, f"{CARD}/pp_dpm_fclk", "8") == "EINVAL"  # no level 8
    assert write(sim_fs, f"{CARD}/pp_dpm_fclk", "x") == "EINVAL"
    assert write(sim_fs, f"{CARD}/pp_dpm_fclk", "2 5\n") == "ok"
    assert write(sim_fs, f"{CARD}/pp_dpm_socclk", "4") == "ok"
    gpu = store.load_state(sim_fs.root)["gpu"]
    assert (gpu["fclk_range"], gpu["fclk_mask"]) == ([1200, 1600], [2, 5])
    assert (gpu["socclk_range"], gpu["socclk_mask"]) == ([1104, 1104], [4])
    assert write(sim_fs, LEVEL, "auto") == "ok"  # leaving manual drops the masks
    gpu = store.load_state(sim_fs.root)["gpu"]
    assert (gpu["fclk_mask"], gpu["fclk_range"]) == (None, [400, 1960])


def test_platform_profile_applies_the_slider_limits(sim_fs):
    assert write(sim_fs, paths.PLATFORM_PROFILE, "low-power\n") == "ok"
    assert sim_fs.read_text(paths.PLATFORM_PROFILE) == "low-power"
    limits = store.load_state(sim_fs.root)["limits"]
    assert (limits["stapm_mw"], limits["fast_mw"], limits["slow_mw"]) == (60000, 70000, 60000)


def test_governor_and_epp(sim_fs):
    epp, avail = f"{CPU3}/energy_performance_preference", \
        f"{CPU3}/energy_performance_available_preferences"
    assert write(sim_fs, epp, "power") == "ok"
    assert sim_fs.read_text(epp) == "power"
    assert write(sim_fs, f"{CPU3}/scaling_governor", "performance") == "ok"
    assert sim_fs.read_bytes(avail) == b"performance\n"
    assert sim_fs.read_text(epp) == "performance"
    assert write(sim_fs, epp, "balance_power") == "EBUSY"
    assert write(sim_fs, epp, "default") == "EBUSY"
    assert write(sim_fs, epp, "performance") == "ok"
    assert write(sim_fs, f"{CPU3}/scaling_governor", "powersave") == "ok"
    assert sim_fs.read_bytes(avail) == \
        b"default performance balance_performance balance_power power \n"
    assert sim_fs.read_text(epp) == "performance"  # the cached EPP survives the switch back
    assert write(sim_fs, epp, "default") == "ok"
    assert sim_fs.read_text(epp) == "balance_performance"
    assert sim_fs.read_text("sys/devices/system/cpu/cpu4/cpufreq/scaling_governor") == "powersave"


def test_frequency_limits_are_clamped_requests(sim_fs):
    lo, hi = f"{CPU3}/scaling_min_freq", f"{CPU3}/scaling_max_freq"
    assert write(sim_fs, hi, "3000000") == "ok"
    assert sim_fs.read_int(hi) == 3000000
    assert write(sim_fs, lo, "4000000") == "ok"   # above max: the policy min follows max
    assert sim_fs.read_int(lo) == 3000000
    assert write(sim_fs, hi, "9999999") == "ok"   # above cpuinfo_max_freq: clamped
    assert (sim_fs.read_int(lo), sim_fs.read_int(hi)) == (4000000, 5188000)
    assert write(sim_fs, paths.BOOST, "0") == "ok"
    assert sim_fs.read_int(f"{CPU3}/cpuinfo_max_freq") == 3000000
    assert sim_fs.read_int(hi) == 3000000


def test_pstate_mode_change_reregisters_the_driver(sim_fs):
    epp = f"{CPU3}/energy_performance_preference"
    assert write(sim_fs, paths.PSTATE_STATUS, "passive\n") == "ok"
    assert sim_fs.read_text(f"{CPU3}/scaling_driver") == "amd-pstate"
    assert sim_fs.read_text(f"{CPU3}/scaling_governor") == "schedutil"
    assert not sim_fs.exists(epp)
    assert write(sim_fs, epp, "power") == "ENOENT"
    assert write(sim_fs, f"{CPU3}/scaling_governor", "ondemand") == "ok"
    assert write(sim_fs, paths.PSTATE_STATUS, "active") == "ok"
    assert sim_fs.read_text(epp) == "balance_performance"
    assert sim_fs.read_text(f"{CPU3}/scaling_governor") == "powersave"


def test_module_parameters_do_not_resize_gtt(sim_fs):
    gtt_total = sim_fs.read_int(f"{CARD}/mem_info_gtt_total")
    assert write(sim_fs, f"{paths.TTM_PARAMS}/pages_limit", "31457280\n") == "ok"
    assert write(sim_fs, f"{paths.TTM_PARAMS}/page_pool_size", "0x1e00000") == "ok"
    assert write(sim_fs, paths.GTTSIZE, "120000") == "ok"
    assert sim_fs.read_int(f"{paths.TTM_PARAMS}/pages_limit") == 31457280
    assert sim_fs.read_int(f"{paths.TTM_PARAMS}/page_pool_size") == 31457280
    assert sim_fs.read_int(paths.GTTSIZE) == 120000
    assert sim_fs.read_int(f"{CARD}/mem_info_gtt_total") == gtt_total


def test_memory_management_knobs(sim_fs):
    assert write(sim_fs, paths.THP_ENABLED, "always\n") == "ok"
    assert sim_fs.read_bytes(paths.THP_ENABLED) == b"[always] madvise never\n"
    assert write(sim_fs, paths.THP_DEFRAG, "defer+madvise") == "ok"
    assert sim_fs.read_bytes(paths.THP_DEFRAG) == b"always defer [defer+madvise] madvise never\n"
    assert write(sim_fs, paths.SWAPPINESS, "200") == "ok"
    assert write(sim_fs, paths.COMPACTION_PROACTIVENESS, "0\n") == "ok"
    assert (sim_fs.read_int(paths.SWAPPINESS), sim_fs.read_int(paths.COMPACTION_PROACTIVENESS)) \
        == (200, 0)


def test_writes_are_logged_in_order_and_files_change_in_place(sim_fs):
    level_path = os.path.join(sim_fs.root, paths.DEV, "power_dpm_force_performance_level")
    inode = os.stat(level_path).st_ino
    fd = os.open(level_path, os.O_RDONLY)
    try:
        assert write(sim_fs, LEVEL, "manual") == "ok"
        assert write(sim_fs, OD, "s 1 1800") == "ok"
        assert write(sim_fs, OD, "s 1 9999") == "EINVAL"
        assert write(sim_fs, OD, "c") == "ok"
        assert os.pread(fd, 4096, 0) == b"manual\n"
    finally:
        os.close(fd)
    assert os.stat(level_path).st_ino == inode
    log = store.read_log(sim_fs.root)
    assert [(e["path"], e["value"], e["result"]) for e in log] == [
        (f"{paths.DEV}/power_dpm_force_performance_level", "manual", "ok"),
        (f"{paths.DEV}/pp_od_clk_voltage", "s 1 1800", "ok"),
        (f"{paths.DEV}/pp_od_clk_voltage", "s 1 9999", "EINVAL"),
        (f"{paths.DEV}/pp_od_clk_voltage", "c", "ok"),
    ]
    assert log[0]["t"] <= log[-1]["t"]


def test_numa_balancing(sim_fs):
    assert sim_fs.read_int(paths.NUMA_BALANCING) == 0   # one NUMA node: left off at boot
    for value in ("1", "3\n", "4", "0"):
        assert write(sim_fs, paths.NUMA_BALANCING, value) == "ok"
        assert sim_fs.read_int(paths.NUMA_BALANCING) == int(value)


def test_per_policy_boost_under_the_global_flag(sim_fs):
    cpu19 = "sys/devices/system/cpu/cpu19/cpufreq"
    assert sim_fs.read_int(f"{CPU3}/boost") == 1
    assert write(sim_fs, f"{CPU3}/boost", "0\n") == "ok"
    assert sim_fs.read_int(f"{CPU3}/cpuinfo_max_freq") == 3000000   # this policy only
    assert sim_fs.read_int(f"{cpu19}/cpuinfo_max_freq") == 5188000
    assert sim_fs.read_int(paths.BOOST) == 1
    assert write(sim_fs, paths.BOOST, "1") == "ok"    # the global write syncs every policy
    assert sim_fs.read_int(f"{CPU3}/boost") == 1
    assert write(sim_fs, paths.BOOST, "0") == "ok"
    assert {sim_fs.read_int(f"{paths.policy(n)}/boost") for n in range(32)} == {0}
    assert write(sim_fs, f"{CPU3}/boost", "1") == "EINVAL"   # store_local_boost: global is off
    assert write(sim_fs, f"{CPU3}/boost", "0") == "EINVAL"
    assert write(sim_fs, paths.BOOST, "1") == "ok"
    assert write(sim_fs, f"{cpu19}/boost", "0") == "ok"
    assert write(sim_fs, paths.PSTATE_STATUS, "passive") == "ok"  # new policies mirror global
    assert sim_fs.read_int(f"{cpu19}/boost") == 1


def test_modprobe_d_files_are_plain_files(sim_fs):
    rel = "etc/modprobe.d/halotune-gtt.conf"
    path = sim_fs.path(rel)
    assert write(sim_fs, rel, "options ttm pages_limit=1\noptions ttm page_pool_size=1") == "ok"
    assert open(path).read() == "options ttm pages_limit=1\noptions ttm page_pool_size=1\n"
    assert write(sim_fs, rel, "options ttm pages_limit=2\n") == "ok"   # replaced, not appended
    assert open(path).read() == "options ttm pages_limit=2\n"
    os.unlink(path)   # removal needs no hook
    log = store.read_log(sim_fs.root)
    assert [(e["path"], e["value"], e["result"]) for e in log] == [
        (rel, "options ttm pages_limit=1\noptions ttm page_pool_size=1", "ok"),
        (rel, "options ttm pages_limit=2\n", "ok")]
