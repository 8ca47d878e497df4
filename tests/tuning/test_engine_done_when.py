"""The issue's done-when: on the simulated machine (no animator), a dry run writes nothing, and
apply -> verify -> rollback through the command line leaves the tree and the TDP state
byte-for-byte as they were, for every shipped profile and for B-over-A sequences; applying B
over A keeps A's originals, and keys A changed that B leaves alone go back to them."""

from __future__ import annotations

import itertools
import os

import pytest

from .conftest import (ALL_SHIPPED, SHIPPED, assert_same_tree, live_states, log_lines,
                       read_journal, tree_digest, tree_snapshot, writes)


def test_conftest_digest_sees_every_kind_of_change(sim_root):
    """The helper itself: a file's bytes, a symlink's target and the TDP limits all count;
    the simulator's and halotune's own directories do not."""
    d0 = tree_digest(sim_root)
    assert tree_digest(sim_root) == d0
    os.makedirs(os.path.join(sim_root, ".halotune-state"))
    with open(os.path.join(sim_root, ".halotune-state", "journal.json"), "w") as f:
        f.write("{}")
    assert tree_digest(sim_root) == d0
    path = os.path.join(sim_root, "proc/sys/vm/swappiness")
    with open(path) as f:
        old = f.read()
    with open(path, "w") as f:
        f.write("61\n")
    assert tree_digest(sim_root) != d0
    with open(path, "w") as f:
        f.write(old)
    assert tree_digest(sim_root) == d0
    link = os.path.join(sim_root, "sys/class/drm/card1")
    target = os.readlink(link)
    os.unlink(link)
    os.symlink(target + "/", link)
    assert tree_digest(sim_root) != d0
    os.unlink(link)
    os.symlink(target, link)
    assert tree_digest(sim_root) == d0
    from halotune.sim import ryzenadj
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        assert ryzenadj.main(["--fast-limit=100000"], sim_root) == 0
    assert tree_digest(sim_root) != d0
    assert writes(sim_root)[-1] == ("ryzenadj:fast-limit", "100000", "ok")


def test_dry_run_writes_nothing(sim_root, state_dir, run_cli):
    before = tree_snapshot(sim_root)
    n = log_lines(sim_root)
    r = run_cli("apply", "llm-max", "--root", sim_root, "--state-dir", state_dir, "--dry-run")
    assert r.rc == 0, r
    assert "nothing written" in r.out
    assert "->" in r.out                        # the plan shows changes
    assert log_lines(sim_root) == n
    assert_same_tree(before, sim_root, "apply --dry-run")
    assert not os.path.exists(state_dir), "a dry run must not even create the state directory"


@pytest.mark.parametrize("name", ALL_SHIPPED)
def test_apply_verify_rollback_is_byte_exact(sim_root, state_dir, run_cli, name):
    """Through the CLI, with the stand-in RyzenAdj run as the real child process."""
    before = tree_snapshot(sim_root)
    originals = live_states(sim_root)
    common = ("--root", sim_root, "--state-dir", state_dir)
    r = run_cli("apply", name, *common)
    assert r.rc == 0, r
    if name != "stock":
        assert "all verified" in r.out, r
        assert tree_snapshot(sim_root) != before, "the profile changed nothing"
        v = run_cli("verify", *common)
        assert v.rc == 0, v
        assert "hold" in v.out
    r = run_cli("rollback", *common)
    assert r.rc == 0, r
    assert_same_tree(before, sim_root, f"apply {name} + rollback")
    assert live_states(sim_root) == originals
    j = read_journal(state_dir)
    assert j["baseline"] == {} and j["txn"] is None and j["active"] is None
    n = log_lines(sim_root)
    again = run_cli("rollback", *common)
    assert again.rc == 0 and "nothing to roll back" in again.out, again
    assert log_lines(sim_root) == n, "rollback after rollback must write nothing"


# bench-stable then quiet: quiet's sclk_max 2000 must be checked against bench-stable's
# sclk_min 2600 going back to 600, not against the live 2600 (regression test; fixed in
# engine.plan by commit 30a7fd9 while these tests were written).
PAIRS = [pytest.param(a, b, id=f"{a}-then-{b}") for a, b in itertools.permutations(SHIPPED, 2)]


@pytest.mark.parametrize("a,b", PAIRS)
def test_b_over_a_keeps_a_originals(sim_root, state_dir, run_cli, fast_ryzenadj, a, b):
    from halotune.tuning.loader import ProfileStore

    store = ProfileStore(os.path.join(state_dir, "no-admin-profiles"))
    pa, pb = store.load(a), store.load(b)
    before = tree_snapshot(sim_root)
    originals = live_states(sim_root)
    common = ("--root", sim_root, "--state-dir", state_dir)
    r = run_cli("apply", a, *common)
    assert r.rc == 0, r
    baseline_after_a = read_journal(state_dir)["baseline"]
    r = run_cli("apply", b, *common)
    assert r.rc == 0, f"apply {b} over {a}:\n{r}"
    j = read_journal(state_dir)
    # A's originals are kept: every baseline entry holds the value from before A. A key that
    # A only moved as a side effect (the OD range its level resets) and B sets becomes a key
    # a profile set (restored when a later profile leaves it alone); its original stays.
    for key, entry in baseline_after_a.items():
        want = {**entry, "side_effect": False} if key in pb.values else entry
        assert j["baseline"][key] == want, key
    for key, entry in j["baseline"].items():
        assert entry["state"] == originals[key], f"baseline of {key} is not the original"
    assert j["active"]["profile"] == b
    now = live_states(sim_root)
    for key in set(pa.values) - set(pb.values):
        assert now[key] == originals[key], f"{key}: set by {a}, not by {b}: must be original"
    v = run_cli("verify", *common)
    assert v.rc == 0, v
    r = run_cli("rollback", *common)
    assert r.rc == 0, r
    assert_same_tree(before, sim_root, f"{a} then {b} then rollback")


def test_b_over_a_through_stock_and_back(sim_root, state_dir, run_cli, fast_ryzenadj):
    """llm-max, stock (a rollback), quiet, llm-efficient, rollback: byte-exact at both ends,
    and `stock` in the middle is itself byte-exact."""
    before = tree_snapshot(sim_root)
    common = ("--root", sim_root, "--state-dir", state_dir)
    assert run_cli("apply", "llm-max", *common).rc == 0
    r = run_cli("apply", "stock", *common)
    assert r.rc == 0, r
    assert_same_tree(before, sim_root, "llm-max then stock")
    for name in ("quiet", "llm-efficient"):
        r = run_cli("apply", name, *common)
        assert r.rc == 0, r
    r = run_cli("rollback", *common)
    assert r.rc == 0, r
    assert_same_tree(before, sim_root, "quiet, llm-efficient, rollback")
