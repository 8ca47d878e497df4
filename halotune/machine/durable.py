"""Durable state files: the one way halotune writes a file that must survive a crash.

The apply engine's write-ahead journal is only worth something if, after a power loss at any
instant, it reads back either the old complete content or the new complete content, never an
empty or half-written file. `atomic_write` gets that from the usual POSIX sequence: write a
temporary file in the same directory, fsync it, rename it over the target (rename is atomic
within a file system), then fsync the directory so the rename itself is on disk. A failure
removes the temporary file and re-raises: ENOSPC must reach the engine, which refuses to apply
without a journal.

Fault injection (the crash-consistency tests)
---------------------------------------------
`FAULTS.check(point, path)` is called at each step of `atomic_write`, with `path` the target:

- "before_write": the temporary file exists and is empty;
- "after_write": every byte is written, nothing is fsynced;
- "after_fsync": the temporary file is durable, the target still old (a power loss here);
- "after_rename": the target has the new content, the directory is not yet fsynced;
- "after_dirsync": everything is durable.

The default hook does nothing. A test replaces `durable.FAULTS` (FaultAt does the usual
cases) and the hook may:
- return: the write goes on;
- raise OSError (ENOSPC, EIO, EACCES ...): handled like the same error from the system call
  at that step: the temporary file is removed and the error propagates (after "after_rename"
  the new content is in place but not known to be durable);
- raise SimulatedCrash: the process "dies" there: nothing is cleaned up, the temporary file
  stays, and the exception propagates to the test, which then inspects the files;
- end the process (os._exit) for a crash that no Python code survives.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from collections.abc import Callable

POINTS = ("before_write", "after_write", "after_fsync", "after_rename", "after_dirsync")
_TEMP_MARK = ".tmp-"


class SimulatedCrash(BaseException):
    """Raised by a fault hook to stop a write as a power loss would. A BaseException, so no
    `except Exception` on the way up mistakes it for an error it can handle."""


class CorruptStateError(ValueError):
    """A state file exists but does not hold what halotune wrote (truncated, garbage)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: corrupt state file: {reason}")
        self.path = path
        self.reason = reason


class Faults:
    """The production hook: no faults."""

    def check(self, point: str, path: str) -> None:
        return None


class FaultAt(Faults):
    """Fail at `point` for target paths ending in `suffix`, at most `times` times (None: every
    time). `action` is an exception to raise (OSError, SimulatedCrash) or a callable to call
    (lambda: os._exit(1))."""

    def __init__(self, point: str, action: BaseException | Callable[[], object],
                 suffix: str = "", times: int | None = 1):
        if point not in POINTS:
            raise ValueError(f"unknown fault point {point!r}; choose from {', '.join(POINTS)}")
        self.point, self.action, self.suffix, self.times = point, action, suffix, times
        self.fired = 0

    def check(self, point: str, path: str) -> None:
        if point != self.point or not path.endswith(self.suffix):
            return
        if self.times is not None and self.fired >= self.times:
            return
        self.fired += 1
        if isinstance(self.action, BaseException):
            raise self.action
        self.action()


FAULTS: Faults = Faults()


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so that a crash at any point leaves the old or the new
    content, complete. The file gets exactly `mode` (the umask does not apply). Raises
    OSError with nothing left behind but, possibly, the old file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp, fd = _create_temp(directory, os.path.basename(path))
    try:
        try:
            os.fchmod(fd, mode)
            FAULTS.check("before_write", path)
            _write_all(fd, data)
            FAULTS.check("after_write", path)
            os.fsync(fd)
            FAULTS.check("after_fsync", path)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except SimulatedCrash:
        raise   # a power loss runs no clean-up: the temporary file stays, as on a real crash
    except BaseException:
        _remove_quietly(tmp)
        raise
    FAULTS.check("after_rename", path)
    _fsync_dir(directory)
    FAULTS.check("after_dirsync", path)


def write_json(path: str, obj: object, mode: int = 0o600) -> None:
    """atomic_write of canonical JSON: sorted keys, indent 1, a final newline (NaN refused)."""
    text = json.dumps(obj, sort_keys=True, indent=1, allow_nan=False) + "\n"
    atomic_write(path, text.encode("utf-8"), mode)


def read_json(path: str) -> object | None:
    """The JSON value in `path`; None if the file does not exist. Raises CorruptStateError for
    content that is not JSON (empty, truncated, garbage), OSError for other read failures."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    if not raw.strip():
        raise CorruptStateError(path, "empty file" if not raw else "only white space")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CorruptStateError(path, f"not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise CorruptStateError(path, f"not JSON ({e.msg} at line {e.lineno} column "
                                      f"{e.colno}; {len(raw)} bytes)") from None


def ensure_dir(path: str, mode: int = 0o700) -> None:
    """Create directory `path` and missing parents with exactly `mode`, fsyncing each new
    directory's parent so the new entry survives a crash. An existing directory is kept as
    it is."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent != path:
        ensure_dir(parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if os.path.isdir(path):
            return   # created concurrently
        raise
    os.chmod(path, mode)   # mkdir applies the umask
    _fsync_dir(parent)


def remove(path: str) -> bool:
    """Unlink `path` durably (the directory is fsynced). False if it did not exist."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
    return True


def remove_temps(path: str) -> list[str]:
    """Remove temporary files a crashed atomic_write of `path` left behind; returns them.
    For start-up recovery: they never hold content anyone should read."""
    directory, name = os.path.split(os.path.abspath(path))
    prefix = f".{name}{_TEMP_MARK}"
    removed = []
    for entry in os.scandir(directory):
        if entry.name.startswith(prefix) and entry.is_file(follow_symlinks=False):
            _remove_quietly(entry.path)
            removed.append(entry.path)
    return sorted(removed)


def _create_temp(directory: str, name: str) -> tuple[str, int]:
    # Hidden and unique: globs of the directory skip it, concurrent writers never share one.
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    for _attempt in range(100):
        tmp = os.path.join(directory, f".{name}{_TEMP_MARK}{secrets.token_hex(6)}")
        try:
            return tmp, os.open(tmp, flags, 0o600)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unique temporary name", directory)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:   # not seen on a regular file; fail rather than loop for ever
            raise OSError(errno.EIO, "write() made no progress")
        view = view[n:]


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as e:
        # Some file systems cannot fsync a directory (EINVAL) and need not: as PostgreSQL's
        # fsync_fname does, accept that and nothing else.
        if e.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
