"""Fuzzing, campaign 2 of issue #8: the daemon's API (docs/api.md) over its Unix socket.

One real daemon (a child process, on the simulated Strix Halo) serves the whole module. Every
input gets exactly one answer line: a JSON object with "v": 1 and "ok", and on failure one of
the documented error codes; the connection stays usable (but after E2BIG, which closes it), and
the daemon keeps serving everyone else. Targets:
- structured requests: any method name (the documented ones, near misses, random text), any
  `v` and `id`, params with the documented names and values of every JSON type (huge numbers,
  NaN and Infinity as Python's json reads them, nested arrays and objects, long strings);
- valid request lines with bytes flipped, inserted and deleted (non-UTF-8, truncated JSON);
- fixed cases: 70 KB / 1 MB / 10 MB lines (E2BIG, then closed), requests sent one byte at a
  time, half a line then a disconnect, 50 pipelined requests, connections closed at once, or
  right after `subscribe` or a large `history` answer, empty and CRLF lines, a BOM.
At the end of each campaign (each test checks the daemon it fuzzed, in any order): the daemon
still answers, its log holds no unhandled exception, and its RSS is reported. The bugs found
have their own regression tests at the end of this file.
Figure: inputs tried per target, crashes (0).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .conftest import Tally, daemon_rss_kib, fuzz_settings, record

CODES = {"EPROTO", "E2BIG", "ENOSYS", "EINVAL", "ENOENT", "EPERM", "EBUSY", "EIO", "ENODEV",
         "EAGAIN", "ENOSPC"}
METHODS = ["hello", "status", "subscribe", "unsubscribe", "history", "profiles", "verify",
           "events", "record", "validate", "apply", "rollback", "confirm", "hold", "release"]
# Parameter names of every method (docs/api.md). `validate`'s profiles/all/sweep are left out
# on purpose: a well-formed one runs probes for minutes; its parameter checks are reached
# through the other names (anything else is EINVAL).
PARAMS = ["profile", "dry_run", "confirm_s", "interval_s", "events", "seconds", "since", "limit",
          "owner", "reason", "ttl_s", "hold_id", "kind", "tests", "fingerprint", "result",
          "label", "measured_at", "rounds", "budget_s", "backend"]
CONFIG = """\
[daemon]
sample_interval_s = 0.2
history_s = 60

[api]
socket_group = ""
"""


class Conn:
    """A raw API connection: send bytes, read answer lines (stream lines are skipped)."""

    def __init__(self, path: str, timeout: float = 15.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes | None:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def answer(self) -> dict | None:
        """The next line that is not a stream line; None when the daemon closed."""
        while True:
            raw = self.line()
            if raw is None:
                return None
            msg = json.loads(raw)
            if not (isinstance(msg, dict) and "event" in msg and "id" not in msg):
                return msg

    def call(self, method: str, params: dict | None = None, rid=1) -> dict | None:
        self.send(json.dumps({"v": 1, "id": rid, "method": method,
                              "params": params or {}}).encode() + b"\n")
        return self.answer()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def check_answer(msg, ctx="") -> str:
    """A well-formed answer; returns "ok" or the error code."""
    assert isinstance(msg, dict), f"{ctx}: not an object: {msg!r}"
    assert msg.get("v") == 1 and isinstance(msg.get("ok"), bool), f"{ctx}: {msg!r}"[:500]
    if msg["ok"]:
        assert "result" in msg, ctx
        return "ok"
    err = msg.get("error")
    assert isinstance(err, dict) and err.get("code") in CODES, f"{ctx}: {msg!r}"[:500]
    assert isinstance(err.get("message"), str) and err["message"], ctx
    return err["code"]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The module's daemon: (socket path, DaemonProc)."""
    from daemon.conftest import Launcher, _env
    from halotune.sim.tree import lay_out

    tmp = str(tmp_path_factory.mktemp("api-fuzz"))
    root = os.path.join(tmp, "machine")
    lay_out(root)
    launcher = Launcher(tmp, root, _env())
    d = launcher(CONFIG, base=False)
    yield d
    launcher.stop_all()


def alive(d) -> None:
    c = Conn(d.socket)
    try:
        msg = c.call("hello")
        assert msg and msg["ok"], msg
    finally:
        c.close()
    assert d.proc.poll() is None, d.stderr()[-2000:]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
    | st.text(max_size=20) | st.sampled_from(["llm-max", "quiet", "../../etc/passwd",
                                              "/etc/passwd", "", "0", "nan", "x" * 300]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=4),
    max_leaves=12)

