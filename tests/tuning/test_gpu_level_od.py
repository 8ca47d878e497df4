"""The performance level and the OD clock range together, on the simulated kernel.

Leaving `manual` makes the SMU send the new level's GFX range and overwrite the OD_SCLK values
(smu_v14_0_common_set_performance_level sets gfx_actual_hard_min/soft_max_freq), so:
- a profile that changes only the level must still journal the OD range it destroys;
- a rollback must write the level first (back to `manual`, which enables OD edits, or to a
  level whose own range is the original one) and only then `s 0`/`s 1`/`c`.

The user's own state is written through RootFS (as the user's tools would), the result is read
from the sysfs files directly and from the simulator's writes.log, never through the engine.
"""

from __future__ import annotations


import pytest

from halotune.machine.rootfs import RootFS
from halotune.sim import store

from .conftest import DEV, make_profile, read_file

LEVEL = f"{DEV}/power_dpm_force_performance_level"
OD = f"{DEV}/pp_od_clk_voltage"
OD_RANGE = "OD_RANGE:\nSCLK:     600Mhz       2900Mhz\n"


def od_sclk(lo: int, hi: int) -> str:
    """pp_od_clk_voltage as smu_v14_0_0_print_clk_levels prints it (OD_SCLK, then OD_RANGE)."""
    return f"OD_SCLK:\n0: {lo:>10}Mhz\n1: {hi:>10}Mhz\n{OD_RANGE}"


@pytest.fixture
def machine(kernel_root):
    return kernel_root


def user_sets(root: str, level: str, *od: str) -> None:
    """The user's own settings, written through the kernel interface before halotune runs."""
    fs = RootFS(root)
    fs.write_text(LEVEL, level)
    for command in od:
        fs.write_text(OD, command)


def log_since(root: str, n: int) -> list[tuple[str, str, str]]:
    return [(e["path"], e["value"], e["result"]) for e in store.read_log(root)[n:]
            if "path" in e]


def enforced(root: str) -> list[int]:
    return store.load_state(root)["gpu"]["sclk_range"]


def _ok(out):
    assert out.ok, out.to_dict()
    return out


def test_manual_od_then_profile_auto_rollback_restores_both(machine, engine_for):
    """manual + max 2000 (the user's), profile auto: the rollback writes `manual` first, then
    the OD range, and the card ends where the user left it."""
    user_sets(machine, "manual", "s 1 2000", "c")
    assert read_file(machine, OD) == od_sclk(600, 2000)
    _ok(engine_for(machine).apply(make_profile(**{"gpu.performance_level": "auto"})))
    assert read_file(machine, LEVEL) == "auto\n"
    assert read_file(machine, OD) == od_sclk(600, 2900)      # the level reset it
    n = len(store.read_log(machine))
    out = _ok(engine_for(machine).rollback())
    assert out.summary == "original values restored and verified"
    assert read_file(machine, LEVEL) == "manual\n"
    assert read_file(machine, OD) == od_sclk(600, 2000)
    assert enforced(machine) == [600, 2000]
    assert log_since(machine, n) == [(LEVEL, "manual", "ok"), (OD, "s 0 600", "ok"),
                                     (OD, "s 1 2000", "ok"), (OD, "c", "ok")]


def test_manual_od_then_profile_high_rollback_restores_both(machine, engine_for):
    """high pins both OD_SCLK values at the maximum: the rollback still gets 1000-2000 back."""
    user_sets(machine, "manual", "s 0 1000", "s 1 2000", "c")
    _ok(engine_for(machine).apply(make_profile(**{"gpu.performance_level": "high"})))
    assert read_file(machine, OD) == od_sclk(2900, 2900)
    n = len(store.read_log(machine))
    _ok(engine_for(machine).rollback())
    assert read_file(machine, LEVEL) == "manual\n"
    assert read_file(machine, OD) == od_sclk(1000, 2000)
    assert enforced(machine) == [1000, 2000]
    assert log_since(machine, n) == [(LEVEL, "manual", "ok"), (OD, "s 0 1000", "ok"),
                                     (OD, "s 1 2000", "ok"), (OD, "c", "ok")]


