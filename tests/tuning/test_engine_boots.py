"""Boots: runtime originals carry the boot_id they were read in and are never written back in
another boot (the firmware reset them; they are recaptured); boot-time entries (the GTT
modprobe.d file) survive reboots and are restored by rollback."""

from __future__ import annotations

import os

import pytest

from halotune.machine.rootfs import RootFS
from halotune.sim.reboot import reboot

from .conftest import (assert_same_tree, boot_id, drop_ttm_from_cmdline, read_file,
                       read_journal, run_killed, tree_snapshot, write_plain, write_profile,
                       writes)

GTT_CONF = "etc/modprobe.d/halotune-gtt.conf"
ADMIN_CONF = "options ttm pages_limit=20971520 page_pool_size=20971520\n"


@pytest.fixture
def common(sim_root, state_dir):
    return ["--root", sim_root, "--state-dir", state_dir]


def test_runtime_entries_carry_the_boot_id(sim_root, state_dir, common, run_cli, fast_ryzenadj):
    assert run_cli("apply", "quiet", *common).rc == 0
    j = read_journal(state_dir)
    bid = boot_id(sim_root)
    assert j["baseline"] and all(e["boot_id"] == bid and e["boot_time"] is False
                                 for e in j["baseline"].values()), j["baseline"]
    assert j["active"]["boot_id"] == bid and j["txn"] is None


def test_after_a_reboot_nothing_from_the_old_boot_is_written_back(sim_root, state_dir, common,
                                                                  run_cli, fast_ryzenadj):
    assert run_cli("apply", "llm-max", *common).rc == 0
    reboot(sim_root)
    rebooted = tree_snapshot(sim_root)
    n = len(writes(sim_root))
    v = run_cli("verify", *common)
    assert v.rc == 0 and "no profile applied by halotune on this boot" in v.out, v
    dry = run_cli("rollback", "--dry-run", *common)
    assert dry.rc == 0 and "nothing to roll back" in dry.out, dry
    r = run_cli("rollback", *common)
    assert r.rc == 0, r
    assert "from a previous boot were not written back" in r.out
    assert "cpu.governor" in r.out and "nothing to roll back" in r.out
    assert writes(sim_root)[n:] == []
    assert_same_tree(rebooted, sim_root, "rollback after reboot")
    j = read_journal(state_dir)
    assert j["baseline"] == {} and j["active"] is None and j["txn"] is None


def test_originals_are_recaptured_in_the_new_boot(sim_root, state_dir, common, run_cli,
                                                 fast_ryzenadj):
    assert run_cli("apply", "llm-max", *common).rc == 0
    reboot(sim_root)
    # This boot starts with another value (say a sysctl.d file): that is the original now.
    RootFS(sim_root).write_text("proc/sys/vm/swappiness", "30")
    before = tree_snapshot(sim_root)
    r = run_cli("apply", "llm-max", *common)
    assert r.rc == 0, r
    j = read_journal(state_dir)
    assert j["baseline"]["sysctl.vm.swappiness"] == {
        "state": 30, "boot_id": boot_id(sim_root), "boot_time": False, "side_effect": False}
    assert run_cli("rollback", *common).rc == 0
    assert read_file(sim_root, "proc/sys/vm/swappiness") == "30\n"
    assert_same_tree(before, sim_root, "rollback in the new boot")


@pytest.fixture
def gtt_profile(profiles_dir, sim_root):
    drop_ttm_from_cmdline(sim_root)
    write_profile(profiles_dir, "big-gtt", 'description = "GTT"\ninherits = "llm-max"\n'
                  "[memory]\ngtt_gib = 64\n")
    return profiles_dir


