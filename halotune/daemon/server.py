"""The API socket: framing, limits, authorisation, dispatch (protocol in docs/api.md).

The daemon runs as root and its socket is open to a group of readers, so what one client may
hold is bounded: connections in total and per user (root and the admin group keep a reserve
beyond both, so a reader holding every slot cannot lock them out), the time a connection may
sit idle or take to finish a request line, and the answers queued for a client that does not
read them (reading stops until they drain). Failed accepts (EMFILE) are logged once a minute.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import json
import logging
import os
import resource
import socket
import time

from halotune.daemon.connection import Connection
from halotune.machine.peers import Peer, group_id, peer_of

log = logging.getLogger("halotune.daemon")

MAX_REQUEST = 64 * 1024
PRIVILEGED_RESERVE = 32           # connections only root and the admin group may use
FD_HEADROOM = 64                  # descriptors kept for the journal, sysfs, programs, logs
READ_METHODS = {"hello", "status", "subscribe", "unsubscribe", "history", "profiles", "verify",
                "events", "record"}
MUTATING_METHODS = {"apply", "rollback", "confirm", "hold", "release", "validate"}


class ApiError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Server:
    """Accepts connections and hands each request to `handlers` (the Daemon)."""

    def __init__(self, handlers, path: str, api):
        """`api`: the [api] configuration (groups, connection limits, idle timeout)."""
        self.handlers = handlers
        self.path = path
        self.socket_gid = group_id(api.socket_group)
        self.admin_gid = group_id(api.admin_group)
        self.socket_group, self.admin_group = api.socket_group, api.admin_group
        self.max_per_user = api.max_connections_per_user
        self.idle_timeout_s = api.idle_timeout_s
        # Every connection is a descriptor: the total must fit the process's limit (systemd's
        # default soft limit is 1024; the unit raises it), with the reserve on top.
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        budget = (soft if soft != resource.RLIM_INFINITY else 65536) - FD_HEADROOM
        self.max_connections = max(1, min(api.max_connections, budget - PRIVILEGED_RESERVE))
        self.connections: set[Connection] = set()
        self._per_uid: collections.Counter[int] = collections.Counter()
        self._unprivileged = 0
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.AbstractServer | None = None
        self._accept_errors = 0
        self._accept_logged = 0.0

    # --- socket lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._default_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)
        _claim_socket_path(self.path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        old = os.umask(0o117)     # the socket is born 0660: never briefly world-connectable
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path,
                                                           limit=MAX_REQUEST)
        finally:
            os.umask(old)
        if self.socket_gid is not None:
            try:
                os.chown(self.path, -1, self.socket_gid)
            except PermissionError:
                log.warning("cannot give %s to group %s (not root): only this user can connect",
                            self.path, self.socket_group)
        os.chmod(self.path, 0o660)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for c in list(self.connections):
            c.close()
            c.writer.close()           # the handler's read ends with EOF
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _loop_exception(self, loop, context: dict) -> None:
        """asyncio logs a failed accept (EMFILE, ENFILE) with a traceback each time it retries:
        gigabytes of log in minutes when the descriptors run out. Once a minute is enough."""
        if "out of system resource" in str(context.get("message", "")):
            self._accept_errors += 1
            now = time.monotonic()
            if now - self._accept_logged >= 60:
                self._accept_logged = now
                log.error("cannot accept API connections: %s (%d time(s) in the last minute; "
                          "%d connections open)", context.get("exception"),
                          self._accept_errors, len(self.connections))
                self._accept_errors = 0
            return
        if self._default_handler is not None:
            self._default_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    # --- authorisation ---------------------------------------------------------------------------
    def may_read(self, peer: Peer) -> bool:
        return (peer.uid in (0, os.geteuid())
                or (self.socket_gid is not None and self.socket_gid in peer.groups)
                or self.may_mutate(peer))

    def may_mutate(self, peer: Peer) -> bool:
        return peer.uid in (0, os.geteuid()) or (
            self.admin_gid is not None and self.admin_gid in peer.groups)

    # --- one connection --------------------------------------------------------------------------
    def _admit(self, peer: Peer) -> str | None:
        """Why this connection is refused (None: admitted)."""
        if self.may_mutate(peer):
            if len(self.connections) >= self.max_connections + PRIVILEGED_RESERVE:
                return f"too many connections ({len(self.connections)} open)"
            return None
        if self._per_uid[peer.uid] >= self.max_per_user:
            return (f"too many connections from uid {peer.uid} ({self.max_per_user} at most "
                    "per user); close some")
        if self._unprivileged >= self.max_connections:
            return f"too many connections ({self.max_connections} at most); try again later"
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            peer = peer_of(sock)
        except OSError:
            writer.close()
            return
        refusal = self._admit(peer)
        if refusal:
            self.handlers.events.refused(peer, "connect", refusal)
            writer.write(json.dumps(_error(None, "EBUSY", refusal)).encode() + b"\n")
            writer.close()
            return
        privileged = self.may_mutate(peer)
        if not privileged:
            self._per_uid[peer.uid] += 1
            self._unprivileged += 1
        conn = Connection(reader, writer, peer)
        self.connections.add(conn)
        task = asyncio.current_task()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        writer_task = asyncio.create_task(conn.writer_loop())
        try:
            while not conn.closing:
                # Subscribers and holders wait for the daemon, not the other way round.
                idle = None if (conn.sub_interval or conn.sub_events or conn.holds) \
                    else self.idle_timeout_s
                try:
                    line = await asyncio.wait_for(reader.readuntil(b"\n"), idle)
                except asyncio.TimeoutError:
                    conn.answer(_error(None, "ETIMEDOUT", f"no complete request for "
                                       f"{self.idle_timeout_s:g} s: connection closed"))
                    conn.close()
                    break
                except asyncio.LimitOverrunError:
                    conn.answer(_error(None, "E2BIG", f"request over {MAX_REQUEST} bytes"))
                    conn.close()
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                if len(line) > MAX_REQUEST:      # the reader's limit leaves out the newline
                    conn.answer(_error(None, "E2BIG", f"request over {MAX_REQUEST} bytes"))
                    conn.close()
                    break
                await self._handle_line(conn, line)
                # Answers the client has not read: read no more requests until they drain.
                if not await conn.drained():
                    break
        finally:
            self.connections.discard(conn)
            if not privileged:
                self._per_uid[peer.uid] -= 1
                if not self._per_uid[peer.uid]:
                    del self._per_uid[peer.uid]
                self._unprivileged -= 1
            conn.close()
            await self.handlers.disconnected(conn)
            try:
                await asyncio.wait_for(writer_task, 6)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - the client is gone
                writer_task.cancel()

    async def _handle_line(self, conn: Connection, line: bytes) -> None:
        try:
            req = json.loads(line, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as e:
            conn.answer(_error(None, "EPROTO", f"not JSON: {e}"))
            return
        except RecursionError:
            conn.answer(_error(None, "EPROTO", "not JSON this API accepts: nested too deeply"))
            return
        rid = req.get("id") if isinstance(req, dict) else None
        if not isinstance(rid, (str, int, type(None))) or isinstance(rid, bool):
            rid = None                           # echo only what a client can match on
        if not isinstance(req, dict) or type(req.get("v")) is not int or req.get("v") != 1:
            conn.answer(_error(rid, "EPROTO", 'a request is an object with "v": 1'))
            return
        method, params = req.get("method"), req.get("params", {})
        if params is None:
            params = {}
        if not isinstance(method, str) or not isinstance(params, dict):
            conn.answer(_error(rid, "EPROTO", '"method" must be a string, "params" an object'))
            return
        if method not in READ_METHODS | MUTATING_METHODS:
            conn.answer(_error(rid, "ENOSYS", f"unknown method {method!r}"))
            return
        allowed = self.may_mutate(conn.peer) if method in MUTATING_METHODS else self.may_read(conn.peer)
        if not allowed:
            who = f"uid {conn.peer.uid} ({conn.peer.user}), pid {conn.peer.pid}"
            need = (f"root or membership of group {self.admin_group}" if self.admin_group
                    else "root") if method in MUTATING_METHODS else f"group {self.socket_group}"
            self.handlers.events.refused(conn.peer, method, f"needs {need}")
            conn.answer(_error(rid, "EPERM", f"{method} needs {need} ({who})"))
            return
        try:
            result = await getattr(self.handlers, f"api_{method}")(conn, params)
            conn.answer({"v": 1, "id": rid, "ok": True, "result": result})
        except ApiError as e:
            conn.answer(_error(rid, e.code, e.message))
        except Exception as e:  # noqa: BLE001 - one bad request must not take the daemon down
            log.exception("%s failed", method)
            conn.answer(_error(rid, "EIO", f"{method} failed: {e}"))


def _no_constant(name: str):
    """NaN and Infinity are not JSON (Python's json reads them by default)."""
    raise ValueError(f"{name} is not a JSON value")


def _error(rid, code: str, message: str) -> dict:
    return {"v": 1, "id": rid, "ok": False, "error": {"code": code, "message": message}}


def _claim_socket_path(path: str) -> None:
    """Refuse when another daemon answers on `path`; remove a stale socket left by a crash."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            os.unlink(path)
            return
        raise
    finally:
        probe.close()
    raise ApiError("EBUSY", f"another halotune daemon is serving {path}")
