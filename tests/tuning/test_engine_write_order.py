"""Write-order snapshots (as LACT keeps them): for each shipped profile, the ordered (path,
value) writes the simulated kernel and the RyzenAdj stand-in received for `apply` and for the
`rollback` after it, compared with tests/tuning/fixtures/write-order/<profile>.json.

Regenerate after an intended change with HALOTUNE_UPDATE_SNAPSHOTS=1 and review the diff. The
snapshots hold the real order of the writes: tunables of equal rank are ordered by name (the
engine's _ordered), so the order is deterministic and any change in it is a diff.
The ordering rules the snapshots must obey are also asserted explicitly:
- platform_profile before the first ryzenadj write (amd-pmf re-sends its limits), both ways;
- per policy, scaling_governor before energy_performance_preference, both ways;
- apply: the `manual` level before any pp_od_clk_voltage write (`s`, `c`);
- rollback: the level before any pp_od_clk_voltage write (leaving manual resets the OD range
  in the driver; going back to manual is what allows the OD restore). No shipped profile
  meets this case any more (going back to auto needs no OD write at all): the rollback order
  with OD writes is asserted in test_gpu_level_od.py.
"""

from __future__ import annotations

import difflib
import json
import os
import re

import pytest

from .conftest import ALL_SHIPPED, SNAPSHOT_DIR, writes

UPDATE = os.environ.get("HALOTUNE_UPDATE_SNAPSHOTS") == "1"
SETUP = {"stock": ["llm-max"]}       # stock is a rollback: record it over llm-max
LEVEL = "power_dpm_force_performance_level"
OD = "pp_od_clk_voltage"
EXERCISED: set[str] = set()
RECORDED: set[str] = set()


def _lines(entries) -> list[str]:
    return [f"{p} = {v}" for p, v in entries]


def check_order(entries: list[tuple[str, str]], phase: str) -> None:
    paths = [p for p, _ in entries]
    ryz = [i for i, p in enumerate(paths) if p.startswith("ryzenadj:")]
    pp = [i for i, p in enumerate(paths) if p == "sys/firmware/acpi/platform_profile"]
    if pp and ryz:
        EXERCISED.add(f"{phase}: platform_profile before ryzenadj")
        assert max(pp) < min(ryz), f"{phase}: platform_profile after a ryzenadj write"
    for i, p in enumerate(paths):
        m = re.fullmatch(r"(.*/policy\d+)/energy_performance_preference", p)
        if m:
            gov = f"{m.group(1)}/scaling_governor"
            if gov in paths:
                EXERCISED.add(f"{phase}: governor before EPP")
                assert paths.index(gov) < i, f"{phase}: EPP of {m.group(1)} before its governor"
    levels = [i for i, p in enumerate(paths) if p.endswith(LEVEL)]
    ods = [i for i, p in enumerate(paths) if p.endswith(OD)]
    if phase == "apply" and ods:
        EXERCISED.add("apply: manual level before OD")
        manual = [i for i in levels if entries[i][1] == "manual"]
        assert manual and manual[0] < min(ods), "apply: OD edit before the manual level"
        assert entries[max(ods)][1] == "c", "apply: OD edits not committed last"
    if phase == "rollback" and ods and levels:
        EXERCISED.add("rollback: the level before OD")
        assert max(levels) < min(ods), "rollback: an OD write before the level"
        assert entries[min(ods)][1] in ("r",) or entries[min(ods)][1].startswith("s ")
        assert entries[max(ods)][1] == "c"


def dump_snapshot(snap: dict) -> str:
    """JSON with one write per line, so that a change reads as a one-line diff."""
    out = ["{", f' "profile": {json.dumps(snap["profile"])},',
           f' "setup": {json.dumps(snap["setup"])},']
    for i, phase in enumerate(("apply", "rollback")):
        rows = [f"  {json.dumps(e)}" for e in snap[phase]]
        body = ("\n" + ",\n".join(rows) + "\n ") if rows else ""
        out.append(f' "{phase}": [{body}]' + ("," if i == 0 else ""))
    out.append("}")
    return "\n".join(out) + "\n"


def _record(run_cli, root, state_dir, name) -> dict:
    common = ("--root", root, "--state-dir", state_dir)
    for setup in SETUP.get(name, []):
        assert run_cli("apply", setup, *common).rc == 0
    n = len(writes(root))
    r = run_cli("apply", name, *common)
    assert r.rc == 0, r
    applied = writes(root)[n:]
    n = len(writes(root))
    r = run_cli("rollback", *common)
    assert r.rc == 0, r
    rolled = writes(root)[n:]
    for p, v, res in applied + rolled:
        assert res == "ok", f"{p} = {v}: {res}"
    return {"profile": name, "setup": SETUP.get(name, []),
            "apply": [[p, v] for p, v, _ in applied],
            "rollback": [[p, v] for p, v, _ in rolled]}


