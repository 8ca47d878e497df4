"""Running processes, as the daemon's rules see them: who runs, by name and by command line.

Where processes are read under --root: one rule, `process_root(fs)`, for every command (the
daemon's rules, preflight, doctor, the GPU-client list of status and the TUI):
- the host ("/"): the host's /proc;
- a tree that carries its own process table (at least one ROOT/proc/<pid> directory: a test's
  fake processes, a recorded tree with processes): that tree's proc/, and only it;
- a simulated tree without one: the host's /proc. The simulator models the hardware and the
  kernel's files of this host; the programs that use the machine (llama-server, a conflicting
  power daemon) are real processes of the host, so a host llama-server is seen by preflight
  --root SIM exactly as the daemon's process rule sees it;
- any other tree (a recorded snapshot without processes): no processes. A report describes
  another machine's kernel and hardware (capture.py leaves /proc/<pid> out); this host's
  processes say nothing about that machine.
The choice is made when a reader is opened (the daemon's at its start, preflight's per run).
The two tables are never merged: pids of a fake table and of the host would collide, and a
test that lays out its own processes must not see what else runs on the machine.
A simulated tree's own simulated GPU clients (the demo's llama-server, sim/gpuclients.py) are
not a process table: they live in ROOT/.halotune-sim/clients/proc, which only the GPU-client
list (machine/drmclients.py) reads, next to the host's /proc. They never trigger a rule or a
preflight finding, and a tree keeps reading the host's processes.
System-wide counters (/proc/stat, meminfo, diskstats, net/dev, loadavg) are kernel files of
the machine and are read under the root like sysfs (activity.py); only /proc/<pid> follows
this rule. The one exception is a socket peer (peers.py): it is a real process by construction.

Interface: psutil lists the pids (`psutil.pids()`; a listdir of /proc without it); a new
pid's /proc/<pid>/stat (comm, ppid) and cmdline are read directly, with
`psutil.Process.as_dict(['pid', 'name', 'cmdline', 'ppid'])` when /proc refuses. A process's
name and command line are read when its pid first appears and forgotten when it goes away,
so a poll of an idle desktop (~300 processes) costs one listdir of /proc instead of ~900 file
reads. A process may exec after it was first seen (fork, then exec; a wrapper script that
ends in `exec llama-server`): the comm of young processes (under YOUNG_S) and of launchers
(shells, interpreters, env, nohup, ...) is checked at every poll, everyone else's every
REFRESH_S, and a process whose comm changed is read again.

The daemon's own process and every descendant of it (the RyzenAdj helper, anything a future
probe starts) are left out, so halotune's own children never trigger a rule.
"""

from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass

from halotune.machine.parse import is_uint
from halotune.machine.rootfs import RootFS

YOUNG_S = 2.0        # fork-then-exec happens within milliseconds
REFRESH_S = 30.0
# Programs that commonly exec the real workload later: their comm is checked at every poll.
_LAUNCHERS = {"sh", "bash", "dash", "zsh", "fish", "env", "nohup", "setsid", "timeout",
              "taskset", "numactl", "chrt", "nice", "ionice", "sudo", "su", "runuser",
              "systemd-run", "flock", "stdbuf", "uv", "uvx", "conda", "micromamba", "toolbox",
              "distrobox", "podman", "docker"}

# argv[0] of an interpreter: the program is the script (argv[1]) or `-m module`.
_INTERPRETERS = ("python", "python2", "python3", "pypy", "pypy3", "node", "sh", "bash",
                 "perl", "ruby", "uv", "uvx")


def carries_processes(root: str) -> bool:
    """ROOT/proc holds at least one <pid> directory: the tree has its own process table."""
    try:
        with os.scandir(os.path.join(root, "proc")) as it:
            return any(is_uint(e.name) and e.is_dir(follow_symlinks=False) for e in it)
    except OSError:
        return False


def process_root(fs: RootFS) -> str | None:
    """The directory whose proc/ holds the processes of the machine at `fs` ("/" for the
    host's), or None when it has none; see the module docstring for why."""
    if fs.is_host:
        return "/"
    if carries_processes(fs.root):
        return fs.root
    if fs.is_simulated:
        return "/"
    return None