def test_boot_time_entry_survives_reboots_and_is_restored(sim_root, state_dir, common, run_cli,
                                                          gtt_profile, fast_ryzenadj):
    write_plain(sim_root, GTT_CONF, ADMIN_CONF)
    r = run_cli("apply", "big-gtt", *common, "--profiles-dir", gtt_profile)
    assert r.rc == 0, r
    assert "reboot to apply" in r.out
    for _ in range(2):
        reboot(sim_root)
        assert read_file(sim_root, "sys/class/drm/card1/device/mem_info_gtt_total") == \
            f"{64 << 30}\n"
    n = len(writes(sim_root))
    v = run_cli("verify", *common)
    assert v.rc == 0 and "memory.gtt_gib" in v.out and "cpu.governor" not in v.out, v
    r = run_cli("rollback", *common)
    assert r.rc == 0, r
    assert writes(sim_root)[n:] == [], "runtime originals of the old boot were written back"
    assert read_file(sim_root, GTT_CONF) == ADMIN_CONF
    assert "takes effect at the next boot" in r.out
    j = read_journal(state_dir)
    assert j["baseline"] == {} and j["active"] is None
    reboot(sim_root)
    assert read_file(sim_root, "sys/class/drm/card1/device/mem_info_gtt_total") == \
        f"{80 << 30}\n"


def test_crash_then_reboot_then_recover_restores_only_the_boot_time_file(
        sim_root, state_dir, common, run_cli, gtt_profile, fast_ryzenadj):
    write_plain(sim_root, GTT_CONF, ADMIN_CONF)
    argv = ["apply", "big-gtt", *common, "--profiles-dir", gtt_profile]
    labels_file = state_dir + "-labels.json"
    run_killed(argv, -1, labels_file)             # a clean run, to learn the steps
    import json
    with open(labels_file) as f:
        labels = json.load(f)["labels"]
    assert run_cli("rollback", *common).rc == 0
    assert read_file(sim_root, GTT_CONF) == ADMIN_CONF
    # Kill after the conf is in place, before the transaction is committed.
    at = max(i for i, lab in enumerate(labels) if lab.startswith("journal after_fsync"))
    assert os.WIFSIGNALED(run_killed(argv, at))
    assert read_journal(state_dir)["txn"] is not None
    assert "pages_limit=16777216" in read_file(sim_root, GTT_CONF)
    reboot(sim_root)                              # the crash was followed by a reboot
    rebooted = tree_snapshot(sim_root)
    n = len(writes(sim_root))
    r = run_cli("recover", *common)
    assert r.rc == 0, r
    assert writes(sim_root)[n:] == []
    assert read_file(sim_root, GTT_CONF) == ADMIN_CONF
    after = tree_snapshot(sim_root)
    assert {k for k in rebooted if rebooted[k] != after.get(k)} == {GTT_CONF}
    j = read_journal(state_dir)
    assert j["txn"] is None and j["baseline"] == {} and j["active"] is None


def test_resume_after_a_reboot_loses_no_original(sim_root, state_dir, common, run_cli,
                                                fast_ryzenadj):
    argv = ["apply", "llm-max", *common]
    assert os.WIFSIGNALED(run_killed(argv, 5))
    assert read_journal(state_dir)["txn"] is not None
    reboot(sim_root)
    RootFS(sim_root).write_text("proc/sys/vm/swappiness", "30")
    before = tree_snapshot(sim_root)
    r = run_cli("recover", "--resume", *common)
    assert r.rc == 0 and "the interrupted apply of llm-max was completed" in r.out, r
    j = read_journal(state_dir)
    assert j["active"]["profile"] == "llm-max" and j["txn"] is None
    # This boot's value is the original now, journaled before the resumed write.
    assert j["baseline"]["sysctl.vm.swappiness"]["state"] == 30
    assert read_file(sim_root, "proc/sys/vm/swappiness") == "10\n"
    r = run_cli("rollback", *common)
    assert r.rc == 0, r
    assert read_file(sim_root, "proc/sys/vm/swappiness") == "30\n"
    assert_same_tree(before, sim_root, "resume after reboot, then rollback")
