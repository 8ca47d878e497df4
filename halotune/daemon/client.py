"""A small synchronous client of the daemon's API (used by the CLI and scripts)."""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass

from halotune.daemon.config import DEFAULT_SOCKET


class ApiError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def socket_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get("HALOTUNE_SOCKET") or DEFAULT_SOCKET


class Client:
    def __init__(self, path: str | None = None, timeout: float = 120.0):
        self.path = socket_path(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(self.path)
        self._file = self.sock.makefile("rb")
        self._ids = itertools.count(1)

    @classmethod
    def try_connect(cls, path: str | None = None) -> "Client | None":
        """A client if a daemon answers on the socket, else None (act directly)."""
        p = socket_path(path)
        if not os.path.exists(p):
            return None
        try:
            return cls(p)
        except OSError:
            return None

    def send(self, method: str, params: dict | None = None) -> int:
        rid = next(self._ids)
        line = json.dumps({"v": 1, "id": rid, "method": method, "params": params or {}})
        self.sock.sendall(line.encode() + b"\n")
        return rid

    def read(self) -> dict:
        line = self._file.readline()
        if not line:
            raise ConnectionError(f"the daemon closed {self.path}")
        return json.loads(line)

    def call(self, method: str, params: dict | None = None):
        rid = self.send(method, params)
        while True:
            msg = self.read()
            if msg.get("id") == rid:
                if msg.get("ok"):
                    return msg.get("result")
                err = msg.get("error") or {}
                raise ApiError(err.get("code", "EIO"), err.get("message", "unknown error"))

    def stream(self):
        """Yield stream lines (after subscribe) until the daemon closes the connection."""
        while True:
            msg = self.read()
            if "event" in msg:
                yield msg

    def close(self) -> None:
        try:
            self._file.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class Hold:
    hold_id: str
    client: Client


@contextmanager
def daemon_hold(owner: str, reason: str, ttl_s: float = 3600, path: str | None = None):
    """Pause the daemon's rules and drift re-assertion while the block runs.

    Yields a Hold, or None when no daemon answers or it refuses (a user outside the admin
    group: the run goes on, logged). The hold ends on leaving the block, or when this
    process dies and its connection closes.
    """
    client = Client.try_connect(path)
    if client is None:
        yield None
        return
    hold = None
    try:
        try:
            result = client.call("hold", {"owner": owner, "reason": reason, "ttl_s": ttl_s})
            hold = Hold(result["hold_id"], client)
        except (ApiError, OSError, ValueError, KeyError, TypeError) as e:
            logging.getLogger("halotune").warning(
                "the daemon at %s did not grant a hold (%s): its rules may change settings "
                "during this run", client.path, e)
        yield hold
    finally:
        if hold is not None:
            try:
                client.call("release", {"hold_id": hold.hold_id})
            except (ApiError, OSError, ValueError):
                pass                    # closing the connection ends the hold anyway
        client.close()
