"""The write-ahead journal, watched from inside the machine's write path: the originals are
durable before the first write, each completed tunable is recorded, the state directory and
the journal are private, and what the journal says matches what the machine did."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from halotune.machine import durable
from halotune.machine.rootfs import RootFS
from halotune.machine.ryzenadj import RyzenAdj

from .conftest import (DEV, assert_same_tree, boot_id, live_states, make_profile, read_journal,
                       tree_snapshot, writes)


@pytest.fixture
def watch(monkeypatch, state_dir):
    """Record the journal as it is on disk at every machine write."""
    seen: list[tuple[str, dict | None]] = []
    write_text, set_limits = RootFS.write_text, RyzenAdj.set_limits

    def on_write(self, rel, value):
        seen.append((rel, read_journal(state_dir)))
        return write_text(self, rel, value)

    def on_limits(self, **mw):
        seen.append(("ryzenadj", read_journal(state_dir)))
        return set_limits(self, **mw)

    monkeypatch.setattr(RootFS, "write_text", on_write)
    monkeypatch.setattr(RyzenAdj, "set_limits", on_limits)
    return seen


def test_originals_are_durable_before_the_first_write(sim_root, state_dir, run_cli, watch,
                                                      fast_ryzenadj):
    from halotune.tuning.loader import ProfileStore

    originals = live_states(sim_root)
    profile = ProfileStore(os.path.join(state_dir, "none")).load("quiet")
    r = run_cli("apply", "quiet", "--root", sim_root, "--state-dir", state_dir)
    assert r.rc == 0, r
    first_path, j = watch[0]
    assert first_path == "sys/firmware/acpi/platform_profile"
    assert j is not None, "the first write happened before any journal existed"
    txn = j["txn"]
    assert txn["op"] == "apply" and txn["profile"] == "quiet" and txn["pid"] == os.getpid()
    assert txn["boot_id"] == boot_id(sim_root) and txn["done"] == []
    assert set(profile.values) <= set(txn["plan"])
    for key in profile.values:
        if key in originals:
            assert j["baseline"][key]["state"] == originals[key], key
            assert txn["before"][key] == originals[key]
    # the journal records which tunables completed, in write order, before the next one
    done_seen = [tuple(j["txn"]["done"]) for _p, j in watch]
    assert done_seen == sorted(done_seen, key=len), "done went backwards"
    assert ("power.platform_profile",) in done_seen
    ryz = next(j for p, j in watch if p == "ryzenadj")
    assert ryz["txn"]["done"] == ["power.platform_profile"]
    od = [j for p, j in watch if p.endswith("pp_od_clk_voltage")]
    assert od and "gpu.performance_level" in od[0]["txn"]["done"]
    final = read_journal(state_dir)
    assert final["txn"] is None and final["active"]["profile"] == "quiet"
    assert set(final["active"]["targets"]) == set(profile.values)


def test_rollback_journals_its_own_transaction_first(sim_root, state_dir, run_cli, watch,
                                                      fast_ryzenadj):
    assert run_cli("apply", "llm-max", "--root", sim_root, "--state-dir", state_dir).rc == 0
    watch.clear()
    assert run_cli("rollback", "--root", sim_root, "--state-dir", state_dir).rc == 0
    _p, j = watch[0]
    assert j["txn"]["op"] == "rollback" and j["txn"]["profile"] == "llm-max"
    assert j["baseline"], "the originals must stay in the journal until the rollback is done"


def test_state_dir_and_journal_are_private(sim_root, state_dir, run_cli, fast_ryzenadj):
    old = os.umask(0o022)
    try:
        assert run_cli("apply", "llm-efficient", "--root", sim_root,
                       "--state-dir", state_dir).rc == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(os.path.join(state_dir, "journal.json")).st_mode) == 0o600
    assert [n for n in os.listdir(state_dir) if ".tmp-" in n] == []
    with open(os.path.join(state_dir, "journal.json")) as f:
        j = json.load(f)
    assert j["version"] == 1 and j["root"] == os.path.abspath(sim_root)


def test_epp_default_verifies(sim_root, engine_for, state_dir):
    """"default" is written (amd-pstate loads the firmware EPP) and verified against the name
    the file shows afterwards, which is what the journal records as the target."""
    out = engine_for(sim_root).apply(make_profile(**{"cpu.epp": "default"}))
    assert out.ok, out.rows
    assert [v for p, v, _r in writes(sim_root) if p.endswith("preference")] == ["default"] * 32
    assert set(read_journal(state_dir)["active"]["targets"]["cpu.epp"].values()) == \
        {"balance_performance"}


def test_no_boot_time_success_note_when_the_restore_failed(sim_root, state_dir, engine_for,
                                                          monkeypatch):
    from .conftest import drop_ttm_from_cmdline, write_plain

    drop_ttm_from_cmdline(sim_root)
    write_plain(sim_root, "etc/modprobe.d/halotune-gtt.conf", "options ttm pages_limit=1\n")
    assert engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 64})).ok
    import errno
    monkeypatch.setattr(durable, "FAULTS", durable.FaultAt(
        "before_write", OSError(errno.EIO, "Input/output error"), suffix="halotune-gtt.conf",
        times=None))
    out = engine_for(sim_root).rollback()
    assert not out.ok and "memory.gtt_gib" in out.summary
    assert not any("the original boot-time setting is back" in n for n in out.notes), out.notes


def test_failed_rollback_summary_names_only_keys(sim_root, state_dir, engine_for, monkeypatch):
    from .conftest import drop_ttm_from_cmdline, write_plain

    drop_ttm_from_cmdline(sim_root)
    write_plain(sim_root, "etc/modprobe.d/halotune-gtt.conf", "options ttm pages_limit=1\n")
    assert engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 64})).ok
    import errno
    monkeypatch.setattr(durable, "FAULTS", durable.FaultAt(
        "before_write", OSError(errno.EIO, "Input/output error"), suffix="halotune-gtt.conf",
        times=None))
    out = engine_for(sim_root).rollback()
    assert out.summary == "some original values could not be restored: memory.gtt_gib"
    monkeypatch.setattr(durable, "FAULTS", durable.Faults())
    assert engine_for(sim_root).rollback().ok      # and it can be retried once the disk is back


def test_the_tdp_note_points_to_a_way_out(sim_root, state_dir, run_cli):
    """The unavailable-TDP note says what to do, and names no command that does not exist."""
    os.unlink(os.path.join(sim_root, "usr/local/bin/ryzenadj"))
    r = run_cli("apply", "llm-max", "--root", sim_root, "--state-dir", state_dir, "--dry-run")
    assert "TDP limits unavailable" in r.out and "ryzen_smu" in r.out
    for command in re.findall(r"`halotune (\w+)", r.out):
        assert run_cli(command, "--help").rc == 0, command


def _failing_apply(sim_root, engine_for, values):
    from .conftest import write_plain

    write_plain(sim_root, f"{DEV}/pp_power_profile_mode", "  0 BOOTUP_DEFAULT*:\n  5 COMPUTE :\n")
    before = tree_snapshot(sim_root)
    out = engine_for(sim_root).apply(make_profile(**values, **{"gpu.power_profile": "COMPUTE"}))
    assert not out.ok and "failed and was undone" in out.summary
    assert [p for p, _v, res in writes(sim_root) if res != "ok"] == \
        [f"{DEV}/pp_power_profile_mode"]
    return before


def test_failed_write_mid_apply_is_undone_and_journaled(sim_root, state_dir, engine_for):
    """A driver refusal half-way (the last tunable, EACCES) undoes the completed ones; the
    journal ends with no transaction and no active profile, and keeps only originals."""
    before = _failing_apply(sim_root, engine_for, {"sysctl.vm.swappiness": 30,
                                                   "power.platform_profile": "balanced",
                                                   "thp.defrag": "never"})
    assert_same_tree(before, sim_root, "undone")
    j = read_journal(state_dir)
    assert j["txn"] is None and j["active"] is None
    now = live_states(sim_root)
    for key, entry in j["baseline"].items():
        assert entry["state"] == now[key]


def test_failed_apply_undoes_side_effects_too(sim_root, engine_for):
    before = _failing_apply(sim_root, engine_for, {"cpu.governor": "performance",
                                                   "cpu.epp": "performance"})
    assert_same_tree(before, sim_root, "undone")
