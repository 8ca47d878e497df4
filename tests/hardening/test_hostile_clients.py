"""The hostile-client campaign (issue 15) against a running daemon: what a reader (a member of the socket's group)
can hold of a root daemon is bounded, root and the admin group always get through, and the
peer's groups are the ones the kernel captured at connect().

Readers are real unprivileged processes: a forked child drops to a system user with the
reader group as its only group (the tests need root, as CI has)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import socket
import tempfile
import threading
import time

import pytest

from daemon.conftest import wait_for

from halotune.machine.peers import peer_of

from .conftest import record

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: drops to other users")


@pytest.fixture
def start_daemon(launcher):
    return launcher


def _ids(*names: str) -> list[int]:
    out = []
    for name in names:
        try:
            out.append(pwd.getpwnam(name).pw_uid)
        except KeyError:
            pytest.skip(f"no user {name} on this system")
    return out


def _nogroup() -> int:
    try:
        return grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no group nogroup on this system")


class Reader:
    """A child process running as `uid` with the reader group only: opens `n` connections,
    calls `hello` on each, reports what each answered, then holds them until release()."""

    def __init__(self, path: str, uid: int, gid: int, n: int, refused_calls: int = 0):
        self._go_r, self._go_w = os.pipe()
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:                              # the child: never returns
            os.close(r)
            os.close(self._go_w)
            results, conns = [], []
            try:
                os.setgroups([gid])
                os.setgid(gid)
                os.setuid(uid)
                for _ in range(n):
                    s = socket.socket(socket.AF_UNIX)
                    s.settimeout(10)
                    s.connect(path)
                    try:
                        s.sendall(b'{"v": 1, "id": 1, "method": "hello"}\n')
                    except BrokenPipeError:
                        pass                   # refused at once: its answer is waiting
                    answer = json.loads(s.makefile("rb").readline() or b"null")
                    results.append(answer["result"]["peer"]["uid"] if answer and answer["ok"]
                                   else answer["error"]["code"] if answer else "closed")
                    conns.append(s)
                for _ in range(refused_calls):         # readers may not apply
                    conns[0].sendall(b'{"v": 1, "id": 2, "method": "apply", '
                                     b'"params": {"profile": "quiet"}}\n')
                    conns[0].makefile("rb").readline()
            except BaseException as e:  # noqa: BLE001 - report everything to the parent
                results.append(repr(e))
            os.write(w, json.dumps(results).encode() + b"\n")
            os.read(self._go_r, 1)                     # hold the connections until released
            os._exit(0)
        os.close(w)
        os.close(self._go_r)
        with os.fdopen(r, "rb") as f:
            self.results = json.loads(f.readline())

    def release(self) -> None:
        os.write(self._go_w, b"x")
        os.close(self._go_w)
        os.waitpid(self.pid, 0)


@pytest.fixture
def reader_socket():
    d = tempfile.mkdtemp(prefix="halotune-hostile-")
    os.chmod(d, 0o755)                 # the readers must reach the socket
    return os.path.join(d, "api.sock")


LIMITS = """[api]
socket_group = "nogroup"
max_connections = 8
max_connections_per_user = 4
idle_timeout_s = 3
"""


def test_readers_cannot_lock_out_root_or_each_other_beyond_their_share(start_daemon,
                                                                          reader_socket):
    gid = _nogroup()
    nobody, daemon_user, bin_user = _ids("nobody", "daemon", "bin")
    d = start_daemon(LIMITS, socket=reader_socket)
    a = Reader(reader_socket, nobody, gid, 6)
    b = Reader(reader_socket, daemon_user, gid, 4)
    c = Reader(reader_socket, bin_user, gid, 1)
    try:
        # 4 per user; 8 readers in total: the ninth reader connection is refused too.
        assert a.results == [nobody] * 4 + ["EBUSY"] * 2
        assert b.results == [daemon_user] * 4
        assert c.results == ["EBUSY"]
        # Root still gets through (the reserve beyond the readers' total).
        assert d.call("status")["schema"] == "halotune.status/1"
        refusals = [e for e in d.events("auth") if "too many connections" in e["message"]]
        assert {e["data"]["uid"] for e in refusals} == {nobody, bin_user}
    finally:
        for r in (a, b, c):
            r.release()


def test_an_idle_reader_connection_is_closed(start_daemon, reader_socket):
    gid = _nogroup()
    (nobody,) = _ids("nobody")
    start_daemon(LIMITS, socket=reader_socket)
    a = Reader(reader_socket, nobody, gid, 4)
    try:
        assert a.results == [nobody] * 4
        # Idle for the timeout: the daemon closes them, so the same user connects again.
        def slots_free():
            again = Reader(reader_socket, nobody, gid, 1)
            again.release()
            return again.results == [nobody]
        wait_for(slots_free, 15, 0.5, "the idle connections to be closed")
    finally:
        a.release()


def test_a_flood_of_refused_calls_keeps_the_event_history(start_daemon, reader_socket):
    gid = _nogroup()
    (nobody,) = _ids("nobody")
    d = start_daemon(LIMITS, socket=reader_socket)
    d.call("hold", {"owner": "admin-test"})             # an admin's event, before the flood
    flood = Reader(reader_socket, nobody, gid, 1, refused_calls=1500)
    try:
        events = d.events()
        kinds = [e["kind"] for e in events]
        assert "start" in kinds and "hold" in kinds      # not pushed out of the ring
        auth = [e for e in events if e["kind"] == "auth"]
        assert len(auth) == 1                            # one per user and minute
        assert f"uid {nobody}" in auth[0]["message"]
    finally:
        flood.release()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_pipelined_requests_without_reading_do_not_grow_the_daemon(start_daemon):
    d = start_daemon()
    before = _rss_kib(d.pid)
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.socket)
    s.settimeout(0.5)
    request = b'{"v": 1, "method": "status"}\n'
    sent = 0

    def pipeline():                       # never reads an answer
        nonlocal sent
        try:
            while sent < 9_000_000:
                s.sendall(request * 1000)
                sent += len(request) * 1000
        except OSError:                    # blocked: the daemon stopped reading
            pass

    t = threading.Thread(target=pipeline)
    t.start()
    t.join(30)
    time.sleep(1.0)
    grown_mib = (_rss_kib(d.pid) - before) / 1024
    s.close()
    # Before: every status answer (~10 KB) was queued: 700+ MB for 9 MB of requests.
    record("hostile: pipelined requests never read", sent_bytes=sent,
           daemon_growth_mib=round(grown_mib, 1))
    assert sent < 9_000_000, "the daemon kept reading requests nobody read answers to"
    assert grown_mib < 64, f"daemon grew by {grown_mib:.0f} MiB"
    assert d.call("status")["schema"] == "halotune.status/1"


def test_peer_groups_are_those_at_connect_not_the_group_database():
    # The connecting process has groups the user database does not give that user; it
    # connects and exits (its pid may be reused): the daemon must see the groups it had.
    (nobody,) = _ids("nobody")
    listener = socket.socket(socket.AF_UNIX)
    name = f"\0halotune-peergroups-{os.getpid()}"
    listener.bind(name)
    listener.listen(1)
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([4, 27, 4242])
            os.setgid(65534)
            os.setuid(nobody)
            s = socket.socket(socket.AF_UNIX)
            s.connect(name)
            s.close()
        finally:
            os._exit(0)
    conn, _ = listener.accept()
    os.waitpid(pid, 0)
    peer = peer_of(conn)
    conn.close()
    listener.close()
    assert peer.uid == nobody
    assert peer.groups == frozenset({65534, 4, 27, 4242})


def test_refusals_are_counted_into_one_event_per_user_and_minute(monkeypatch):
    from halotune.daemon import events as events_mod
    from halotune.machine.peers import Peer

    clock = [1000.0]
    monkeypatch.setattr(events_mod.time, "monotonic", lambda: clock[0])
    log = events_mod.EventLog(maxlen=10)
    log.add("start", "daemon started")
    reader, other = Peer(101, 65534, 65534), Peer(202, 1, 1)
    assert log.refused(reader, "apply", "needs root") is not None
    for _ in range(500):
        assert log.refused(reader, "rollback", "needs root") is None
    assert log.refused(other, "apply", "needs root") is not None    # another user: its own
    clock[0] += events_mod.REFUSAL_WINDOW_S
    later = log.refused(reader, "confirm", "needs root")
    assert "500 more refusal(s)" in later["message"] and later["data"]["unlogged"] == 500
    for n in range(50):                      # a reader's own events fill only their ring
        log.add("record", f"run {n} recorded")
    kinds = [e["kind"] for e in log.since(0, 1000)["events"]]
    assert kinds == ["start"] + ["record"] * 10     # "start" outlives 53 reader events