# Mostly well-framed requests, so that most inputs reach the handlers' own checks.
request_st = st.fixed_dictionaries(
    {"v": st.sampled_from([1] * 8 + [0, 2, True, 1.0, "1", None, [1]]),
     "method": st.one_of(*[st.sampled_from(METHODS)] * 6, st.sampled_from(METHODS).map(str.upper),
                         st.text(max_size=12), json_values)},
    optional={"id": json_values,
              "params": st.one_of(*[st.dictionaries(st.sampled_from(PARAMS), json_values,
                                                    max_size=4)] * 4, json_values)})


def _safe(req: dict) -> dict:
    """Keep real changes rare: an apply of a real profile is a dry run unless the draw says
    otherwise (the engine's own fuzzing is in test_fuzz_profiles), and no confirm timers."""
    p = req.get("params")
    if req.get("method") == "apply" and isinstance(p, dict) and p.get("profile") in (
            "llm-max", "quiet") and "confirm_s" in p:
        p.pop("confirm_s")
    return req


# Always well framed: every input reaches a method's own parameter checks.
handler_st = st.fixed_dictionaries(
    {"v": st.just(1), "id": st.integers(0, 2**31), "method": st.sampled_from(METHODS),
     "params": st.dictionaries(st.sampled_from(PARAMS), json_values, max_size=5)})


@pytest.mark.parametrize("target", ["framing", "handlers"])
def test_structured_requests(api, target):
    t = Tally()

    @fuzz_settings(ci=600 if target == "framing" else 1000, full=3000)
    @given(req=request_st if target == "framing" else handler_st)
    def run(req):
        req = _safe(req)
        line = json.dumps(req).encode() + b"\n"
        c = Conn(api.socket)
        try:
            c.send(line)
            msg = c.answer()
            assert msg is not None, f"no answer to {line[:300]!r}"
            code = check_answer(msg, repr(line[:200]))
            try:
                json.dumps(req, allow_nan=False)
            except ValueError:               # NaN/Infinity: not JSON, refused as a whole
                assert code == "EPROTO", msg
            else:
                if isinstance(req.get("id"), (str, int)) and not isinstance(req.get("id"), bool):
                    assert msg.get("id") == req["id"]
            # the connection is still usable
            code2 = check_answer(c.call("hello", rid="after"), "hello after")
            assert code2 == "ok"
        finally:
            c.close()
        t.hit(code)

    run()
    survived(api, f"API requests ({target})", t.tried)
    record(f"fuzz: API requests ({target})", **t.figures())


VALID_LINES = [json.dumps(r).encode() for r in (
    {"v": 1, "id": 1, "method": "hello"},
    {"v": 1, "id": 2, "method": "status", "params": {}},
    {"v": 1, "id": 3, "method": "history", "params": {"seconds": 5}},
    {"v": 1, "id": 4, "method": "events", "params": {"since": 0, "limit": 5}},
    {"v": 1, "id": 5, "method": "apply", "params": {"profile": "quiet", "dry_run": True}},
    {"v": 1, "id": 6, "method": "hold", "params": {"owner": "fuzz", "ttl_s": 5}},
    {"v": 1, "id": 7, "method": "subscribe", "params": {"interval_s": 5, "events": False}},
    {"v": 1, "id": 8, "method": "profiles"},
)]


def test_mutated_request_bytes(api):
    t = Tally()
    mutation = st.tuples(st.sampled_from(["flip", "set", "insert", "delete"]),
                         st.integers(0, 200), st.integers(0, 255))

    @fuzz_settings(ci=600, full=3000)
    @given(base=st.sampled_from(VALID_LINES), mutations=st.lists(mutation, min_size=1,
                                                                 max_size=5))
    def run(base, mutations):
        b = bytearray(base)
        for op, pos, byte in mutations:
            pos = pos % (len(b) + 1)
            if op == "flip" and pos < len(b):
                b[pos] ^= 1 << (byte % 8)
            elif op == "set" and pos < len(b):
                b[pos] = byte
            elif op == "insert":
                b[pos:pos] = bytes([byte])
            elif op == "delete":
                del b[pos:pos + 1 + byte % 4]
        line = bytes(b).replace(b"\n", b" ") + b"\n"
        c = Conn(api.socket)
        try:
            c.send(line)
            msg = c.answer()
            assert msg is not None, f"no answer to {line!r}"
            code = check_answer(msg, repr(line))
            assert check_answer(c.call("hello", rid="after"), "hello after") == "ok"
        finally:
            c.close()
        t.hit(code)

    run()
    survived(api, "API mutated request bytes", t.tried)
    record("fuzz: API mutated request bytes", **t.figures())