def test_auto_then_profile_manual_od_rollback_is_the_level_alone(machine, engine_for):
    """The reverse: original auto, profile manual + max 2000. Going back to auto restores the
    default range by itself, so the rollback writes the level and nothing else."""
    _ok(engine_for(machine).apply(make_profile(**{"gpu.performance_level": "manual",
                                                  "gpu.sclk_max_mhz": 2000})))
    assert read_file(machine, OD) == od_sclk(600, 2000)
    assert enforced(machine) == [600, 2000]
    n = len(store.read_log(machine))
    out = _ok(engine_for(machine).rollback())
    assert out.summary == "original values restored and verified"
    assert read_file(machine, LEVEL) == "auto\n"
    assert read_file(machine, OD) == od_sclk(600, 2900)
    assert enforced(machine) == [600, 2900]
    assert log_since(machine, n) == [(LEVEL, "auto", "ok")]


def test_manual_od_then_profile_other_od_rollback_writes_the_od_only(machine, engine_for):
    """Original manual 1000-2500, profile manual 2600-2700: the level never moves; the
    rollback puts 1000-2500 back with s 0, s 1, c."""
    user_sets(machine, "manual", "s 0 1000", "s 1 2500", "c")
    _ok(engine_for(machine).apply(make_profile(**{"gpu.performance_level": "manual",
                                                  "gpu.sclk_min_mhz": 2600,
                                                  "gpu.sclk_max_mhz": 2700})))
    assert enforced(machine) == [2600, 2700]
    n = len(store.read_log(machine))
    _ok(engine_for(machine).rollback())
    assert read_file(machine, OD) == od_sclk(1000, 2500)
    assert enforced(machine) == [1000, 2500]
    assert log_since(machine, n) == [(OD, "s 0 1000", "ok"), (OD, "s 1 2500", "ok"),
                                     (OD, "c", "ok")]


def test_profile_auto_over_an_od_profile_then_rollback(machine, engine_for):
    """User manual 1000-2000; profile A manual 2600-2700; profile B (auto) applied on top;
    then rollback: the user's manual 1000-2000 comes back."""
    user_sets(machine, "manual", "s 0 1000", "s 1 2000", "c")
    _ok(engine_for(machine).apply(make_profile("a", **{"gpu.performance_level": "manual",
                                                       "gpu.sclk_min_mhz": 2600,
                                                       "gpu.sclk_max_mhz": 2700})))
    # B leaves the OD keys alone, so they would go back to the user's 1000-2000; but auto
    # sets the range itself and refuses OD edits: they stay journaled for the rollback.
    out = _ok(engine_for(machine).apply(make_profile("b", **{"gpu.performance_level": "auto"})))
    assert out.summary == "b applied: 1 value(s) changed, all verified"
    assert read_file(machine, LEVEL) == "auto\n"
    assert read_file(machine, OD) == od_sclk(600, 2900)
    _ok(engine_for(machine).rollback())
    assert read_file(machine, LEVEL) == "manual\n"
    assert read_file(machine, OD) == od_sclk(1000, 2000)
    assert enforced(machine) == [1000, 2000]


def test_level_change_journals_the_od_range_it_destroys(machine, engine_for, state_dir):
    """The write-ahead journal holds the OD originals before the level is written, so a
    crash right after the level write can still be undone."""
    from .conftest import read_journal

    user_sets(machine, "manual", "s 1 2000", "c")
    _ok(engine_for(machine).apply(make_profile(**{"gpu.performance_level": "auto"})))
    baseline = read_journal(state_dir)["baseline"]
    assert baseline["gpu.performance_level"]["state"] == "manual"
    assert baseline["gpu.sclk_max_mhz"]["state"] == 2000
    assert baseline["gpu.sclk_min_mhz"]["state"] == 600
