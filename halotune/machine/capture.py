"""Capture the files halotune reads into an archive that unpacks into a readable root.

An owner's bug report becomes a test fixture: `halotune status --root DIR` on the unpacked
archive must read exactly what it read on the machine. Three pieces:

- RecordingRootFS learns which root-relative paths the real readers touch (run the Sampler on
  it), so the capture can never drift from the code that reads the machine;
- TreeCapture copies those paths, plus diagnostic_paths(), keeping every symlink met on the way
  as a symlink with its own relative target. Discovery globs and resolves links
  (sys/class/drm/cardN -> ../../devices/..., device -> ../../../<slot>, cpuN/cpufreq ->
  ../cpufreq/policyN), so the links must survive, not just the file contents;
- write_archive() stores the tree atomically as a .tar.gz under one top directory.

Redactor scrubs what identifies one machine or boot (boot id, UUIDs, host name) before archiving.
Nothing here writes to the machine; reads are capped at MAX_FILE_BYTES and never enter
/proc/<pid>: a report describes the kernel and the hardware, not the processes.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import re
import socket
import stat
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from halotune.machine.rootfs import RootFS

MAX_FILE_BYTES = 64 * 1024
MAX_LINK_HOPS = 40            # the kernel's MAXSYMLINKS: more hops than this is a loop
TOP_DIR = "halotune-snapshot"

# /proc/<pid>, /proc/self and /proc/thread-self describe processes, not the machine.
_PER_PROCESS = re.compile(r"^proc/(\d+|self|thread-self)(/|$)")

# Device-directory files never collected: raw PCI binary attributes (registers, option ROM;
# not telemetry) and per-unit serials (vpd, amdgpu FRU serial_number, unique_id).
_NOT_COLLECTED = re.compile(r"^(config|rom|vpd|resource\d*(_wc)?|serial_number|unique_id)$")

_GLOB_MAGIC = re.compile(r"[*?[]")


# --- which paths ---------------------------------------------------------------------------

class RecordingRootFS(RootFS):
    """A RootFS that remembers every root-relative path asked of it.

    Every rooted access (read_*, hot*, exists, isdir, listdir, realpath, and any read method
    added later) turns its root-relative path into an absolute one through path(), so
    recording there catches them all; glob() records its matches rather than its pattern.
    hot files are recorded when created: their later preads go to a kept descriptor.
    """

    def __init__(self, root: str = "/"):
        super().__init__(root)
        self._recorded: set[str] = set()

    @property
    def recorded(self) -> list[str]:
        """The root-relative paths asked for so far, sorted."""
        return sorted(self._recorded)

    def path(self, rel: str) -> str:
        if not _GLOB_MAGIC.search(rel):
            self._record(rel)
        return super().path(rel)

    def glob(self, pattern: str) -> list[str]:
        matches = super().glob(pattern)
        for rel in matches:
            self._record(rel)
        return matches

    def _record(self, rel: str) -> None:
        rel = rel.strip("/")
        if rel and rel != ".":
            self._recorded.add(rel)


# Files useful for diagnosis that one sample does not read (later features do). Root-relative
# globs; a pattern that matches nothing adds nothing.
DIAGNOSTIC_GLOBS: tuple[str, ...] = (
    *(f"sys/module/{module}/parameters/{param}"
      for module in ("ttm", "amdttm", "amdgpu")
      for param in ("pages_limit", "page_pool_size", "dma32_pages_limit", "gttsize")),
    "sys/firmware/acpi/platform_profile*",
    *(f"sys/class/platform-profile/*/{name}" for name in ("name", "profile", "choices")),
    "sys/devices/system/cpu/cpufreq/boost",
    "sys/devices/system/cpu/cpu[0-9]*/cpufreq",
    "sys/class/power_supply/*/type",
    "sys/class/power_supply/*/online",
    "sys/class/kfd/kfd/topology/nodes/*/properties",
    "sys/class/kfd/kfd/topology/nodes/*/name",
    "sys/class/hwmon/*/name",                       # which hwmon is amdgpu, k10temp, ...
    # The board and BIOS decide profiles and limits (reference §5.1); never the serials/UUID.
    *(f"sys/class/dmi/id/{name}" for name in ("sys_vendor", "product_name", "board_vendor",
                                              "board_name", "bios_vendor", "bios_version",
                                              "bios_date")),
    "sys/bus/event_source/devices/amd_umc_*/type",  # the UMC PMU count (reference §7)
    "sys/bus/event_source/devices/amd_df/type",
    "sys/kernel/mm/transparent_hugepage/enabled",
    "sys/kernel/mm/transparent_hugepage/defrag",
    "proc/cmdline", "proc/meminfo", "proc/stat", "proc/version",
    "proc/sys/kernel/osrelease",
    "proc/sys/kernel/random/boot_id",
    "proc/sys/vm/swappiness", "proc/sys/vm/compaction_proactiveness",
    "etc/modprobe.d/*.conf",
)

# Directories whose regular files are all collected (symlinks and subdirectories are not).
DIAGNOSTIC_DIRS: tuple[str, ...] = (
    "sys/devices/system/cpu/cpufreq/policy*",
    "sys/devices/system/cpu/amd_pstate",
)


def device_globs(device_dir: str, hwmon_dir: str | None) -> tuple[list[str], list[str]]:
    """(globs, directories of regular files) to collect for one amdgpu device."""
    globs = [f"{device_dir}/power/control", f"{device_dir}/power/runtime_status"]
    globs += [f"{device_dir}/ip_discovery/die/0/*/0/{part}"
              for part in ("major", "minor", "revision")]
    dirs = [device_dir, f"{device_dir}/fw_version"]
    if hwmon_dir:
        dirs.append(hwmon_dir)
    return globs, dirs


def diagnostic_paths(fs: RootFS, gpus: Iterable[tuple[str, str | None]] = ()) -> list[str]:
    """Root-relative paths worth collecting beyond one sample's reads.

    `gpus` holds (device_dir, hwmon_dir) of each amdgpu device found.
    """
    globs, dirs = list(DIAGNOSTIC_GLOBS), list(DIAGNOSTIC_DIRS)
    for device_dir, hwmon_dir in gpus:
        more_globs, more_dirs = device_globs(device_dir, hwmon_dir)
        globs += more_globs
        dirs += more_dirs
    paths: list[str] = []
    for pattern in globs:
        paths += fs.glob(pattern)
    for pattern in dirs:
        paths += [p for p in fs.glob(f"{pattern}/*") if _is_collectable_file(fs.path(p))]
    return list(dict.fromkeys(paths))


def _is_collectable_file(path: str) -> bool:
    """A regular file with something to read: not a link, directory or write-only attribute."""
    if _NOT_COLLECTED.match(os.path.basename(path)):
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o444)


# --- copying the tree ----------------------------------------------------------------------

@dataclass(frozen=True)
class CapturedFile:
    path: str           # canonical root-relative path (no symlink on the way)
    data: bytes
    mode: int           # permission bits of the original
    truncated: bool     # the original was longer than MAX_FILE_BYTES


@dataclass(frozen=True)
class CaptureError:
    path: str
    errno: str | None   # "EACCES", "EOPNOTSUPP" ...; None for a refusal of ours
    message: str


class TreeCapture:
    """The part of a root's tree that was asked for: directories, symlinks and file contents.

    Paths are walked one component at a time, so every symlink on the way is kept (with its
    relative target) and every stored path is canonical: the archive never holds a path that
    goes through a link, and it unpacks into a tree that resolves like the original.
    Failures are recorded in `errors`, never raised.
    """

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.dirs: set[str] = set()
        self.links: dict[str, str] = {}
        self.files: dict[str, CapturedFile] = {}
        self.errors: dict[str, CaptureError] = {}

    def add_all(self, rels: Iterable[str]) -> None:
        for rel in rels:
            self.add(rel)

    def add(self, rel: str) -> None:
        """Capture one root-relative path and every directory and symlink leading to it."""
        done: list[str] = []
        todo = _components(rel)[::-1]           # a stack: pop() yields the next component
        hops = 0
        while todo:
            name = todo.pop()
            if name == "..":
                if not done:
                    return self._fail(rel, None, "leads outside the root")
                done.pop()
                continue
            here = "/".join([*done, name])
            if _PER_PROCESS.match(here):
                return self._fail(here, None, "per-process /proc entries are not collected")
            try:
                st = os.lstat(self._abs(here))
            except OSError as e:
                return self._fail("/".join([here, *todo[::-1]]), e)
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                target = self._take_link(here, done, hops)
                if target is None:
                    return None
                todo += _components(target)[::-1]
                continue
            done.append(name)
            if not todo:
                return self._take(here, st)
            if not stat.S_ISDIR(st.st_mode):
                return self._fail("/".join([here, *todo[::-1]]), _oserror(errno.ENOTDIR))
            self.dirs.add(here)
        return None

    def _abs(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def _take_link(self, here: str, parent: list[str], hops: int) -> str | None:
        """Keep the link at `here`; return its target relative to its directory, or None."""
        if hops > MAX_LINK_HOPS:
            return self._fail(here, _oserror(errno.ELOOP))
        if here in self.links:
            return self.links[here]
        try:
            target = os.readlink(self._abs(here))
        except OSError as e:
            return self._fail(here, e)
        if os.path.isabs(target):
            # Inside a root other than "/" an absolute target means the root's own tree
            # (as in a chroot); store it relative so that it resolves in the unpacked copy.
            target = os.path.relpath("/" + target.lstrip("/"), "/" + "/".join(parent))
        if _escapes(parent, _components(target)):
            return self._fail(here, None, f"symlink to {target} leads outside the root")
        self.links[here] = target
        return target

    def _take(self, here: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            self.dirs.add(here)
            return None
        if not stat.S_ISREG(st.st_mode):
            return self._fail(here, None, "not a regular file")
        if here in self.files:
            return None
        try:
            data, truncated = read_capped(self._abs(here))
        except OSError as e:
            return self._fail(here, e)
        self.files[here] = CapturedFile(here, data, stat.S_IMODE(st.st_mode), truncated)
        self.errors.pop(here, None)
        return None

    def _fail(self, path: str, e: OSError | None, message: str | None = None) -> None:
        name = None if e is None or e.errno is None else errno.errorcode.get(e.errno, str(e.errno))
        text = message or (e.strerror if e is not None and e.strerror else str(e))
        if path not in self.files:
            self.errors[path] = CaptureError(path, name, text)
        return None


def read_capped(path: str, cap: int = MAX_FILE_BYTES) -> tuple[bytes, bool]:
    """Read a file from offset 0, at most `cap` bytes; (data, whether it was longer).

    O_NONBLOCK: a path that turned into a FIFO since it was checked must not hang the capture.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        # A sysfs attribute arrives whole in the first read (one page, fs/sysfs/file.c);
        # procfs seq_files such as /proc/stat may take several.
        chunks, total = [], 0
        while total <= cap:
            chunk = os.read(fd, cap + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return data[:cap], len(data) > cap


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _escapes(parent: list[str], parts: list[str]) -> bool:
    """Whether `parts`, taken from the directory `parent`, climbs above the root."""
    depth = len(parent)
    for p in parts:
        depth += -1 if p == ".." else 1
        if depth < 0:
            return True
    return False


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


# --- redaction -----------------------------------------------------------------------------

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
BOOT_ID = "proc/sys/kernel/random/boot_id"
HOST_PLACEHOLDER = "redacted-hostname"

_UUID = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}"
                   r"(?![0-9A-Za-z])")
