"""What doctor's conditions look at, read once and only when a condition asks.

Machine facts come through the machine layer under the root: the snapshot (sampler, no
RyzenAdj), the kernel command line, KFD topology, modprobe.d, users and groups, device modes,
package versions, processes (where machine.processes.process_root says: the host's for "/"
and a simulated tree, a fake tree's own ROOT/proc/<pid>). The environment
is this run's (under sudo, the variables sudo kept) plus ROOT/etc/environment.
"""

from __future__ import annotations

import os
from functools import cached_property

from halotune.machine import parse
from halotune.machine.processes import ProcessSource, proc_dir, process_root
from halotune.machine.programs import ProgramError, Programs
from halotune.machine.rootfs import RootFS

PACKAGE_MANAGERS = ("dpkg-query", "rpm", "pacman")


class Facts:
    def __init__(self, fs: RootFS, programs: Programs | None = None, environ=None,
                 user: str | None = None, proc_root: str | None = None, package_version=None):
        self.fs = fs
        self.programs = programs or Programs(fs)
        self._environ = dict(os.environ if environ is None else environ)
        self._user_name = user
        self.proc_root = process_root(fs) if proc_root is None else proc_root
        self._package_version = package_version
        self._packages: dict[str, str | None] = {}
        self.no_user_reason = "the invoking user is unknown"

    @cached_property
    def snapshot(self):
        from halotune.telemetry.sampler import Sampler

        sampler = Sampler(self.fs, self.programs, read_tdp=False)
        try:
            return sampler.sample()
        finally:
            sampler.close()

    @cached_property
    def cmdline(self) -> dict[str, str]:
        """Kernel command line, keys with `-` read as `_` (the kernel treats them alike)."""
        raw = parse.parse_cmdline(self.fs.read_text("proc/cmdline"))
        return {k.replace("-", "_"): v for k, v in raw.items()}

    @cached_property
    def cmdline_readable(self) -> bool:
        return self.fs.read_text("proc/cmdline") is not None

    @cached_property
    def kfd_nodes(self) -> list[dict[str, str]]:
        from halotune.machine.kfd import gpu_nodes

        return gpu_nodes(self.fs)

    @cached_property
    def processes(self) -> dict:
        return ProcessSource(proc=proc_dir(self.proc_root)).snapshot()

    @cached_property
    def user(self):
        """groups.User of the invoking person; None when unknown or root (root needs no group)."""
        from halotune.machine.groups import invoking_user, lookup_user

        name, uid = (self._user_name, None) if self._user_name else invoking_user(self._environ)
        if not name or name == "root":
            self.no_user_reason = ("run as root (no SUDO_USER): root needs no group; "
                                   "use --user NAME to check a user")
            return None
        found = lookup_user(self.fs, name, uid)
        if found is None:
            self.no_user_reason = f"user {name} is not in /etc/passwd under the root"
        return found

    @cached_property
    def group_names(self) -> set[str] | None:
        from halotune.machine.groups import group_names

        return group_names(self.fs)

    @cached_property
    def environment(self) -> dict[str, tuple[str, str]]:
        """{name: (value, where)}: this run's environment, then ROOT/etc/environment."""
        out = {k: (v, "the environment of this run") for k, v in self._environ.items()}
        for line in (self.fs.read_text("etc/environment") or "").splitlines():
            line = line.strip()
            if line.startswith("export "):
                line = line[len("export "):]
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.startswith("#"):
                out.setdefault(key.strip(), (value.strip().strip("'\""), "/etc/environment"))
        return out

    @cached_property
    def package_manager(self) -> bool:
        """Whether installed packages can be asked for at all (else: unknown, not absent)."""
        if self._package_version is not None:
            return True
        for name in PACKAGE_MANAGERS:
            try:
                self.programs.resolve(name)
                return True
            except ProgramError:
                continue
        return False

    def package(self, name: str) -> str | None:
        if name not in self._packages:
            query = self._package_version
            if query is None:
                from halotune.machine.packages import package_version as query
            self._packages[name] = query(name, self.programs)
        return self._packages[name]
