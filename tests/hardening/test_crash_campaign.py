"""Crash consistency, campaign 1 of issue #8: apply and rollback killed at random points, power
loss inside the journal's atomic write, disk full and permission failures injected, the state
file truncated, corrupted and deleted. Figure: runs, lost originals (must be 0).

Random SIGKILL. A forked child runs `halotune apply|rollback` (halotune.cli.main.main) against
the simulated Strix Halo and SIGKILLs itself at a kill point drawn at random (seeded) among the
steps of that operation: just before a kernel attribute write, a RyzenAdj call, or at any of the
five points of a journal save (before_write ... after_dirsync); the machinery is the one of
tests/tuning/test_crash_kill.py (whose CI sweep walks chosen steps of every operation; this
campaign draws operations, starting states and kill points at random). Operations: apply of a
shipped profile from the original state or over another profile, rollback of one or two stacked
profiles. After each kill "the next halotune start" runs: `recover` (or `recover --resume`);
then:
- with an unfinished transaction in the journal, recover gives the original tree byte for byte
  (tests/tuning's tree_digest: every file, link and the RyzenAdj limits), resume the clean
  result of the interrupted apply;
- without one, the machine must already be in the committed state the journal names;
- the journal is consistent (parses, txn.done within txn.plan, every planned key's original in
  the baseline; no transaction after the recovery);
- a final rollback gives the original tree; a run that cannot get there is a LOST ORIGINAL.
CI: 50 kill points (36 apply, 14 rollback); HALOTUNE_HARDENING_FULL=1: 500 apply + 200
rollback. Plus real `python -m halotune` children SIGKILLed after random delays, and kills
followed by a daemon start (the daemon recovers the journal when it starts).
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback

import pytest

from halotune.machine import durable
from halotune.machine.rootfs import RootFS
from halotune.machine.ryzenadj import RyzenAdj
from halotune.sim.tree import lay_out
from halotune.tuning.tunables.base import Context
from tuning.conftest import (ALL_SHIPPED, SHIPPED, clean_environ, fast_run, install_fast_ryzenadj,
                             isolate_environ, quiet_main, read_journal, run_killed, tree_digest,
                             writes)
from tuning.test_crash_kill import _session_kill, capture, compact_sim_state, restore

from .conftest import FULL, record, size

APPLY_RUNS = size(36, 500)
ROLLBACK_RUNS = size(14, 200)
REAL_KILLS = size(4, 20)
DAEMON_STARTS = size(2, 12)
SEED = 20260808 if not FULL else int(os.environ.get("HALOTUNE_HARDENING_SEED", time.time()))
WORKERS = 2
TEMP_MARK = ".journal.json.tmp-"


def _stray_temps(state: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(state) if n.startswith(TEMP_MARK))
    except FileNotFoundError:
        return []


# --- the runs ------------------------------------------------------------------------------------

def plan_runs(n_apply: int, n_rollback: int, seed: int) -> list[dict]:
    """The campaign's runs, drawn once in the parent (workers draw the kill point)."""
    rng = random.Random(seed)
    runs = []
    for i in range(n_apply + n_rollback):
        if i < n_apply:
            p = rng.choice(ALL_SHIPPED)
            start = ()
            if rng.random() < 0.3:
                start = (rng.choice([q for q in SHIPPED if q != p]),)
            run = {"command": "apply", "profile": p, "start": start}
        else:
            q = rng.choice(SHIPPED)
            start = (q,)
            if rng.random() < 0.25:
                start = (q, rng.choice([r for r in SHIPPED if r != q]))
            run = {"command": "rollback", "profile": None, "start": start}
        run["seed"] = rng.randrange(1 << 30)
        run["variant"] = "resume" if rng.random() < 0.3 else "recover"
        runs.append(run)
    return runs


class Machine:
    """One worker's simulated machine, with captured starting states restored in place."""

    def __init__(self, base: str):
        self.base = base
        self.root = os.path.join(base, "root")
        self.state = os.path.join(base, "state")
        self.common = ["--root", self.root, "--state-dir", self.state]
        self.templates: dict[tuple, tuple] = {}
        self.digests: dict[tuple, str] = {}
        self.clean: dict[tuple, tuple[list[str], str, dict | None]] = {}

    def setup(self) -> None:
        isolate_environ()
        install_fast_ryzenadj()
        compact_sim_state()
        lay_out(self.root)
        os.makedirs(self.state)
        self.templates[()] = (capture(self.root), capture(self.state))
        self.digests[()] = tree_digest(self.root)

    @property
    def original(self) -> str:
        return self.digests[()]

    def template(self, key: tuple) -> None:
        if key in self.templates:
            return
        self.template(key[:-1])
        self.use(key[:-1])
        rc, out = quiet_main(["apply", key[-1], *self.common])
        assert rc == 0, out
        self.templates[key] = (capture(self.root), capture(self.state))
        self.digests[key] = tree_digest(self.root)

    def use(self, key: tuple) -> None:
        self.template(key)
        root, state = self.templates[key]
        restore(self.root, root)
        restore(self.state, state)

    def argv(self, run: dict) -> list[str]:
        if run["command"] == "apply":
            return ["apply", run["profile"], *self.common]
        return ["rollback", *self.common]

    def clean_run(self, run: dict) -> tuple[list[str], str, dict | None]:
        """Step labels, result digest and final journal of the operation run without a kill."""
        k = (run["command"], run["profile"], run["start"])
        if k not in self.clean:
            self.use(run["start"])
            path = os.path.join(self.base, "labels.json")
            run_killed(self.argv(run), -1, path)
            with open(path) as f:
                rec = json.load(f)
            assert rec.get("rc") == 0, rec
            self.clean[k] = (rec["labels"], tree_digest(self.root), read_journal(self.state))
        return self.clean[k]