@pytest.mark.parametrize("name", ALL_SHIPPED)
def test_write_order_snapshot(sim_root, state_dir, run_cli, fast_ryzenadj, name):
    got = _record(run_cli, sim_root, state_dir, name)
    for phase in ("apply", "rollback"):
        check_order([tuple(e) for e in got[phase]], phase)
    RECORDED.add(name)
    path = os.path.join(SNAPSHOT_DIR, f"{name}.json")
    if UPDATE or not os.path.exists(path):
        os.makedirs(SNAPSHOT_DIR, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(dump_snapshot(got))
        if UPDATE:
            return
        pytest.fail(f"{path} did not exist and was written: review it and commit it")
    with open(path, encoding="utf-8") as f:
        want = json.load(f)
    problems = []
    for phase in ("apply", "rollback"):
        if want[phase] != got[phase]:
            diff = difflib.unified_diff(_lines(want[phase]), _lines(got[phase]),
                                        f"{name}.json {phase} (snapshot)",
                                        f"{name} {phase} (this run)", lineterm="", n=2)
            problems.append("\n".join(diff))
    assert not problems, ("write order changed (HALOTUNE_UPDATE_SNAPSHOTS=1 to accept):\n"
                          + "\n".join(problems))


def test_apply_order_does_not_depend_on_the_hash_seed(sim_root, state_dir):
    from .conftest import run_cli_subprocess

    orders = []
    for seed in ("0", "1"):
        r = run_cli_subprocess(["apply", "bench-stable", "--root", sim_root, "--state-dir",
                                state_dir, "--dry-run", "--json"],
                               env={"PYTHONHASHSEED": seed,
                                    "HALOTUNE_SOCKET": state_dir + "-none.sock"})
        assert r.rc == 0, r
        orders.append([row["key"] for row in r.json()["rows"]])
    assert orders[0] == orders[1]


def test_stock_on_a_fresh_machine_writes_nothing(sim_root, state_dir, run_cli):
    r = run_cli("apply", "stock", "--root", sim_root, "--state-dir", state_dir)
    assert r.rc == 0 and "nothing to roll back" in r.out, r
    assert writes(sim_root) == []


def test_every_ordering_rule_was_exercised():
    """Runs after the snapshots (file order): each rule met a case where it could fail."""
    if RECORDED != set(ALL_SHIPPED):
        pytest.skip("needs every test_write_order_snapshot case in the same run")
    assert EXERCISED >= {"apply: platform_profile before ryzenadj",
                         "apply: manual level before OD",
                         "rollback: governor before EPP"}, EXERCISED


def test_rollback_platform_profile_before_custom_tdp(sim_root, state_dir, run_cli,
                                                     fast_ryzenadj):
    """Limits another tool set (100/110/100 W): quiet's rollback writes the platform profile
    (amd-pmf re-sends 120/140/120 W) and only then RyzenAdj's original limits, which hold."""
    import contextlib
    import io

    from halotune.sim import ryzenadj

    from .conftest import assert_same_tree, tree_snapshot

    with contextlib.redirect_stdout(io.StringIO()):
        assert ryzenadj.main(["--stapm-limit=100000", "--fast-limit=110000",
                              "--slow-limit=100000"], sim_root) == 0
    before = tree_snapshot(sim_root)
    common = ("--root", sim_root, "--state-dir", state_dir)
    assert run_cli("apply", "quiet", *common).rc == 0
    n = len(writes(sim_root))
    assert run_cli("rollback", *common).rc == 0
    entries = [(p, v) for p, v, _ in writes(sim_root)[n:]]
    check_order(entries, "rollback")
    assert "rollback: platform_profile before ryzenadj" in EXERCISED
    assert [e for e in entries if e[0].startswith("ryzenadj:")] == [
        ("ryzenadj:stapm-limit", "100000"), ("ryzenadj:fast-limit", "110000"),
        ("ryzenadj:slow-limit", "100000")]
    assert_same_tree(before, sim_root, "quiet over custom limits, rolled back")


def test_b_over_a_ordering(sim_root, state_dir, run_cli, fast_ryzenadj):
    """quiet over llm-max: platform_profile (back to low-power) before the TDP writes, the
    governor back to powersave before quiet's EPP."""
    common = ("--root", sim_root, "--state-dir", state_dir)
    assert run_cli("apply", "llm-max", *common).rc == 0
    n = len(writes(sim_root))
    assert run_cli("apply", "quiet", *common).rc == 0
    entries = [(p, v) for p, v, _ in writes(sim_root)[n:]]
    check_order(entries, "apply")
    assert "apply: governor before EPP" in EXERCISED
    n = len(writes(sim_root))
    assert run_cli("apply", "llm-max", *common).rc == 0
    check_order([(p, v) for p, v, _ in writes(sim_root)[n:]], "apply")