# Block-device ids that are not RFC 4122-shaped: root=UUID=ABCD-1234 (FAT/NTFS volume serials),
# root=PARTUUID=1a2b3c4d-02 (MBR partition ids).
_DEVICE_ID_ARG = re.compile(r"(?<![0-9A-Za-z])((?:PART)?UUID=)([0-9A-Fa-f][0-9A-Fa-f-]*)")
_HEX_DIGIT = re.compile(r"[0-9A-Fa-f]")
# KFD topology nodes/N/properties: `unique_id <n>`, the GPU's per-unit id on dGPUs.
_UNIQUE_ID_LINE = re.compile(r"(?m)^(unique_id[ \t]+)(\d+)[ \t]*$")
_NOT_A_HOSTNAME = {"", "localhost", "localhost.localdomain", "(none)"}

KEPT_UNREDACTED = ("kernel release, PCI vendor/device/subsystem ids and revision, "
                   "SMU firmware and VBIOS versions")


class Redactor:
    """Replaces what identifies one machine or boot; keeps what makes a report useful.

    The boot id and every UUID become zero-UUIDs of the same shape (parsers still accept
    them), a KFD node's unique_id becomes 0 and the host name a placeholder. Kernel release, device ids and firmware
    versions stay: they are what a maintainer needs. Binary files (gpu_metrics) hold no text
    and are left byte-exact.
    """

    def __init__(self, hostnames: Iterable[str] = ()):
        names = sorted({h.strip() for h in hostnames} - _NOT_A_HOSTNAME, key=len, reverse=True)
        self._host = (re.compile(r"(?<![0-9A-Za-z_-])(?:%s)(?![0-9A-Za-z_-])"
                                 % "|".join(map(re.escape, names)), re.IGNORECASE)
                      if names else None)
        self._counts: Counter[tuple[str, str]] = Counter()   # (what, where) -> replacements

    @classmethod
    def for_root(cls, fs: RootFS) -> Redactor:
        """A redactor for the host names the root knows (and this host's, when it is "/")."""
        names = [fs.read_text("proc/sys/kernel/hostname") or "", fs.read_text("etc/hostname") or ""]
        if fs.is_host:
            names.append(socket.gethostname())
        return cls(names)

    def data(self, path: str, data: bytes) -> bytes:
        """The redacted content of the file at root-relative `path`."""
        if path == BOOT_ID:
            if data.strip() and data.strip() != ZERO_UUID.encode():
                self._counts[("boot id", path)] += 1
            return (ZERO_UUID + "\n").encode()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data
        return self.text(text, path).encode("utf-8")

    def text(self, text: str, where: str) -> str:
        text = self._sub(_DEVICE_ID_ARG, text, "UUID", where,
                         lambda m: m.group(1) + _HEX_DIGIT.sub("0", m.group(2)))
        text = self._sub(_UUID, text, "UUID", where, lambda m: ZERO_UUID)
        text = self._sub(_UNIQUE_ID_LINE, text, "unique id", where, lambda m: m.group(1) + "0")
        if self._host is not None:
            text = self._sub(self._host, text, "host name", where, lambda m: HOST_PLACEHOLDER)
        return text

    def scrub(self, value, where: str):
        """Redact every string inside a JSON-like value (dicts, lists, strings)."""
        if isinstance(value, str):
            return self.text(value, where)
        if isinstance(value, list):
            return [self.scrub(v, where) for v in value]
        if isinstance(value, dict):
            return {k: self.scrub(v, where) for k, v in value.items()}
        return value

    def _sub(self, pattern: re.Pattern, text: str, what: str, where: str, replace) -> str:
        def counted(m: re.Match) -> str:
            new = replace(m)
            if new != m.group(0):
                self._counts[(what, where)] += 1
            return new
        return pattern.sub(counted, text)

    def report(self) -> dict:
        """What was replaced where (never the original values), for the manifest."""
        placeholders = {"boot id": ZERO_UUID, "UUID": ZERO_UUID, "unique id": "0",
                        "host name": HOST_PLACEHOLDER}
        replaced = []
        for what in placeholders:
            where = sorted(w for (kind, w) in self._counts if kind == what)
            if where:
                replaced.append({"what": what, "with": placeholders[what], "where": where,
                                 "count": sum(self._counts[(what, w)] for w in where)})
        return {"redacted": True, "replaced": replaced, "kept": KEPT_UNREDACTED}


