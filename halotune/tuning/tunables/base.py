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

    def show(self, key: str, state: State) -> str:
        """One readable value for tables."""
        return show_state(state)

    def cleanup(self, ctx: Context) -> None:
        """Remove leftovers of a write interrupted by a crash (before a rollback/recover)."""

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
