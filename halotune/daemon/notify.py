"""sd_notify(3) without libsystemd: tell systemd the daemon is ready, alive, stopping, and what
it is doing (`STATUS=`, shown by `systemctl status halotune`).

Protocol (systemd's sd_notify, man 3): one datagram on an AF_UNIX SOCK_DGRAM socket whose
address is in $NOTIFY_SOCKET, holding newline-separated `NAME=value` assignments. The address
is a file system path ("/run/systemd/notify") or, when it starts with "@", a name in the
abstract namespace (the "@" becomes a NUL byte). With `NotifyAccess=main` in the unit, only the
main process (this one, not a child or a forked worker) may send.

Every function here returns False instead of raising: outside systemd ($NOTIFY_SOCKET unset),
under a manager that went away, or on any socket error, the daemon must go on working.
$NOTIFY_SOCKET is left in the environment (unlike sd_notify's unset_environment=1): the
daemon sends many messages over its life, and it never execs anything that should inherit it
as a main process would (children are plain helpers such as ryzenadj, which ignore it).

Watchdog: with `WatchdogSec=` in the unit, systemd sets $WATCHDOG_USEC (and $WATCHDOG_PID, the
process it expects pings from) and restarts the service when no `WATCHDOG=1` arrives in time.
`watchdog_interval()` answers how often to ping: half the timeout, as sd_watchdog_enabled(3)
advises, or None when no watchdog is meant for this process.

Logging: `JournalFormatter` prefixes each line with its syslog priority as "<3>" ... "<7>"
(sd-daemon(3)), which journald turns into the entry's PRIORITY when stderr is connected to it
(`journal_stream()`); `journalctl -u halotune -p warning` then filters by level.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time

__all__ = ["JournalFormatter", "journal_stream", "notify", "ready", "reloading", "status",
           "stopping", "watchdog", "watchdog_interval"]

# STATUS= is shown on one line of `systemctl status`; systemd itself keeps at most a few KiB.
_MAX_STATUS = 512


def _address(value: str) -> str | bytes | None:
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()          # abstract namespace
    if value.startswith("/"):
        return value
    return None          # "vsock:..." (systemd >= 253, VMs) and anything else: not supported


def notify(*lines: str) -> bool:
    """Send `lines` ("READY=1", "STATUS=...") as one datagram to $NOTIFY_SOCKET.

    True when the datagram was sent; False when $NOTIFY_SOCKET is unset or unusable, or the
    send failed. Never raises. A newline inside a line would start a new assignment, so any
    is replaced by a space.
    """
    target = os.environ.get("NOTIFY_SOCKET")
    if not target or not lines:
        return False
    address = _address(target)
    if address is None:
        return False
    try:
        payload = "\n".join(str(line).replace("\n", " ") for line in lines).encode("utf-8")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(1.0)        # a full receive queue must not stall the daemon
            sock.sendto(payload, address)
        return True
    except (OSError, ValueError, UnicodeError):
        return False


def _status_line(text: str) -> str:
    text = " ".join(str(text).split())          # one line, no control whitespace
    if len(text) > _MAX_STATUS:
        text = text[:_MAX_STATUS - 3] + "..."
    return f"STATUS={text}"


def ready(status: str | None = None) -> bool:
    """Start-up is complete (Type=notify: `systemctl start` returns now)."""
    return notify("READY=1", *([_status_line(status)] if status is not None else []))


def status(text: str) -> bool:
    """Free-form status: the active profile and the last verify, for `systemctl status`."""
    return notify(_status_line(text))


def stopping(status: str | None = None) -> bool:
    """Shutdown has begun (the rollback may take a few seconds)."""
    return notify("STOPPING=1", *([_status_line(status)] if status is not None else []))


def reloading(status: str | None = None) -> bool:
    """A configuration reload has begun; send ready() when it is done. MONOTONIC_USEC is the
    CLOCK_MONOTONIC time of the request, which Type=notify-reload (systemd >= 253) requires."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}",
                  *([_status_line(status)] if status is not None else []))


def watchdog() -> bool:
    """Keep-alive ping: send at least every watchdog_interval() seconds."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of $WATCHDOG_USEC), or None when systemd expects
    none from this process: no watchdog configured, an unparsable value, or $WATCHDOG_PID
    naming another process (the variables were inherited from a parent)."""
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000


# --- journald-friendly stderr --------------------------------------------------------------

# logging level -> syslog priority (sd-daemon(3) prefixes: <3> err, <4> warning, <6> info ...)
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
             (logging.INFO, 6), (logging.NOTSET, 7))


def syslog_priority(levelno: int) -> int:
    for level, prio in _PRIORITY:
        if levelno >= level:
            return prio
    return 7


def journal_stream(stream=None) -> bool:
    """True when `stream` (stderr by default) is the journal stream systemd connected the
    service to: $JOURNAL_STREAM holds "device:inode" of that stream (systemd.exec(5))."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        fd = (stream or sys.stderr).fileno()
        st = os.fstat(fd)
        return st.st_dev == int(dev) and st.st_ino == int(ino)
    except (OSError, ValueError, AttributeError):
        return False


class JournalFormatter(logging.Formatter):
    """One journal entry per line, each with its priority prefix; no time stamp (journald
    adds its own). A multi-line message (a traceback) keeps the prefix on every line, so no
    line of it lands in the journal at the default priority."""

    def __init__(self, fmt: str = "%(name)s: %(message)s"):
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines() or [""])