def proc_dir(root: str | None) -> str | None:
    """The proc directory under a process root ("/proc" for the host)."""
    if root is None:
        return None
    return "/proc" if os.path.abspath(root) == "/" else os.path.join(root, "proc")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    name: str                       # the kernel's comm (15 characters at most)
    cmdline: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every name this process answers to: comm, basename of argv[0], and for an
        interpreter the script's basename or the `-m` module (first component too)."""
        out = [self.name]
        if self.cmdline:
            argv0 = os.path.basename(self.cmdline[0])
            out.append(argv0)
            base = argv0.split(".")[0] if argv0.startswith("python") else argv0
            if base.rstrip("0123456789.") in _INTERPRETERS and len(self.cmdline) > 1:
                args = list(self.cmdline[1:])
                while args and args[0].startswith("-") and args[0] != "-m":
                    args.pop(0)
                if len(args) >= 2 and args[0] == "-m":
                    out += [args[1], args[1].split(".")[0]]
                elif args:
                    out.append(os.path.basename(args[0]))
        return tuple(dict.fromkeys(n for n in out if n))

    def matches(self, pattern: str) -> bool:
        """`pattern` is a name (llama-server), a shell glob over the names (llama-*), or,
        when it holds a space or a slash, a substring of the whole command line
        ("vllm serve", "/opt/models/")."""
        if " " in pattern or "/" in pattern:
            return pattern in " ".join(self.cmdline)
        if any(c in pattern for c in "*?["):
            return any(fnmatch.fnmatchcase(n, pattern) for n in self.names)
        return pattern in self.names

    def describe(self) -> str:
        return f"{self.name} (pid {self.pid})"


def _launcher(info: ProcInfo) -> bool:
    name = info.name
    return name in _LAUNCHERS or name in _INTERPRETERS or name.startswith("python")


