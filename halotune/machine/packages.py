"""Installed package versions from the distribution's package manager (dpkg, rpm, pacman).

Run through Programs, so the query programs are looked up under the root: on a fake root that
is not "/" there is no package database to ask, and every query returns None ("unknown")
unless a stand-in program is planted at ROOT/usr/bin (how the tests exercise the parsing).

Interfaces: `dpkg-query -W -f '${Status}\\t${Version}\\n' NAME` ("install ok installed\\t1.2-3",
exit 1 when the name is unknown); `rpm -q --qf '%{VERSION}-%{RELEASE}\\n' NAME` (exit 1 and
"package NAME is not installed" on stdout); `pacman -Q NAME` ("NAME 1.2-3", exit 1 when absent).
"""

from __future__ import annotations

from halotune.machine.programs import ProgramError

QUERY_TIMEOUT_S = 10.0


def _dpkg(programs, name: str) -> str | None:
    res = programs.run("dpkg-query", ["-W", "-f", "${Status}\t${Version}\n", name],
                       timeout=QUERY_TIMEOUT_S)
    if not res.ok:
        return None
    for line in res.stdout.splitlines():
        status, _, version = line.partition("\t")
        # "deinstall ok config-files" keeps a version but the package is gone
        if status.split()[-1:] == ["installed"] and version.strip():
            return version.strip()
    return None


def _rpm(programs, name: str) -> str | None:
    res = programs.run("rpm", ["-q", "--qf", "%{VERSION}-%{RELEASE}\n", name],
                       timeout=QUERY_TIMEOUT_S)
    if not res.ok:
        return None
    lines = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
    if not lines or "not installed" in lines[-1]:
        return None
    return lines[-1]            # several installed versions (kernels): the last one listed


def _pacman(programs, name: str) -> str | None:
    res = programs.run("pacman", ["-Q", name], timeout=QUERY_TIMEOUT_S)
    if not res.ok:
        return None
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return parts[1]
    return None


_MANAGERS = (("dpkg-query", _dpkg), ("rpm", _rpm), ("pacman", _pacman))


def package_version(name: str, programs) -> str | None:
    """The installed version of package `name`, or None when it is not installed, no package
    manager is found under the root, or the query fails."""
    for program, query in _MANAGERS:
        try:
            programs.resolve(program)
        except ProgramError:
            continue
        try:
            version = query(programs, name)
        except ProgramError:
            continue
        if version:
            return version
    return None


def first_package_version(names, programs) -> tuple[str, str] | None:
    """(name, version) of the first of `names` that is installed (distributions name the same
    software differently: linux-firmware, firmware-amd-graphics, ...)."""
    for name in names:
        version = package_version(name, programs)
        if version:
            return name, version
    return None