def _send_big(path: str, size_: int) -> tuple[dict | None, bool]:
    """Send a line of `size_` bytes from a thread while reading: (answer, closed after)."""
    c = Conn(path, timeout=30)
    head = b'{"v":1,"id":"big","method":"hello","params":{"x":"'
    tail = b'"}}\n'
    body = head + b"a" * max(0, size_ - len(head) - len(tail)) + tail

    def sender():
        try:
            c.sock.sendall(body)
        except OSError:
            pass                          # the daemon closed after E2BIG: expected

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    try:
        msg = c.answer()
    except (OSError, ValueError):
        msg = None
    closed = False
    if msg and not msg.get("ok") and msg["error"]["code"] == "E2BIG":
        # The daemon closes: end of stream, or ECONNRESET when it closed with our unread
        # bytes still queued (Linux AF_UNIX), which is a close too.
        try:
            closed = c.line() is None
        except OSError:
            closed = True
    th.join(30)
    c.close()
    return msg, closed


def test_fixed_hostile_inputs(api):
    results: dict[str, str] = {}

    # Lines over 64 KiB: E2BIG, then the connection is closed.
    for n in (70_000, 1 << 20, 10 << 20):
        msg, closed = _send_big(api.socket, n)
        assert msg is not None and check_answer(msg, f"{n} bytes") == "E2BIG", msg
        assert closed, f"{n} bytes: the connection stays open after E2BIG"
        results[f"{n} B line"] = "E2BIG, closed"
    # Where the limit really is (documented: 64 KiB including the newline).
    accepted = max(n for n in range(65530, 65540)
                   if (check_answer(_send_big(api.socket, n)[0]) != "E2BIG"))
    results["longest accepted line"] = f"{accepted} B"

    # One byte at a time.
    c = Conn(api.socket)
    for byte in b'{"v":1,"id":"slow","method":"hello"}\n':
        c.send(bytes([byte]))
        time.sleep(0.001)
    msg = c.answer()
    assert check_answer(msg) == "ok" and msg["id"] == "slow"
    c.close()
    results["1 byte per write"] = "ok"

    # Half a line, then gone; connections closed at once; after subscribe; mid-answer.
    for _ in range(20):
        c = Conn(api.socket)
        c.send(b'{"v":1,"id":1,"method":"sta')
        c.close()
    for _ in range(30):
        Conn(api.socket).close()
    for _ in range(20):
        c = Conn(api.socket)
        c.send(b'{"v":1,"method":"subscribe","params":{"interval_s":0.1,"events":true}}\n')
        c.close()
    for _ in range(20):
        c = Conn(api.socket)
        c.send(b'{"v":1,"method":"history","params":{"seconds":3600}}\n'
               b'{"v":1,"method":"status"}\n' * 3)
        c.close()
    results["abrupt disconnects"] = "90, daemon fine"

    # Pipelined: answered in order.
    c = Conn(api.socket)
    c.send(b"".join(json.dumps({"v": 1, "id": i, "method": "hello"}).encode() + b"\n"
                    for i in range(50)))
    ids = [c.answer()["id"] for _ in range(50)]
    assert ids == list(range(50))
    c.close()
    results["50 pipelined"] = "in order"

    # Odd lines: each gets an answer, the connection stays.
    c = Conn(api.socket)
    for name, line in (("empty line", b"\n"), ("CRLF", b'{"v":1,"id":"crlf","method":"hello"}\r\n'),
                       ("BOM", b'\xef\xbb\xbf{"v":1,"id":"bom","method":"hello"}\n'),
                       ("NUL", b"\x00\x00\n"), ("not UTF-8", b'{"v":1,"id":"\xff"}\n'),
                       ("array", b"[1,2,3]\n"), ("number", b"12345\n"), ("null", b"null\n"),
                       ("v 2", b'{"v":2,"id":"v2","method":"hello"}\n'),
                       ("params a list", b'{"v":1,"method":"hello","params":[1]}\n'),
                       ("huge int", b'{"v":1,"id":' + b"9" * 5000 + b',"method":"hello"}\n'),
                       ("nested 100", b'{"v":1,"id":"n","method":"hello","params":'
                        + b'{"a":' * 100 + b"1" + b"}" * 100 + b"}\n")):
        c.send(line)
        results[name] = check_answer(c.answer(), name)
    c.close()
    survived(api, "API fixed hostile inputs", len(results))
    record("fuzz: API fixed hostile inputs", inputs=len(results) + 160, crashes=0,
           results=results)


