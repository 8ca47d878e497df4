"""Crash campaign: kill halotune at a step of an apply or a rollback, then check that the next
mutating command puts the machine back exactly (tree digest and TDP state), and that the
journal is consistent afterwards.

Deterministic kills: a forked child patches the machine's write paths (RootFS.write_text,
RyzenAdj.set_limits) and the durable-write fault hook (durable.FAULTS) with a step counter,
runs `halotune.cli.main.main([...])` and SIGKILLs itself at step N: just before the Nth machine
write, or at a durable-write point (before_write ... after_dirsync) of a journal save. A first
child without a kill records the step labels; then N sweeps them.

Operations: apply of each shipped profile, rollback after each, `apply quiet` over llm-max and
`apply stock` over llm-efficient. The CI sweep (HALOTUNE_CRASH_FULL=1 sweeps every step of
every operation, several minutes) keeps:
- every step of the cheap operations (llm-efficient apply/rollback, stock);
- otherwise each write that is not per-policy, the first, middle and last write of each run
  of 32 per-policy writes, every journal save's "after_fsync" point (written and fsynced, not
  renamed: the old journal holds) and the "after_rename" point of the first and last save;
  bench-stable's operations take every other such point, quiet over llm-max every third.
After each kill one recovery runs, in rotation: `recover`, `rollback`, the next `apply` of the
same profile, `recover --resume` (bench-stable and quiet apply only the first two). Expected:
with an unfinished transaction in the journal, the originals (recover, rollback), the clean
result of the profile (apply, resume); without one, the committed state the journal names, and
the machine must already be in it. Every run then ends with a rollback to the original digest;
a run that cannot get there counts as a lost original.

Two forked workers share the operations (both cores); the simulated trees live on tmpfs when
there is one.

Real kills: a few `python -m halotune apply|rollback` children SIGKILLed (their whole session)
after random delays, then `recover`.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import traceback

import pytest

from halotune.machine import durable
from halotune.sim.tree import lay_out

from .conftest import (CAMPAIGN_REPORT, SHIPPED, _read_bytes, _walk, assert_same_tree,
                       clean_environ, drop_ttm_from_cmdline, install_fast_ryzenadj,
                       isolate_environ, quiet_main, read_journal, run_killed, scratch_dir,
                       tree_digest, tree_snapshot, write_profile, writes)

FULL = os.environ.get("HALOTUNE_CRASH_FULL") == "1"
WORKERS = 2
STATS = {"runs": 0, "kill_points": 0, "lost_originals": 0, "failures": 0, "real_kills": 0}


# --- in-memory copies of directories, restored in place ---------------------------------------

def capture(path: str) -> dict:
    """rel -> ("d", mode) | ("l", target) | ("f", mode, bytes) for every entry under path."""
    out = {}
    for rel, e in _walk(path):
        st = e.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("l", os.readlink(e.path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("d", stat.S_IMODE(st.st_mode))
        elif stat.S_ISREG(st.st_mode):
            out[rel] = ("f", stat.S_IMODE(st.st_mode), _read_bytes(e.path))
    return out


def restore(path: str, snap: dict) -> None:
    """Make `path` hold exactly `snap` again, rewriting only what differs."""
    os.makedirs(path, exist_ok=True)
    seen = set()
    for rel, e in list(_walk(path)):
        want = snap.get(rel)
        kind = "l" if e.is_symlink() else "d" if e.is_dir(follow_symlinks=False) else "f"
        if want is None or want[0] != kind or (kind == "l" and os.readlink(e.path) != want[1]):
            if not os.path.lexists(e.path):
                continue                        # inside a directory removed just before
            if kind == "d":
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            continue
        seen.add(rel)
        if kind == "f":
            mode = stat.S_IMODE(e.stat(follow_symlinks=False).st_mode)
            if _read_bytes(e.path) != want[2]:
                fd = os.open(e.path, os.O_WRONLY | os.O_TRUNC)
                try:
                    os.write(fd, want[2])
                finally:
                    os.close(fd)
            if mode != want[1]:
                os.chmod(e.path, want[1])
    for rel in sorted(snap):
        if rel in seen:
            continue
        want = snap[rel]
        full = os.path.join(path, rel)
        if want[0] == "d":
            os.makedirs(full, exist_ok=True)
            os.chmod(full, want[1])
        elif want[0] == "l":
            os.symlink(want[1], full)
        else:
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, want[1])
            try:
                os.write(fd, want[2])
            finally:
                os.close(fd)
            os.chmod(full, want[1])


def compact_sim_state() -> None:
    """The simulator rewrites its private .halotune-sim/state.json (indented JSON, through
    json.dump's pure-Python encoder) on every write; the sweep makes ~20 000 writes, so in the
    workers (and their children) it is written compact by json.dumps (the C encoder): same
    content, same rename, half the time per simulated write. No file of the machine and no
    halotune code path is affected."""
    from halotune.sim import paths, store

    def save_state(root: str, state: dict) -> None:
        path = os.path.join(root, paths.STATE)
        tmp = f"{path}.tmp"
        text = json.dumps(state, sort_keys=True, separators=(",", ":"))   # the C encoder
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, path)

    store.save_state = save_state


def select_points(labels: list[str]) -> list[int]:
    """Indices of the steps to kill at (all with HALOTUNE_CRASH_FULL=1)."""
    if FULL:
        return list(range(len(labels)))
    keep: list[int] = []
    saves = [i for i, lab in enumerate(labels) if lab.startswith("journal ")]
    # after_rename of the first and of the last journal save
    edges = (saves[0] + 3, saves[-1] - 1) if saves else ()
    i = 0
    while i < len(labels):
        lab = labels[i]
        if lab.startswith("journal "):
            point = lab.split()[1]
            if point == "after_fsync" or (point == "after_rename" and i in edges):
                keep.append(i)
            i += 1
            continue
        group = re.sub(r"policy\d+", "policyN", lab)
        j = i
        while j + 1 < len(labels) and re.sub(r"policy\d+", "policyN", labels[j + 1]) == group \
                and "policyN" in group:
            j += 1
        run = list(range(i, j + 1))
        keep += sorted({run[0], run[len(run) // 2], run[-1]})
        i = j + 1
    return keep


# --- one worker's share -----------------------------------------------------------------------

OPS = (
    # (name, setup profiles applied first, command, profile the command applies)
    *[(f"apply {p}", (), "apply", p) for p in SHIPPED],
    *[(f"rollback {p}", (p,), "rollback", p) for p in SHIPPED],
    ("apply quiet over llm-max", ("llm-max",), "apply", "quiet"),
    ("apply stock over llm-efficient", ("llm-efficient",), "apply", "stock"),
)
# Operations cheap enough to kill at every step even in the CI sweep, and one thinned to every
# other CI point (its steps are those of `apply quiet` plus the restores of llm-max's keys).
SWEEP_ALL = {"apply llm-efficient", "rollback llm-efficient", "apply stock over llm-efficient"}
THINNED = {"apply quiet over llm-max": 3, "apply bench-stable": 2, "rollback bench-stable": 2}
# Relative cost of each operation's sweep (seconds on one idle core), to share them out.
COST = {"apply bench-stable": 3.7, "rollback bench-stable": 2.7, "apply quiet": 3.7,
        "rollback llm-max": 3.4, "apply quiet over llm-max": 3.1, "apply llm-max": 2.6,
        "rollback quiet": 2.3, "apply llm-efficient": 2.0, "rollback llm-efficient": 1.3,
        "apply stock over llm-efficient": 1.3}
# The heaviest operations (64 per-policy writes each way) get only the cheap recoveries; the
# others cover `apply` and `recover --resume` after a kill.
LIGHT = {"apply bench-stable", "rollback bench-stable", "apply quiet"}
LIGHT_VARIANTS = ("recover", "rollback")
# The recovery run after each kill, in rotation. `apply` and `resume` end with a profile applied
# and need a final rollback on top, so they come less often.
VARIANTS = ("recover", "rollback", "apply", "recover", "rollback", "recover", "resume", "recover")


class Worker:
    def __init__(self, base: str):
        self.root = os.path.join(base, "root")
        self.state = os.path.join(base, "state")
        self.base = base
        self.common = ["--root", self.root, "--state-dir", self.state]
        self.failures: list[str] = []
        self.runs = self.kills = self.lost = 0
        self.timing: list[str] = []

    def setup(self, profiles_needed) -> None:
        isolate_environ()
        install_fast_ryzenadj()
        compact_sim_state()
        lay_out(self.root)
        os.makedirs(self.state)
        self.templates = {(): (capture(self.root), capture(self.state))}
        self.digests = {(): tree_digest(self.root)}
        for p in profiles_needed:
            self.use(())
            rc, out = quiet_main(["apply", p, *self.common])
            assert rc == 0, out
            self.templates[(p,)] = (capture(self.root), capture(self.state))
            self.digests[(p,)] = tree_digest(self.root)

    def use(self, key) -> None:
        root, state = self.templates[key]
        restore(self.root, root)
        restore(self.state, state)

    def expect(self, what: str, want_key, context: str) -> bool:
        self.last_digest = tree_digest(self.root)
        if self.last_digest != self.digests[want_key]:
            self.failures.append(f"{context}: after {what} the machine is not "
                                 f"{'the original' if want_key == () else want_key}")
            return False
        return True

    def check_journal_clean(self, context: str) -> None:
        j = read_journal(self.state)
        if j is not None and (j["txn"] is not None or j["baseline"] or j["active"]):
            self.failures.append(f"{context}: journal not clean after the final rollback: "
                                 f"txn={j['txn'] is not None} baseline={sorted(j['baseline'])} "
                                 f"active={j['active'] and j['active'].get('profile')}")

    def op(self, name, setup, command, profile, only=None) -> None:
        argv = [command, *([profile] if command == "apply" else []), *self.common]
        self.use(setup)
        labels_file = os.path.join(self.base, "labels.json")
        run_killed(argv, -1, labels_file)
        with open(labels_file) as f:
            rec = json.load(f)
        if rec.get("rc") != 0:
            self.failures.append(f"{name}: the clean run failed: {rec}")
            return
        labels = rec["labels"]
        done_key = (profile,) if command == "apply" else ()
        if not self.expect("the clean run", done_key, f"{name} (no kill)"):
            return
        points = (list(range(len(labels))) if name in SWEEP_ALL or FULL
                  else select_points(labels) if only is None else only(labels))
        if name in THINNED and not FULL:
            points = points[::THINNED[name]]
        t0 = time.monotonic()
        variants = LIGHT_VARIANTS if name in LIGHT and not FULL else VARIANTS
        for k, at in enumerate(points):
            variant = variants[k % len(variants)]
            self.one(name, setup, argv, at, labels[at], variant, done_key)
        self.timing.append(f"{name}: {len(points)} of {len(labels)} steps, "
                           f"{time.monotonic() - t0:.1f} s")

    def one(self, name, setup, argv, at, label, variant, done_key) -> None:
        context = f"{name}: killed at step {at} ({label}), then {variant}"
        self.kills += 1
        self.runs += 1
        self.use(setup)
        status = run_killed(argv, at)
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            self.failures.append(f"{context}: the child was not killed (status {status})")
            return
        j = read_journal(self.state)
        txn = j and j.get("txn")
        # Without an unfinished transaction the machine must be in a committed state.
        if not txn:
            active = j and j.get("active") and j["active"]["profile"]
            committed = (active,) if active else ()
            self.expect("the kill (no transaction in the journal)", committed, context)
        if variant == "recover":
            rc, out = quiet_main(["recover", *self.common])
            want = () if txn else ((j["active"]["profile"],) if j and j.get("active") else ())
        elif variant == "resume":
            rc, out = quiet_main(["recover", "--resume", *self.common])
            if txn and txn.get("op") == "apply":
                want = (txn["profile"],)
            elif txn:
                want = ()
            else:
                want = (j["active"]["profile"],) if j and j.get("active") else ()
        elif variant == "apply":
            p = argv[1] if argv[0] == "apply" else setup[0]
            rc, out = quiet_main(["apply", p, *self.common])
            want = (p,)
        else:
            rc, out = quiet_main(["rollback", *self.common])
            want = ()
        if rc != 0:
            self.failures.append(f"{context}: exit {rc}:\n{out}")
        self.expect(variant, want, context)
        if want != ():
            rc, out = quiet_main(["rollback", *self.common])
            if rc != 0:
                self.failures.append(f"{context}: final rollback exit {rc}:\n{out}")
            self.last_digest = tree_digest(self.root)
        if self.last_digest != self.digests[()]:
            self.lost += 1
            self.failures.append(f"{context}: originals lost: the machine does not come back")
        self.check_journal_clean(context)


def _run_worker(base: str, ops: list, needed: list, result_path: str) -> None:
    w = Worker(base)
    try:
        w.setup(needed)
        for op in ops:
            w.op(*op)
    except BaseException:
        w.failures.append("worker crashed:\n" + traceback.format_exc())
    with open(result_path, "w") as f:
        json.dump({"runs": w.runs, "kills": w.kills, "lost": w.lost,
                   "failures": w.failures, "timing": w.timing}, f)


def run_campaign(tmp_path, ops, workers: int = WORKERS) -> dict:
    """Fork `workers` processes sharing `ops`; returns the summed figures."""
    scratch, remove = scratch_dir(tmp_path)
    try:
        return _run_campaign(scratch, ops, workers)
    finally:
        if remove:
            shutil.rmtree(scratch, ignore_errors=True)


def _run_campaign(scratch: str, ops, workers: int) -> dict:
    shares: list[list] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for op in sorted(ops, key=lambda o: -COST.get(o[0], 3.0)):
        i = loads.index(min(loads))
        shares[i].append(op)
        loads[i] += COST.get(op[0], 3.0)
    pids = []
    for i, share in enumerate(shares):
        base = os.path.join(scratch, f"w{i}")
        os.makedirs(base)
        needed = sorted({p for _n, setup, _c, _p in share for p in setup}
                        | {p for _n, _s, c, p in share if c == "apply"})
        pid = os.fork()
        if pid == 0:
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                _run_worker(base, share, needed, os.path.join(base, "result.json"))
            finally:
                os._exit(0)
        pids.append((pid, base))
    total = {"runs": 0, "kills": 0, "lost": 0, "failures": [], "timing": []}
    for pid, base in pids:
        os.waitpid(pid, 0)
        try:
            with open(os.path.join(base, "result.json")) as f:
                r = json.load(f)
        except (OSError, ValueError):
            r = {"runs": 0, "kills": 0, "lost": 0, "failures": [f"worker {base} died"]}
        for k in ("runs", "kills", "lost"):
            total[k] += r[k]
        total["failures"] += r["failures"]
        total["timing"] += r.get("timing", [])
    return total


# --- the campaign -----------------------------------------------------------------------------

def test_kill_at_every_step_of_apply_and_rollback(tmp_path):
    t0 = time.monotonic()
    result = run_campaign(tmp_path, list(OPS))
    elapsed = time.monotonic() - t0
    STATS["runs"] += result["runs"]
    STATS["kill_points"] += result["kills"]
    STATS["lost_originals"] += result["lost"]
    STATS["failures"] += len(result["failures"])
    CAMPAIGN_REPORT["deterministic kills"] = (
        f"runs={result['runs']}, kill_points={result['kills']}, "
        f"lost_originals={result['lost']}, failures={len(result['failures'])}, "
        f"{elapsed:.1f} s, {'full sweep' if FULL else 'CI sweep'}")
    CAMPAIGN_REPORT["per operation"] = "; ".join(result["timing"])
    assert not result["failures"], "\n".join(result["failures"][:30])
    # A floor against a sweep that silently shrinks (198 points in the CI sweep since the
    # rollbacks back to auto no longer write the OD `r` + `c`: the level resets the range).
    assert result["kills"] >= (190 if not FULL else 400), result


def test_kill_during_the_recovery_too(tmp_path, fast_ryzenadj):
    """A kill mid-apply, then a kill at each step of the `recover` that follows: the next
    `recover` still brings back the originals (the recovery journals its own transaction)."""
    base, remove = scratch_dir(tmp_path)
    try:
        w = Worker(os.path.join(base, "w"))
        os.makedirs(w.base)
        lay_out(w.root)
        os.makedirs(w.state)
        original = tree_digest(w.root)
        fresh = (capture(w.root), capture(w.state))
        argv = ["apply", "quiet", *w.common]
        run_killed(argv, -1, os.path.join(w.base, "apply.json"))
        with open(os.path.join(w.base, "apply.json")) as f:
            labels = json.load(f)["labels"]
        restore(w.root, fresh[0])
        restore(w.state, fresh[1])
        at = [i for i, lab in enumerate(labels) if "boost" in lab][5]   # EPP done, boost half
        assert os.WIFSIGNALED(run_killed(argv, at))
        crashed = (capture(w.root), capture(w.state))
        run_killed(["recover", *w.common], -1, os.path.join(w.base, "recover.json"))
        with open(os.path.join(w.base, "recover.json")) as f:
            rec = json.load(f)
        assert rec["rc"] == 0 and tree_digest(w.root) == original
        points = select_points(rec["labels"])[::2]
        assert len(points) >= 5
        for at in points:
            restore(w.root, crashed[0])
            restore(w.state, crashed[1])
            assert os.WIFSIGNALED(run_killed(["recover", *w.common], at))
            rc, out = quiet_main(["recover", *w.common])
            assert rc == 0, out
            assert tree_digest(w.root) == original, f"recover killed at {rec['labels'][at]}"
            j = read_journal(w.state)
            assert j["txn"] is None and j["baseline"] == {} and j["active"] is None
        STATS["runs"] += len(points)
        STATS["kill_points"] += len(points)
    finally:
        if remove:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def gtt_run(tmp_path, profiles_dir, fast_ryzenadj):
    """A machine with an admin's halotune-gtt.conf already in place (so the rollback target is
    a file, not "absent"), a profile that replaces it, and the labels of a clean apply."""
    write_profile(profiles_dir, "gtt64", 'description = "GTT 64 GiB"\n[memory]\ngtt_gib = 64\n'
                  '[sysctl]\n"vm.swappiness" = 20\n')
    w = Worker(str(tmp_path / "w"))
    os.makedirs(w.base)
    lay_out(w.root)
    drop_ttm_from_cmdline(w.root)
    with open(os.path.join(w.root, GTT_CONF), "w") as f:
        f.write(ADMIN_CONF)
    os.makedirs(w.state)
    w.templates = {(): (capture(w.root), capture(w.state))}
    w.digests = {(): tree_digest(w.root)}
    argv = ["apply", "gtt64", *w.common, "--profiles-dir", profiles_dir]
    run_killed(argv, -1, os.path.join(w.base, "labels.json"))
    with open(os.path.join(w.base, "labels.json")) as f:
        labels = json.load(f)["labels"]
    points = [i for i, lab in enumerate(labels) if lab.startswith("halotune-gtt.conf ")]
    assert len(points) == 5, labels
    return w, argv, labels, points


GTT_CONF = "etc/modprobe.d/halotune-gtt.conf"
ADMIN_CONF = "options ttm pages_limit=20971520 page_pool_size=20971520\n"


def test_kill_inside_the_gtt_conf_write_restores_the_conf(gtt_run):
    w, argv, labels, points = gtt_run
    for at in points:
        w.use(())
        assert os.WIFSIGNALED(run_killed(argv, at))
        rc, out = quiet_main(["recover", *w.common])
        assert rc == 0, out
        with open(os.path.join(w.root, GTT_CONF)) as f:
            assert f.read() == ADMIN_CONF, labels[at]
        with open(os.path.join(w.root, "proc/sys/vm/swappiness")) as f:
            assert f.read() == "60\n", labels[at]


def test_kill_inside_the_gtt_conf_write_leaves_no_stray_file(gtt_run):
    w, argv, labels, points = gtt_run
    stray = {}
    for at in points:
        w.use(())
        assert os.WIFSIGNALED(run_killed(argv, at))
        rc, out = quiet_main(["recover", *w.common])
        assert rc == 0, out
        left = [n for n in os.listdir(os.path.join(w.root, "etc/modprobe.d"))
                if n != "halotune-gtt.conf"]
        if left or tree_digest(w.root) != w.digests[()]:
            stray[labels[at]] = left
    assert not stray, stray


# --- real SIGKILL of a `python -m halotune` child ---------------------------------------------

def _session_kill(proc: subprocess.Popen, root: str) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # the child and its ryzenadj, if one runs
    except ProcessLookupError:
        pass
    proc.wait()
    # A kernel attribute write is atomic; the simulator's is not: it saves its state, then
    # re-renders ~350 files. A kill inside that leaves files behind the state, which no real
    # kernel shows, so finish the interrupted rendering (the write itself had happened).
    from halotune.sim import publish, store

    with store.locked(root):
        publish.publish(root, store.load_state(root))


@pytest.mark.parametrize("seed", range(2))
def test_real_sigkill_at_random_moments(sim_root, state_dir, seed, run_cli, fast_ryzenadj):
    rng = random.Random(seed)
    before = tree_snapshot(sim_root)
    common = ["--root", sim_root, "--state-dir", state_dir]
    env = clean_environ({"HALOTUNE_SOCKET": os.path.join(state_dir + "-no.sock")})
    for op in ("apply", "rollback"):
        profile = rng.choice(SHIPPED)
        if op == "rollback":
            assert run_cli("apply", profile, *common).rc == 0
        argv = [sys.executable, "-m", "halotune", op, *([profile] if op == "apply" else []),
                *common]
        proc = subprocess.Popen(argv, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(0.15, 0.6)
        time.sleep(delay)
        _session_kill(proc, sim_root)
        STATS["real_kills"] += 1
        STATS["runs"] += 1
        r = run_cli("recover", *common)
        assert r.rc == 0, r
        j = read_journal(state_dir)
        if j and j["active"]:       # the child finished before the kill: roll back now
            assert run_cli("rollback", *common).rc == 0
        j = read_journal(state_dir)
        if tree_snapshot(sim_root) != before:
            STATS["lost_originals"] += 1
        assert_same_tree(before, sim_root, f"{op} {profile} killed after {delay:.2f} s")
        assert j is None or (j["txn"] is None and j["baseline"] == {} and j["active"] is None)


# --- journal failures ----------------------------------------------------------------------------

def test_journal_enospc_before_the_first_write_refuses(sim_root, state_dir, run_cli,
                                                       monkeypatch, fast_ryzenadj):
    before = tree_snapshot(sim_root)
    monkeypatch.setattr(durable, "FAULTS", durable.FaultAt(
        "before_write", OSError(errno.ENOSPC, "No space left on device"), suffix="journal.json"))
    r = run_cli("apply", "llm-max", "--root", sim_root, "--state-dir", state_dir)
    assert r.rc == 2, r
    assert "journal" in r.err and os.path.join(state_dir, "journal.json") in r.err, r
    assert "No space left on device" in r.err
    assert writes(sim_root) == []
    assert_same_tree(before, sim_root, "journal ENOSPC")
    assert read_journal(state_dir) is None
    assert [n for n in os.listdir(state_dir) if ".tmp-" in n] == []


class _FailNthJournalSave(durable.Faults):
    def __init__(self, n: int):
        self.n, self.seen = n, 0

    def check(self, point, path):
        if point == "before_write" and path.endswith("journal.json"):
            self.seen += 1
            if self.seen == self.n:
                raise OSError(errno.ENOSPC, "No space left on device")


def test_journal_enospc_mid_apply_does_not_claim_nothing_changed(sim_root, state_dir, run_cli,
                                                                 monkeypatch, fast_ryzenadj):
    before = tree_snapshot(sim_root)
    monkeypatch.setattr(durable, "FAULTS", _FailNthJournalSave(2))
    r = run_cli("apply", "llm-max", "--root", sim_root, "--state-dir", state_dir)
    assert r.rc == 2, r
    assert "journal" in r.err
    if "nothing was changed" in r.err:
        assert_same_tree(before, sim_root, "claimed 'nothing was changed'")


def test_journal_enospc_mid_apply_loses_no_original(sim_root, state_dir, run_cli, monkeypatch,
                                                     fast_ryzenadj):
    """Whatever the message, the next recover brings everything back."""
    before = tree_snapshot(sim_root)
    monkeypatch.setattr(durable, "FAULTS", _FailNthJournalSave(2))
    r = run_cli("apply", "llm-max", "--root", sim_root, "--state-dir", state_dir)
    assert r.rc == 2, r
    monkeypatch.setattr(durable, "FAULTS", durable.Faults())
    r = run_cli("recover", "--root", sim_root, "--state-dir", state_dir)
    assert r.rc == 0, r
    assert_same_tree(before, sim_root, "recover after a mid-apply journal failure")


@pytest.mark.parametrize("content", [b'{"version": 1, "root": "/x", "baseline": {"cpu.g',
                                     b"", b"\x00\x00\x00"], ids=["truncated", "empty", "nul"])
def test_corrupt_journal_refuses_and_names_the_file(sim_root, state_dir, run_cli, content):
    os.makedirs(state_dir)
    path = os.path.join(state_dir, "journal.json")
    with open(path, "wb") as f:
        f.write(content)
    before = tree_snapshot(sim_root)
    for args in (["apply", "llm-max"], ["rollback"], ["recover"]):
        r = run_cli(*args, "--root", sim_root, "--state-dir", state_dir)
        assert r.rc == 2, r
        assert path in r.err and "damaged" in r.err, r
    assert writes(sim_root) == []
    assert_same_tree(before, sim_root, "corrupt journal")
    with open(path, "rb") as f:
        assert f.read() == content, "the damaged journal must be left for inspection"


# --- read-only commands after a crash -----------------------------------------------------------

def test_read_only_commands_write_nothing_after_a_crash(sim_root, state_dir, run_cli,
                                                        fast_ryzenadj):
    common = ["--root", sim_root, "--state-dir", state_dir]
    original = tree_snapshot(sim_root)
    # Kill an apply of quiet halfway through the EPP writes.
    run_killed(["apply", "quiet", *common], -1, os.path.join(state_dir + "-labels.json"))
    with open(state_dir + "-labels.json") as f:
        labels = json.load(f)["labels"]
    assert run_cli("rollback", *common).rc == 0
    at = [i for i, lab in enumerate(labels) if "energy_performance_preference" in lab][10]
    status = run_killed(["apply", "quiet", *common], at)
    assert os.WIFSIGNALED(status)
    crashed = tree_snapshot(sim_root)
    assert crashed != original
    with open(os.path.join(state_dir, "journal.json"), "rb") as f:
        journal = f.read()
    n = len(writes(sim_root))
    for args in (["verify"], ["apply", "llm-max", "--dry-run"], ["rollback", "--dry-run"],
                 ["status", "--once"], ["status", "--json"]):
        extra = common if args[0] != "status" else ["--root", sim_root]
        r = run_cli(*args, *extra)
        assert r.rc == 0, r
        assert len(writes(sim_root)) == n, f"{args} wrote to the machine"
        assert_same_tree(crashed, sim_root, f"{args}")
        with open(os.path.join(state_dir, "journal.json"), "rb") as f:
            assert f.read() == journal, f"{args} changed the journal"
    r = run_cli("verify", *common)
    assert "unfinished" in r.out and "recover" in r.out, r
    r = run_cli("apply", "llm-max", "--dry-run", *common)
    assert "unfinished transaction" in r.out, r
    r = run_cli("recover", *common)
    assert r.rc == 0 and "undone" in r.out, r
    assert_same_tree(original, sim_root, "recover")


def test_zz_campaign_figures():
    """The campaign's figures (also in the terminal summary)."""
    line = (f"runs={STATS['runs']}, kill_points={STATS['kill_points']}, "
            f"real_kills={STATS['real_kills']}, lost_originals={STATS['lost_originals']}")
    CAMPAIGN_REPORT["crash campaign"] = line
    print(line)
    assert STATS["lost_originals"] == 0
