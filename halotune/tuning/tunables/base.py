"""The one contract every tunable follows (tuned's get/set pairs, made durable).

A tunable owns one or more profile keys and knows four things about them: how to read the
current state exactly (so a rollback can write back the very bytes it found), how to check a
target against what the hardware reports, how to write a state, and whether that state takes
effect now or at the next boot. Planning, journaling, ordering, verification and rollback are
the engine's, never a tunable's.

States are JSON values (they go into the journal). A per-policy knob's state is a mapping
policy -> value, so machines whose policies differ are restored exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from halotune.machine.rootfs import RootFS
from halotune.machine.ryzenadj import RyzenAdj
from halotune.tuning import allowlist

State = Any


class Unavailable(Exception):
    """This machine cannot take the tunable (file absent, tool missing or blocked)."""


class InvalidTarget(Exception):
    """A profile value the hardware would refuse; message says what it allows."""

    def __init__(self, key: str, value, message: str):
        super().__init__(message)
        self.key, self.value, self.message = key, value, message


class Blame:
    """How a static check words a rule between two keys of a merged profile. The loader passes
    one that knows which file set each key (the key set nearer the requested profile is
    blamed; `where` says ", set in FILE" when the other key comes from another file); this
    default blames the first key and names no file (profiles built in code)."""

    def pick(self, a: str, b: str) -> str:
        return a

    def where(self, other: str, blamed: str) -> str:
        return ""


class WriteFailed(Exception):
    def __init__(self, key: str, path: str, value: str, reason: str):
        super().__init__(f"{key}: writing {value!r} to {path} failed: {reason}")
        self.key, self.path, self.value, self.reason = key, path, value, reason


@dataclass
class Context:
    """What tunables may use: the rooted filesystem, RyzenAdj, and a per-run cache."""

    fs: RootFS
    ryzenadj: RyzenAdj
    settle_s: float = 0.0                     # wait after writes that make firmware re-send limits
    force: bool = False                       # --force: allow what is refused by default
    tdp_max_w: float | None = None            # the profile's TDP ceiling (power.max_w), per plan
    cache: dict = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)

    def write(self, key: str, rel: str, value: str) -> None:
        """The only way a tunable writes: allowlisted paths, kernel errors made readable."""
        if not allowlist.allowed(rel):
            raise WriteFailed(key, rel, value, "path is not on halotune's write allowlist")
        try:
            self.fs.write_text(rel, value)
        except OSError as e:
            raise WriteFailed(key, rel, value, _errno_text(e)) from None
        self.writes.append((rel, value))
        self.cache.clear()

    def write_config(self, key: str, rel: str, content: str | None) -> None:
        """Replace (or remove, for None) a whole config file under the root, durably."""
        import os

        from halotune.machine import durable

        if not allowlist.allowed(rel):
            raise WriteFailed(key, rel, "(file)", "path is not on halotune's write allowlist")
        try:
            path = self.fs.real_path_inside(rel)     # no symlink out of a --root tree
            if content is None:
                if os.path.exists(path):
                    durable.remove(path)
            else:
                durable.ensure_dir(os.path.dirname(path), mode=0o755)
                durable.atomic_write(path, content.encode(), mode=0o644)
        except OSError as e:
            raise WriteFailed(key, rel, "(file)", _errno_text(e)) from None
        self.writes.append((rel, content if content is not None else "(removed)"))
        self.cache.clear()

    def forget(self) -> None:
        self.cache.clear()


def _errno_text(e: OSError) -> str:
    import errno as _errno

    name = _errno.errorcode.get(e.errno or 0, "")
    return f"{name} ({e.strerror})" if name else str(e)


class Tunable:
    """Subclasses set the class attributes and implement read/plan/write."""

    name: str = ""                 # short id, e.g. "platform_profile"
    keys: tuple[str, ...] = ()     # profile keys owned, e.g. ("power.platform_profile",)
    boot_time: bool = False        # True: takes effect at the next boot (pending_reboot)
    apply_rank: int = 50           # write order on apply (low first)
    rollback_rank: int = 50        # write order on rollback (low first)
    affects: tuple[str, ...] = ()  # other keys a write here may move (journaled with it)
    none_is_state: bool = False    # True: None is a writable state (a file to remove)

    def unavailable(self, ctx: Context) -> str | None:
        """Why this machine cannot take it (None = available)."""
        return None

    def unavailable_note(self, reason: str) -> str | None:
        """What to tell the user when a profile sets this tunable and the machine cannot take
        it (`reason` from unavailable): a way out. None: the skipped row says enough."""
        return None

    # --- static checks: no machine is read -------------------------------------------------
    def check_profile_values(self, values: dict[str, Any], blame: Blame | None = None
                             ) -> list[InvalidTarget]:
        """Rules on a merged profile's values (all keys, meta keys included) that need no
        machine: choices, fixed ranges, rules between keys. The loader calls it before any
        machine is read; the engine for profiles built in code."""
        return []

    def check_restore_state(self, key: str, state: State) -> str | None:
        """Why a journaled state of `key` must not be written back (wrong type, outside what a
        restore may write), or None. A restore writes what was read from the machine, so the
        limits are the kernel interface's, not a profile's."""
        return None

    def read(self, ctx: Context) -> dict[str, State]:
        """Current state of each owned key."""
        raise NotImplementedError

    def plan(self, ctx: Context, targets: dict[str, Any], planned: dict[str, Any],
             current: dict[str, State]) -> dict[str, State]:
        """Target state for each key the profile sets. `planned` holds every key's target
        across tunables (EPP depends on the planned governor). Raise InvalidTarget."""
        raise NotImplementedError

    def write(self, ctx: Context, states: dict[str, State], current: dict[str, State]) -> None:
        """Make the machine hold `states` (only keys that differ are passed)."""
        raise NotImplementedError

    def matches(self, key: str, current: State, target: State) -> bool:
        return current == target

    def settled(self, ctx: Context, key: str, target: State) -> State:
        """The state to verify (and record as the applied target) once `target` has been
        written. Most values read back as written; a symbolic one that the driver turns into
        a concrete value (amd-pstate EPP "default") is resolved here by reading the file."""
        return target

    def show(self, key: str, state: State) -> str:
        """One readable value for tables."""
        return show_state(state)

    def cleanup(self, ctx: Context) -> None:
        """Remove leftovers of a write interrupted by a crash (before a rollback/recover)."""

    def plan_notes(self, ctx: Context, states: dict[str, State]) -> list[str]:
        """What the user must know about a plan, dry run or not (parts of the machine it
        leaves alone). Identical notes of several tunables are shown once."""
        return []

    def notes(self, ctx: Context, states: dict[str, State]) -> list[str]:
        """What the user must know after a write (reboot, initramfs)."""
        return []

    def warnings(self, ctx: Context, states: dict[str, State]) -> list[str]:
        """Why `states`, once written, would still not take effect (another configuration
        overrides them); shown by apply and its dry run."""
        return []

    def row_note(self, ctx: Context, key: str, state: State) -> str:
        """A short note for the verify row of `key` holding `state` (e.g. whether a boot-time
        value is live or waits for a reboot)."""
        return ""


def show_state(state: State) -> str:
    if state is None:
        return "-"
    if isinstance(state, dict):
        values = list(state.values())
        if values and all(v == values[0] for v in values):
            return show_state(values[0])
        counts: dict[str, int] = {}
        for v in values:
            counts[show_state(v)] = counts.get(show_state(v), 0) + 1
        return "mixed (" + ", ".join(f"{k} x{n}" for k, n in counts.items()) + ")"
    if isinstance(state, bool):
        return "on" if state else "off"
    if isinstance(state, float):
        return f"{state:g}"
    return str(state)


def choices_error(key: str, value, choices: list[str], where: str) -> InvalidTarget:
    return InvalidTarget(key, value, f"must be one of {', '.join(choices)} ({where})")


def order_error(values: dict, hi: str, lo: str, blame: Blame) -> InvalidTarget | None:
    """The rule `values[hi] >= values[lo]`, worded against the key `blame` picks."""
    from halotune.tuning.loader import format_value as fv

    if hi in values and lo in values and values[hi] < values[lo]:
        if blame.pick(hi, lo) == hi:
            return InvalidTarget(hi, values[hi], f"must be at least {lo} ({fv(values[lo])}"
                                                 f"{blame.where(lo, hi)})")
        return InvalidTarget(lo, values[lo], f"must be at most {hi} ({fv(values[hi])}"
                                             f"{blame.where(hi, lo)})")
    return None


# --- helpers for check_restore_state --------------------------------------------------------

def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def restore_choice(state, choices, what: str) -> str | None:
    """None or one of `choices`."""
    if state is None or (isinstance(state, str) and state in choices):
        return None
    return f"must be one of {', '.join(choices)} ({what})"


def restore_per_policy(state, check, names=r"policy\d+") -> str | None:
    """A per-policy state: {"policyN": value} (or None: nothing read), each value checked by
    `check(value) -> str | None`."""
    import re

    if state is None:
        return None
    if not isinstance(state, dict):
        return "must be a table of cpufreq policies ({\"policy0\": ...})"
    for name, v in state.items():
        if not isinstance(name, str) or not re.fullmatch(names, name):
            return f"{name!r} is not a cpufreq policy"
        why = check(v)
        if why:
            return f"{name}: {why}"
    return None
