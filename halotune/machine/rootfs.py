"""Rooted, failure-tolerant access to sysfs/procfs-style files.

Every read or write halotune makes of the machine goes through a RootFS. The root is "/" on a
real machine and a directory tree (the reference snapshot, a recorded bug report, or the
simulated Strix Halo) everywhere else.

Reads never raise for the ordinary failures of kernel files: a missing file (optional
attributes, other kernels), EACCES (0600 files such as amdgpu's gttsize), EOPNOTSUPP/ENODATA
(DPM disabled) or EPERM (a runtime-suspended dGPU). They return None and remember why in
`last_errors`, so a caller can explain an absent value.
"""

from __future__ import annotations

import errno
import glob as _glob
import logging
import os
from collections.abc import Callable

from halotune.machine.parse import parse_int

log = logging.getLogger(__name__)

# The simulated machine's marker directory. Writes under a tree that holds it are answered by
# the simulated kernel that `wire_simulator` installed (the CLI and the tests wire halotune.sim;
# this layer never imports it).
SIM_MARKER = ".halotune-sim"

# (write(root, rel, value), repair(root)) of the simulated kernel, or None.
_simulator: tuple[Callable[[str, str, str], None], Callable[[str], None]] | None = None


def wire_simulator(write: Callable[[str, str, str], None],
                   repair: Callable[[str], None]) -> None:
    """Install the simulated kernel: `write` answers a write under a simulated root like the
    driver would (raising OSError with its errno); `repair` brings a simulated root whose
    writer was killed mid-write back to one state, before anything reads it."""
    global _simulator
    _simulator = (write, repair)

# sysfs text attributes fit in one page; binary ones (gpu_metrics) too on every amdgpu kernel.
PAGE = 4096


def clean_text(raw: bytes) -> str:
    """Decode a sysfs text value: drop NUL padding (captures pad to 4096) and outer whitespace."""
    if b"\x00" in raw:
        raw = raw.replace(b"\x00", b"")
    return raw.decode("utf-8", "replace").strip()


class HotFile:
    """A file read every sample: opened once, re-read with pread at offset 0.

    sysfs and procfs regenerate the content when a read starts at offset 0, so pread on a
    kept descriptor gives fresh values without the open/close per sample.
    """

    __slots__ = ("path", "_fd", "size", "error")

    def __init__(self, path: str, size: int = PAGE):
        self.path = path
        self.size = size
        self._fd: int | None = None
        self.error: OSError | None = None   # why the last read returned None

    def read_bytes(self) -> bytes | None:
        for _attempt in (0, 1):
            if self._fd is None:
                try:
                    self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    self.error = e
                    return None
            try:
                return os.pread(self._fd, self.size, 0)
            except OSError as e:
                # The device went away (ENODEV after unbind) or the file was replaced: reopen once.
                self.error = e
                self.close()
        return None

    def read_text(self) -> str | None:
        raw = self.read_bytes()
        return None if raw is None else clean_text(raw)

    def read_int(self) -> int | None:
        return parse_int(self.read_text())

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def __del__(self):  # pragma: no cover - best effort
        self.close()


