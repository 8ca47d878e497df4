"""Whether only root can change a configuration file: the rule sudo applies to sudoers files and
polkit to its rules directories, applied to profile files.

A file qualifies when what it finally is (its symlinks followed) is owned by root and not
group/world-writable, and when every directory above it, and above each symlink on the way to
it, is owned by root and not group/world-writable: whoever can write a directory can replace
the file in it. A sticky directory (/tmp, /dev/shm) is fine: only an entry's owner may rename
or remove it there.
"""

from __future__ import annotations

import os
import stat

_MAX_LINKS = 40     # the kernel's MAXSYMLINKS


def _owner(st: os.stat_result) -> str:
    import grp
    import pwd

    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group}, mode {stat.S_IMODE(st.st_mode):04o}"


def _fault(st: os.stat_result, is_dir: bool) -> str | None:
    if st.st_uid != 0:
        return "is not owned by root"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (is_dir and st.st_mode & stat.S_ISVTX):
        return "is group- or world-writable"
    return None


def _link_chain(path: str) -> list[str]:
    hops = [os.path.abspath(path)]
    while os.path.islink(hops[-1]) and len(hops) <= _MAX_LINKS:
        target = os.readlink(hops[-1])
        hops.append(os.path.normpath(os.path.join(os.path.dirname(hops[-1]), target)))
    return hops


def _directories(hops: list[str]) -> list[str]:
    out: list[str] = []
    for hop in hops:
        d = os.path.realpath(os.path.dirname(hop))
        while d not in out:
            out.append(d)
            if d == "/":
                break
            d = os.path.dirname(d)
    return out


def ownership_problem(path: str) -> str | None:
    """None when only root can change what `path` reads as; else a sentence naming the file
    or directory at fault, its owner and mode, and the commands that fix it."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot be checked ({e.strerror})"
    real = os.path.realpath(path)
    fault = _fault(st, is_dir=False)
    if fault:
        what = "it" if real == os.path.abspath(path) else f"its target {real}"
        return _sentence(f"{what} {fault} ({_owner(st)})", real)
    for d in _directories(_link_chain(path)):
        try:
            dst = os.stat(d)
        except OSError as e:
            return f"directory {d} cannot be checked ({e.strerror})"
        fault = _fault(dst, is_dir=True)
        if fault:
            return _sentence(f"directory {d} {fault} ({_owner(dst)})", d)
    return None


def _sentence(fault: str, fix: str) -> str:
    return (f"{fault}; profiles are system configuration, read only when root alone can change "
            f"them: run `chown root:root {fix} && chmod go-w {fix}`")
