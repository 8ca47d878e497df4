"""Who is on the other end of a Unix socket: SO_PEERCRED and SO_PEERGROUPS.

Interface: getsockopt(SOL_SOCKET, SO_PEERCRED) -> struct ucred {pid, uid, gid}, and
getsockopt(SOL_SOCKET, SO_PEERGROUPS) -> gid_t[] (Linux >= 4.13, net/core/sock.c
sk_getsockopt), both the credentials the kernel captured at connect(). Never /proc/PID or
the group database: the connecting process may have exited (its pid reused) or handed the
socket to a child with other groups, and the user's groups in /etc/group are not the
process's.
"""

from __future__ import annotations

import errno
import grp
import logging
import pwd
import socket
import struct
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)     # asm-generic/socket.h
_NGROUPS_MAX = 65536


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
    return Peer(pid, uid, gid, frozenset({gid} | _peer_groups(sock)))


def _peer_groups(sock: socket.socket) -> set[int]:
    """The supplementary groups the peer had at connect(). A kernel without SO_PEERGROUPS
    (< 4.13) gives none: the peer then has its primary group alone, never more."""
    size = 64 * 4
    while True:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size)
        except OSError as e:
            if e.errno == errno.ERANGE and size < _NGROUPS_MAX * 4:
                size *= 16              # the kernel says how many it needs only in optlen
                continue
            if e.errno == errno.ENOPROTOOPT:
                log.warning("SO_PEERGROUPS is not supported by this kernel: API clients are "
                            "judged by their primary group only")
                return set()
            raise
        n = len(raw) // 4
        return set(struct.unpack(f"{n}I", raw[:n * 4]))


def group_id(name: str | None) -> int | None:
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None
