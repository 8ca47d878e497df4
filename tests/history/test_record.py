"""Where results go: the daemon (API method "record"), the state database, the user database;
and the daemon side of "record" (validation, limits, the stored origin)."""

from __future__ import annotations

import importlib
import json
import os
import socketserver
import stat
import threading
from types import SimpleNamespace

import pytest

from halotune.daemon import record as drecord
from halotune.daemon.server import ApiError
from halotune.history.db import HistoryDB, HistoryError
from halotune.history.record import record, record_run, state_db_path, user_db_path
from halotune.machine.peers import Peer, peer_of

from .helpers import MODEL, fingerprint, make_tests

hrecord = importlib.import_module("halotune.history.record")


def fields(**kw):
    return dict(dict(kind="bench", tests=make_tests(), fingerprint=fingerprint(), model=MODEL,
                     backend="CPU"), **kw)


class FakeDaemon:
    """The daemon's wire protocol (docs/api.md) with `hello` and `record` (handle_record)."""

    def __init__(self, sock_path: str, root: str, state_dir: str, methods=("hello", "record")):
        service = SimpleNamespace(state_dir=state_dir)
        outer = self
        self.calls = []

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                peer = peer_of(self.request)
                for line in self.rfile:
                    req = json.loads(line)
                    outer.calls.append(req["method"])
                    try:
                        if req["method"] not in methods:
                            raise ApiError("ENOSYS", f"unknown method {req['method']!r}")
                        if req["method"] == "hello":
                            result = {"api": 1, "root": root, "methods": list(methods)}
                        else:
                            result = drecord.handle_record(service, req["params"], peer)
                        msg = {"v": 1, "id": req["id"], "ok": True, "result": result}
                    except ApiError as e:
                        msg = {"v": 1, "id": req["id"], "ok": False,
                               "error": {"code": e.code, "message": e.message}}
                    self.wfile.write(json.dumps(msg).encode() + b"\n")

        self.server = socketserver.ThreadingUnixStreamServer(sock_path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def root(hist_env):
    r = hist_env / "root"
    r.mkdir()
    return str(r)


def test_paths(hist_env, root):
    assert state_db_path(root) == os.path.join(root, ".halotune-state", "history.db")
    assert state_db_path("/") == "/var/lib/halotune/history.db"
    assert user_db_path() == str(hist_env / "xdg-state" / "halotune" / "history.db")


def test_state_database_when_writable(root):
    done = record(**fields(), root=root)
    assert done.via == "state" and done.ref == str(done.id)
    assert done.db == state_db_path(root)
    assert stat.S_IMODE(os.stat(done.db).st_mode) == 0o640
    with HistoryDB(done.db, readonly=True) as db:
        run = db.get_run(done.id)
    assert run["origin"]["via"] == "state" and run["origin"]["uid"] == os.getuid()


def test_user_database_when_the_state_one_is_not_writable(root, monkeypatch):
    monkeypatch.setattr(hrecord, "may_write", lambda path: False)
    done = record(**fields(), root=root)
    assert done.via == "user" and done.ref == f"u{done.id}"
    assert done.db == user_db_path()
    assert stat.S_IMODE(os.stat(done.db).st_mode) == 0o600
    assert not os.path.exists(state_db_path(root))


def test_may_write_walks_up_to_an_existing_directory(tmp_path):
    assert hrecord.may_write(str(tmp_path / "a" / "b" / "history.db"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert not hrecord.may_write(str(blocker / "sub" / "history.db"))


def test_a_broken_state_database_falls_back_to_the_user_one(root):
    path = state_db_path(root)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"garbage " * 1000)
    done = record(**fields(), root=root)
    assert done.via == "user"


def test_record_run_returns_none_when_nothing_can_store(root, monkeypatch):
    monkeypatch.setattr(hrecord, "may_write", lambda path: False)
    monkeypatch.setenv("XDG_STATE_HOME", os.path.join(root, "file-not-dir"))
    with open(os.path.join(root, "file-not-dir"), "w") as f:
        f.write("")
    assert record_run(**fields(), root=root) is None
    with pytest.raises(HistoryError, match="cannot store the result"):
        record(**fields(), root=root)


def test_through_the_daemon_when_not_root(root, hist_env, monkeypatch):
    state_dir = str(hist_env / "daemon-state")
    sock = str(hist_env / "api.sock")
    daemon = FakeDaemon(sock, root, state_dir)
    try:
        monkeypatch.setattr(hrecord.os, "geteuid", lambda: 1000)
        done = record(**fields(label="via daemon"), root=root, socket=sock)
        assert done.via == "daemon" and done.db == os.path.join(state_dir, "history.db")
        assert daemon.calls == ["hello", "record"]
        with HistoryDB(done.db, readonly=True) as db:
            run = db.get_run(done.id)
        assert run["label"] == "via daemon"
        assert run["origin"] == {"via": "daemon", "uid": os.getuid(), "pid": os.getpid()}
        assert [t["name"] for t in run["tests"]] == ["pp64", "tg16"]
        assert not os.path.exists(state_db_path(root))       # the daemon was the only writer
        # root writes the state database itself, even with a daemon running
        monkeypatch.setattr(hrecord.os, "geteuid", lambda: 0)
        assert record(**fields(), root=root, socket=sock).via == "state"
    finally:
        daemon.close()


def test_daemon_of_another_root_or_without_record_is_not_used(root, hist_env, monkeypatch):
    monkeypatch.setattr(hrecord.os, "geteuid", lambda: 1000)
    for n, (droot, methods) in enumerate([("/elsewhere", ("hello", "record")),
                                          (root, ("hello",))]):
        sock = str(hist_env / f"api{n}.sock")
        daemon = FakeDaemon(sock, droot, str(hist_env / f"s{n}"), methods)
        try:
            assert record(**fields(), root=root, socket=sock).via == "state"
            assert daemon.calls == ["hello"]
        finally:
            daemon.close()


def test_a_daemon_refusal_falls_back(root, hist_env, monkeypatch):
    monkeypatch.setattr(hrecord.os, "geteuid", lambda: 1000)
    sock = str(hist_env / "api.sock")
    daemon = FakeDaemon(sock, root, str(hist_env / "s"))
    try:
        bad = fields(tests=[{"name": "tg16", "tokens_per_s": -5.0}])
        assert record(**bad, root=root, socket=sock).via == "state"
        assert daemon.calls == ["hello", "record"]
    finally:
        daemon.close()


# --- the daemon side --------------------------------------------------------------------------

PEER = Peer(pid=4242, uid=1000, gid=1000)


@pytest.fixture
def service(hist_env):
    drecord._recent.clear()
    return SimpleNamespace(state_dir=str(hist_env / "state"))


def params(**kw):
    return dict(dict(kind="probe", tests=make_tests(), fingerprint=fingerprint(), model=MODEL,
                     backend="llama-bench", result={"roofline": {"tg_efficiency": 0.6}}), **kw)


def test_handle_record_stores_with_origin(service):
    res = drecord.handle_record(service, params(label="x"), PEER)
    assert res["db"] == os.path.join(service.state_dir, "history.db")
    assert stat.S_IMODE(os.stat(res["db"]).st_mode) == 0o640
    with HistoryDB(res["db"], readonly=True) as db:
        run = db.get_run(res["id"])
        assert db.last_tg_efficiency() == 0.6
    assert run["origin"] == {"via": "daemon", "uid": 1000, "pid": 4242}
    assert run["tests"][1]["samples"] == pytest.approx([152.1699, 149.5699])


@pytest.mark.parametrize("bad, msg", [
    ({"kind": "delete"}, "kind"),
    ({"tests": [{"name": ""}]}, "tests.0.name"),
    ({"tests": [{"name": "tg16", "tokens_per_s": -1}]}, "tests.0.tokens_per_s"),
    ({"tests": [{"name": "tg16", "samples": [1.0] * 2000}]}, "tests.0.samples"),
    ({"label": "x" * 500}, "label"),
    ({"fingerprint": "not an object"}, "fingerprint"),
    ({"sql": "DROP TABLE runs"}, "sql"),
    ({"result": {"a": [[[[[[[[[[1]]]]]]]]]]}}, "nested deeper"),
    ({"result": {"blob": "x" * 70000}}, "byte limit"),
    ({"tests": [{"name": f"t{i}"} for i in range(300)]}, "tests"),
])
def test_handle_record_refuses_bad_params(service, bad, msg):
    with pytest.raises(ApiError) as e:
        drecord.handle_record(service, params(**bad), PEER)
    assert e.value.code == "EINVAL" and msg in e.value.message
    assert not os.path.exists(os.path.join(service.state_dir, "history.db"))


def test_handle_record_refuses_nan(service):
    p = params()
    p["tests"][0]["tokens_per_s"] = float("nan")
    with pytest.raises(ApiError, match="non-finite"):
        drecord.handle_record(service, p, PEER)


def test_handle_record_rate_limit(service, monkeypatch):
    monkeypatch.setattr(drecord, "RATE_PER_MINUTE", 3)
    for _ in range(3):
        drecord.handle_record(service, params(), PEER)
    with pytest.raises(ApiError) as e:
        drecord.handle_record(service, params(), PEER)
    assert e.value.code == "EAGAIN"
    drecord.handle_record(service, params(), Peer(pid=1, uid=1001, gid=1001))   # per user
