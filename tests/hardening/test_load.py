"""Load, campaign 3 of issue #8: many API clients subscribed at the fastest interval while
another client applies and rolls back profiles in a loop.

The real daemon (a child process) runs on the simulated Strix Halo. N subscribers each send
`subscribe {"interval_s": 0.1, "events": true}` and read everything (one selector thread
serves them all); one more client alternates `apply` (llm-efficient, quiet) and `rollback`.
Checked:
- no lost events: every subscriber that was not dropped received a contiguous run of event
  `seq` numbers, from at most the first event of the loop to the daemon's last event;
- snapshots keep coming at the asked rate (reported: lines per second per subscriber);
- the daemon's CPU (utime + stime over wall time) and RSS are reported; RSS growth between the
  end of the warm-up and the end of the run stays under a bound (leak check).
CI: 10 clients for 5 s; HALOTUNE_HARDENING_FULL=1: 100 clients for 60 s.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time

from .conftest import daemon_cpu_s, daemon_rss_kib, record, size

CLIENTS = size(10, 100)
SECONDS = size(5.0, 60.0)
INTERVAL = 0.1
# RSS growth allowed from the end of the warm-up to the end of the run. CI's 5 s run mostly
# measures allocator warm-up; the full run's bound is the leak check proper.
RSS_GROWTH_KIB = size(24 * 1024, 16 * 1024)
CONFIG = """\
[daemon]
sample_interval_s = 1.0
history_s = 600

[api]
socket_group = ""