_RESTORES: dict[str, bool] = {}


def restores_baseline(profile: str | None) -> bool:
    """`apply stock` (restore_baseline = true) is a rollback: nothing is active after it."""
    if profile is None:
        return False
    if profile not in _RESTORES:
        from halotune.tuning.loader import ProfileStore
        _RESTORES[profile] = ProfileStore().load(profile).restore_baseline
    return _RESTORES[profile]


def check_journal(j: dict | None, context: str) -> list[str]:
    """Structural consistency of a journal read after a kill."""
    if j is None:
        return []
    problems = []
    txn = j.get("txn")
    if txn:
        plan, done = txn.get("plan", []), txn.get("done", [])
        if not set(done) <= set(plan):
            problems.append(f"{context}: txn.done {sorted(set(done) - set(plan))} not in the plan")
        if txn.get("op") == "apply":
            missing = [k for k in plan if k not in j.get("baseline", {})]
            if missing:
                problems.append(f"{context}: keys planned without their original in the "
                                f"baseline: {missing}")
    return problems


def one_run(m: Machine, run: dict, result: dict) -> None:
    labels, clean_digest, _ = m.clean_run(run)
    rng = random.Random(run["seed"])
    at = rng.randrange(len(labels))
    label = labels[at]
    kind = label.split()[0]
    result["kill_kinds"][kind] = result["kill_kinds"].get(kind, 0) + 1
    start = run["start"]
    what = f"{run['command']} {run['profile'] or ''} from {start or 'original'}".replace("  ", " ")
    context = f"{what}: killed at step {at}/{len(labels)} ({label}), then {run['variant']}"
    m.use(start)
    status = run_killed(m.argv(run), at)
    result["runs"] += 1
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        result["failures"].append(f"{context}: the child was not killed (status {status})")
        return
    result["kill_points"] += 1
    try:
        j = read_journal(m.state)
    except ValueError as e:
        result["failures"].append(f"{context}: the journal does not parse after the kill: {e}")
        return
    result["failures"] += check_journal(j, context)
    txn = j and j.get("txn")
    # What the journal says is committed, when no transaction is open.
    active = (j or {}).get("active") or {}
    result_active = (run["profile"] if run["command"] == "apply"
                     and not restores_baseline(run["profile"]) else None)
    committed = clean_digest if active.get("profile") == result_active else m.digests[start]
    if not txn and tree_digest(m.root) != committed:
        result["failures"].append(f"{context}: no open transaction, yet the machine is not in "
                                  "the committed state")
    if run["variant"] == "resume":
        rc, out = quiet_main(["recover", "--resume", *m.common])
        want = (clean_digest if txn and txn.get("op") == "apply"
                else m.original if txn else committed)
    else:
        rc, out = quiet_main(["recover", *m.common])
        want = m.original if txn else committed
    if rc != 0:
        result["failures"].append(f"{context}: recover exit {rc}:\n{out[-800:]}")
    if tree_digest(m.root) != want:
        result["failures"].append(f"{context}: after {run['variant']} the machine is not "
                                  f"{'the original' if want == m.original else 'the target'}")
    j2 = read_journal(m.state)
    if j2 and j2.get("txn"):
        result["failures"].append(f"{context}: a transaction is still open after recover")
    result["stray_temps"] += len(_stray_temps(m.state))
    rc, out = quiet_main(["rollback", *m.common])
    if rc != 0:
        result["failures"].append(f"{context}: final rollback exit {rc}:\n{out[-800:]}")
    if tree_digest(m.root) != m.original:
        result["lost_originals"] += 1
        result["failures"].append(f"{context}: ORIGINALS LOST: the final rollback does not give "
                                  "the original machine back")
    j3 = read_journal(m.state)
    if j3 and (j3["txn"] or j3["baseline"] or j3["active"]):
        result["failures"].append(f"{context}: journal not clean after the final rollback")


def _worker(base: str, runs: list[dict], result_path: str) -> None:
    result = {"runs": 0, "kill_points": 0, "lost_originals": 0, "stray_temps": 0,
              "kill_kinds": {}, "failures": [], "by_command": {}}
    try:
        m = Machine(base)
        m.setup()
        for run in runs:
            before = result["kill_points"]
            one_run(m, run, result)
            c = result["by_command"].setdefault(run["command"], 0)
            result["by_command"][run["command"]] = c + result["kill_points"] - before
    except BaseException:
        result["failures"].append("worker crashed:\n" + traceback.format_exc())
    with open(result_path, "w") as f:
        json.dump(result, f)