class ProcessSource:
    """Polls the process table. `exclude_pid` (default: this process) and its descendants are
    never reported, nor are those of the pids in `also_exclude` (halotune clients holding the
    daemon: a probe's or bench's own llama-bench must not trigger a process rule). `proc` is
    the proc directory to list; None lists nothing (a tree without processes)."""

    @classmethod
    def of(cls, fs: RootFS, exclude_pid: int | None = None) -> "ProcessSource":
        """The processes of the machine at `fs`, read where process_root() says."""
        return cls(exclude_pid, proc=proc_dir(process_root(fs)))

    def __init__(self, exclude_pid: int | None = None, proc: str | None = "/proc"):
        self.exclude_pid = os.getpid() if exclude_pid is None else exclude_pid
        self.also_exclude: set[int] = set()
        self.proc = proc
        self._known: dict[int, ProcInfo | None] = {}
        self._seen: dict[int, float] = {}          # pid -> monotonic time first seen
        self._comms: dict[int, str | None] = {}    # pid -> raw comm when last read
        self._refreshed = time.monotonic()
        self._primed = False
        self._launchers: set[int] = set()
        self._extra: dict[tuple[int, str], tuple[ProcInfo | None, float, object]] = {}
        try:
            import psutil  # noqa: F401
            self._psutil = psutil if proc == "/proc" else None
        except ImportError:
            self._psutil = None

    # --- reading -----------------------------------------------------------------------------
    def _pids(self) -> list[int]:
        if self.proc is None:
            return []
        if self._psutil is not None:
            return self._psutil.pids()
        try:
            return [int(p) for p in os.listdir(self.proc) if is_uint(p)]
        except OSError:
            return []

    def _read(self, pid: int) -> ProcInfo | None:
        """stat and cmdline read directly (~20 µs, against ~90 µs for psutil's as_dict, which
        reads the same files); psutil when /proc refuses (hidepid, a foreign namespace)."""
        base = os.path.join(self.proc, str(pid))
        try:
            with open(os.path.join(base, "stat"), "rb") as f:
                stat = f.read().decode(errors="replace")
            with open(os.path.join(base, "cmdline"), "rb") as f:
                cmdline = f.read()
        except (FileNotFoundError, ProcessLookupError):
            return None                                  # gone already
        except OSError:
            return self._read_psutil(pid)
        lp, rp = stat.find("("), stat.rfind(")")
        name = stat[lp + 1:rp]
        if stat[rp + 2:rp + 3] == "Z":
            return None          # a zombie (exited, not reaped: no init in a container) runs nothing
        try:
            ppid = int(stat[rp + 2:].split()[1])
        except (IndexError, ValueError):
            ppid = 0
        argv = tuple(a.decode(errors="replace") for a in cmdline.split(b"\0") if a)
        return ProcInfo(pid, ppid, name, argv)

    def _read_psutil(self, pid: int) -> ProcInfo | None:
        if self._psutil is None:
            return None
        try:
            d = self._psutil.Process(pid).as_dict(["pid", "name", "cmdline", "ppid"])
        except (self._psutil.Error, OSError):
            return None
        return ProcInfo(pid, d.get("ppid") or 0, d.get("name") or "",
                        tuple(d.get("cmdline") or ()))

    def _comm(self, pid: int) -> str | None:
        """The raw comm (a single small read): it changes at exec."""
        try:
            fd = os.open(f"{self.proc}/{pid}/comm", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return os.read(fd, 64).decode(errors="replace").rstrip("\n")
        except OSError:
            return None
        finally:
            os.close(fd)

    def _store(self, pid: int, info: ProcInfo | None) -> None:
        self._known[pid] = info
        if info is not None and _launcher(info):
            self._launchers.add(pid)
        else:
            self._launchers.discard(pid)

    def snapshot(self) -> dict[int, ProcInfo]:
        """Every process except ours and our descendants, pid -> ProcInfo."""
        now = time.monotonic()
        pids = set(self._pids())
        for gone in set(self._known) - pids:
            del self._known[gone]
            self._seen.pop(gone, None)
            self._comms.pop(gone, None)
            self._launchers.discard(gone)
            self._extra.pop((gone, "uid"), None)
            self._extra.pop((gone, "exe"), None)
        full = now - self._refreshed >= REFRESH_S
        if full:
            self._refreshed = now
        first = not self._primed
        for pid in pids:
            if pid not in self._known:
                self._comms[pid] = self._comm(pid)
                self._store(pid, self._read(pid))
                # what runs at the first poll is not young: it had its time to exec
                self._seen[pid] = float("-inf") if first else now
                continue
            info = self._known[pid]
            if info is None and not full:
                continue
            if full or pid in self._launchers or now - self._seen[pid] < YOUNG_S:
                comm = self._comm(pid)
                if info is None or (comm is not None and comm != self._comms.get(pid)):
                    self._comms[pid] = comm
                    self._store(pid, self._read(pid))
        self._primed = True
        table = {pid: info for pid, info in self._known.items() if info is not None}
        return {pid: info for pid, info in table.items() if not self._ours(info, table)}

    def _ours(self, info: ProcInfo, table: dict[int, ProcInfo]) -> bool:
        # PID 1 (a container's entrypoint) is everyone's ancestor and adopts orphans:
        # only the process itself can be told apart.
        roots = {p for p in (self.exclude_pid, *self.also_exclude) if p > 1}
        if info.pid in (self.exclude_pid, *self.also_exclude):
            return True
        seen = 0
        while info is not None and seen < 64:
            if info.pid in roots:
                return True
            if info.ppid in (0, info.pid):
                return False
            if info.ppid in roots:
                return True
            info = table.get(info.ppid)
            seen += 1
        return False

    # --- owner and executable, read only for the processes a rule with users/exe asks about -
    def _cached(self, pid: int, key: str, read):
        """A per-process value read once and kept while the process is the same (an exec
        reads its ProcInfo again) and until the next full refresh (REFRESH_S: a setuid)."""
        info = self._known.get(pid)
        hit = self._extra.get((pid, key))
        if hit is not None and hit[0] is info and hit[1] == self._refreshed:
            return hit[2]
        value = read(pid)
        self._extra[(pid, key)] = (info, self._refreshed, value)
        return value

    def owner(self, pid: int) -> int | None:
        """The process's real uid, or None when it cannot be read."""
        return self._cached(pid, "uid", self._read_uid)

    def exe(self, pid: int) -> str | None:
        """The real path of the process's executable, or None when it cannot be read (another
        user's process when we are not root: EACCES; a kernel thread: ENOENT)."""
        return self._cached(pid, "exe", self._read_exe)

    def _read_uid(self, pid: int) -> int | None:
        # proc(5), /proc/PID/status "Uid:\treal\teffective\tsaved\tfs" (fs/proc/array.c
        # task_state). Not the owner of /proc/PID: a non-dumpable process shows as root there
        # (fs/proc/base.c task_dump_owner), which its user can arrange with prctl.
        try:
            with open(f"{self.proc}/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Uid:"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return None

    def _read_exe(self, pid: int) -> str | None:
        # proc(5), /proc/PID/exe: a symlink to the executable's path (fs/proc/base.c
        # proc_exe_link); " (deleted)" is appended once the file was unlinked (d_path), e.g.
        # a llama-server upgraded while it runs: the path it was started from still counts.
        try:
            path = os.readlink(f"{self.proc}/{pid}/exe")
        except OSError:
            return None
        return path.removesuffix(" (deleted)")

    # --- questions ---------------------------------------------------------------------------
    def matching(self, patterns, table: dict[int, ProcInfo] | None = None) -> list[ProcInfo]:
        """Processes that match any of `patterns`, by pid."""
        table = self.snapshot() if table is None else table
        return sorted((p for p in table.values() if any(p.matches(pat) for pat in patterns)),
                      key=lambda p: p.pid)


# Daemons that also set platform profiles, governors or power limits: running two such
# tools makes them undo each other's changes (the drift rule then "keeps losing").
CONFLICTING = {
    "power-profiles-daemon": "power-profiles-daemon (sets platform_profile and EPP)",
    "tuned": "TuneD (sets governors, EPP, sysctls)",
    "tuned-ppd": "tuned-ppd (TuneD's power-profiles-daemon stand-in)",
    "auto-cpufreq": "auto-cpufreq (sets governors, EPP and boost)",
    "system76-power": "system76-power (sets platform profiles and governors)",
    "tlp": "TLP (sets platform_profile, governors and EPP on AC/battery changes)",
}


def conflicting(table: dict[int, ProcInfo]) -> list[tuple[ProcInfo, str]]:
    """(process, what it is) for every running daemon known to fight over the same knobs."""
    out = []
    for p in sorted(table.values(), key=lambda p: p.pid):
        for name in p.names:
            if name in CONFLICTING:
                out.append((p, CONFLICTING[name]))
                break
    return out
