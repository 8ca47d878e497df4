"""The simulated amdgpu: what a performance level change does to the OD clock range.

From smu14/smu_v14_0_0_ppt.c smu_v14_0_common_set_performance_level (6.11-6.18): every level
but manual/profile_exit sends its own GFX range and overwrites gfx_actual_hard_min_freq /
gfx_actual_soft_max_freq, which pp_od_clk_voltage's OD_SCLK prints; `manual` changes nothing;
amdgpu_smu.c smu_adjust_power_state_dynamic only calls it when the level differs.
"""

from __future__ import annotations

import pytest

from halotune.machine.rootfs import RootFS
from halotune.sim import store
from halotune.sim.tree import lay_out

CARD = "sys/class/drm/card1/device"
LEVEL = f"{CARD}/power_dpm_force_performance_level"
OD = f"{CARD}/pp_od_clk_voltage"
SCLK = f"{CARD}/pp_dpm_sclk"


def od_sclk(lo: int, hi: int) -> bytes:
    """smu_v14_0_0_print_clk_levels: OD_SCLK ("%10uMhz") then OD_RANGE (the defaults)."""
    return (f"OD_SCLK:\n0: {lo:>10}Mhz\n1: {hi:>10}Mhz\n"
            "OD_RANGE:\nSCLK:     600Mhz       2900Mhz\n").encode()


@pytest.fixture(scope="module")
def _tree(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("amdgpu") / "root")


@pytest.fixture(params=("6.11", "6.18"))
def fs(request, _tree) -> RootFS:
    lay_out(_tree, kernel=request.param)   # laying out again resets the machine (and version)
    return RootFS(_tree)


def gpu(fs: RootFS) -> dict:
    return store.load_state(fs.root)["gpu"]


def manual_with_max_2000(fs: RootFS) -> None:
    for rel, value in ((LEVEL, "manual"), (OD, "s 1 2000"), (OD, "c")):
        fs.write_text(rel, value)
    assert fs.read_bytes(OD) == od_sclk(600, 2000)
    assert gpu(fs)["sclk_range"] == [600, 2000]


def test_leaving_manual_for_auto_restores_the_default_range(fs):
    manual_with_max_2000(fs)
    fs.write_text(LEVEL, "auto")
    assert fs.read_bytes(OD) == od_sclk(600, 2900)          # shown ...
    assert gpu(fs)["sclk_range"] == [600, 2900]             # ... and enforced
    assert fs.read_bytes(SCLK).endswith(b"2: 2900Mhz \n")   # pp_dpm_sclk's max line too
    fs.write_text(LEVEL, "manual")                          # back in manual: still the defaults
    assert fs.read_bytes(OD) == od_sclk(600, 2900)
    assert gpu(fs)["sclk_range"] == [600, 2900]


@pytest.mark.parametrize(("level", "lo", "hi"), [("high", 2900, 2900), ("low", 600, 600),
                                                 ("profile_standard", 700, 700),
                                                 ("profile_min_sclk", 600, 600),
                                                 ("profile_peak", 2900, 2900)])
def test_every_other_level_overwrites_the_od_range(fs, level, lo, hi):
    manual_with_max_2000(fs)
    fs.write_text(LEVEL, level)
    assert fs.read_bytes(OD) == od_sclk(lo, hi)
    assert gpu(fs)["sclk_range"] == [lo, hi]
    fs.write_text(LEVEL, "manual")                          # manual keeps what the level left
    assert fs.read_bytes(OD) == od_sclk(lo, hi)
    assert gpu(fs)["sclk_range"] == [lo, hi]


def test_manual_again_is_a_no_op(fs):
    manual_with_max_2000(fs)
    fs.write_text(LEVEL, "manual")
    assert fs.read_bytes(OD) == od_sclk(600, 2000)
    assert gpu(fs)["sclk_range"] == [600, 2000]


def test_profile_exit_back_to_manual_keeps_the_profile_clocks(fs):
    """smu_enable_umd_pstate puts back the saved level (manual), whose set_performance_level
    does nothing: the UMD clocks of profile_standard stay until the user commits a range."""
    manual_with_max_2000(fs)
    fs.write_text(LEVEL, "profile_standard")
    fs.write_text(LEVEL, "profile_exit")
    assert fs.read_text(LEVEL) == "manual"
    assert fs.read_bytes(OD) == od_sclk(700, 700)
    assert gpu(fs)["sclk_range"] == [700, 700]
    fs.write_text(OD, "r")
    fs.write_text(OD, "c")
    assert gpu(fs)["sclk_range"] == [600, 2900]


def test_a_staged_uncommitted_edit_is_lost_too(fs):
    """`s` without `c` changes gfx_actual_* only; the level overwrites it like a committed one."""
    fs.write_text(LEVEL, "manual")
    fs.write_text(OD, "s 1 2000")
    fs.write_text(LEVEL, "auto")
    assert fs.read_bytes(OD) == od_sclk(600, 2900)
    assert gpu(fs)["sclk_range"] == [600, 2900]