[rules.drift]
interval_s = 3600
"""


class Subscriber:
    def __init__(self, path: str, n: int):
        self.n = n
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.buf = b""
        self.snapshots = 0
        self.seqs: list[int] = []
        self.dropped: int | None = None
        self.closed = False
        self.subscribed = False
        self.first_snapshot = self.last_snapshot = None

    def start(self) -> None:
        self.sock.setblocking(True)
        self.sock.sendall(json.dumps({"v": 1, "id": f"sub{self.n}", "method": "subscribe",
                                      "params": {"interval_s": INTERVAL, "events": True}}
                                     ).encode() + b"\n")
        self.sock.setblocking(False)

    def feed(self) -> None:
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        now = time.monotonic()
        for line in lines:
            if line.startswith(b'{"v":1,"event":"snapshot"'):
                self.snapshots += 1
                self.first_snapshot = self.first_snapshot or now
                self.last_snapshot = now
                continue
            msg = json.loads(line)
            if msg.get("event") == "event":
                self.seqs.append(msg["data"]["seq"])
            elif msg.get("event") == "dropped":
                self.dropped = msg.get("dropped")
            elif msg.get("id") == f"sub{self.n}":
                self.subscribed = bool(msg.get("ok"))


def _pump(subs: list[Subscriber], stop: threading.Event) -> None:
    sel = selectors.DefaultSelector()
    for s in subs:
        sel.register(s.sock, selectors.EVENT_READ, s)
    while not stop.is_set():
        for key, _ in sel.select(0.2):
            s = key.data
            s.feed()
            if s.closed:
                sel.unregister(s.sock)
    sel.close()


def _changer(path: str, stop: threading.Event, out: dict) -> None:
    from halotune.daemon.client import ApiError, Client

    profiles = ("llm-efficient", "quiet")
    i = 0
    with Client(path, timeout=60) as c:
        while not stop.is_set():
            try:
                t0 = time.monotonic()
                c.call("apply", {"profile": profiles[i % 2]})
                c.call("rollback")
                out["latency"].append(time.monotonic() - t0)
                out["cycles"] += 1
            except ApiError as e:
                out["errors"].append(f"{e.code}: {e.message}")
            i += 1


def test_subscribers_and_a_changer_under_load(tmp_path):
    from daemon.conftest import Launcher, _env
    from halotune.daemon.client import Client
    from halotune.sim.tree import lay_out

    root = str(tmp_path / "machine")
    lay_out(root)
    launcher = Launcher(str(tmp_path), root, _env())
    d = launcher(CONFIG, base=False)
    try:
        subs = [Subscriber(d.socket, i) for i in range(CLIENTS)]
        stop_pump = threading.Event()
        pump = threading.Thread(target=_pump, args=(subs, stop_pump), daemon=True)
        pump.start()
        for s in subs:
            s.start()
        deadline = time.monotonic() + 15
        while not all(s.subscribed for s in subs) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(s.subscribed for s in subs), "not every client could subscribe"
        with Client(d.socket) as c:
            first_seq = c.call("events", {"since": 0, "limit": 1000})["next"] + 1
        # Warm-up, then the run.
        time.sleep(1.0)
        rss = [(0.0, daemon_rss_kib(d.pid))]
        cpu0, t0 = daemon_cpu_s(d.pid), time.monotonic()
        stop_changer = threading.Event()
        changes = {"cycles": 0, "errors": [], "latency": []}
        changer = threading.Thread(target=_changer, args=(d.socket, stop_changer, changes),
                                   daemon=True)
        changer.start()
        while time.monotonic() - t0 < SECONDS:
            time.sleep(0.5)
            rss.append((time.monotonic() - t0, daemon_rss_kib(d.pid)))
        stop_changer.set()
        changer.join(120)
        wall = time.monotonic() - t0
        cpu = daemon_cpu_s(d.pid) - cpu0
        # Every subscriber must catch up with the daemon's last event.
        with Client(d.socket) as c:
            last_seq = c.call("events", {"since": 0, "limit": 1000})["next"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
                s.dropped is not None or s.closed or (s.seqs and s.seqs[-1] >= last_seq)
                for s in subs):
            time.sleep(0.1)
        stop_pump.set()
        pump.join(5)
        alive = d.proc.poll() is None
    finally:
        launcher.stop_all()

    dropped = [s for s in subs if s.dropped is not None or s.closed]
    lost = []
    for s in subs:
        if s in dropped:
            continue
        if not s.seqs:
            lost.append(f"client {s.n}: no event at all")
            continue
        contiguous = s.seqs == list(range(s.seqs[0], s.seqs[0] + len(s.seqs)))
        if not contiguous or s.seqs[0] > first_seq or s.seqs[-1] < last_seq:
            lost.append(f"client {s.n}: events {s.seqs[0]}..{s.seqs[-1]} ({len(s.seqs)}), "
                        f"expected {first_seq}..{last_seq} contiguous")
    kept = [s for s in subs if s not in dropped]
    rates = [s.snapshots / max(1e-9, (s.last_snapshot or 0) - (s.first_snapshot or 0))
             for s in kept if s.snapshots > 1]
    warm = rss[0][1]
    peak = max(v for _t, v in rss)
    end = rss[-1][1]
    figures = {
        "clients": CLIENTS, "seconds": round(wall, 1), "apply_rollback_cycles": changes["cycles"],
        "change_errors": len(changes["errors"]),
        "cycle_s_mean": round(sum(changes["latency"]) / max(1, len(changes["latency"])), 2),
        "events_expected": last_seq - first_seq + 1, "dropped_clients": len(dropped),
        "clients_with_lost_events": len(lost),
        "snapshots_per_s_per_client": round(sum(rates) / max(1, len(rates)), 1),
        "daemon_cpu_percent": round(100 * cpu / wall, 1),
        "rss_kib_warm": warm, "rss_kib_end": end, "rss_kib_peak": peak,
        "rss_growth_kib": end - warm,
    }
    record("load", **figures)
    print(figures)
    assert alive, "the daemon died under load"
    assert not lost, "\n".join(lost)
    assert not changes["errors"], changes["errors"][:5]
    assert changes["cycles"] >= 1
    assert len(dropped) <= CLIENTS // 10, f"{len(dropped)} subscribers dropped"
    assert figures["events_expected"] >= 2 * changes["cycles"]
    # Near the asked rate (0.1 s): at least half of it on this shared 2-core machine.
    assert figures["snapshots_per_s_per_client"] >= 0.5 / INTERVAL, figures
    assert end - warm <= RSS_GROWTH_KIB, f"RSS grew by {end - warm} KiB: {rss}"
