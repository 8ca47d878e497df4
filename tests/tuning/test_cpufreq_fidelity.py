"""cpufreq as the kernel does it: `cpu.epp = "default"` is a real write that loads the firmware
EPP (amd-pstate.c amd_pstate_set_energy_pref_index), and the policies of offline CPUs (SMT off)
answer EBUSY (cpufreq.c show()/store(): policy_is_inactive), so halotune acts on the active
policies, names the others, and keeps what it could not restore in the journal.

Every check reads the tree's files directly, not through the engine's own read()."""

from __future__ import annotations

import os

import pytest

from halotune.machine.rootfs import RootFS
from halotune.sim import store

from .conftest import (CPUFREQ, assert_same_tree, make_profile, read_journal,
                       tree_snapshot)

SMT = "sys/devices/system/cpu/smt/control"
EPP = "energy_performance_preference"


@pytest.fixture
def kroot(kernel_root):
    return kernel_root


def _file(root: str, rel: str) -> str | None:
    """The file's text, None when reading it fails (an inactive policy's attribute)."""
    try:
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def _policy_files(root: str, attr: str, cpus) -> list[str | None]:
    return [_file(root, f"{CPUFREQ}/policy{n}/{attr}") for n in cpus]


def _kernel_writes(root: str, since: int = 0) -> list[tuple[str, str, str]]:
    return [(e["path"], e["value"], e["result"]) for e in store.read_log(root)[since:]
            if "path" in e]


def _log_len(root: str) -> int:
    return len(store.read_log(root))


# --- cpu.epp = "default" ---------------------------------------------------------------------

def test_epp_default_is_written_and_verified(kroot, engine_for, state_dir):
    fs = RootFS(kroot)
    for n in range(32):
        fs.write_text(f"{CPUFREQ}/policy{n}/{EPP}", "power")
    before = tree_snapshot(kroot)
    n0 = _log_len(kroot)

    out = engine_for(kroot).apply(make_profile(**{"cpu.epp": "default"}))
    assert out.ok, (out.summary, out.rows, out.warnings)
    assert _kernel_writes(kroot, n0) == [(f"{CPUFREQ}/policy{n}/{EPP}", "default", "ok")
                                         for n in range(32)]
    # amd-pstate loads the firmware EPP (balance_performance here) and shows its name
    assert _policy_files(kroot, EPP, range(32)) == ["balance_performance"] * 32
    row = next(r for r in out.rows if r.key == "cpu.epp")
    assert (row.status, row.after) == ("ok", "balance_performance")
    targets = read_journal(state_dir)["active"]["targets"]["cpu.epp"]
    assert targets == {f"policy{n}": "balance_performance" for n in range(32)}

    verify = engine_for(kroot).verify()
    assert verify.ok and [r.after for r in verify.rows] == ["balance_performance"]
    # another tool moves one policy: verify sees it (it did not before: anything "held" default)
    fs.write_text(f"{CPUFREQ}/policy9/{EPP}", "power")
    assert not engine_for(kroot).verify().ok
    fs.write_text(f"{CPUFREQ}/policy9/{EPP}", "balance_performance")

    back = engine_for(kroot).rollback()
    assert back.ok, (back.summary, back.rows, back.warnings)
    assert _policy_files(kroot, EPP, range(32)) == ["power"] * 32
    assert_same_tree(before, kroot, "EPP default apply + rollback")


# --- SMT off: offline CPUs' policies ---------------------------------------------------------

PROFILE = {"cpu.governor": "performance", "cpu.epp": "performance", "cpu.boost": False}


def test_smt_off_profile_applies_to_active_policies(kroot, engine_for):
    fs = RootFS(kroot)
    fs.write_text(SMT, "off")
    assert _file(kroot, "sys/devices/system/cpu/online") == "0-15"
    before = tree_snapshot(kroot)
    n0 = _log_len(kroot)

    out = engine_for(kroot).apply(make_profile(**PROFILE))
    assert out.ok, (out.summary, out.rows, out.warnings)
    done = _kernel_writes(kroot, n0)
    assert all(res == "ok" for _p, _v, res in done), done
    touched = {p.split("/")[-2] for p, _v, _r in done if "/policy" in p}
    assert touched == {f"policy{n}" for n in range(16)}
    assert _policy_files(kroot, "scaling_governor", range(16)) == ["performance"] * 16
    assert _policy_files(kroot, EPP, range(16)) == ["performance"] * 16
    assert _policy_files(kroot, "boost", range(16)) == ["0"] * 16
    assert _file(kroot, f"{CPUFREQ}/boost") == "0"
    assert _policy_files(kroot, "scaling_governor", range(16, 32)) == [None] * 16
    skipped = [n for n in out.notes if "policy16-31 left alone" in n and "offline" in n]
    assert len(skipped) == 1, out.notes
    dry = engine_for(kroot).apply(make_profile(**PROFILE), dry_run=True)
    assert skipped[0] in dry.notes
    assert engine_for(kroot).verify().ok

    back = engine_for(kroot).rollback()
    assert back.ok, (back.summary, back.rows, back.warnings)
    assert _policy_files(kroot, "scaling_governor", range(16)) == ["powersave"] * 16
    assert _policy_files(kroot, EPP, range(16)) == ["balance_performance"] * 16
    assert_same_tree(before, kroot, "SMT off: apply + rollback")
    # once SMT is back on, the siblings have the settings they had all along
    fs.write_text(SMT, "on")
    assert _policy_files(kroot, "scaling_governor", range(16, 32)) == ["powersave"] * 16
    assert _policy_files(kroot, "boost", range(16, 32)) == ["1"] * 16


def test_rollback_of_a_policy_gone_offline_is_kept_for_a_retry(kroot, engine_for, state_dir):
    fs = RootFS(kroot)
    before = tree_snapshot(kroot)
    assert engine_for(kroot).apply(make_profile(**{"cpu.governor": "performance"})).ok
    fs.write_text(SMT, "off")

    back = engine_for(kroot).rollback()
    assert not back.ok
    assert "cpu.governor" in back.summary
    assert any("policy16-31" in w and "offline" in w and "kept in the journal" in w
               for w in back.warnings), back.warnings
    # what could be restored was, and the rest stays journaled
    assert _policy_files(kroot, "scaling_governor", range(16)) == ["powersave"] * 16
    assert _policy_files(kroot, EPP, range(16)) == ["balance_performance"] * 16
    baseline = read_journal(state_dir)["baseline"]
    assert baseline["cpu.governor"]["state"]["policy20"] == "powersave"

    fs.write_text(SMT, "on")
    assert _policy_files(kroot, "scaling_governor", range(16, 32)) == ["performance"] * 16
    again = engine_for(kroot).rollback()
    assert again.ok, (again.summary, again.rows, again.warnings)
    assert read_journal(state_dir)["baseline"] == {}
    assert_same_tree(before, kroot, "apply, SMT off, rollback, SMT on, rollback")


def test_profiles_can_never_take_a_cpu_offline():
    """Hotplug is the user's business: no profile value reaches cpuN/online or smt/control."""
    from halotune.tuning import allowlist

    assert not allowlist.allowed("sys/devices/system/cpu/cpu16/online")
    assert not allowlist.allowed(SMT)
    assert allowlist.allowed(f"{CPUFREQ}/policy16/scaling_governor")
