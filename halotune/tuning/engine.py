"""The apply engine: plan, journal, write in order, verify, roll back, recover.

One dependency order, used both ways: each tunable has an apply rank and a rollback rank
(platform profile before TDP limits both ways, because amd-pmf re-sends its limits on a
profile change; governor before EPP both ways, because EPP choices depend on the governor;
level `manual` before OD edits on apply, OD reset before the level on rollback).

Every write is preceded by a durable journal entry holding the original value, and followed
by a journal update saying it completed, so a crash at any point is undone by `recover`.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field

from halotune.machine.programs import Programs
from halotune.machine.rootfs import RootFS
from halotune.machine.ryzenadj import RyzenAdj
from halotune.tuning.journal import Journal, JournalError, StateDir
# Profile values in messages read as the loader writes them (one formatter for both).
from halotune.tuning.loader import format_value as fmt_value
from halotune.tuning.tunables import all_tunables
from halotune.tuning.tunables.base import (Context, InvalidTarget, Tunable, WriteFailed,
                                           show_state)

BOOT_ID = "proc/sys/kernel/random/boot_id"


class EngineError(Exception):
    """A refusal. `problems` lists every reason; `changed` says whether anything had been
    written before it (then the journal holds what to undo)."""

    def __init__(self, problems: list[str] | str, code: int = 2, changed: bool = False):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.code = code
        self.changed = changed
        super().__init__("; ".join(self.problems))


@dataclass
class Row:
    key: str
    before: str
    target: str
    after: str | None = None
    status: str = ""               # change, same, ok, drift, skipped, restored
    boot_time: bool = False
    note: str = ""


@dataclass
class Outcome:
    action: str
    profile: str | None = None
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ok: bool = True
    summary: str = ""

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


@dataclass
class _Item:
    key: str
    tunable: Tunable
    current: object
    target: object
    changed: bool
    from_profile: bool = True      # False: a key an earlier profile changed, going back
    journal_only: bool = False     # a key another write may move: journaled, never written


class Engine:
    def __init__(self, fs: RootFS, state_dir: str, ryzenadj: RyzenAdj | None = None,
                 settle_s: float | None = None, force: bool = False, wait_s: float = 0.0):
        self.fs = fs
        self.ctx = Context(fs, ryzenadj or RyzenAdj(Programs(fs)),
                           settle_s=(0.5 if fs.is_host else 0.0) if settle_s is None else settle_s,
                           force=force)
        self.state = StateDir(state_dir)
        self.wait_s = wait_s
        self.tunables = all_tunables()
        self.owner = {k: t for t in self.tunables for k in t.keys}

    # --- helpers -----------------------------------------------------------------------------
    def boot_id(self) -> str | None:
        return self.fs.read_text(BOOT_ID)

    def _read(self, t: Tunable) -> dict:
        return t.read(self.ctx)

    def _save(self, journal: Journal) -> None:
        try:
            self.state.save(journal)
        except OSError as e:
            raise EngineError(f"cannot write the journal {self.state.journal_path} "
                              f"({e.strerror}): halotune does not change the machine without "
                              "a durable record of the original values", code=2) from None

    def _ordered(self, keys, rank: str) -> list[Tunable]:
        """Tunables owning `keys`, by rank; equal ranks by name, so the write order never
        depends on set iteration (PYTHONHASHSEED)."""
        ts = {id(self.owner[k]): self.owner[k] for k in keys if k in self.owner}
        return sorted(ts.values(), key=lambda t: (getattr(t, rank), t.name))

    def _row(self, item: _Item, status: str) -> Row:
        t = item.tunable
        return Row(item.key, t.show(item.key, item.current), t.show(item.key, item.target),
                   status=status, boot_time=t.boot_time,
                   note="" if item.from_profile else "(back to the original value)")

    # --- planning ----------------------------------------------------------------------------
    def plan(self, profile, journal: Journal | None = None) -> tuple[list[_Item], list[Row], list[str]]:
        """Items for every key the profile sets (plus keys an earlier profile changed that
        this one leaves alone: back to their originals), skipped rows, and notes."""
        self.ctx.forget()
        targets = dict(profile.values)
        baseline = journal.baseline if journal else {}
        # Keys an earlier profile set and this one leaves alone go back to their originals;
        # side effects (journaled only so a rollback can undo them) are not re-asserted.
        restore = {k: e["state"] for k, e in baseline.items()
                   if k not in targets and k in self.owner and not e.get("side_effect")}
        skipped: list[Row] = []
        notes: list[str] = []
        problems: list[str] = []
        # The profile's power.max_w is its TDP ceiling (limits.py): the TDP tunable reads it here.
        max_w = getattr(profile, "max_w", None)
        planned: dict = {} if max_w is None else {"power.max_w": max_w}
        items: list[_Item] = []
        for key in targets:
            if key not in self.owner:
                problems.append(f"{profile.sources.get(key, profile.display_path)}: {key}: "
                                "no tunable handles this key")
        for t in self._ordered(set(targets) | set(restore), "apply_rank"):
            mine = {k: v for k, v in targets.items() if k in t.keys}
            reason = t.unavailable(self.ctx)
            if reason:
                if mine and t.name == "gpu_power_profile" and profile.power_profile_required:
                    problems.append(f"{profile.sources.get('gpu.power_profile')}: gpu.power_profile"
                                    f" = {fmt_value(mine['gpu.power_profile'])}: {reason} "
                                    "(marked required)")
                for k in mine:
                    skipped.append(Row(k, "-", fmt_value(mine[k]).strip('"'), status="skipped",
                                       boot_time=t.boot_time, note=reason))
                if t.name == "tdp" and mine:
                    notes.append("TDP limits unavailable (" + reason + "); the platform profile "
                                 "alone sets the power level. RyzenAdj >= 0.17 needs root and the "
                                 "ryzen_smu module, or /dev/mem (blocked under Secure Boot "
                                 "lockdown; iomem=relaxed otherwise)")
                continue
            current = self._read(t)
            tstates = {}
            if mine:
                # Cross-key checks (fast >= slow >= stapm, sclk min <= max) see the keys this
                # profile leaves alone as they will be: back at their originals.
                will_be = {**current, **{k: restore[k] for k in t.keys if k in restore}}
                try:
                    tstates = t.plan(self.ctx, mine, planned, will_be)
                except InvalidTarget as e:
                    src = profile.sources.get(e.key, profile.display_path)
                    problems.append(f"{src}: {e.key} = {fmt_value(e.value)}: {e.message}")
                    continue
            for k in t.keys:
                if k in restore and k not in tstates:
                    tstates[k] = restore[k]
            planned.update(tstates)
            for k, target in tstates.items():
                items.append(_Item(k, t, current.get(k), target,
                                   not t.matches(k, current.get(k), target), k in mine))
        if problems:
            raise EngineError(problems)
        return items + self._side_effects(items), skipped, notes

    def _side_effects(self, items: list[_Item]) -> list[_Item]:
        """Keys that the planned writes may move without being written themselves (a platform
        profile re-sends the TDP limits; the performance governor forces EPP): their originals
        are journaled too, so a rollback or an undone apply restores them."""
        planned = {i.key for i in items}
        extra: list[_Item] = []
        for t in {id(i.tunable): i.tunable for i in items}.values():
            for key in getattr(t, "affects", ()):
                u = self.owner.get(key)
                if key in planned or u is None or u.unavailable(self.ctx):
                    continue
                now = self._read(u).get(key)
                extra.append(_Item(key, u, now, now, False, False, journal_only=True))
                planned.add(key)
        return extra

    # --- apply -------------------------------------------------------------------------------
    def check_hardware(self, profile) -> None:
        """Refuse a profile whose `requires` this machine does not meet (exit 3 without GPU)."""
        from halotune.machine.discovery import find_amd_gpus
        from halotune.tuning.loader import check_requirements

        if not getattr(profile, "requires", None):
            return
        gpus = find_amd_gpus(self.fs)
        refusal = check_requirements(profile, [f"{g.gfx_target or '?'} ({g.name})" for g in gpus],
                                     [g.device_id_hex for g in gpus])
        if refusal:
            raise EngineError(refusal, code=3 if not gpus else 2)

    def apply(self, profile, dry_run: bool = False, confirm_s: float | None = None) -> Outcome:
        self.check_hardware(profile)
        if profile.restore_baseline:
            out = self.rollback(dry_run=dry_run)
            out.profile = profile.name
            return out
        if dry_run:
            journal = self._load_readonly()
            items, skipped, notes = self.plan(profile, journal)
            out = Outcome("apply (dry run)", profile.name, notes=notes)
            out.rows = [self._row(i, "change" if i.changed else "same") for i in items] + skipped
            if journal.txn:
                out.warnings.append("an unfinished transaction is in the journal: the real apply "
                                    "will first restore the original values")
            out.summary = f"{sum(i.changed for i in items)} change(s) planned; nothing written"
            return out
        with self.state:
            self.state.lock(self.wait_s)
            journal, recovered = self._open_for_write()
            items, skipped, notes = self.plan(profile, journal)
            out = Outcome("apply", profile.name, notes=notes)
            if recovered:
                out.warnings.append(recovered)
            self._run_apply(journal, profile.name, items, out)
            out.rows += skipped
            if journal.active and journal.active.get("profile") == profile.name and confirm_s:
                # Armed whenever the profile stays applied, drifted values or not.
                journal.active["confirm_deadline"] = time.time() + confirm_s
                self._save(journal)
                out.notes.append(f"run `halotune confirm` within {confirm_s:g} s, or the previous "
                                 "values come back")
            return out

    def _open_for_write(self) -> tuple[Journal, str]:
        """Load the journal for a mutating command: forget other boots' runtime originals and
        undo an unfinished transaction left by a crash."""
        journal = self.state.load(self.fs.root)
        journal.forget_other_boots(self.boot_id())
        note = ""
        if journal.txn is not None:
            txn = journal.txn
            _rows, kept = self._restore(journal, journal.baseline)
            journal.baseline, journal.active, journal.txn = kept, None, None
            self._save(journal)
            if kept:
                raise EngineError("an unfinished transaction was found and these original values "
                                  "could not be restored: " + ", ".join(kept) +
                                  "; fix the cause and run `halotune recover`")
            note = (f"an unfinished {txn.get('op')} of {txn.get('profile')!r} (pid {txn.get('pid')}) "
                    "was found and the original values were restored")
        return journal, note

    def _load_readonly(self) -> Journal:
        journal = self.state.load(self.fs.root)
        journal.forget_other_boots(self.boot_id())
        return journal

    def _run_apply(self, journal: Journal, name: str, items: list[_Item], out: Outcome) -> None:
        boot_id = self.boot_id()
        # Originals of every key the transaction may touch, before the first write. Keys that
        # match already are included: a platform-profile write can move the TDP limits.
        for i in items:
            entry = journal.baseline.setdefault(i.key, {"state": i.current, "boot_id": boot_id,
                                                        "boot_time": i.tunable.boot_time,
                                                        "side_effect": i.journal_only})
            if not i.journal_only:
                entry["side_effect"] = False     # now set by a profile: restored when left alone
        previous_active = journal.active
        journal.txn = {"id": uuid.uuid4().hex, "op": "apply", "profile": name, "pid": os.getpid(),
                       "boot_id": boot_id, "started": time.time(),
                       "plan": [i.key for i in items],
                       "before": {i.key: i.current for i in items},
                       "targets": {i.key: i.target for i in items},
                       "boot_time_keys": [i.key for i in items if i.tunable.boot_time],
                       "journal_only": [i.key for i in items if i.journal_only],
                       "done": []}
        self._save(journal)          # write-ahead: nothing is touched before this is durable
        try:
            written = self._write_items(journal, items, "apply_rank")
        except EngineError as e:
            # The journal on disk still holds every original and the unfinished transaction.
            e.changed = True
            e.problems.append("some values were already written; the journal on disk still "
                              "holds the originals: run `halotune recover` once the state "
                              "directory is writable again")
            raise
        except WriteFailed as e:
            out.ok = False
            out.warnings.append(str(e))
            self._revert_txn(journal)
            out.summary = f"apply of {name} failed and was undone: {e.reason}"
            out.rows = [self._row(i, "undone") for i in items if i.changed]
            return
        out.rows = self._verify_items(items)
        for i in items:
            if i.key in written:
                out.notes += i.tunable.notes(self.ctx, {i.key: i.target})
        journal.active = {"profile": name, "boot_id": boot_id, "applied_at": time.time(),
                          "targets": {i.key: i.target for i in items if i.from_profile},
                          "boot_time_keys": [i.key for i in items if i.tunable.boot_time],
                          "confirm_deadline": None,
                          "revert": self._revert_record(journal.txn["before"], previous_active, name)}
        journal.txn = None
        self._save(journal)
        drift = [r for r in out.rows if r.status == "drift"]
        out.ok = not drift
        out.summary = (f"{name} applied: {len(written)} value(s) changed, all verified"
                       if out.ok else f"{name} applied, but {len(drift)} value(s) do not hold: "
                       + ", ".join(r.key for r in drift))

    @staticmethod
    def _revert_record(before: dict, previous: dict | None, name: str) -> dict:
        """What a confirm timeout puts back. Re-applying the active profile (drift, resume)
        keeps its existing record instead of nesting one more level each time."""
        if previous and previous.get("profile") == name and previous.get("revert"):
            return previous["revert"]
        return {"states": before, "previous": previous}

    def _write_items(self, journal: Journal, items: list[_Item], rank: str) -> list[str]:
        """Write, tunable by tunable in `rank` order, the items whose live value differs from
        the target *now* (an earlier write may have moved it), journaling each completion."""
        written: list[str] = []
        for t in self._ordered([i.key for i in items], rank):
            current = self._read(t)
            group = [i for i in items if i.tunable is t and not i.journal_only
                     and (i.target is not None or t.none_is_state)
                     and not t.matches(i.key, current.get(i.key), i.target)]
            if not group:
                continue
            t.write(self.ctx, {i.key: i.target for i in group}, current)
            journal.txn["done"] += [i.key for i in group]
            written += [i.key for i in group]
            self._save(journal)
        return written

    def _revert_txn(self, journal: Journal) -> None:
        """Undo the completed writes of a failed transaction (back to its 'before' states)."""
        txn = journal.txn
        # Every key the transaction may have moved, side effects included (EPP forced by
        # the governor), not only the ones it wrote itself.
        before = {k: v for k, v in txn["before"].items() if k in self.owner}
        self._restore(journal, {k: {"state": v} for k, v in before.items()})
        journal.txn = None
        self._save(journal)

    # --- verify ------------------------------------------------------------------------------
    def _verify_items(self, items: list[_Item]) -> list[Row]:
        self.ctx.forget()
        rows = []
        reads: dict[int, dict] = {}
        for i in items:
            if i.journal_only:
                continue
            t = i.tunable
            if id(t) not in reads:
                reads[id(t)] = self._read(t)
            now = reads[id(t)].get(i.key)
            row = self._row(i, "ok" if t.matches(i.key, now, i.target) else "drift")
            row.after = t.show(i.key, now)
            rows.append(row)
        return rows

    def verify(self) -> Outcome:
        """Compare the live machine with the active profile (read-only)."""
        journal = self._load_readonly()
        out = Outcome("verify")
        if journal.txn:
            out.warnings.append(f"an unfinished {journal.txn.get('op')} is in the journal: run "
                                "`halotune recover`")
        if not journal.active:
            out.summary = "no profile applied by halotune on this boot"
            return out
        out.profile = journal.active["profile"]
        items = []
        targets = journal.active.get("targets", {})
        for t in self._ordered([k for k in targets if k in self.owner], "apply_rank"):
            if t.unavailable(self.ctx):
                continue
            items += [_Item(k, t, None, targets[k], False) for k in t.keys if k in targets]
        out.rows = self._verify_items(items)
        for r in out.rows:
            r.before = ""
        drift = [r for r in out.rows if r.status == "drift"]
        out.ok = not drift
        out.summary = (f"{out.profile}: all {len(out.rows)} value(s) hold" if out.ok else
                       f"{out.profile}: {len(drift)} value(s) drifted (another tool or the "
                       "firmware changed them): " + ", ".join(r.key for r in drift))
        if journal.active.get("confirm_deadline"):
            left = journal.active["confirm_deadline"] - time.time()
            out.notes.append(f"waiting for `halotune confirm` ({max(0, left):.0f} s left)")
        return out

    # --- rollback, recover, confirm ------------------------------------------------------------
    def rollback(self, dry_run: bool = False) -> Outcome:
        if dry_run:
            journal = self._load_readonly()
            out = Outcome("rollback (dry run)")
            for key, e in journal.baseline.items():
                t = self.owner.get(key)
                if t is None or t.unavailable(self.ctx):
                    continue
                cur = self._read(t).get(key)
                out.rows.append(Row(key, t.show(key, cur), t.show(key, e["state"]),
                                    status="same" if t.matches(key, cur, e["state"]) else "change",
                                    boot_time=t.boot_time))
            out.summary = (f"{sum(r.status == 'change' for r in out.rows)} value(s) would be "
                           "restored; nothing written" if journal.baseline else "nothing to roll back")
            return out
        with self.state:
            self.state.lock(self.wait_s)
            journal = self.state.load(self.fs.root)
            dropped = journal.forget_other_boots(self.boot_id())
            out = Outcome("rollback")
            if dropped:
                out.notes.append("runtime values from a previous boot were not written back (the "
                                 "firmware reset them at boot): " + ", ".join(dropped))
            if not journal.baseline:
                journal.active, journal.txn = None, None
                self._save(journal)
                out.summary = "nothing to roll back: the machine has its original values"
                return out
            out.rows, kept = self._restore(journal, journal.baseline, out)
            journal.baseline = kept
            journal.active = None if not kept else journal.active
            journal.txn = None
            self._save(journal)
            drift = [r for r in out.rows if r.status == "drift"]
            out.ok = not drift and not kept
            for r in out.rows:
                if r.boot_time and r.status == "restored":
                    out.notes.append(f"{r.key}: the original boot-time setting is back; it takes "
                                     "effect at the next boot")
            out.summary = ("original values restored and verified" if out.ok else
                           "some original values could not be restored: " +
                           ", ".join(sorted(set(kept) | {r.key for r in drift})))
            return out

    def _restore(self, journal: Journal, entries: dict, out: Outcome | None = None):
        """Write back `entries` ({key: {"state": ...}}) in rollback order and verify. Returns
        (rows, entries that could not be restored); write errors go to `out.warnings`."""
        self.ctx.forget()
        for t in self.tunables:      # leftovers of a crash inside a file write (temp files)
            t.cleanup(self.ctx)
        keys = [k for k in entries if k in self.owner]
        kept = {k: e for k, e in entries.items() if k not in self.owner}
        items: list[_Item] = []
        for t in self._ordered(keys, "rollback_rank"):
            if t.unavailable(self.ctx):
                kept.update({k: entries[k] for k in keys if k in t.keys})
                continue
            cur = self._read(t)
            for k in t.keys:
                if k in entries:
                    target = entries[k]["state"]
                    items.append(_Item(k, t, cur.get(k), target, not t.matches(k, cur.get(k), target)))
        if journal.txn is None or journal.txn.get("op") != "rollback":
            prior = journal.txn
            journal.txn = {"id": uuid.uuid4().hex, "op": "rollback", "pid": os.getpid(),
                           "boot_id": self.boot_id(), "started": time.time(),
                           "profile": (journal.active or {}).get("profile"),
                           "plan": [i.key for i in items], "done": [],
                           "targets": {i.key: i.target for i in items}, "interrupted": prior}
            self._save(journal)
        failed = []
        for t in self._ordered([i.key for i in items], "rollback_rank"):
            try:
                self._write_items(journal, [i for i in items if i.tunable is t], "rollback_rank")
            except WriteFailed as e:
                failed.append(str(e))
                kept.update({k: entries[k] for k in t.keys if k in entries})
        rows = self._verify_items(items)
        for r, i in zip(rows, items):
            r.status = ("same" if not i.changed else "restored") if r.status == "ok" else "drift"
            if r.status == "drift":
                kept[i.key] = entries[i.key]
        if out is not None:
            out.warnings.extend(failed)
        return rows, kept

    def recover(self, resume: bool = False) -> Outcome:
        with self.state:
            self.state.lock(self.wait_s)
            journal = self.state.load(self.fs.root)
            journal.forget_other_boots(self.boot_id())
            out = Outcome("recover")
            txn = journal.txn
            if txn is None:
                out.summary = "nothing to recover: no unfinished transaction"
                return out
            out.profile = txn.get("profile")
            if resume and txn.get("op") == "apply":
                items = []
                skip = set(txn.get("journal_only", []))
                for key, target in txn.get("targets", {}).items():
                    t = self.owner.get(key)
                    if t is None or key in skip:
                        continue
                    cur = self._read(t).get(key)
                    items.append(_Item(key, t, cur, target, not t.matches(key, cur, target)))
                    # After a reboot the runtime originals were dropped: what is there now is
                    # the original (the firmware's value) and must be journaled before writing.
                    journal.baseline.setdefault(key, {"state": cur, "boot_id": self.boot_id(),
                                                      "boot_time": t.boot_time})
                journal.txn["done"] = []
                self._save(journal)
                self._write_items(journal, [i for i in items if i.changed], "apply_rank")
                out.rows = self._verify_items(items)
                journal.active = {"profile": txn.get("profile"), "boot_id": self.boot_id(),
                                  "applied_at": time.time(), "targets": txn.get("targets", {}),
                                  "boot_time_keys": txn.get("boot_time_keys", []),
                                  "confirm_deadline": None,
                                  "revert": {"states": txn.get("before", {}), "previous": None}}
                journal.txn = None
                self._save(journal)
                out.ok = all(r.status == "ok" for r in out.rows)
                out.summary = f"the interrupted apply of {out.profile} was completed"
                return out
            out.rows, kept = self._restore(journal, journal.baseline, out)
            journal.baseline, journal.active, journal.txn = kept, None, None
            self._save(journal)
            out.ok = not kept
            out.summary = (f"the interrupted {txn.get('op')} of {out.profile} was undone: original "
                           "values restored" if out.ok else "some original values could not be "
                           "restored: " + ", ".join(kept))
            return out

    def confirm(self) -> Outcome:
        with self.state:
            self.state.lock(self.wait_s)
            journal = self.state.load(self.fs.root)
            out = Outcome("confirm")
            if not journal.active or not journal.active.get("confirm_deadline"):
                out.summary = "nothing waits for confirmation"
                return out
            journal.active["confirm_deadline"] = None
            self._save(journal)
            out.profile = journal.active["profile"]
            out.summary = f"{out.profile} confirmed: it stays applied"
            return out

    def revert_unconfirmed(self, deadline: float) -> Outcome:
        """Called when a confirm deadline passes: put back what the unconfirmed apply changed."""
        with self.state:
            self.state.lock(max(self.wait_s, 30.0))
            journal = self.state.load(self.fs.root)
            out = Outcome("revert")
            active = journal.active
            if not active or active.get("confirm_deadline") != deadline:
                out.summary = "confirmed or replaced in time: nothing to revert"
                return out
            revert = active.get("revert") or {}
            states = revert.get("states", {})
            out.profile = active["profile"]
            out.rows, kept = self._restore(journal, {k: {"state": v} for k, v in states.items()})
            previous = revert.get("previous")
            for k in states:
                if k not in kept and (not previous or k not in previous.get("targets", {})):
                    # back at the value halotune found: no longer a change to roll back
                    if k in journal.baseline and self.owner[k].matches(
                            k, states[k], journal.baseline[k]["state"]):
                        del journal.baseline[k]
            journal.active, journal.txn = previous, None
            self._save(journal)
            out.ok = not kept
            out.summary = f"{out.profile} was not confirmed in time and was reverted"
            return out


def default_state_dir(root: str) -> str:
    """/var/lib/halotune for the real machine; beside a fake tree otherwise, so tests and the
    demo never share state with the host."""
    env = os.environ.get("HALOTUNE_STATE_DIR")
    if env:
        return env
    if os.path.abspath(root) == "/":
        return "/var/lib/halotune"
    return os.path.join(os.path.abspath(root), ".halotune-state")


__all__ = ["Engine", "EngineError", "JournalError", "Outcome", "Row", "default_state_dir",
           "fmt_value", "show_state"]