def run_random_kills(scratch: str, runs: list[dict], workers: int = WORKERS) -> dict:
    shares = [runs[i::workers] for i in range(workers)]
    pids = []
    for i, share in enumerate(shares):
        base = os.path.join(scratch, f"w{i}")
        os.makedirs(base)
        pid = os.fork()
        if pid == 0:
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                _worker(base, share, os.path.join(base, "result.json"))
            finally:
                os._exit(0)
        pids.append((pid, base))
    total = {"runs": 0, "kill_points": 0, "lost_originals": 0, "stray_temps": 0,
             "kill_kinds": {}, "failures": [], "by_command": {}}
    for pid, base in pids:
        os.waitpid(pid, 0)
        try:
            with open(os.path.join(base, "result.json")) as f:
                r = json.load(f)
        except (OSError, ValueError):
            r = {"failures": [f"worker {base} died"]}
        for k in ("runs", "kill_points", "lost_originals", "stray_temps"):
            total[k] += r.get(k, 0)
        for k in ("kill_kinds", "by_command"):
            for kk, v in r.get(k, {}).items():
                total[k][kk] = total[k].get(kk, 0) + v
        total["failures"] += r.get("failures", [])
    return total


def test_random_sigkill_of_apply_and_rollback(scratch):
    t0 = time.monotonic()
    runs = plan_runs(APPLY_RUNS, ROLLBACK_RUNS, SEED)
    r = run_random_kills(scratch, runs)
    record("crash: random SIGKILL", runs=r["runs"], kill_points=r["kill_points"],
           apply_kills=r["by_command"].get("apply", 0),
           rollback_kills=r["by_command"].get("rollback", 0),
           lost_originals=r["lost_originals"], failures=len(r["failures"]),
           stray_journal_temps=r["stray_temps"], kinds=r["kill_kinds"], seed=SEED,
           seconds=round(time.monotonic() - t0, 1))
    print(f"random SIGKILL: {r['runs']} runs, {r['kill_points']} kill points, "
          f"{r['lost_originals']} lost originals")
    assert not r["failures"], "\n".join(r["failures"][:20])
    assert r["lost_originals"] == 0
    assert r["kill_points"] == APPLY_RUNS + ROLLBACK_RUNS


# --- real children, real SIGKILL after a random delay ------------------------------------------

