"""The journal does not trust its contents (issue 12, defect 9).

A journal value of the wrong type, an edited TDP, a flipped byte: each is a clean refusal that
names the file (exit 2, no traceback), and nothing it holds reaches the machine. New journals
carry a sha256 checksum of their body; a journal written before the checksum existed (legacy)
still loads, checked value by value against the limits a restore obeys.
"""

from __future__ import annotations

import json
import os

import pytest

from halotune.sim import store

from .conftest import make_profile, read_journal, tree_snapshot, writes

@pytest.fixture
def root(kernel_root):
    return kernel_root


def _journal_path(state_dir: str) -> str:
    return os.path.join(state_dir, "journal.json")


def _write(state_dir: str, doc: dict) -> None:
    with open(_journal_path(state_dir), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)


def _applied(root, state_dir, run_cli) -> dict:
    """llm-max applied on the simulated machine; returns the journal it left."""
    r = run_cli("apply", "llm-max", "--root", root, "--state-dir", state_dir)
    assert r.rc == 0, r
    j = read_journal(state_dir)
    assert j["baseline"]["power.stapm_w"]["state"] is not None
    return j


def _ryzenadj_log(root: str) -> list[dict]:
    return [e for e in store.read_log(root) if str(e.get("path", "")).startswith("ryzenadj")]


def _refused(run_cli, root, state_dir, *words) -> None:
    """rollback and recover refuse with exit 2 and a message naming the file and `words`;
    nothing is written to the machine."""
    before, n = tree_snapshot(root), len(writes(root))
    for cmd in ("rollback", "recover", "verify"):
        r = run_cli(cmd, "--root", root, "--state-dir", state_dir)
        assert r.rc == 2, r
        assert _journal_path(state_dir) in r.err, r
        for w in words:
            assert w in r.err, r
        assert "Traceback" not in r.err, r
    assert len(writes(root)) == n
    assert tree_snapshot(root) == before


def test_new_journals_carry_a_checksum(root, state_dir, run_cli, fast_ryzenadj):
    j = _applied(root, state_dir, run_cli)
    assert isinstance(j.get("checksum"), str) and j["checksum"].startswith("sha256:")
    assert len(j["checksum"]) == len("sha256:") + 64


def test_edited_tdp_is_refused_by_the_checksum(root, state_dir, run_cli, fast_ryzenadj):
    j = _applied(root, state_dir, run_cli)
    j["baseline"]["power.stapm_w"]["state"] = 900.0
    _write(state_dir, j)
    n_adj = len(_ryzenadj_log(root))
    _refused(run_cli, root, state_dir, "checksum", "move the file aside")
    assert len(_ryzenadj_log(root)) == n_adj


def test_edited_tdp_in_a_legacy_journal_is_refused_by_the_range(root, state_dir, run_cli,
                                                                fast_ryzenadj):
    """A journal without a checksum (written by the previous version) is checked value by
    value: a 900 W original is never handed to ryzenadj."""
    j = _applied(root, state_dir, run_cli)
    j.pop("checksum", None)
    j["baseline"]["power.stapm_w"]["state"] = 900.0
    _write(state_dir, j)
    n_adj = len(_ryzenadj_log(root))
    _refused(run_cli, root, state_dir, "power.stapm_w", "900")
    assert not [e for e in _ryzenadj_log(root)[n_adj:] if "900000" in str(e.get("value"))]
    assert len(_ryzenadj_log(root)) == n_adj


def test_legacy_journal_without_checksum_still_rolls_back(root, state_dir, run_cli,
                                                          fast_ryzenadj):
    original = tree_snapshot(root)
    j = _applied(root, state_dir, run_cli)
    j.pop("checksum", None)
    _write(state_dir, j)
    r = run_cli("rollback", "--root", root, "--state-dir", state_dir)
    assert r.rc == 0, r
    assert tree_snapshot(root) == original
    assert read_journal(state_dir)["checksum"].startswith("sha256:")   # new writes add it


