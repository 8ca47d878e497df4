"""The simulator's bookkeeping under `<root>/.halotune-sim/`: lock, state.json, writes.log
(write attempts and events such as a reboot), and the in-place file writer every other module
uses.

Everything that reads-modifies-writes the state (SimKernel, the Animator, the ryzenadj stand-in)
holds the exclusive flock, so several processes can drive one tree.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator

from halotune.sim import paths


@contextlib.contextmanager
def locked(root: str) -> Iterator[None]:
    """Exclusive flock on `.halotune-sim/lock`. Not re-entrant: flock locks per open file, so a
    nested `locked()` in the same thread would wait for itself."""
    fd = os.open(os.path.join(root, paths.LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def load_state(root: str) -> dict:
    with open(os.path.join(root, paths.STATE), encoding="utf-8") as f:
        return json.load(f)


def save_state(root: str, state: dict) -> None:
    # Simulator-private file: a rename keeps it whole if the writer dies midway.
    path = os.path.join(root, paths.STATE)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def log_write(root: str, path: str, value: str, result: str) -> None:
    """One JSON line per write attempt, in the order the attempts were made."""
    line = json.dumps({"t": round(time.time(), 6), "path": path, "value": value,
                       "result": result}, sort_keys=True)
    with open(os.path.join(root, paths.WRITES_LOG), "a", encoding="utf-8") as f:
        f.write(line + "\n")


def log_event(root: str, event: str, **fields: object) -> None:
    """A line for something that is not a write attempt (a reboot), in the same order."""
    line = json.dumps({"t": round(time.time(), 6), "event": event, **fields}, sort_keys=True)
    with open(os.path.join(root, paths.WRITES_LOG), "a", encoding="utf-8") as f:
        f.write(line + "\n")


def read_log(root: str) -> list[dict]:
    with open(os.path.join(root, paths.WRITES_LOG), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def put(root: str, rel: str, data: str | bytes, mode: int = 0o644) -> bool:
    """Write a machine file in place: pwrite + ftruncate on the existing inode, never a rename,
    so a reader holding the file open sees the new content on its next pread at offset 0.
    Unchanged content is left alone. Returns True when the file changed.

    A reader racing the write can see new bytes followed by a stale tail for an instant;
    sysfs itself is atomic per read, the simulator is not.
    """
    blob = data.encode() if isinstance(data, str) else data
    path = os.path.join(root, rel)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        if os.pread(fd, len(blob) + 1, 0) == blob:
            return False
        os.pwrite(fd, blob, 0)
        os.ftruncate(fd, len(blob))
        return True
    finally:
        os.close(fd)


def remove(root: str, rel: str) -> None:
    """Remove a machine file that the current driver state does not create."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(root, rel))
