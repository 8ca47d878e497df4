"""Sequences of profiles and the side effects one write has on another knob: B over A, a
failed apply over an applied profile, applying the same profile twice, and the platform
profile that makes amd-pmf re-send its own TDP limits."""

from __future__ import annotations

import contextlib
import io

import pytest

from halotune.sim import ryzenadj

from .conftest import (DEV, assert_same_tree, live_states, log_lines, read_journal,
                       tdp_state, tree_snapshot, write_plain, write_profile)


@pytest.fixture
def common(sim_root, state_dir):
    return ["--root", sim_root, "--state-dir", state_dir]


@pytest.fixture
def apply(run_cli, common, profiles_dir):
    """`halotune apply NAME` with the test's admin profiles directory."""
    return lambda name, *more: run_cli("apply", name, *common, "--profiles-dir", profiles_dir,
                                       *more)


def _stand_in(root, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        assert ryzenadj.main(list(args), root) == 0


def test_same_profile_twice_writes_nothing_the_second_time(sim_root, state_dir, common, run_cli,
                                                           fast_ryzenadj, apply):
    assert apply("quiet").rc == 0
    baseline = read_journal(state_dir)["baseline"]
    n = log_lines(sim_root)
    r = apply("quiet")
    assert r.rc == 0 and "0 value(s) changed" in r.out, r
    assert log_lines(sim_root) == n
    assert read_journal(state_dir)["baseline"] == baseline


def test_dry_run_of_b_over_a_shows_the_keys_going_back(sim_root, common, run_cli,
                                                       fast_ryzenadj, apply):
    assert apply("bench-stable").rc == 0
    n = log_lines(sim_root)
    r = apply("llm-efficient", "--dry-run")
    assert r.rc == 0, r
    line = next(l for l in r.out.splitlines() if "sysctl.vm.compaction_proactiveness" in l)
    assert "(back to the original value)" in line and "20" in line
    assert log_lines(sim_root) == n


def test_failed_apply_over_a_profile_keeps_that_profile(sim_root, state_dir, common, profiles_dir,
                                                        run_cli, fast_ryzenadj, apply):
    """B's write fails half-way (EACCES from a pp_power_profile_mode the simulator does not
    model): B's completed writes are undone, A stays applied and verified, rollback is exact."""
    write_plain(sim_root, f"{DEV}/pp_power_profile_mode",
                "PROFILE_INDEX(NAME)\n  0 BOOTUP_DEFAULT*:\n  5 COMPUTE        :\n")
    write_profile(profiles_dir, "compute", 'description = "x"\n[gpu]\npower_profile = "COMPUTE"\n'
                  '[thp]\ndefrag = "never"\n[sysctl]\n"vm.swappiness" = 33\n')
    original = tree_snapshot(sim_root)
    assert apply("llm-max").rc == 0
    applied = tree_snapshot(sim_root)
    r = apply("compute")
    assert r.rc == 2, r
    assert "failed and was undone" in r.out and "EACCES" in r.out, r
    assert_same_tree(applied, sim_root, "failed apply over llm-max")
    j = read_journal(state_dir)
    assert j["active"]["profile"] == "llm-max" and j["txn"] is None
    v = run_cli("verify", *common)
    assert v.rc == 0, v
    assert run_cli("rollback", *common).rc == 0
    assert_same_tree(original, sim_root, "rollback after the failed apply")


def test_b_over_a_tdp_originals_are_the_values_before_halotune(sim_root, common, profiles_dir,
                                                               run_cli, fast_ryzenadj, apply):
    write_profile(profiles_dir, "pp-low", 'description = "x"\n[power]\n'
                  'platform_profile = "low-power"\n')
    write_profile(profiles_dir, "tdp-only", 'description = "x"\n[power]\nstapm_w = 100\n'
                  "slow_w = 100\nfast_w = 110\n")
    before = tree_snapshot(sim_root)
    assert apply("pp-low").rc == 0
    r = apply("tdp-only")
    assert r.rc == 0, r
    r = run_cli("rollback", *common)
    assert r.rc == 0, r
    assert_same_tree(before, sim_root, "pp-low, tdp-only, rollback")


def test_platform_profile_alone_rollback_restores_custom_tdp(sim_root, common, profiles_dir,
                                                             run_cli, fast_ryzenadj, apply):
    _stand_in(sim_root, "--stapm-limit=100000", "--fast-limit=110000", "--slow-limit=100000",
              "--apu-slow-limit=100000")
    write_profile(profiles_dir, "pp-low", 'description = "x"\n[power]\n'
                  'platform_profile = "low-power"\n')
    before = tdp_state(sim_root)
    assert apply("pp-low").rc == 0
    assert run_cli("rollback", *common).rc == 0
    assert tdp_state(sim_root) == before


def test_keys_a_changed_that_b_leaves_alone_go_back(sim_root, state_dir, common, run_cli,
                                                    fast_ryzenadj, apply):
    originals = live_states(sim_root)
    assert apply("bench-stable").rc == 0
    assert apply("llm-efficient").rc == 0
    now = live_states(sim_root)
    for key in ("sysctl.vm.compaction_proactiveness", "gpu.sclk_min_mhz", "gpu.sclk_max_mhz"):
        assert now[key] == originals[key], key
    assert now["gpu.performance_level"] == "auto"      # llm-efficient inherits llm-max's auto
    j = read_journal(state_dir)
    assert j["active"]["profile"] == "llm-efficient"
    # the active targets are llm-efficient's own keys only, the originals all of them
    assert "sysctl.vm.compaction_proactiveness" not in j["active"]["targets"]
    assert j["baseline"]["sysctl.vm.compaction_proactiveness"]["state"] == 20


def test_rollback_dry_run_lists_and_writes_nothing(sim_root, common, run_cli, fast_ryzenadj,
                                                   apply):
    assert apply("quiet").rc == 0
    applied = tree_snapshot(sim_root)
    n = log_lines(sim_root)
    r = run_cli("rollback", "--dry-run", *common)
    assert r.rc == 0, r
    assert "value(s) would be restored; nothing written" in r.out
    assert "power.platform_profile" in r.out and "low-power" in r.out
    assert log_lines(sim_root) == n
    assert_same_tree(applied, sim_root, "rollback --dry-run")
