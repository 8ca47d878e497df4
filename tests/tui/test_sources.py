"""The TUI's sources: DaemonSource against a scripted daemon on a Unix socket (stream, calls,
errors, reconnection) and LocalSource around a sampling function."""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time

import pytest

from halotune.tui.sources import DaemonSource, LocalSource, SourceError, clamp_interval


class ScriptedDaemon:
    """Speaks docs/api.md on a socket: answers calls from `answers`, and after `subscribe`
    streams `stream` lines, then (if close_after_stream) closes the connection."""

    def __init__(self, path: str, answers: dict, stream=(), close_after_stream=False):
        self.path, self.answers, self.stream = path, answers, list(stream)
        self.close_after_stream = close_after_stream
        self.requests: list[dict] = []
        self.connections = 0
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(8)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb")
        try:
            for line in f:
                req = json.loads(line)
                self.requests.append(req)
                answer = self.answers.get(req["method"], {"ok": True, "result": {}})
                conn.sendall(json.dumps({"v": 1, "id": req["id"], **answer}).encode() + b"\n")
                if req["method"] == "subscribe":
                    for msg in self.stream:
                        conn.sendall(json.dumps({"v": 1, **msg}).encode() + b"\n")
                    if self.close_after_stream:
                        break
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stopped = True
        self.srv.close()


HELLO = {"ok": True, "result": {"api": 1, "version": "0.1.0", "root": "/",
                                "peer": {"uid": 1000, "pid": 1, "can_mutate": False}}}
SNAP = {"schema": "halotune.status/1", "time": "2026-01-15T12:00:00.000Z", "gpus": []}


class Sink:
    def __init__(self):
        self.q: queue.Queue = queue.Queue()

    def __call__(self, kind, payload):
        self.q.put((kind, payload))

    def until(self, pred, timeout=5.0):
        end = time.monotonic() + timeout
        seen = []
        while time.monotonic() < end:
            try:
                item = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            seen.append(item)
            if pred(item):
                return seen
        raise AssertionError(f"not seen; got {seen}")


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "api.sock")


def test_stream_calls_and_errors(sock):
    daemon = ScriptedDaemon(sock, {
        "hello": HELLO,
        "subscribe": {"ok": True, "result": {"interval_s": 0.25}},
        "apply": {"ok": False, "error": {"code": "EPERM", "message": "apply needs root (uid 1000)"}},
        "validate": {"ok": True, "result": {"schema": "halotune.validate/1", "ok": True,
                                            "summary": "1 round(s): quiet pass"}},
        "profiles": {"ok": True, "result": {"profiles": [{"name": "quiet"}], "errors": []}},
        "history": {"ok": True, "result": {"fields": ["t"], "samples": [[1.0]]}},
        "events": {"ok": True, "result": {"events": [{"seq": 1, "kind": "start"}], "next": 1}},
    }, stream=[{"event": "snapshot", "data": SNAP},
               {"event": "event", "data": {"seq": 2, "kind": "drift", "message": "x"}},
               {"event": "snapshot", "data": dict(SNAP, time="2026-01-15T12:00:01.000Z")}])
    src = DaemonSource(sock, interval_s=0.25)
    sink = Sink()
    try:
        src.start(sink)
        seen = sink.until(lambda i: i[0] == "snapshot" and i[1]["time"].endswith("01.000Z"))
        kinds = [k for k, _ in seen]
        assert kinds.index("state") < kinds.index("snapshot") and "event" in kinds
        state = next(p for k, p in seen if k == "state")
        assert state["connected"] and state["can_mutate"] is False and state["interval_s"] == 0.25
        sub = next(r for r in daemon.requests if r["method"] == "subscribe")
        assert sub["params"] == {"interval_s": 0.25, "events": True}
        with pytest.raises(SourceError) as e:
            src.apply("quiet")
        assert e.value.code == "EPERM" and "needs root" in e.value.message
        assert src.validate()["summary"] == "1 round(s): quiet pass"
        val_req = next(r for r in daemon.requests if r["method"] == "validate")
        assert val_req["params"] == {"all": True}
        assert src.profiles()["profiles"] == [{"name": "quiet"}]
        assert src.history(300) == {"fields": ["t"], "samples": [[1.0]]}
        assert src.events() == [{"seq": 1, "kind": "start"}]
        apply_req = next(r for r in daemon.requests if r["method"] == "apply")
        assert apply_req["params"] == {"profile": "quiet"}
    finally:
        src.stop()
        daemon.close()


