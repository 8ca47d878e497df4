"""The simulator's bookkeeping under `<root>/.halotune-sim/`: lock, state.json, writes.log
(write attempts and events such as a reboot), and the in-place file writer every other module
uses.

Everything that reads-modifies-writes the state (SimKernel, the Animator, the ryzenadj stand-in)
holds the exclusive flock, so several processes can drive one tree.

A change of state is one step, as a store() in the kernel is: `commit` first writes the new
state and its log lines to `pending.json` (one rename: the commit point), then renders the
files, appends the log and renames the state into place. A writer killed anywhere in between
leaves `pending.json`, which the next `locked()` or `repair()` finishes, so what the files show
and what the simulated kernel holds never stay apart.
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
    """Exclusive flock on `.halotune-sim/lock`, after finishing a change a killed writer left
    half done. Not re-entrant: flock locks per open file, so a nested `locked()` in the same
    thread would wait for itself."""
    fd = os.open(os.path.join(root, paths.LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _finish_pending(root)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def repair(root: str) -> None:
    """Finish a change a killed writer left half done (a no-op, one stat, when there is none)."""
    if os.path.exists(os.path.join(root, paths.PENDING)):
        with locked(root):
            pass


def commit(root: str, state: dict, log: list[dict] | tuple = (), *,
           render: bool = True) -> None:
    """Make `state` the machine's state and its files, and append `log` lines, as one step that
    a kill -9 cannot split (caller holds the lock). render=False for a change no file shows
    (the SMU limits RyzenAdj sets: they reach the files through the next physics tick)."""
    _write_json(os.path.join(root, paths.PENDING),
                {"state": state, "log": list(log), "render": render})
    _finish_pending(root)


def _finish_pending(root: str) -> None:
    from halotune.sim import publish   # publish renders through this module

    path = os.path.join(root, paths.PENDING)
    try:
        with open(path, encoding="utf-8") as f:
            pending = json.load(f)
    except FileNotFoundError:
        return
    state = pending["state"]
    if pending.get("render", True):
        publish.publish(root, state)
    lines = [json.dumps(entry, sort_keys=True) for entry in pending["log"]]
    if lines and _log_tail(root, len(lines)) != lines:   # not appended before the kill
        with open(os.path.join(root, paths.WRITES_LOG), "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    save_state(root, state)
    os.unlink(path)


def _log_tail(root: str, n: int) -> list[str]:
    try:
        with open(os.path.join(root, paths.WRITES_LOG), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            return [line.decode() for line in f.read().splitlines()[-n:]]
    except FileNotFoundError:
        return []


def _write_json(path: str, value: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def load_state(root: str) -> dict:
    with open(os.path.join(root, paths.STATE), encoding="utf-8") as f:
        return json.load(f)


def save_state(root: str, state: dict) -> None:
    """Replace state.json alone (state that no file shows: the workload, a pinned load).
    Anything that changes what the files show goes through `commit`."""
    # Simulator-private file: a rename keeps it whole if the writer dies midway.
    _write_json(os.path.join(root, paths.STATE), state)


def write_entry(path: str, value: str, result: str) -> dict:
    """The writes.log line of one write attempt (appended by `commit` or `log_write`)."""
    return {"t": round(time.time(), 6), "path": path, "value": value, "result": result}


def log_write(root: str, path: str, value: str, result: str) -> None:
    """One JSON line for a write attempt that changed nothing (a refused write)."""
    _append(root, write_entry(path, value, result))


def event_entry(event: str, **fields: object) -> dict:
    return {"t": round(time.time(), 6), "event": event, **fields}


def _append(root: str, entry: dict) -> None:
    with open(os.path.join(root, paths.WRITES_LOG), "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


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
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)          # an attribute that was unreadable (put_unreadable) is back
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        if os.pread(fd, len(blob) + 1, 0) == blob:
            return False
        os.pwrite(fd, blob, 0)
        os.ftruncate(fd, len(blob))
        return True
    finally:
        os.close(fd)


def put_unreadable(root: str, rel: str) -> None:
    """Make an attribute that exists but fails every read (an inactive cpufreq policy's
    files: EBUSY in the kernel). A plain file cannot fail a read, so it becomes an empty
    directory: open() works, read() fails with EISDIR."""
    path = os.path.join(root, rel)
    if os.path.isdir(path) and not os.path.islink(path):
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.mkdir(path)


def remove(root: str, rel: str) -> None:
    """Remove a machine file that the current driver state does not create."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(root, rel))