class RootFS:
    """Typed, rooted reads (and the one write path) for kernel files."""

    def __init__(self, root: str = "/"):
        self.root = os.path.abspath(root or "/")
        self.last_errors: dict[str, str] = {}
        self._hot: dict[str, HotFile] = {}
        if _simulator is not None and not self.is_host and self.is_simulated:
            _simulator[1](self.root)

    def __repr__(self) -> str:
        return f"RootFS({self.root!r})"

    @property
    def is_host(self) -> bool:
        return self.root == "/"

    @property
    def is_simulated(self) -> bool:
        return os.path.isdir(os.path.join(self.root, SIM_MARKER))

    def path(self, rel: str) -> str:
        """Absolute path of a root-relative path ("sys/class/drm" -> ROOT/sys/class/drm)."""
        return os.path.join(self.root, rel.lstrip("/"))

    def rel(self, abspath: str) -> str:
        """Root-relative form of an absolute path below the root."""
        return os.path.relpath(abspath, self.root)

    # --- reads -------------------------------------------------------------------------
    def read_bytes(self, rel: str, size: int = PAGE) -> bytes | None:
        p = self.path(rel)
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            self._note(rel, e)
            return None
        try:
            return os.read(fd, size)
        except OSError as e:
            self._note(rel, e)
            return None
        finally:
            os.close(fd)

    def read_text(self, rel: str) -> str | None:
        raw = self.read_bytes(rel)
        return None if raw is None else clean_text(raw)

    def read_int(self, rel: str) -> int | None:
        return parse_int(self.read_text(rel))

    def read_list(self, rel: str) -> list[str] | None:
        """Whitespace-separated words (choices files end in a space before the newline)."""
        text = self.read_text(rel)
        return None if text is None else text.split()

    def hot(self, rel: str, size: int = PAGE) -> HotFile:
        return HotFile(self.path(rel), size)

    # Per-sample reads of small attributes: one kept-open descriptor per file, shared by
    # every reader of this RootFS (a sample re-reads ~20 such files; open+close would double
    # the cost).
    def hot_text(self, rel: str) -> str | None:
        f = self._hot.get(rel)
        if f is None:
            f = self._hot[rel] = HotFile(self.path(rel))
        text = f.read_text()
        if text is None:
            # Absent now (optional attribute): forget it so a later sample retries the open.
            del self._hot[rel]
            if f.error is not None:
                self._note(rel, f.error)
        return text

    def hot_int(self, rel: str) -> int | None:
        return parse_int(self.hot_text(rel))

    def hot_list(self, rel: str) -> list[str] | None:
        text = self.hot_text(rel)
        return None if text is None else text.split()

    def close(self) -> None:
        """Close the kept-open descriptors (they reopen on the next read)."""
        for f in self._hot.values():
            f.close()
        self._hot.clear()

    # --- tree --------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return os.path.exists(self.path(rel))

    def isdir(self, rel: str) -> bool:
        return os.path.isdir(self.path(rel))

    def listdir(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(rel)))
        except OSError:
            return []

    def glob(self, pattern: str) -> list[str]:
        """Root-relative matches of a root-relative glob, sorted."""
        # The root itself is literal: a capture unpacked into "report[1]/" must still match.
        pattern = os.path.join(_glob.escape(self.root), pattern.lstrip("/"))
        return sorted(self.rel(p) for p in _glob.glob(pattern))

    def realpath(self, rel: str) -> str:
        """Resolve symlinks, keeping the result inside the root (relative)."""
        real = os.path.realpath(self.path(rel))
        root = os.path.realpath(self.root)   # --root may itself be reached through a symlink
        if real == root or real.startswith(root.rstrip("/") + "/"):
            return os.path.relpath(real, root)
        return rel.lstrip("/")

    # --- the one write path ------------------------------------------------------------
    def real_path_inside(self, rel: str) -> str:
        """The file a write to `rel` lands on, for writing.

        On "/" the path itself (sysfs attributes are reached through symlinks). Under another
        root, symlinks resolved, and PermissionError when they lead outside the root: a tree
        someone else owns (--root, HALOTUNE_ROOT) must not redirect root's writes to, say,
        /etc/passwd. Symlinks inside the tree (sys/class/drm/card1 -> ../../devices/...) are
        fine.
        """
        path = self.path(rel)
        if self.is_host:
            return path
        real = os.path.realpath(path)
        root = os.path.realpath(self.root)
        if real != root and not real.startswith(root.rstrip("/") + "/"):
            raise PermissionError(errno.EACCES, f"{rel} leads outside the root {self.root} "
                                  f"(to {real}) through a symlink; refusing to write there")
        return real

    def write_text(self, rel: str, value: str) -> None:
        """Write one value to a kernel attribute, as a single write() like `echo`.

        Raises OSError with the kernel's errno (EINVAL, EBUSY, EACCES ...), and PermissionError
        for a target outside a root other than "/" (see real_path_inside). Under a simulated
        root the simulator's driver rules answer instead of the plain file.
        """
        if self.is_simulated:
            if _simulator is None:
                raise RuntimeError(f"{self.root} is a simulated machine, but no simulated "
                                   "kernel is wired (halotune.sim.wire()): refusing to "
                                   "overwrite its files as plain files")
            _simulator[0](self.root, rel, value)
            return
        data = value if value.endswith("\n") else value + "\n"
        # Under another root the path is already resolved: O_NOFOLLOW refuses a symlink swapped
        # in since (open(2): ELOOP). On "/" sysfs attributes are plain files behind symlinked dirs.
        flags = os.O_WRONLY | os.O_CLOEXEC | (0 if self.is_host else os.O_NOFOLLOW)
        fd = os.open(self.real_path_inside(rel), flags)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)

    def _note(self, rel: str, e: OSError) -> None:
        self.last_errors[rel] = errno.errorcode.get(e.errno or 0, str(e.errno))
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            log.debug("read %s: %s", rel, e)
