"""The API of the real daemon (a child process) against the simulated Strix Halo: round trips,
streams, slow and fast subscribers, and every protocol error."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from halotune.daemon.client import ApiError, Client
from .conftest import read

DEV = "sys/devices/pci0000:00/0000:00:08.1/0000:c3:00.0"
POLICY0 = "sys/devices/system/cpu/cpufreq/policy0"


class Raw:
    """A bare NDJSON connection (the Client hides framing errors)."""

    def __init__(self, path: str, rcvbuf: int | None = None, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, params=None, rid=1) -> None:
        msg = {"v": 1, "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(json.dumps(msg).encode() + b"\n")

    def read(self) -> dict | None:
        line = self.file.readline()
        return json.loads(line) if line else None

    def answer(self) -> dict:
        while True:
            msg = self.read()
            assert msg is not None, "the daemon closed the connection"
            if "event" not in msg:
                return msg

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# The slow/fast subscriber pair needs daemon time: the daemon's socket buffer holds ~50
# snapshots and its transport 64 KiB more before the slow one's backlog starts to grow, and the
# backlog is 64 lines. It runs in the background of this module's other tests, on one shared
# daemon, with a client taking and releasing holds every 50 ms so that event lines fill the
# backlog quickly; the last test checks.
STREAM_S = 12.0


class Streams:
    def __init__(self, path: str):
        self.t0 = time.monotonic()
        self.slow = _slow_subscriber(path)
        self.fast: list = []
        self.thread = threading.Thread(target=_fast_subscriber,
                                       args=(path, STREAM_S, self.fast), daemon=True)
        self.thread.start()
        self.events = threading.Thread(target=self._events, args=(path,), daemon=True)
        self.events.start()

    def _events(self, path: str) -> None:
        with Client(path, timeout=10) as c:
            while time.monotonic() - self.t0 < STREAM_S:
                hold_id = c.call("hold", {"owner": "test", "reason": "event traffic"})["hold_id"]
                c.call("release", {"hold_id": hold_id})
                time.sleep(0.05)


@pytest.fixture(scope="module")
def api(module_launcher):
    d = module_launcher()
    d.streams = Streams(d.socket)
    yield d
    d.streams.slow.close()


@pytest.fixture
def daemon(api):
    return api


@pytest.fixture
def sim_root(api):
    return api.root


def test_round_trips(daemon, sim_root):
    with daemon.client() as c:
        hello = c.call("hello")
        assert hello["api"] == 1 and hello["root"] == sim_root
        assert {"status", "apply", "subscribe", "events"} <= set(hello["methods"])
        assert hello["peer"]["can_mutate"] is True

        status = c.call("status")
        assert status["schema"] == "halotune.status/1"
        gpu = status["gpus"][0]
        assert gpu["gfx_target"] == "gfx1151"
        assert gpu["busy_percent"] == int(read(sim_root, f"{DEV}/gpu_busy_percent"))
        assert status["power"]["platform_profile"] == read(sim_root,
                                                           "sys/firmware/acpi/platform_profile")
        assert status["cpu"]["governor"] == read(sim_root, f"{POLICY0}/scaling_governor")
        assert status["power"]["stapm_limit_w"] == 120.0
        assert status["daemon"]["profile"] is None
        assert status["daemon"]["sample_interval_s"] == pytest.approx(0.1)   # the fast stream

        time.sleep(0.5)
        hist = c.call("history", {"seconds": 60})
        assert hist["fields"][0] == "t" and "busy_percent" in hist["fields"]
        assert len(hist["samples"]) >= 2
        i = hist["fields"].index("busy_percent")
        assert {row[i] for row in hist["samples"]} == {gpu["busy_percent"]}
        w = hist["windows"]["busy_percent"]
        assert w["min"] == w["mean"] == w["max"] == gpu["busy_percent"]

        names = {p["name"] for p in c.call("profiles")["profiles"]}
        assert {"llm-max", "llm-efficient", "quiet", "bench-stable", "stock"} <= names

        ver = c.call("verify")
        assert ver["action"] == "verify" and ver["ok"] and ver["profile"] is None

        evs = c.call("events", {"since": 0})
        assert evs["events"][0]["kind"] == "start" and evs["next"] >= 1
        later = c.call("events", {"since": evs["next"]})
        assert all(e["seq"] > evs["next"] for e in later["events"])
        assert c.call("events", {"since": 0, "limit": 1})["next"] == 1


def test_subscribe_stream_at_0_2_s(daemon):
    with daemon.client() as c:
        assert c.call("subscribe", {"interval_s": 0.2}) == {"interval_s": 0.2}
        t0 = time.monotonic()
        snaps = []
        for msg in c.stream():
            if msg["event"] == "snapshot":
                snaps.append(msg["data"])
            if time.monotonic() - t0 >= 2.0:
                break
        assert 7 <= len(snaps) <= 14, len(snaps)          # ~5 a second
        times = [s["time"] for s in snaps]
        assert times == sorted(set(times))
        assert c.call("unsubscribe") == {"subscribed": False}
        assert c.call("hello")["api"] == 1


def _rfc3339(t: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def _fast_subscriber(path: str, seconds: float, out: list) -> None:
    with Client(path, timeout=10) as c:
        c.call("subscribe", {"interval_s": 0.1, "events": True})
        t0 = time.monotonic()
        for msg in c.stream():
            out.append(msg)
            if time.monotonic() - t0 >= seconds:
                break


def _slow_subscriber(path: str) -> Raw:
    slow = Raw(path, rcvbuf=1024)
    slow.request("subscribe", {"interval_s": 0.1, "events": True})
    return slow


def _drain(slow: Raw, timeout: float = 10.0) -> tuple[list[dict], bool]:
    """Everything the connection still holds: (messages, ended with EOF)."""
    slow.sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    msgs = []
    while time.monotonic() < deadline:
        try:
            msg = slow.read()
        except (ConnectionError, OSError):
            return msgs, True
        if msg is None:
            return msgs, True
        msgs.append(msg)
    return msgs, False


def test_protocol_errors(daemon):
    raw = Raw(daemon.socket)
    raw.send(b"{this is not json\n")
    ans = raw.answer()
    assert ans["ok"] is False and ans["error"]["code"] == "EPROTO" and ans["id"] is None
    raw.send(b'[1, 2]\n')
    assert raw.answer()["error"]["code"] == "EPROTO"
    raw.send(b'{"v": 2, "id": 3, "method": "hello"}\n')
    ans = raw.answer()
    assert ans["error"]["code"] == "EPROTO" and ans["id"] == 3
    raw.request("hello", rid="same-conn")
    ans = raw.answer()
    assert ans["ok"] and ans["id"] == "same-conn"          # the connection stays usable

    raw.request("frobnicate", rid=4)
    ans = raw.answer()
    assert ans["error"]["code"] == "ENOSYS" and "frobnicate" in ans["error"]["message"]

    bad = [("subscribe", {"interval_s": "fast"}), ("history", {"seconds": -1}),
           ("history", {"seconds": True}), ("events", {"since": "x"}),
           ("apply", {"profile": 5}), ("apply", {"profile": "llm-max", "confirm_s": "soon"}),
           ("hold", {"owner": 3}), ("hold", {"owner": "t", "ttl_s": "x"}),
           ("release", {"hold_id": 7})]
    for i, (method, params) in enumerate(bad):
        raw.request(method, params, rid=100 + i)
        ans = raw.answer()
        assert ans["id"] == 100 + i
        assert ans["error"]["code"] in ("EINVAL", "ENOENT"), (method, params, ans)
        if method != "release":
            assert ans["error"]["code"] == "EINVAL", (method, params, ans)
    raw.send(b'{"v": 1, "id": 9, "method": "status", "params": [1]}\n')
    assert raw.answer()["error"]["code"] == "EPROTO"
    raw.request("hello", rid=10)
    assert raw.answer()["ok"]
    raw.close()


def test_oversized_request(daemon):
    other = Raw(daemon.socket)
    big = Raw(daemon.socket)
    payload = json.dumps({"v": 1, "id": 1, "method": "hello",
                          "params": {"pad": "x" * (70 * 1024)}}).encode() + b"\n"
    try:
        big.send(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
    ans = big.read()
    assert ans["ok"] is False and ans["error"]["code"] == "E2BIG"
    try:
        assert big.read() is None                          # closed after the answer
    except ConnectionResetError:
        pass
    big.close()
    other.request("status", rid=2)                         # other clients are unaffected
    ans = other.answer()
    assert ans["ok"] and ans["id"] == 2
    other.close()
    assert daemon.call("hello")["api"] == 1


def test_unknown_profile_and_hold(daemon):
    with daemon.client() as c:
        with pytest.raises(ApiError) as e:
            c.call("release", {"hold_id": "nope"})
        assert e.value.code == "ENOENT"
        with pytest.raises(ApiError) as e:
            c.call("validate")
        assert e.value.code == "EINVAL" and "exactly one" in e.value.message
        with pytest.raises(ApiError) as e:
            c.call("apply", {"profile": "no-such-profile", "dry_run": True})   # no hold race
        assert "no-such-profile" in e.value.message
        assert e.value.code == "ENOENT"      # docs/api.md: ENOENT for an unknown profile


def test_slow_subscriber_is_cut_off_fast_one_loses_nothing(api):
    """Runs last: the subscribers started with the module's daemon."""
    streams = api.streams
    streams.thread.join(STREAM_S + 20)
    streams.events.join(20)
    assert not streams.thread.is_alive()
    # The slow subscriber was disconnected: it reads what was sent, a `dropped` line, EOF.
    msgs, eof = _drain(streams.slow)
    assert eof, f"the slow subscriber was not disconnected ({len(msgs)} lines read)"
    assert msgs and msgs[0].get("ok") is True
    snaps = [m for m in msgs if m.get("event") == "snapshot"]
    assert len(snaps) < STREAM_S / 0.1 - 20, "the slow subscriber got (almost) everything"
    assert msgs[-1].get("event") == "dropped" and msgs[-1]["dropped"] >= 1, msgs[-1]
    # The fast one lost nothing: no drop marker, snapshot times strictly increasing, no gap
    # much beyond the interval.
    fast = streams.fast
    assert not [m for m in fast if m["event"] == "dropped"]
    seqs = [m["data"]["seq"] for m in fast if m["event"] == "event"]
    assert len(seqs) > 100 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    times = [_rfc3339(m["data"]["time"]) for m in fast if m["event"] == "snapshot"]
    assert len(times) >= STREAM_S / 0.1 * 0.8, len(times)
    assert all(b > a for a, b in zip(times, times[1:]))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) < 0.35, max(gaps)
    assert api.call("hello")["api"] == 1               # the daemon still answers everyone