@pytest.mark.parametrize("legacy", [False, True], ids=["checksum", "legacy"])
def test_wrong_typed_value_is_a_clean_refusal_naming_the_key(root, state_dir, run_cli,
                                                             fast_ryzenadj, legacy):
    """A list where the per-policy governor table is expected."""
    j = _applied(root, state_dir, run_cli)
    j["baseline"]["cpu.governor"]["state"] = ["performance", "powersave"]
    if legacy:
        j.pop("checksum", None)
    _write(state_dir, j)
    _refused(run_cli, root, state_dir, *(["cpu.governor"] if legacy else ["checksum"]))


@pytest.mark.parametrize("key,bad", [
    ("cpu.governor", {"policy0": 5}),                 # not a governor name
    ("cpu.governor", {"cpu0": "performance"}),         # not a policy
    ("cpu.epp", {"policy0": "turbo"}),                 # not an EPP choice
    ("sysctl.vm.swappiness", "60"),                    # a string for an integer sysctl
    ("sysctl.vm.swappiness", 500),                     # outside 0-200
    ("thp.enabled", "sometimes"),                      # not a THP choice
    ("power.fast_w", True),                            # a bool for watts
    ("gpu.performance_level", "manual; reboot"),       # not a level
])
def test_legacy_values_out_of_type_or_range_are_refused(root, state_dir, run_cli,
                                                        fast_ryzenadj, key, bad):
    j = _applied(root, state_dir, run_cli)
    j.pop("checksum", None)
    assert key in j["baseline"], sorted(j["baseline"])
    j["baseline"][key]["state"] = bad
    _write(state_dir, j)
    _refused(run_cli, root, state_dir, key)


def test_a_flipped_byte_inside_a_value_is_detected(root, state_dir, run_cli, fast_ryzenadj):
    """A digit of an original value flipped keeps the JSON valid: the checksum catches it."""
    _applied(root, state_dir, run_cli)
    path = _journal_path(state_dir)
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    # the swappiness target, e.g. `"sysctl.vm.swappiness": 10`: change its first digit
    at = raw.index(b'"sysctl.vm.swappiness": ') + len(b'"sysctl.vm.swappiness": ')
    assert chr(raw[at]).isdigit(), raw[at - 40:at + 20]
    raw[at] = ord("3") if raw[at] != ord("3") else ord("2")
    with open(path, "wb") as f:
        f.write(raw)
    json.loads(raw)                     # still valid JSON
    _refused(run_cli, root, state_dir, "checksum")


def test_apply_refuses_a_damaged_journal_too(root, state_dir, run_cli, fast_ryzenadj):
    j = _applied(root, state_dir, run_cli)
    j["active"]["targets"]["power.stapm_w"] = 900.0
    _write(state_dir, j)
    n = len(writes(root))
    r = run_cli("apply", "quiet", "--root", root, "--state-dir", state_dir)
    assert r.rc == 2 and _journal_path(state_dir) in r.err and "checksum" in r.err, r
    assert len(writes(root)) == n


# --- the TDP ceiling comes with the profile, not a key smuggled into the plan ------------------

def test_max_w_lets_a_profile_go_above_120_w_only_within_its_ceiling(root, engine_for):
    from halotune.tuning.engine import EngineError

    eng = engine_for(root)
    above = make_profile("above", **{"power.stapm_w": 130.0, "power.slow_w": 130.0,
                                     "power.fast_w": 130.0})
    with pytest.raises(EngineError) as e:
        eng.plan(above)
    assert "must be between 45 and 120" in str(e.value)
    above.max_w = 140.0
    items, _, _ = eng.plan(above)
    assert {i.key: i.target for i in items}["power.stapm_w"] == 130.0
    too_far = make_profile("far", **{"power.fast_w": 150.0})
    too_far.max_w = 140.0
    with pytest.raises(EngineError) as e:
        eng.plan(too_far)
    assert "power.fast_w = 150" in str(e.value) and "140" in str(e.value)
    # The ceiling is the profile's, never a value in the plan: a profile cannot set it as a key.
    sneaky = make_profile("sneaky", **{"power.max_w": 200.0, "power.fast_w": 150.0})
    with pytest.raises(EngineError):
        eng.plan(sneaky)