def test_lost_daemon_is_reported_and_reconnected(sock, monkeypatch):
    monkeypatch.setattr("halotune.tui.sources.RECONNECT_S", 0.05)
    daemon = ScriptedDaemon(sock, {"hello": HELLO}, stream=[{"event": "snapshot", "data": SNAP}],
                            close_after_stream=True)
    src = DaemonSource(sock)
    sink = Sink()
    try:
        src.start(sink)
        sink.until(lambda i: i[0] == "state" and not i[1]["connected"])
        sink.until(lambda i: i[0] == "reconnected")
        assert daemon.connections >= 2
    finally:
        src.stop()
        daemon.close()


def test_no_daemon(sock):
    assert DaemonSource.probe(sock) is None
    src = DaemonSource(sock)
    sink = Sink()
    src.start(sink)
    try:
        (_, state), = sink.until(lambda i: i[0] == "state")
        assert state["connected"] is False and "no daemon on" in state["detail"]
        with pytest.raises(SourceError) as e:
            src.apply("quiet")
        assert e.value.code == "ENOTCONN"
    finally:
        src.stop()


def test_dropped_stream_becomes_an_event(sock):
    daemon = ScriptedDaemon(sock, {"hello": HELLO}, stream=[{"event": "dropped", "dropped": 17}])
    src = DaemonSource(sock)
    sink = Sink()
    try:
        src.start(sink)
        seen = sink.until(lambda i: i[0] == "event")
        assert "17 updates dropped" in seen[-1][1]["message"]
    finally:
        src.stop()
        daemon.close()


def test_probe_answers_hello(sock):
    daemon = ScriptedDaemon(sock, {"hello": HELLO})
    try:
        assert DaemonSource.probe(sock)["root"] == "/"
    finally:
        daemon.close()


def test_local_source_samples_read_only():
    calls = []

    def sample():
        calls.append(1)
        if len(calls) == 2:
            raise OSError("gone")
        return dict(SNAP, n=len(calls))

    closed = []
    src = LocalSource(sample, interval_s=0.25, profiles=lambda: {"profiles": [{"name": "a"}]},
                      close=lambda: closed.append(1))
    sink = Sink()
    src.start(sink)
    try:
        seen = sink.until(lambda i: i[0] == "snapshot" and i[1]["n"] == 3)
        assert seen[0] == ("state", {"mode": "local", "connected": False,
                                     "detail": "read-only, no daemon", "can_mutate": False,
                                     "interval_s": 0.25})
        errors = [p for k, p in seen if k == "event"]
        assert len(errors) == 1 and "sampling failed" in errors[0]["message"]
        assert src.read_only and src.profiles() == {"profiles": [{"name": "a"}]}
        for call in (lambda: src.apply("quiet"), src.rollback):
            with pytest.raises(SourceError) as e:
                call()
            assert e.value.code == "EROFS" and "read-only, no daemon" in e.value.message
    finally:
        src.stop()
    assert closed == [1]


@pytest.mark.parametrize("asked, got", [(None, 1.0), (0.01, 0.25), (0.5, 0.5), (60, 10.0)])
def test_interval_is_clamped(asked, got):
    assert clamp_interval(asked) == got


def test_socket_path_is_not_created(sock):
    DaemonSource.probe(sock)
    assert not os.path.exists(sock)
