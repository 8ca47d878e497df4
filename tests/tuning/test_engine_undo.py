"""Undo paths (issue #12): applying B over A puts A's side effects back; one undo path for a
failed apply, rollback, recover and the revert of an unconfirmed apply, which names what it could
not put back, exits 2 and keeps it in the journal for `recover`; a pending confirmation survives
a re-assert, a reboot (boot-time keys) and a busy lock.

Every machine state is read from the simulated tree's files (conftest.live_states), never
through the engine. Refused writes are the simulated kernel's own answers (EBUSY for a non-
performance EPP under the performance governor) or, where no kernel state refuses a value, an
injected EBUSY from RootFS.write_text.
"""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

from halotune.machine.rootfs import RootFS
from halotune.sim.reboot import reboot
from halotune.tuning.journal import StateDir

from .conftest import (CPUFREQ, assert_same_tree, boot_id, drop_ttm_from_cmdline, live_states,
                       make_profile, read_file, read_journal, tree_snapshot,
                       write_plain, writes)

GTT_CONF = "etc/modprobe.d/halotune-gtt.conf"
ADMIN_CONF = "options ttm pages_limit=20971520 page_pool_size=20971520\n"


@pytest.fixture
def root(kernel_root):
    return kernel_root


@pytest.fixture
def common(root, state_dir):
    return ["--root", root, "--state-dir", state_dir]


def _other_tool_sets_governor(root: str, policy: str, governor: str) -> None:
    RootFS(root).write_text(f"{CPUFREQ}/{policy}/scaling_governor", governor)


class Refuse:
    """RootFS.write_text answering EBUSY for the (path, value) pairs `when` accepts."""

    def __init__(self, monkeypatch, when):
        real = RootFS.write_text

        def write_text(fs, rel, value):
            if when(rel, value):
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), fs.path(rel))
            return real(fs, rel, value)

        monkeypatch.setattr(RootFS, "write_text", write_text)
        self.undo = lambda: monkeypatch.setattr(RootFS, "write_text", real)


# --- defect 5: B over A leaves no side effect of A -----------------------------------------------

def test_b_over_a_puts_the_side_effects_of_a_back(root, engine_for):
    """A sets the performance governor (the driver forces EPP to performance); B leaves the
    governor and EPP alone: both are back at their originals once B is applied."""
    original = live_states(root)
    before = tree_snapshot(root)
    a = engine_for(root).apply(make_profile("a", **{"cpu.governor": "performance"}))
    assert a.ok, a.summary
    under_a = live_states(root)
    assert set(under_a["cpu.epp"].values()) == {"performance"}, "the side effect did not happen"
    b = engine_for(root).apply(make_profile("b", **{"sysctl.vm.swappiness": 10}))
    assert b.ok, b.summary
    now = live_states(root)
    assert now["cpu.governor"] == original["cpu.governor"]
    assert now["cpu.epp"] == original["cpu.epp"], "EPP stayed where A's governor forced it"
    assert now["sysctl.vm.swappiness"] == 10
    assert engine_for(root).rollback().ok
    assert_same_tree(before, root, "A, B over A, rollback")


def test_b_setting_the_cause_keeps_its_side_effect(root, engine_for):
    """B sets the performance governor too: EPP is B's side effect again (journaled, not
    written back to a value the kernel refuses under that governor)."""
    before = tree_snapshot(root)
    assert engine_for(root).apply(make_profile("a", **{"cpu.governor": "performance"})).ok
    b = engine_for(root).apply(make_profile("b", **{"cpu.governor": "performance",
                                                    "sysctl.vm.swappiness": 10}))
    assert b.ok, (b.summary, b.warnings)
    assert set(live_states(root)["cpu.epp"].values()) == {"performance"}
    assert engine_for(root).rollback().ok
    assert_same_tree(before, root, "A, B over A, rollback")


# --- defect 6: a failed undo is named, exits 2, and recover tries again -------------------------

