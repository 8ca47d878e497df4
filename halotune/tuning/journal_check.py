"""What makes a journal trustworthy: its checksum, and every value it would write back.

The checksum is sha256 over the canonical JSON of the journal's body (every field but
"checksum": sorted keys, no white space, ASCII), stored as "sha256:<hex>" in the file itself.
It is computed on the data, not the bytes, so it does not depend on how the file is indented.
A journal without one was written by an earlier halotune (legacy): it loads,
checked by type and range only. Every save adds the checksum.

Values: each state the journal holds for a key (originals, targets, a transaction's "before",
a confirm deadline's revert record) is asked to the key's tunable (check_restore_state), so a
restore obeys the limits of the kernel interface it writes, never whatever the file says.
"""

from __future__ import annotations

import hashlib
import json

CHECKSUM = "checksum"
_PREFIX = "sha256:"
_MAX_REVERT_DEPTH = 64          # revert records nest one level per unconfirmed apply


def digest(body: dict) -> str:
    """"sha256:<hex>" of the canonical JSON of `body` (a journal without its checksum).
    Raises ValueError for values JSON cannot hold exactly (NaN, inf)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return _PREFIX + hashlib.sha256(text.encode("ascii")).hexdigest()


def sealed(data: dict) -> dict:
    """`data` with its checksum, ready to write."""
    body = {k: v for k, v in data.items() if k != CHECKSUM}
    return {**body, CHECKSUM: digest(body)}


def checksum_problem(data: dict) -> str | None:
    """Why the stored checksum does not vouch for the content; None when it does, or when the
    journal has none (legacy: the value checks alone apply)."""
    if CHECKSUM not in data:
        return None
    stored = data[CHECKSUM]
    if not isinstance(stored, str) or not stored.startswith(_PREFIX):
        return "its checksum field is not a sha256 checksum"
    try:
        want = digest({k: v for k, v in data.items() if k != CHECKSUM})
    except ValueError:
        want = None                   # NaN or inf: halotune never writes them
    if stored != want:
        return ("its checksum does not match its content: it was edited, or bytes were "
                "damaged on disk, after halotune wrote it")
    return None


def value_problem(data: dict) -> str | None:
    """The first journaled state of a known key that its tunable would not write back, or a
    field of the wrong type the engine would use; None when every value can be used."""
    from halotune.tuning.loader import format_value
    from halotune.tuning.tunables import by_key

    owners = by_key()

    def check_states(where: str, states) -> str | None:
        if states is None:
            return None
        if not isinstance(states, dict):
            return f"{where} is not a table"
        for key, state in states.items():
            t = owners.get(key)
            why = t.check_restore_state(key, state) if t is not None else None
            if why:
                return f"{where}: {key} = {format_value(state)}: {why}"
        return None

    for key, entry in (data.get("baseline") or {}).items():
        why = check_states("baseline", {key: entry.get("state")})
        if why:
            return why
        for field, types in (("boot_id", (str, type(None))), ("boot_time", (bool, type(None))),
                             ("side_effect", (bool, type(None)))):
            if not isinstance(entry.get(field), types):
                return f"baseline: {key}.{field} has the wrong type"
    txn = data.get("txn")
    if txn:
        for field in ("targets", "before"):
            why = check_states(f"txn.{field}", txn.get(field))
            if why:
                return why
        for field in ("plan", "done", "journal_only", "boot_time_keys"):
            if not all(isinstance(k, str) for k in txn.get(field) or ()):
                return f"txn.{field} holds something other than key names"
    active, where = data.get("active"), "active"
    for _ in range(_MAX_REVERT_DEPTH):
        if active is None:
            return None
        if not isinstance(active, dict):
            return f"{where} is not a table"
        why = check_states(f"{where}.targets", active.get("targets"))
        if why:
            return why
        if not all(isinstance(k, str) for k in active.get("boot_time_keys") or ()):
            return f"{where}.boot_time_keys holds something other than key names"
        revert = active.get("revert")
        if revert is None:
            return None
        if not isinstance(revert, dict):
            return f"{where}.revert is not a table"
        why = check_states(f"{where}.revert.states", revert.get("states"))
        if why:
            return why
        active, where = revert.get("previous"), f"{where}.revert.previous"
    return f"{where}: revert records nested more than {_MAX_REVERT_DEPTH} deep"
