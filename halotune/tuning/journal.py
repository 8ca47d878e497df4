"""The write-ahead journal: what the machine had before halotune's first change, and what a
transaction has done so far. One JSON file in the state directory, replaced atomically
(temp file, fsync, rename, fsync dir) before the first write of a transaction and after every
completed write, so a crash at any point leaves a journal that says exactly what to undo.

    baseline  key -> {"state", "boot_id", "boot_time"}: originals, captured once and kept
              until a rollback completes (applying B over A keeps A's originals)
    active    the applied profile: name, target states, boot_id, confirm deadline (kept
              across a reboot when the profile holds boot-time keys)
    txn       an apply or rollback in progress: plan order, targets, keys done, pid; a
              rollback that could not put every key back stays open with them in `failed`
    checksum  sha256 of the rest (journal_check.py): an edit or a flipped byte is refused
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from dataclasses import asdict, dataclass, field

from halotune.machine import durable
from halotune.tuning import journal_check

JOURNAL = "journal.json"
LOCK = "lock"
VERSION = 1


class JournalError(Exception):
    """The state directory cannot be used; the message says why and what to do."""


class LockBusy(JournalError):
    """Another halotune holds the one-writer lock (waiting longer may succeed)."""


@dataclass
class Journal:
    root: str
    baseline: dict = field(default_factory=dict)
    active: dict | None = None
    txn: dict | None = None
    version: int = VERSION

    # --- boots ---------------------------------------------------------------------------
    def forget_other_boots(self, boot_id: str | None) -> list[str]:
        """Runtime originals from another boot are never written back: the firmware already
        reset those values at boot, so they are recaptured. Returns the keys dropped."""
        dropped = [k for k, e in self.baseline.items()
                   if not e.get("boot_time") and e.get("boot_id") != boot_id]
        for k in dropped:
            del self.baseline[k]
        self.active = _this_boot_part(self.active, boot_id)
        return dropped


def _this_boot_part(active: dict | None, boot_id: str | None) -> dict | None:
    """What an active profile of another boot still holds: its boot-time keys (the GTT file),
    or nothing. A pending confirmation survives the reboot with them: its revert then puts
    back only the boot-time keys (the runtime ones were reset by the firmware), and goes back
    to the previous profile's boot-time part."""
    if not active or active.get("boot_id") == boot_id:
        return active
    boot_keys = set(active.get("boot_time_keys", []))
    targets = {k: v for k, v in active.get("targets", {}).items() if k in boot_keys}
    if not targets:
        return None
    out = {**active, "targets": targets, "boot_id": boot_id}
    revert = active.get("revert")
    if isinstance(revert, dict):
        states = revert.get("states") if isinstance(revert.get("states"), dict) else {}
        previous = revert.get("previous")
        out["revert"] = {"states": {k: v for k, v in states.items() if k in boot_keys},
                         "previous": _this_boot_part(previous, boot_id)
                         if isinstance(previous, dict) else None}
    return out


class StateDir:
    """The state directory: the journal and the one-writer lock."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._lock_fd: int | None = None

    @property
    def journal_path(self) -> str:
        return os.path.join(self.path, JOURNAL)

    def load(self, root: str) -> Journal:
        try:
            data = durable.read_json(self.journal_path)
        except durable.CorruptStateError as e:
            raise self._damaged(e.reason) from None
        except PermissionError:
            raise JournalError(f"{self.journal_path}: permission denied (needs root)") from None
        except OSError as e:
            raise JournalError(f"cannot read the journal {self.journal_path}: {e.strerror} "
                               "(check --state-dir)") from None
        if data is None:
            return Journal(root=root)
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise JournalError(f"{self.journal_path}: unknown journal version "
                               f"{data.get('version') if isinstance(data, dict) else data!r}")
        # The checksum first: an edit is named as one, whatever it broke.
        problem = (journal_check.checksum_problem(data) or _shape_problem(data)
                   or journal_check.value_problem(data))
        if problem:
            raise self._damaged(problem)
        if data.get("root") != root:
            raise JournalError(f"{self.journal_path} belongs to root {data.get('root')!r}, not "
                               f"{root!r}: use --state-dir to keep each root's state apart")
        return Journal(root=data["root"], baseline=data.get("baseline") or {},
                       active=data.get("active"), txn=data.get("txn"))

    def _damaged(self, why: str) -> JournalError:
        return JournalError(
            f"{self.journal_path} is damaged ({why}); the original values it holds cannot be "
            "trusted, so halotune will not write them back (it will not guess). Check the "
            "machine's settings by hand (halotune status), then move the file aside (e.g. "
            f"mv {self.journal_path} {self.journal_path}.damaged) to start afresh.")

    def save(self, journal: Journal) -> None:
        """Durably replace the journal. Raises OSError (ENOSPC...): callers must not write to
        the machine without a journal."""
        durable.ensure_dir(self.path, mode=0o750)
        durable.write_json(self.journal_path, journal_check.sealed(asdict(journal)))

    # --- one writer at a time ----------------------------------------------------------------
    def lock(self, wait_s: float = 0.0) -> None:
        try:
            durable.ensure_dir(self.path, mode=0o750)
            fd = os.open(os.path.join(self.path, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except PermissionError:
            raise JournalError(f"state directory {self.path}: permission denied (run as root, "
                               "or choose another --state-dir)") from None
        except OSError as e:
            raise JournalError(f"state directory {self.path} cannot be used: {e.strerror} "
                               "(check --state-dir)") from None
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise LockBusy(f"another halotune (pid {holder}) is changing this machine "
                                       f"(lock {self.path}/{LOCK}); try again when it is done, "
                                       "or pass --wait SECONDS") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        # Temp files of a journal write a crash interrupted: no writer is mid-write now.
        durable.remove_temps(self.journal_path)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)   # closing releases the flock
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unlock()


# The journal's shape: section -> {key: accepted types} (a key may be absent).
_ACTIVE_TYPES = {"profile": (str, type(None)), "targets": dict, "boot_time_keys": list,
                 "boot_id": (str, type(None)), "confirm_deadline": (int, float, type(None))}
# Keys every writer of the section sets (a renamed key is damage, not an older format).
_ACTIVE_REQUIRED = ("profile", "targets", "confirm_deadline")
_TXN_REQUIRED = ("op", "plan", "done", "targets")
_TXN_TYPES = {"op": str, "profile": (str, type(None)), "plan": list, "targets": dict,
              "done": list, "before": dict, "journal_only": list, "boot_time_keys": list,
              "boot_id": (str, type(None))}


def _shape_problem(data: dict) -> str | None:
    """Why a journal that parsed as JSON is still not one halotune wrote (a flipped byte, an
    edit), or None. Checked before anything trusts a field, so a damaged journal is a clear
    refusal instead of a crash halfway through a recovery."""
    baseline = data.get("baseline")
    if baseline is not None:
        if not isinstance(baseline, dict):
            return "baseline is not a table"
        for key, entry in baseline.items():
            if not isinstance(entry, dict) or "state" not in entry:
                return f"baseline entry {key!r} has no state"
    for name, types, required in (("active", _ACTIVE_TYPES, _ACTIVE_REQUIRED),
                                  ("txn", _TXN_TYPES, _TXN_REQUIRED)):
        section = data.get(name)
        if section is None:
            continue
        if not isinstance(section, dict):
            return f"{name} is not a table"
        if name == "txn" and section.get("op") == "apply":
            required = (*required, "before")
        for key in required:
            if key not in section:
                return f"{name} has no {key}"
        for key, accepted in types.items():
            if key in section and not isinstance(section[key], accepted):
                return f"{name}.{key} has the wrong type"
    return None
