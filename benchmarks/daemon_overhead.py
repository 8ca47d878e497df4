"""What `halotune daemon` costs: CPU (% of one core) and memory at 1 Hz, and API latency
under 50 subscribers.

Runs the real daemon (a child process) against a simulated Strix Halo that this process
animates (halotune.sim.animate.Animator, the LLM load pattern), with a realistic configuration:
a default profile (so drift verification runs), a llama.cpp process rule (so the process table
is polled every second) and the thermal guard on.

    python3 benchmarks/daemon_overhead.py [--seconds 60] [--subscribers 50] [--load-seconds 20]

--bare drops the default profile, the process rule and the thermal guard (the rules' share of
the cost is the difference).

Phase 1 (--seconds): the daemon alone at 1 Hz. CPU from /proc/<pid>/stat utime+stime deltas
(the daemon itself; its short-lived helpers, the RyzenAdj stand-in, are reported apart from
cutime+cstime), RSS from /proc/<pid>/status (VmRSS, peak over the run). Targets: <= 0.3 % of
one core, <= 60 MB.
Phase 2 (--load-seconds): --subscribers clients subscribed at 1 Hz (one thread each, reading
their stream), while one more client calls `status` back to back with a short pause; p50/p99
of those calls, and the daemon's CPU meanwhile. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from halotune.daemon.client import Client  # noqa: E402
from halotune.sim.animate import Animator  # noqa: E402
from halotune.sim.tree import lay_out  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")

# --bare: no default profile, no process rule, no thermal guard (what the rules cost is the
# difference).
BARE_CONFIG = """\
[daemon]
sample_interval_s = 1.0

[api]
socket_group = ""
"""

CONFIG = """\
[daemon]
sample_interval_s = 1.0
default_profile = "llm-max"

[api]
socket_group = ""

[[rules.process]]
name = "llama.cpp"
match = ["llama-server", "llama-cli", "llama-bench"]
profile = "llm-max"
hold_s = 30.0

[rules.thermal]
enabled = true
limit_c = 95.0
seconds = 30.0

[rules.drift]
interval_s = 30.0
"""


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime + stime, cutime + cstime) of `pid`, in clock ticks."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the ")": state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(pid: int, seconds: float) -> dict:
    t0, (c0, k0) = time.monotonic(), cpu_ticks(pid)
    peak = rss_mb(pid)
    while time.monotonic() - t0 < seconds:
        time.sleep(min(1.0, seconds - (time.monotonic() - t0)) if seconds > 0 else 0)
        peak = max(peak, rss_mb(pid))
    elapsed = time.monotonic() - t0
    c1, k1 = cpu_ticks(pid)
    return {"seconds": elapsed, "cpu_percent": (c1 - c0) / CLK_TCK / elapsed * 100,
            "children_cpu_percent": (k1 - k0) / CLK_TCK / elapsed * 100,
            "rss_mb": rss_mb(pid), "rss_peak_mb": peak}


def wait_ready(path: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {proc.returncode}")
        try:
            with Client(path, timeout=2) as c:
                c.call("status")
                return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    raise SystemExit("the daemon did not come up")


def subscriber(path: str, stop: threading.Event, counts: list, i: int) -> None:
    try:
        with Client(path, timeout=30) as c:
            c.call("subscribe", {"interval_s": 1.0, "events": True})
            for msg in c.stream():
                if msg.get("event") == "snapshot":
                    counts[i] += 1
                if stop.is_set():
                    break
    except (OSError, ConnectionError, ValueError):
        pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="idle measurement (default 60)")
    ap.add_argument("--load-seconds", type=float, default=20.0,
                    help="measurement with subscribers (default 20)")
    ap.add_argument("--subscribers", type=int, default=50)
    ap.add_argument("--bare", action="store_true",
                    help="no default profile, process rule or thermal guard")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="halotune-bench-")
    root = os.path.join(tmp, "machine")
    lay_out(root)
    anim = Animator(root, interval=1.0)
    anim.start()
    cfg = os.path.join(tmp, "daemon.toml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write(BARE_CONFIG if args.bare else CONFIG)
    sock = os.path.join(tmp, "api.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALOTUNE_")}
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log = open(os.path.join(tmp, "daemon.log"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "halotune", "daemon", "--root", root,
                             "--socket", sock, "--state-dir", os.path.join(tmp, "state"),
                             "--config", cfg], stdout=log, stderr=log, env=env)
    try:
        wait_ready(sock, proc)
        time.sleep(3.0)                        # start-up (imports, the default apply) done
        print(f"halotune daemon pid {proc.pid}, simulated machine {root}, animated at 1 Hz"
              + (" (bare configuration)" if args.bare else ""))
        idle = measure(proc.pid, args.seconds)
        print(f"\n[1] daemon alone at 1 Hz for {idle['seconds']:.0f} s")
        print(f"    CPU  {idle['cpu_percent']:.3f} % of one core   (target <= 0.3 %)")
        print(f"         + helpers (ryzenadj stand-in): {idle['children_cpu_percent']:.3f} %")
        print(f"    RSS  {idle['rss_mb']:.1f} MB, peak {idle['rss_peak_mb']:.1f} MB   "
              "(target <= 60 MB)")

        stop = threading.Event()
        counts = [0] * args.subscribers
        threads = [threading.Thread(target=subscriber, args=(sock, stop, counts, i), daemon=True)
                   for i in range(args.subscribers)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        latencies: list[float] = []
        result: dict = {}

        def caller():
            with Client(sock, timeout=30) as c:
                deadline = time.monotonic() + args.load_seconds
                while time.monotonic() < deadline:
                    t0 = time.perf_counter()
                    c.call("status")
                    latencies.append((time.perf_counter() - t0) * 1000)
                    time.sleep(0.05)

        ct = threading.Thread(target=caller)
        ct.start()
        result = measure(proc.pid, args.load_seconds)
        ct.join()
        stop.set()
        lat = sorted(latencies)
        def p(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
        print(f"\n[2] {args.subscribers} subscribers at 1 Hz + status calls for "
              f"{result['seconds']:.0f} s")
        print(f"    status latency  p50 {p(0.50):.2f} ms   p99 {p(0.99):.2f} ms   "
              f"max {lat[-1] if lat else float('nan'):.2f} ms   ({len(lat)} calls)")
        if lat:
            print(f"                    mean {statistics.fmean(lat):.2f} ms")
        print(f"    CPU  {result['cpu_percent']:.2f} % of one core; RSS {result['rss_mb']:.1f} MB "
              f"(peak {result['rss_peak_mb']:.1f} MB)")
        per_sub = [c for c in counts]
        print(f"    snapshots per subscriber: min {min(per_sub)}, max {max(per_sub)} "
              f"(~{result['seconds'] + 2:.0f} expected)")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        anim.stop(5)
        log.close()
        if not args.keep:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