# --- the archive ---------------------------------------------------------------------------

def write_archive(out: str, tree: TreeCapture, extra: dict[str, bytes], mtime: int,
                  top: str = TOP_DIR) -> int:
    """Write the tree (plus `extra` files at the top) to `out` atomically; return its size.

    The archive is built in a temporary file in out's directory and renamed over `out`, so a
    failed or interrupted run never leaves a truncated archive behind. Raises OSError.
    """
    directory = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(out)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as raw:
            # GzipFile stores a file name in its header: give it the final name, not tmp's.
            with gzip.GzipFile(os.path.basename(out), "wb", fileobj=raw, mtime=mtime) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    _add_tree(tar, tree, extra, mtime, top)
            raw.flush()
            os.fchmod(raw.fileno(), 0o666 & ~_umask())
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return os.path.getsize(out)


def _add_tree(tar: tarfile.TarFile, tree: TreeCapture, extra: dict[str, bytes], mtime: int,
              top: str) -> None:
    """Entries in path order (a directory before its contents), all under `top`/."""
    tar.addfile(_entry(top, tarfile.DIRTYPE, 0o755, mtime))
    for path in sorted(tree.dirs | set(tree.links) | set(tree.files), key=lambda p: p.split("/")):
        name = f"{top}/{path}"
        if path in tree.files:
            f = tree.files[path]
            # Keep the original mode (0600 gttsize, 0444 telemetry) but always owner-readable.
            info = _entry(name, tarfile.REGTYPE, f.mode | 0o400, mtime, size=len(f.data))
            tar.addfile(info, io.BytesIO(f.data))
        elif path in tree.links:
            tar.addfile(_entry(name, tarfile.SYMTYPE, 0o777, mtime, link=tree.links[path]))
        else:
            tar.addfile(_entry(name, tarfile.DIRTYPE, 0o755, mtime))
    for path, data in sorted(extra.items()):
        tar.addfile(_entry(f"{top}/{path}", tarfile.REGTYPE, 0o644, mtime, size=len(data)),
                    io.BytesIO(data))


def _entry(name: str, kind: bytes, mode: int, mtime: int, size: int = 0,
           link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size, info.linkname = kind, mode, mtime, size, link
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