def survived(d, campaign: str, inputs: int) -> None:
    """Called by each campaign on the daemon it has just fuzzed (so no test depends on the
    order of the file, and none checks a daemon that received nothing): the inputs were sent,
    the same daemon process is still serving, its log holds no unhandled exception, and its
    memory is reported."""
    assert inputs > 0, f"{campaign}: no input reached the daemon"
    alive(d)
    # The process serving the socket that was fuzzed is the one whose log is read below.
    c = Conn(d.socket)
    try:
        server_pid = struct.unpack("3i", c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                           struct.calcsize("3i")))[0]
    finally:
        c.close()
    assert server_pid == d.pid, (server_pid, d.pid)
    log = d.stderr()
    for marker in ("Unhandled exception", "Traceback (most recent call last)"):
        assert marker not in log, log[log.index(marker) - 200:][:3000]
    record(f"fuzz: API daemon after {campaign}", alive=True, rss_kib=daemon_rss_kib(d.pid))


# --- bugs found (regression tests) --------------------------------------------------------

@pytest.fixture
def bug_daemon(start_daemon_here):
    return start_daemon_here()


@pytest.fixture
def start_daemon_here(launcher):
    return lambda: launcher(CONFIG, base=False)


def test_deep_nesting_is_answered_with_eproto(bug_daemon):
    c = Conn(bug_daemon.socket)
    c.send(b"[" * 30000 + b"]" * 30000 + b"\n")
    msg = c.answer()
    c.close()
    assert msg is not None and msg["error"]["code"] == "EPROTO"
    assert "Unhandled exception" not in bug_daemon.stderr()


def _strict(raw: bytes):
    def reject(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(raw, parse_constant=reject)


def test_nan_and_infinity_are_refused_not_echoed(bug_daemon):
    c = Conn(bug_daemon.socket)
    bad = []
    for line in (b'{"v":1,"id":NaN,"method":"hello"}\n',
                 b'{"v":1,"id":Infinity,"method":"hello"}\n',
                 b'{"v":1,"id":1,"method":"history","params":{"seconds":NaN}}\n'):
        c.send(line)
        raw = c.line()
        try:
            msg = _strict(raw)
            if msg.get("ok"):
                bad.append(f"{line!r} accepted")
        except ValueError as e:
            bad.append(f"{line!r}: answer is not JSON ({e})")
    c.close()
    assert not bad, bad


def test_apply_with_a_nan_confirm_deadline_is_refused(bug_daemon):
    from daemon.conftest import machine_digest

    before = machine_digest(bug_daemon.root)
    # NaN is not JSON (EPROTO); 1e400 is JSON that Python reads as infinity (EINVAL)
    for value, code in ((b"NaN", "EPROTO"), (b"1e400", "EINVAL"), (b"-1e400", "EINVAL")):
        c = Conn(bug_daemon.socket, timeout=60)
        c.send(b'{"v":1,"id":1,"method":"apply","params":{"profile":"llm-efficient",'
               b'"confirm_s":' + value + b'}}\n')
        msg = c.answer()
        c.close()
        assert msg["ok"] is False and msg["error"]["code"] == code, (value, msg)
        assert machine_digest(bug_daemon.root) == before, "the profile was applied anyway"


def test_protocol_version_must_be_the_integer_1(bug_daemon):
    c = Conn(bug_daemon.socket)
    codes = []
    for v in (b"true", b"1.0"):
        c.send(b'{"v":' + v + b',"id":1,"method":"hello"}\n')
        codes.append(check_answer(c.answer()))
    c.close()
    assert codes == ["EPROTO", "EPROTO"], codes
