"""Users, groups and device-file access on the machine under the root.

Interfaces: ROOT/etc/passwd and ROOT/etc/group (passwd(5), group(5): colon-separated; a
group's fourth field lists its supplementary members). On the host ("/") the NSS lookups of
the standard library are used as well (LDAP/sssd users are not in /etc/group). Access to a
device node follows the classic mode bits: owner, then group, then others (ACLs such as
logind's `uaccess` grants are not seen, so a "no access" answer can be pessimistic).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from halotune.machine.parse import is_uint
from halotune.machine.rootfs import RootFS


@dataclass
class User:
    name: str
    uid: int | None
    gid: int | None
    groups: set[str] = field(default_factory=set)      # names, primary group included
    gids: set[int] = field(default_factory=set)


def _rows(text: str | None, n: int) -> list[list[str]]:
    rows = []
    for line in (text or "").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        f = line.split(":")
        if len(f) >= n:
            rows.append(f)
    return rows


def read_groups(fs: RootFS) -> dict[str, tuple[int | None, set[str]]] | None:
    """{group name: (gid, member names)}; None when there is no group file under the root."""
    text = fs.read_text("etc/group")
    if text is None:
        return None
    out = {}
    for f in _rows(text, 4):
        gid = int(f[2]) if is_uint(f[2]) else None
        out[f[0]] = (gid, {m.strip() for m in f[3].split(",") if m.strip()})
    return out


def group_names(fs: RootFS) -> set[str] | None:
    """Names of every group on the machine; None when there is no group database."""
    groups = read_groups(fs)
    if groups is None and fs.is_host:
        import grp

        return {g.gr_name for g in grp.getgrall()}
    return None if groups is None else set(groups)


def invoking_user(environ=None) -> tuple[str | None, int | None]:
    """The person behind this run: SUDO_USER/SUDO_UID under sudo, else the current uid."""
    env = os.environ if environ is None else environ
    if env.get("SUDO_USER") and env.get("SUDO_USER") != "root":
        uid = env.get("SUDO_UID", "")
        return env["SUDO_USER"], int(uid) if is_uint(uid) else None
    uid = os.getuid()
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name, uid
    except (KeyError, ImportError):
        return None, uid


def lookup_user(fs: RootFS, name: str, uid: int | None = None) -> User | None:
    """The user's identity and groups under the root; None when the user is not known there."""
    user = None
    for f in _rows(fs.read_text("etc/passwd"), 4):
        if f[0] == name:
            user = User(name, int(f[2]) if is_uint(f[2]) else uid,
                        int(f[3]) if is_uint(f[3]) else None)
            break
    if user is None and fs.is_host:
        try:
            import pwd

            pw = pwd.getpwnam(name)
            user = User(name, pw.pw_uid, pw.pw_gid)
        except KeyError:
            pass
    if user is None:
        return None
    groups = read_groups(fs) or {}
    for gname, (gid, members) in groups.items():
        if name in members or (gid is not None and gid == user.gid):
            user.groups.add(gname)
            if gid is not None:
                user.gids.add(gid)
    if user.gid is not None:
        user.gids.add(user.gid)
    if fs.is_host and user.gid is not None:
        try:
            import grp

            for gid in os.getgrouplist(name, user.gid):
                user.gids.add(gid)
                try:
                    user.groups.add(grp.getgrgid(gid).gr_name)
                except KeyError:
                    pass
        except OSError:
            pass
    return user


def group_name(fs: RootFS, gid: int) -> str | None:
    for name, (g, _members) in (read_groups(fs) or {}).items():
        if g == gid:
            return name
    return None


@dataclass
class Access:
    path: str                  # root-relative
    mode: str                  # "0660"
    owner_uid: int
    group_gid: int
    group: str | None
    read_write: bool           # the user may open it read-write (by the mode bits)


def device_access(fs: RootFS, rel: str, user: User) -> Access | None:
    """Whether `user` may open ROOT/rel read-write; None when the file does not exist."""
    try:
        st = os.stat(fs.path(rel))
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    rw = stat.S_IRUSR | stat.S_IWUSR
    if user.uid == 0:
        ok = True
    elif user.uid is not None and st.st_uid == user.uid:
        ok = mode & rw == rw
    elif st.st_gid in user.gids:
        ok = (mode >> 3) & 0o6 == 0o6
    else:
        ok = mode & 0o6 == 0o6
    return Access(rel, f"{mode:04o}", st.st_uid, st.st_gid, group_name(fs, st.st_gid), ok)
