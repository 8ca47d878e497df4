"""A small synchronous client of the daemon's API (used by the CLI and scripts)."""

from __future__ import annotations

import itertools
import json
import os
import socket

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
