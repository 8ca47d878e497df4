"""Where the TUI's snapshots come from: the daemon's API stream, or direct read-only sampling.

A Source pushes updates to a `sink(kind, payload)` callable from its own thread:
    ("snapshot", doc)      a halotune.status/1 dict, with a "daemon" key when it came from one
    ("event", event)       a daemon event (apply, drift, rule, error, ...)
    ("state", info)        connection state: {"connected", "mode", "detail", "can_mutate", ...}
and answers blocking calls (profiles, history, events, apply, rollback, validate) that the app
runs in worker threads. Errors are SourceError(code, message) with the API's codes (EPERM,
EBUSY, ENOSYS, ...) plus EROFS for "read-only, no daemon" and ENOTCONN for a lost daemon.

Nothing here reads the machine: DaemonSource talks to a socket, LocalSource calls the sampling
function it is given (built by halotune.cli.status, which may import the telemetry layer).
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from typing import Callable

Sink = Callable[[str, object], None]
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.25, 10.0
RECONNECT_S = 2.0
VALIDATE_TIMEOUT_S = 3600.0   # a full validation: every profile applied, settled and probed


class SourceError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def clamp_interval(s: float | None) -> float:
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, float(s or 1.0)))


class Source:
    """The interface; the defaults are what a source without a daemon can do."""

    mode = "none"
    read_only = True
    interval_s = 1.0

    def start(self, sink: Sink) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass

    def profiles(self) -> dict:
        return {"profiles": [], "errors": []}

    def history(self, seconds: float) -> dict | None:
        return None

    def events(self) -> list[dict]:
        return []

    def apply(self, profile: str) -> dict:
        raise SourceError("EROFS", "read-only, no daemon: start `halotune daemon` (as root, or "
                                   "try `halotune status --demo`) to apply profiles")

    def rollback(self) -> dict:
        raise SourceError("EROFS", "read-only, no daemon: start `halotune daemon` to roll back")

    def validate(self) -> dict:
        raise SourceError("EROFS", "read-only, no daemon: run `halotune validate --all` in a "
                                   "terminal, or start `halotune daemon` to validate from here")


# --- the daemon ------------------------------------------------------------------------------

class _Conn:
    """One newline-JSON connection to the daemon (docs/api.md)."""

    def __init__(self, path: str, timeout: float | None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.file = self.sock.makefile("rb")
        self.ids = itertools.count(1)

    def send(self, method: str, params: dict | None = None) -> int:
        rid = next(self.ids)
        line = json.dumps({"v": 1, "id": rid, "method": method, "params": params or {}})
        self.sock.sendall(line.encode() + b"\n")
        return rid

    def read(self) -> dict:
        line = self.file.readline()
        if not line:
            raise ConnectionError("the daemon closed the connection")
        return json.loads(line)

    def call(self, method: str, params: dict | None = None, on_stream=None):
        rid = self.send(method, params)
        while True:
            msg = self.read()
            if msg.get("id") == rid and "event" not in msg:
                if msg.get("ok"):
                    return msg.get("result")
                err = msg.get("error") or {}
                raise SourceError(err.get("code", "EIO"), err.get("message", "unknown error"))
            if on_stream is not None and "event" in msg:
                on_stream(msg)

    def close(self) -> None:
        for closer in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.file.close,
                       self.sock.close):
            try:
                closer()
            except OSError:
                pass


class DaemonSource(Source):
    """The daemon's `subscribe` stream in a thread (reconnecting when it goes away), and one
    short connection per call for everything else."""

    mode = "daemon"
    read_only = False

    def __init__(self, path: str, interval_s: float = 1.0, call_timeout_s: float = 120.0):
        self.path = path
        self.interval_s = clamp_interval(interval_s)
        self.call_timeout_s = call_timeout_s
        self.hello: dict | None = None
        self._stop = threading.Event()
        self._conn: _Conn | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def probe(cls, path: str, timeout: float = 2.0) -> dict | None:
        """The daemon's `hello` if one answers on `path`, else None."""
        try:
            c = _Conn(path, timeout)
        except OSError:
            return None
        try:
            return c.call("hello")
        except (OSError, ValueError, SourceError):
            return None
        finally:
            c.close()

    def start(self, sink: Sink) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(sink,), daemon=True,
                                        name="halotune-tui-stream")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            conn.close()
        if self._thread is not None:
            self._thread.join(2.0)

    def _state(self, sink: Sink, connected: bool, detail: str) -> None:
        peer = (self.hello or {}).get("peer") or {}
        sink("state", {"mode": self.mode, "connected": connected, "detail": detail,
                       "can_mutate": peer.get("can_mutate") if connected else None,
                       "interval_s": self.interval_s, "socket": self.path,
                       "version": (self.hello or {}).get("version")})

    def _run(self, sink: Sink) -> None:
        was_connected = False
        while not self._stop.is_set():
            try:
                conn = self._conn = _Conn(self.path, None)
            except OSError as e:
                self._state(sink, False, f"no daemon on {self.path}: {e.strerror or e}")
                self._stop.wait(RECONNECT_S)
                continue
            try:
                self.hello = conn.call("hello")

                def forward(msg):
                    self._forward(sink, msg)
                result = conn.call("subscribe", {"interval_s": self.interval_s, "events": True},
                                   on_stream=forward)
                self.interval_s = float(result.get("interval_s", self.interval_s))
                self._state(sink, True, "connected")
                if not was_connected:
                    was_connected = True
                else:
                    sink("reconnected", None)
                while not self._stop.is_set():
                    self._forward(sink, conn.read())
            except (OSError, ValueError, ConnectionError, SourceError) as e:
                if not self._stop.is_set():
                    self._state(sink, False, f"daemon connection lost: {e}")
            finally:
                conn.close()
                self._conn = None
            self._stop.wait(RECONNECT_S)

    @staticmethod
    def _forward(sink: Sink, msg: dict) -> None:
        kind = msg.get("event")
        if kind == "snapshot" and isinstance(msg.get("data"), dict):
            sink("snapshot", msg["data"])
        elif kind == "event" and isinstance(msg.get("data"), dict):
            sink("event", msg["data"])
        elif kind == "dropped":
            sink("event", {"kind": "error", "message": f"the TUI fell behind: {msg.get('dropped')} "
                           "updates dropped; reconnecting"})

    def _call(self, method: str, params: dict | None = None):
        try:
            conn = _Conn(self.path, self.call_timeout_s)
        except OSError as e:
            raise SourceError("ENOTCONN", f"no daemon on {self.path}: {e.strerror or e}") from None
        try:
            return conn.call(method, params)
        except (OSError, ValueError, ConnectionError) as e:
            raise SourceError("ENOTCONN", f"daemon connection lost: {e}") from None
        finally:
            conn.close()

    def profiles(self) -> dict:
        return self._call("profiles")

    def history(self, seconds: float) -> dict | None:
        return self._call("history", {"seconds": seconds})

    def events(self) -> list[dict]:
        return self._call("events", {"since": 0, "limit": 100}).get("events", [])

    def apply(self, profile: str) -> dict:
        return self._call("apply", {"profile": profile})

    def rollback(self) -> dict:
        return self._call("rollback")

    def validate(self) -> dict:
        """Validate every profile inside the daemon (minutes: apply, settle, probe, roll back
        per profile), so this call waits far longer than the others."""
        try:
            conn = _Conn(self.path, VALIDATE_TIMEOUT_S)
        except OSError as e:
            raise SourceError("ENOTCONN", f"no daemon on {self.path}: {e.strerror or e}") from None
        try:
            return conn.call("validate", {"all": True})
        except (OSError, ValueError, ConnectionError) as e:
            raise SourceError("ENOTCONN", f"daemon connection lost: {e}") from None
        finally:
            conn.close()


# --- direct sampling ---------------------------------------------------------------------------

class LocalSource(Source):
    """Samples through `sample()` (returns a status dict) every interval, in a thread. Read-only:
    no daemon, so nothing can be applied or rolled back from here."""

    mode = "local"
    read_only = True

    def __init__(self, sample: Callable[[], dict], interval_s: float = 1.0,
                 profiles: Callable[[], dict] | None = None, close: Callable[[], None] | None = None):
        self.sample = sample
        self.interval_s = clamp_interval(interval_s)
        self._profiles = profiles
        self._close = close
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: Sink) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(sink,), daemon=True,
                                        name="halotune-tui-sampler")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._close is not None:
            self._close()
            self._close = None

    def _run(self, sink: Sink) -> None:
        sink("state", {"mode": self.mode, "connected": False, "detail": "read-only, no daemon",
                       "can_mutate": False, "interval_s": self.interval_s})
        failed = False
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                sink("snapshot", self.sample())
                failed = False
            except Exception as e:  # noqa: BLE001 - show it, keep trying
                if not failed:
                    sink("event", {"kind": "error", "message": f"sampling failed: {e!r}"})
                failed = True
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))

    def profiles(self) -> dict:
        return self._profiles() if self._profiles is not None else super().profiles()
