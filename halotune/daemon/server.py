"""The API socket: framing, limits, authorisation, dispatch (protocol in docs/api.md)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket

from halotune.daemon.connection import Connection
from halotune.machine.peers import Peer, group_id, peer_of

log = logging.getLogger("halotune.daemon")

MAX_REQUEST = 64 * 1024
READ_METHODS = {"hello", "status", "subscribe", "unsubscribe", "history", "profiles", "verify",
                "events", "record"}
MUTATING_METHODS = {"apply", "rollback", "confirm", "hold", "release", "validate"}


class ApiError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Server:
    """Accepts connections and hands each request to `handlers` (the Daemon)."""

    def __init__(self, handlers, path: str, socket_group: str | None, admin_group: str | None):
        self.handlers = handlers
        self.path = path
        self.socket_gid = group_id(socket_group)
        self.admin_gid = group_id(admin_group)
        self.socket_group, self.admin_group = socket_group, admin_group
        self.connections: set[Connection] = set()
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.AbstractServer | None = None

    # --- socket lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
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

    # --- authorisation ---------------------------------------------------------------------------
    def may_read(self, peer: Peer) -> bool:
        return (peer.uid in (0, os.geteuid())
                or (self.socket_gid is not None and self.socket_gid in peer.groups)
                or self.may_mutate(peer))

    def may_mutate(self, peer: Peer) -> bool:
        return peer.uid in (0, os.geteuid()) or (
            self.admin_gid is not None and self.admin_gid in peer.groups)

    # --- one connection --------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            peer = peer_of(sock)
        except OSError:
            writer.close()
            return
        conn = Connection(reader, writer, peer)
        self.connections.add(conn)
        task = asyncio.current_task()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        writer_task = asyncio.create_task(conn.writer_loop())
        try:
            while not conn.closing:
                try:
                    line = await reader.readuntil(b"\n")
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
        finally:
            self.connections.discard(conn)
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
            self.handlers.events.add("auth", f"refused {method} from {who}")
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