def test_real_sigkill_of_python_children(sim, scratch):
    """`python -m halotune apply|rollback` as a real child, its session SIGKILLed after a
    random delay (it may be inside a RyzenAdj call or the simulator's rendering), then recover
    and a final rollback."""
    rng = random.Random(SEED + 1)
    m = sim
    original = m.original
    env = clean_environ({"HALOTUNE_SOCKET": os.path.join(scratch, "no-daemon.sock")})
    lost = failures = 0
    outcomes: dict[str, int] = {}
    messages = []
    for i in range(REAL_KILLS):
        op = "apply" if i % 3 != 2 else "rollback"
        p = rng.choice(SHIPPED)
        if op == "rollback":
            rc, out = quiet_main(["apply", p, *m.common])
            assert rc == 0, out
        argv = [sys.executable, "-m", "halotune", op, *([p] if op == "apply" else []), *m.common]
        proc = subprocess.Popen(argv, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(0.15, 0.9)
        time.sleep(delay)
        finished = proc.poll() is not None
        _session_kill(proc, m.root)
        j = read_journal(m.state)
        kind = "finished first" if finished else "txn open" if j and j.get("txn") else "no txn"
        outcomes[kind] = outcomes.get(kind, 0) + 1
        rc, out = quiet_main(["recover", *m.common])
        rc2, out2 = quiet_main(["rollback", *m.common])
        if rc != 0 or rc2 != 0:
            failures += 1
            messages.append(f"{op} {p} killed after {delay:.2f} s: recover {rc}, rollback "
                            f"{rc2}\n{out[-400:]}\n{out2[-400:]}")
        if tree_digest(m.root) != original:
            lost += 1
            messages.append(f"{op} {p} killed after {delay:.2f} s: ORIGINALS LOST")
    record("crash: real SIGKILL", runs=REAL_KILLS, lost_originals=lost, failures=failures,
           outcomes=outcomes)
    assert not messages, "\n".join(messages)


# --- the next start is the daemon ----------------------------------------------------------------

def test_kill_then_daemon_start_recovers(sim):
    """After a kill, the daemon's start recovers the journal (systemd restarts it after a
    crash): running, the machine is the original (an open transaction was undone); stopped
    (SIGTERM rolls back whatever is still applied), the original."""
    from daemon.conftest import Launcher

    launcher = Launcher(sim.base, sim.root, clean_environ())
    rng = random.Random(SEED + 2)
    messages = []
    n = 0
    try:
        for _ in range(DAEMON_STARTS):
            run = {"command": "apply", "profile": rng.choice(SHIPPED), "start": ()}
            labels, _clean, _ = sim.clean_run(run)
            # A kill inside the writes: the journal holds an open transaction.
            writes_at = [k for k, lab in enumerate(labels) if not lab.startswith("journal")]
            at = rng.choice(writes_at[1:] or writes_at)
            sim.use(())
            assert os.WIFSIGNALED(run_killed(sim.argv(run), at))
            assert (read_journal(sim.state) or {}).get("txn")
            d = launcher(state_dir=sim.state)
            n += 1
            running = tree_digest(sim.root)
            profile = d.profile()
            rc = d.stop()
            ctx = f"apply {run['profile']} killed at {labels[at]}, then a daemon start"
            if rc != 0:
                messages.append(f"{ctx}: daemon exit {rc}\n{d.stderr()[-600:]}")
            if running != sim.original or profile is not None:
                messages.append(f"{ctx}: the running daemon did not recover the originals")
            if tree_digest(sim.root) != sim.original:
                messages.append(f"{ctx}: ORIGINALS LOST after the daemon stopped")
            j = read_journal(sim.state)
            if j and (j.get("txn") or j.get("baseline")):
                messages.append(f"{ctx}: journal not clean after the daemon stopped")
    finally:
        launcher.stop_all()
    record("crash: daemon start recovers", runs=n, failures=len(messages))
    assert not messages, "\n".join(messages)


# --- in-process fault injection ------------------------------------------------------------------

class JournalFaults(durable.Faults):
    """Counts journal saves; at save `save` and point `point`, runs `action` (raise an OSError,
    SimulatedCrash)."""

    def __init__(self, save: int | None = None, point: str | None = None, action=None):
        self.save, self.point, self.action = save, point, action
        self.saves = 0
        self.fired = False

    def check(self, point, path):
        if not path.endswith("journal.json"):
            return
        if point == "before_write":
            self.saves += 1
        if self.saves == self.save and point == self.point and not self.fired:
            self.fired = True
            raise self.action


class WriteGuard:
    """Installed on the machine's write paths for a `with` block: at every kernel write,
    RyzenAdj call or config file write, the journal ON DISK must exist and hold an open
    transaction (write-ahead). With fail_at=k, the k-th of those writes fails as the machine
    would fail it: EACCES from the kernel, a RyzenAdj error, a failed file replace."""

    def __init__(self, state: str, fail_at: int | None = None):
        self.state, self.violations, self.n, self.fail_at = state, [], 0, fail_at
        self.failed: str | None = None

    def _check(self, what: str) -> bool:
        self.n += 1
        try:
            with open(os.path.join(self.state, "journal.json"), "rb") as f:
                j = json.loads(f.read())
        except (OSError, ValueError) as e:
            self.violations.append(f"{what}: no readable journal on disk ({e})")
            return False
        if not j.get("txn"):
            self.violations.append(f"{what}: written with no open transaction on disk")
        if self.fail_at is not None and self.n == self.fail_at:
            self.failed = what
            return True
        return False

    def __enter__(self):
        from halotune.machine.programs import ProgramError
        from halotune.tuning.tunables.base import WriteFailed

        self._saved = (RootFS.write_text, RyzenAdj.set_limits, Context.write_config)
        write_text, set_limits, write_config = self._saved
        guard = self

        def w(self_, rel, value):
            if guard._check(f"write {rel}"):
                raise PermissionError(errno.EACCES, "Permission denied", self_.path(rel))
            return write_text(self_, rel, value)

        def s(self_, **mw):
            if any(v is not None for v in mw.values()) and guard._check("ryzenadj"):
                raise ProgramError("ryzenadj failed: Permission denied (injected)")
            return set_limits(self_, **mw)

        def c(self_, key, rel, content):
            if guard._check(f"config {rel}"):
                raise WriteFailed(key, rel, "(file)", "EACCES (Permission denied)")
            return write_config(self_, key, rel, content)

        RootFS.write_text, RyzenAdj.set_limits, Context.write_config = w, s, c
        return self

    def __exit__(self, *exc):
        RootFS.write_text, RyzenAdj.set_limits, Context.write_config = self._saved


class faults:
    """`with faults(hook):` durable.FAULTS = hook for the block."""

    def __init__(self, hook):
        self.hook = hook

    def __enter__(self):
        durable.FAULTS = self.hook
        return self.hook

    def __exit__(self, *exc):
        durable.FAULTS = durable.Faults()


@pytest.fixture
def sim(scratch, monkeypatch, no_daemon):
    """A simulated machine with its journal directory and the fast RyzenAdj (forked children
    inherit it)."""
    from halotune.machine import programs as _programs

    monkeypatch.setattr(_programs.Programs, "run", fast_run)
    m = Machine(os.path.join(scratch, "m"))
    os.makedirs(m.base)
    lay_out(m.root)
    os.makedirs(m.state)
    m.templates[()] = (capture(m.root), capture(m.state))
    m.digests[()] = tree_digest(m.root)
    return m


def count_saves(argv: list[str]) -> int:
    with faults(JournalFaults()) as f:
        rc, out = quiet_main(argv)
    assert rc == 0, out
    return f.saves


OPERATIONS = {
    # name: (starting profiles, argv before the root options)
    "apply llm-max": ((), ["apply", "llm-max"]),
    "rollback llm-max": (("llm-max",), ["rollback"]),
    "apply quiet over llm-max": (("llm-max",), ["apply", "quiet"]),
    "apply bench-stable": ((), ["apply", "bench-stable"]),
    "rollback quiet": (("quiet",), ["rollback"]),
}
CI_OPERATIONS = ("apply llm-max", "rollback llm-max")


def _ops():
    return list(OPERATIONS) if FULL else list(CI_OPERATIONS)


def _crash_points():
    return durable.POINTS if FULL else ("after_write", "after_fsync", "after_rename")


def test_power_loss_inside_the_journal_write(sim):
    """A power loss at a point of a journal save (SimulatedCrash: nothing is cleaned up, the
    temporary file stays, the process is gone), at every save of the operation: the next
    start's recover gives back the original machine, and the journal is consistent."""
    runs = lost = 0
    messages = []
    for name in _ops():
        start, cmd = OPERATIONS[name]
        argv = cmd + sim.common
        sim.use(start)
        n = count_saves(argv)
        for save in range(1, n + 1):
            for point in _crash_points():
                sim.use(start)
                with faults(JournalFaults(save, point, durable.SimulatedCrash())):
                    with pytest.raises(durable.SimulatedCrash):
                        quiet_main(argv)
                runs += 1
                ctx = f"{name}: power loss at save {save}/{n} {point}"
                try:
                    j = read_journal(sim.state)
                except ValueError as e:
                    messages.append(f"{ctx}: journal unreadable: {e}")
                    continue
                messages += check_journal(j, ctx)
                rc, out = quiet_main(["recover", *sim.common])
                if rc != 0:
                    messages.append(f"{ctx}: recover exit {rc}: {out[-500:]}")
                rc, out = quiet_main(["rollback", *sim.common])
                if rc != 0:
                    messages.append(f"{ctx}: rollback exit {rc}: {out[-500:]}")
                if tree_digest(sim.root) != sim.original:
                    lost += 1
                    messages.append(f"{ctx}: ORIGINALS LOST")
    record("crash: power loss in the journal write", runs=runs, lost_originals=lost,
           failures=len(messages), points=list(_crash_points()))
    assert not messages, "\n".join(messages[:20])


def test_recover_removes_the_temporary_journal_a_crash_left(sim):
    argv = ["apply", "llm-max", *sim.common]
    with faults(JournalFaults(2, "after_fsync", durable.SimulatedCrash())):
        with pytest.raises(durable.SimulatedCrash):
            quiet_main(argv)
    assert _stray_temps(sim.state), "the crash should have left a temporary file"
    rc, out = quiet_main(["recover", *sim.common])
    assert rc == 0, out
    assert _stray_temps(sim.state) == []


def _error_sweep(sim, err: int, saves_of) -> tuple[int, int, list[str]]:
    """Inject OSError(err) at each chosen (save, point) of each operation's journal saves.
    Returns (runs, lost originals, problems)."""
    runs = lost = 0
    messages: list[str] = []
    for name in _ops():
        start, cmd = OPERATIONS[name]
        argv = cmd + sim.common
        sim.use(start)
        n = count_saves(argv)
        for save in saves_of(n):
            for point in ("before_write", "after_write", "after_fsync", "after_rename"):
                sim.use(start)
                before_log = len(writes(sim.root))
                had_journal = read_journal(sim.state) is not None
                with faults(JournalFaults(save, point, OSError(err, os.strerror(err)))), \
                        WriteGuard(sim.state) as guard:
                    rc, out = quiet_main(argv)
                runs += 1
                ctx = f"{name}: {errno.errorcode[err]} at journal save {save}/{n} {point}"
                if rc != 2:
                    messages.append(f"{ctx}: exit {rc} (expected 2)\n{out[-600:]}")
                if "journal" not in out or os.strerror(err) not in out:
                    messages.append(f"{ctx}: the message does not name the journal and the "
                                    f"error:\n{out[-600:]}")
                messages += [f"{ctx}: {v}" for v in guard.violations]
                if save == 1 and point != "after_rename":
                    # The write-ahead record could not be made: nothing may be written.
                    if len(writes(sim.root)) != before_log:
                        messages.append(f"{ctx}: the machine was written without a journal")
                    if not had_journal and read_journal(sim.state) is not None:
                        messages.append(f"{ctx}: a journal exists although none was written")
                if _stray_temps(sim.state):
                    messages.append(f"{ctx}: temporary journal file left behind")
                rc1, out1 = quiet_main(["recover", *sim.common])
                rc2, out2 = quiet_main(["rollback", *sim.common])
                if rc1 != 0 or rc2 != 0:
                    messages.append(f"{ctx}: recover {rc1} / rollback {rc2}\n{out1[-400:]}\n"
                                    f"{out2[-400:]}")
                if tree_digest(sim.root) != sim.original:
                    lost += 1
                    messages.append(f"{ctx}: ORIGINALS LOST")
    return runs, lost, messages


def test_disk_full_on_the_journal_write(sim):
    """ENOSPC at each point of each journal save: apply/rollback refuse (exit 2, naming the
    journal), no kernel write ever happens without an open transaction on disk, the first
    (write-ahead) save failing means nothing at all is written, and recover + rollback give
    the original machine."""
    pick = (lambda n: range(1, n + 1)) if FULL else (lambda n: sorted({1, 2, 3, n // 2, n - 1, n}))
    runs, lost, messages = _error_sweep(sim, errno.ENOSPC, pick)
    record("crash: disk full on the journal write", runs=runs, lost_originals=lost,
           failures=len(messages))
    assert not messages, "\n".join(messages[:20])


def test_permission_failures_on_the_journal_write(sim):
    """EACCES (as a read-only or foreign state directory gives it; CI runs as root, so it is
    injected): the same guarantees as a full disk. CI: the first, a middle and the last save."""
    pick = ((lambda n: sorted({1, *range(2, n + 1, 2), n})) if FULL
            else (lambda n: sorted({1, (n + 1) // 2, n})))
    runs, lost, messages = _error_sweep(sim, errno.EACCES, pick)
    record("crash: permission denied on the journal write", runs=runs, lost_originals=lost,
           failures=len(messages))
    assert not messages, "\n".join(messages[:20])


def test_permission_denied_on_the_state_directory(sim, monkeypatch):
    """EACCES opening the lock or reading the journal: a clean refusal that names the path,
    nothing written."""
    results = {}
    real_open, real_os_open = builtins.open, os.open
    lock = os.path.join(sim.state, "lock")
    journal = os.path.join(sim.state, "journal.json")
    rc, out = quiet_main(["apply", "llm-efficient", *sim.common])    # a journal to read
    assert rc == 0, out
    snapshot = tree_digest(sim.root)
    n = len(writes(sim.root))

    def denied_os_open(path, flags, *a, **kw):
        if os.fspath(path) == lock:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_os_open(path, flags, *a, **kw)

    def denied_open(file, *a, **kw):
        if isinstance(file, (str, bytes, os.PathLike)) and os.fspath(file) == journal:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, *a, **kw)

    for what, target, fake in (("lock", os, denied_os_open), ("journal", builtins, denied_open)):
        with monkeypatch.context() as mp:
            mp.setattr(target, "open", fake)
            for args in (["apply", "llm-max"], ["rollback"], ["recover"]):
                rc, out = quiet_main([*args, *sim.common])
                results[f"{what}: {args[0]}"] = rc
                assert rc in (2, 4), f"{what} {args}: exit {rc}\n{out}"
                assert "permission denied" in out.lower() and sim.state in out, out
    assert len(writes(sim.root)) == n and tree_digest(sim.root) == snapshot
    rc, out = quiet_main(["rollback", *sim.common])
    assert rc == 0 and tree_digest(sim.root) == sim.original, out
    record("crash: permission denied on the state directory", runs=len(results),
           exits=sorted(set(results.values())))


def test_permission_denied_on_machine_writes(sim):
    """The k-th machine write of an apply or a rollback fails (EACCES from the kernel, a
    RyzenAdj error): the apply is undone on the spot; the rollback keeps the originals it
    could not write in an open transaction and a later recover finishes the job. Never an
    original lost."""
    runs = lost = 0
    messages = []
    for name in _ops():
        start, cmd = OPERATIONS[name]
        argv = cmd + sim.common
        sim.use(start)
        with WriteGuard(sim.state) as counter:
            rc, out = quiet_main(argv)
        assert rc == 0, out
        total = counter.n
        # Full: every 4th write (and the first two and the last); CI: four of them.
        ks = (sorted({1, 2, *range(3, total + 1, 4), total}) if FULL
              else sorted({1, 2, total // 2, total}))
        for k in ks:
            sim.use(start)
            with WriteGuard(sim.state, fail_at=k) as guard:
                rc, out = quiet_main(argv)
            runs += 1
            ctx = f"{name}: write {k}/{total} ({guard.failed}) fails"
            messages += [f"{ctx}: {v}" for v in guard.violations]
            if rc != 2:
                messages.append(f"{ctx}: exit {rc} (expected 2)\n{out[-600:]}")
            if "Permission denied" not in out:
                messages.append(f"{ctx}: the error is not reported:\n{out[-600:]}")
            if cmd[0] == "apply" and tree_digest(sim.root) != sim.digests[start]:
                messages.append(f"{ctx}: the failed apply was not undone")
            txn = (read_journal(sim.state) or {}).get("txn")
            if cmd[0] == "apply" and txn:
                messages.append(f"{ctx}: a transaction is left open")
            if cmd[0] == "rollback" and not (txn and txn.get("failed")):
                # What a rollback could not put back stays in an open transaction: recover
                # (or the next rollback) tries again.
                messages.append(f"{ctx}: the keys not put back are not kept for recover")
            then = "rollback" if cmd[0] == "apply" else "recover"
            rc, out = quiet_main([then, *sim.common])
            if rc != 0:
                messages.append(f"{ctx}: the later {then} exit {rc}\n{out[-600:]}")
            if tree_digest(sim.root) != sim.original:
                lost += 1
                messages.append(f"{ctx}: ORIGINALS LOST")
            j = read_journal(sim.state)
            if j and (j["txn"] or j["baseline"] or j["active"]):
                messages.append(f"{ctx}: journal not clean after the later {then}")
    record("crash: machine writes fail", runs=runs, lost_originals=lost,
           failures=len(messages))
    assert not messages, "\n".join(messages[:20])


# --- the state file damaged ------------------------------------------------------------------------

@pytest.fixture
def mid_transaction(sim):
    """The machine and journal of an apply of llm-max killed halfway through its writes."""
    run = {"command": "apply", "profile": "llm-max", "start": ()}
    labels, _, _ = sim.clean_run(run)
    at = [k for k, lab in enumerate(labels) if not lab.startswith("journal")][3]
    sim.use(())
    assert os.WIFSIGNALED(run_killed(sim.argv(run), at))
    path = os.path.join(sim.state, "journal.json")
    with open(path, "rb") as f:
        good = f.read()
    assert json.loads(good)["txn"]
    return sim, path, good


def _refuses_cleanly(sim, path: str, content: bytes, ctx: str, says: str = "") -> list[str]:
    """apply / rollback / recover on a damaged journal: exit 2, the file named (and `says`),
    nothing written, the file left for inspection."""
    problems = []
    with open(path, "wb") as f:
        f.write(content)
    before, n = tree_digest(sim.root), len(writes(sim.root))
    for args in (["apply", "llm-max"], ["rollback"], ["recover"]):
        try:
            rc, out = quiet_main([*args, *sim.common])
        except Exception:  # noqa: BLE001 - a traceback is the failure being counted
            problems.append(f"{ctx}: {args[0]} raised\n{traceback.format_exc()[-800:]}")
            continue
        if rc != 2 or path not in out or says not in out:
            problems.append(f"{ctx}: {args[0]} exit {rc}, message {out[-300:]!r}")
    if len(writes(sim.root)) != n or tree_digest(sim.root) != before:
        problems.append(f"{ctx}: the machine was written")
    with open(path, "rb") as f:
        if f.read() != content:
            problems.append(f"{ctx}: the damaged journal was not left for inspection")
    return problems


def test_journal_truncated_or_garbage(mid_transaction):
    sim, path, good = mid_transaction
    rng = random.Random(SEED + 3)
    cuts = sorted({0, 1, len(good) - 2, *(rng.randrange(len(good)) for _ in range(size(10, 60)))})
    problems = []
    cases = 0
    for cut in cuts:
        if cut >= len(good) - 1:
            continue          # only the final newline missing: still the complete journal
        problems += _refuses_cleanly(sim, path, good[:cut], f"truncated to {cut} bytes")
        cases += 1
    for name, junk in (("NUL page", b"\x00" * 4096), ("binary", bytes(range(256)) * 4),
                       ("not UTF-8", b'{"version": 1, "root": "\xff"}'),
                       ("text", b"hello\n"), ("spaces", b"   \n")):
        problems += _refuses_cleanly(sim, path, junk, name)
        cases += 1
    # Put the real journal back: recover gives the original machine.
    with open(path, "wb") as f:
        f.write(good)
    rc, out = quiet_main(["recover", *sim.common])
    assert rc == 0, out
    assert tree_digest(sim.root) == sim.original
    record("crash: journal truncated or garbage", runs=cases, failures=len(problems))
    assert not problems, "\n".join(problems[:20])


# Valid JSON of the wrong shape, as a flipped byte or an edit makes it.
WRONG_SHAPES = {
    "baseline a string": lambda j: {**j, "baseline": "x"},
    "active a number": lambda j: {**j, "active": 5},
    "txn a string": lambda j: {**j, "txn": "x"},
    "baseline entry a number": lambda j: {**j, "baseline": {k: 1 for k in j["baseline"]}},
    "state key renamed": lambda j: {**j, "baseline": {k: {"stbte": v.get("state")}
                                                       for k, v in j["baseline"].items()}},
    "txn.plan a number": lambda j: {**j, "txn": {**j["txn"], "plan": 7}},
    # a flipped byte in a key name: the engine would look the key up and fail
    "txn.before renamed": lambda j: {**j, "txn": {("bdfore" if k == "before" else k): v
                                                  for k, v in j["txn"].items()}},
    "txn.done renamed": lambda j: {**j, "txn": {("done_" if k == "done" else k): v
                                                for k, v in j["txn"].items()}},
}


# Valid JSON of the right shape whose values no restore may write (an edit, a flipped byte).
WRONG_VALUES = {
    "TDP original 900 W": lambda j: _set_state(j, "power.stapm_w", 900.0),
    "governor a list": lambda j: _set_state(j, "cpu.governor", ["performance"]),
    "EPP not a choice": lambda j: _set_state(j, "cpu.epp", {"policy0": "turbo"}),
    "swappiness a string": lambda j: _set_state(j, "sysctl.vm.swappiness", "60"),
    "txn.before TDP NaN": lambda j: {**j, "txn": {**j["txn"], "before": {
        **j["txn"]["before"], "power.fast_w": float("nan")}}},
    "txn.targets policy renamed": lambda j: {**j, "txn": {**j["txn"], "targets": {
        **j["txn"]["targets"], "cpu.governor": {"cpu0": "performance"}}}},
}


def _set_state(j: dict, key: str, state) -> dict:
    assert key in j["baseline"], sorted(j["baseline"])
    return {**j, "baseline": {**j["baseline"], key: {**j["baseline"][key], "state": state}}}


@pytest.mark.parametrize("legacy", [False, True], ids=["checksum", "legacy"])
def test_journal_of_the_wrong_shape_is_refused_cleanly(mid_transaction, legacy):
    """With the checksum, any edit is refused as one; a legacy journal (no checksum, written
    by an earlier halotune) is refused by the shape and value checks."""
    sim, path, good = mid_transaction
    j = json.loads(good)
    assert j.get("checksum", "").startswith("sha256:")
    if legacy:
        del j["checksum"]
    problems = []
    for name, damage in {**WRONG_SHAPES, **WRONG_VALUES}.items():
        content = (json.dumps(damage(j), indent=1) + "\n").encode()
        problems += _refuses_cleanly(sim, path, content, name, "checksum" if not legacy else "")
    assert not problems, "\n".join(problems)


LOST_SILENTLY = "exit 0, machine not the original"


def test_journal_bytes_flipped_never_lose_control(mid_transaction):
    """Random single-byte corruption of a mid-transaction journal, then `recover`. Most flips
    break the JSON (a clean refusal); flips inside a value keep it valid JSON, and the checksum
    refuses them (before it, a changed original was restored as read). Outcomes are counted;
    a traceback fails the test (a renamed policy in a state once raised KeyError in
    cpu_boost), and so does a recover that reports success (exit 0) without giving the
    original machine back: that is an original silently lost."""
    sim, path, good = mid_transaction
    crashed = (capture(sim.root), capture(sim.state))
    rng = random.Random(SEED + 4)
    outcomes: dict[str, int] = {}
    for _ in range(size(20, 200)):
        data = bytearray(good)
        at = rng.randrange(len(data))
        data[at] = rng.choice([c for c in b'{}[]":,0123456789abcdefxyz \x00\xff' if c != data[at]])
        with open(path, "wb") as f:
            f.write(bytes(data))
        try:
            rc, out = quiet_main(["recover", *sim.common])
            kind = f"exit {rc}"
            if rc == 0 and tree_digest(sim.root) != sim.original:
                # Success reported, original not back: a lost original, never acceptable.
                kind = LOST_SILENTLY
        except Exception as e:  # noqa: BLE001
            kind = f"traceback {type(e).__name__}"
        outcomes[kind] = outcomes.get(kind, 0) + 1
        restore(sim.root, crashed[0])
        restore(sim.state, crashed[1])
    rc, out = quiet_main(["recover", *sim.common])
    assert rc == 0, out
    assert tree_digest(sim.root) == sim.original
    record("crash: journal bytes flipped", runs=sum(outcomes.values()), outcomes=outcomes,
           tracebacks=sum(v for k, v in outcomes.items() if k.startswith("traceback")))
    assert not [k for k in outcomes if k.startswith("traceback") or k == LOST_SILENTLY], outcomes


def test_journal_deleted_mid_transaction(mid_transaction):
    """Deleting the journal deletes the only record of the originals: halotune cannot restore
    what it no longer knows, but it must not crash, and it starts afresh from the machine as
    it is (the next rollback returns to the state the deletion left)."""
    sim, path, good = mid_transaction
    os.unlink(path)
    left = tree_digest(sim.root)
    rc, out = quiet_main(["recover", *sim.common])
    assert rc == 0 and "nothing to recover" in out, out
    rc, out = quiet_main(["apply", "quiet", *sim.common])
    assert rc == 0, out
    rc, out = quiet_main(["rollback", *sim.common])
    assert rc == 0, out
    assert tree_digest(sim.root) == left
    record("crash: journal deleted", runs=1, note="originals of the interrupted apply are "
           "gone with the file (expected); the machine returns to the state it was left in")


def test_state_directory_replaced_or_removed(sim):
    """The state directory deleted, replaced by a file, or its lock replaced by a directory:
    clean refusals or a fresh start, never a traceback."""
    import shutil

    results = {}
    rc, out = quiet_main(["apply", "llm-efficient", *sim.common])
    assert rc == 0
    shutil.rmtree(sim.state)
    with open(sim.state, "w") as f:
        f.write("not a directory\n")
    for args in (["apply", "llm-max"], ["rollback"], ["recover"]):
        rc, out = quiet_main([*args, *sim.common])
        results[f"file: {args[0]}"] = rc
        assert rc == 2 and sim.state in out, out
    os.unlink(sim.state)
    os.makedirs(os.path.join(sim.state, "lock"))
    rc, out = quiet_main(["apply", "llm-max", *sim.common])
    results["lock is a directory"] = rc
    assert rc == 2 and sim.state in out, out
    os.rmdir(os.path.join(sim.state, "lock"))
    rc, out = quiet_main(["apply", "llm-max", *sim.common])
    results["fresh"] = rc
    assert rc == 0, out
    rc, out = quiet_main(["rollback", *sim.common])
    assert rc == 0, out
    record("crash: state directory replaced", runs=len(results), exits=results)
