"""Who is on the other end of a Unix socket: SO_PEERCRED and the peer's groups.

Interface: getsockopt(SOL_SOCKET, SO_PEERCRED) -> struct ucred {pid, uid, gid} (Linux);
/proc/<pid>/status `Groups:` for the peer's supplementary groups (host /proc, never rooted:
processes are real even when the machine is simulated).
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass, field

from halotune.machine.parse import is_uint


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = field(default_factory=frozenset)

    @property
    def user(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)


def peer_of(sock: socket.socket) -> Peer:
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                        struct.calcsize("3i")))
    return Peer(pid, uid, gid, frozenset(_groups(pid, uid, gid)))


def _groups(pid: int, uid: int, gid: int) -> set[int]:
    groups = {gid}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Groups:"):
                    groups.update(int(g) for g in line.split()[1:] if is_uint(g))
                    return groups
    except OSError:
        pass
    try:   # the peer exited already: fall back to the group database
        groups.update(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except (KeyError, OSError):
        pass
    return groups


def group_id(name: str | None) -> int | None:
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None