def test_failed_rollback_is_named_kept_and_recovered(root, state_dir, common, engine_for,
                                                     run_cli):
    """Another tool sets the performance governor on policy0 after A set EPP = power: the
    rollback's EPP write is EBUSY there. Exit 2, cpu.epp named, the journal keeps it; once the
    other tool is gone, `recover` puts it back."""
    before = tree_snapshot(root)
    assert engine_for(root).apply(make_profile("a", **{"cpu.epp": "power"})).ok
    _other_tool_sets_governor(root, "policy0", "performance")
    r = run_cli("rollback", *common)
    assert r.rc == 2, r
    assert "could not be put back: cpu.epp" in r.out, r
    j = read_journal(state_dir)
    assert j["txn"] is not None and j["txn"]["failed"] == ["cpu.epp"], j["txn"]
    assert list(j["baseline"]) == ["cpu.epp"]
    assert writes(root)[-1][2] == "EBUSY"
    _other_tool_sets_governor(root, "policy0", "powersave")
    r = run_cli("recover", *common)
    assert r.rc == 0, r
    assert_same_tree(before, root, "rollback refused, then recover")
    j = read_journal(state_dir)
    assert j["txn"] is None and j["baseline"] == {} and j["active"] is None


def test_failed_undo_of_a_failed_apply_is_named_and_kept(root, state_dir, common, run_cli,
                                                         monkeypatch, fast_ryzenadj):
    """The apply's swappiness write is refused, and so is putting the governor back: the undo
    cannot finish. The output names the keys not put back, exit 2, the journal keeps an open
    transaction; `recover` tries again and gives the original machine."""
    from .conftest import write_profile

    profiles = os.path.join(state_dir + "-profiles")
    write_profile(profiles, "a", 'description = "a"\n[cpu]\ngovernor = "performance"\n'
                  "[sysctl]\n\"vm.swappiness\" = 10\n")
    before = tree_snapshot(root)
    refuse = Refuse(monkeypatch, lambda rel, value: rel == "proc/sys/vm/swappiness"
                    or (rel.endswith("scaling_governor") and value == "powersave"))
    r = run_cli("apply", "a", *common, "--profiles-dir", profiles)
    assert r.rc == 2, r
    assert "could not be put back: cpu.epp, cpu.governor" in r.out, r
    assert "failed and was undone" not in r.out, r
    j = read_journal(state_dir)
    assert j["txn"] is not None and j["txn"]["failed"] == ["cpu.epp", "cpu.governor"]
    assert {"cpu.epp", "cpu.governor"} <= set(j["baseline"])
    refuse.undo()
    r = run_cli("recover", *common)
    assert r.rc == 0, r
    assert_same_tree(before, root, "failed apply, failed undo, recover")
    j = read_journal(state_dir)
    assert j["txn"] is None and j["baseline"] == {} and j["active"] is None


def test_failed_revert_of_an_unconfirmed_apply_exits_2_and_is_kept(root, state_dir, common,
                                                                  engine_for, run_cli):
    before = tree_snapshot(root)
    assert engine_for(root).apply(make_profile("a", **{"cpu.epp": "power"}), confirm_s=0.01).ok
    deadline = read_journal(state_dir)["active"]["confirm_deadline"]
    _other_tool_sets_governor(root, "policy0", "performance")
    r = run_cli("_revert-unconfirmed", *common, "--deadline", repr(deadline))
    assert r.rc == 2, r
    j = read_journal(state_dir)
    assert j["txn"] is not None and j["txn"]["failed"] == ["cpu.epp"], j
    _other_tool_sets_governor(root, "policy0", "powersave")
    assert run_cli("recover", *common).rc == 0
    assert_same_tree(before, root, "revert refused, then recover")


# --- defect 7: a pending confirmation survives ---------------------------------------------------

def test_reasserting_the_same_profile_keeps_the_pending_confirmation(root, state_dir,
                                                                    engine_for):
    profile = make_profile("a", **{"sysctl.vm.swappiness": 10})
    assert engine_for(root).apply(profile, confirm_s=600).ok
    deadline = read_journal(state_dir)["active"]["confirm_deadline"]
    RootFS(root).write_text("proc/sys/vm/swappiness", "35")      # drift
    assert engine_for(root).apply(profile).ok                     # re-asserted
    assert read_journal(state_dir)["active"]["confirm_deadline"] == deadline


@pytest.fixture
def gtt_profile(root):
    drop_ttm_from_cmdline(root)
    write_plain(root, GTT_CONF, ADMIN_CONF)
    return make_profile("big-gtt", **{"memory.gtt_gib": 64, "sysctl.vm.swappiness": 10})


def test_reboot_keeps_the_deadline_of_boot_time_keys(root, state_dir, engine_for, gtt_profile):
    """An unconfirmed profile with a boot-time key, then a reboot (the reverter died with the
    old boot): the revert still puts the GTT file back, and writes no runtime value of the old
    boot (the firmware reset those)."""
    assert engine_for(root).apply(gtt_profile, confirm_s=600).ok
    deadline = read_journal(state_dir)["active"]["confirm_deadline"]
    reboot(root)
    RootFS(root).write_text("proc/sys/vm/swappiness", "30")     # this boot's sysctl.d value
    rebooted = tree_snapshot(root)
    n = len(writes(root))
    # What every mutating command does first: forget the old boot's runtime originals.
    journal = StateDir(state_dir).load(root)
    journal.forget_other_boots(boot_id(root))
    assert journal.active["confirm_deadline"] == deadline
    assert set(journal.active["revert"]["states"]) == {"memory.gtt_gib"}
    assert engine_for(root).verify().profile == "big-gtt"
    out = engine_for(root).revert_unconfirmed(deadline)
    assert out.ok and "reverted" in out.summary, out
    assert read_file(root, GTT_CONF) == ADMIN_CONF
    assert writes(root)[n:] == [], "a runtime original of the old boot was written back"
    after = tree_snapshot(root)
    assert {k for k in rebooted if rebooted[k] != after.get(k)} == {GTT_CONF}
    j = read_journal(state_dir)
    assert j["active"] is None and j["txn"] is None and j["baseline"] == {}


def test_recover_reverts_a_deadline_that_passed_during_a_reboot(root, state_dir, common,
                                                                engine_for, gtt_profile,
                                                                run_cli):
    assert engine_for(root).apply(gtt_profile, confirm_s=0.01).ok
    reboot(root)
    time.sleep(0.05)
    r = run_cli("recover", *common)
    assert r.rc == 0 and "not confirmed in time and was reverted" in r.out, r
    assert read_file(root, GTT_CONF) == ADMIN_CONF
    assert read_journal(state_dir)["active"] is None


def test_cli_reverter_outlasts_a_busy_lock(root, state_dir, common, engine_for, monkeypatch):
    """The detached reverter meets a lock held longer than one lock wait: it keeps trying and
    reverts once the lock is free."""
    from halotune.cli import tuning as cli_tuning
    from halotune.cli.main import main
    from halotune.tuning import engine as engine_mod
    from halotune.tuning.journal import StateDir

    monkeypatch.setattr(engine_mod, "REVERT_LOCK_WAIT_S", 0.1)
    monkeypatch.setattr(cli_tuning, "REVERT_RETRY_S", 0.05)
    before = tree_snapshot(root)
    assert engine_for(root).apply(make_profile("a", **{"sysctl.vm.swappiness": 10}),
                                  confirm_s=0.01).ok
    deadline = read_journal(state_dir)["active"]["confirm_deadline"]
    holder = StateDir(state_dir)
    holder.lock()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "rc", main(["_revert-unconfirmed", *common, "--deadline", repr(deadline)])))
    try:
        t.start()
        time.sleep(0.8)                   # several lock waits pass
        assert t.is_alive(), f"the reverter gave up: {result}"
        assert read_journal(state_dir)["active"]["confirm_deadline"] == deadline
    finally:
        holder.unlock()
    t.join(20)
    assert result.get("rc") == 0, result
    assert_same_tree(before, root, "reverted after the lock was released")
    assert read_journal(state_dir)["active"] is None
