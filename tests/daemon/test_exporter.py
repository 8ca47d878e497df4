"""The Prometheus exporter: the golden exposition of the reference tree (node_exporter style),
the values behind it, the naming rules, the HTTP server, and the Grafana dashboard's queries.

The golden file is the metric contract: names, types, HELP texts and labels. Regenerate it
after an intended change with
    HALOTUNE_UPDATE_GOLDEN=1 python3 -m pytest tests/daemon/test_exporter.py
and review its diff like code: a rename breaks every dashboard and alert that uses the name.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from halotune.daemon import exporter
from halotune.daemon.exporter import METRICS, MetricsServer, parse_listen, render
from halotune.machine.rootfs import RootFS
from halotune.model.snapshot import GpuSnapshot, Snapshot
from halotune.telemetry.sampler import Sampler

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TESTS)
REFERENCE = os.path.join(TESTS, "fixtures", "strix-halo")
GOLDEN = os.path.join(TESTS, "fixtures", "golden", "metrics-reference.txt")
CONTRIB_README = os.path.join(REPO, "contrib", "README.md")
DASHBOARD = os.path.join(REPO, "contrib", "grafana", "halotune-dashboard.json")

# What changes from run to run is pinned here instead of edited out of the text afterwards.
FIXED_TIME = "2025-06-01T12:00:00.000Z"
FIXED_TIME_UNIX = 1748779200.0
INFO = {"profile": "llm-max", "verified": True, "daemon_start_time": 1748779000.0}
REF_GPU = {"card": "card1", "pci_slot": "0000:c3:00.0", "gfx_target": "gfx1151"}

TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
UNIT_SUFFIXES = ("_watts", "_bytes", "_celsius", "_hertz", "_ratio", "_seconds",
                 "_bytes_per_second")
UNITLESS_GAUGES = {"halotune_up", "halotune_dram_counters_saturated", "halotune_on_ac_power"}


# --- helpers -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ref_snapshot() -> Snapshot:
    """One sample of the reference tree, with its time pinned. Tests deep-copy before changing."""
    sampler = Sampler(RootFS(REFERENCE), read_tdp=False)
    try:
        snap = sampler.sample()
    finally:
        sampler.close()
    snap.time = FIXED_TIME
    return snap


def state(snapshot: Snapshot | None, **info):
    merged = {**INFO, **info}
    return lambda: (snapshot, merged)


def text_of(snapshot: Snapshot | None, **info) -> str:
    return render(state(snapshot, **info)).decode("utf-8")


def samples(text: str) -> list:
    """Every sample of the exposition, parsed by prometheus_client's own parser."""
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def find(text: str, name: str, **labels) -> list:
    """Samples named `name` whose labels include `labels`."""
    return [s for s in samples(text)
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def value(text: str, name: str, **labels) -> float:
    (s,) = find(text, name, **labels)
    return s.value


def exposed_types(text: str) -> dict[str, str]:
    """name -> type from the # TYPE lines (the names a scraper sees, _total included)."""
    return dict(TYPE_LINE.findall(text))


def only_header_families(text: str) -> set[str]:
    """Families listed in the text that carry no sample."""
    with_samples = {s.name for s in samples(text)}
    return {n for n in exposed_types(text) if n not in with_samples}


# --- golden ------------------------------------------------------------------------------------

def canonical(text: str) -> list[str]:
    """The exposition with each sample value spelled as Python's repr of the float.

    Everything else (names, HELP, TYPE, labels, order) must match byte for byte, but how a
    float is spelled is the client library's business: prometheus-client <= 0.25 writes
    1.18e+011 where 0.26 writes 1.18e+11, and Prometheus parses both.
    """
    lines = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, _, number = line.rpartition(" ")      # label values may hold spaces
            line = f"{head} {float(number)!r}"
        lines.append(line)
    return lines


def test_reference_exposition_matches_golden(ref_snapshot):
    got = text_of(ref_snapshot)
    if os.environ.get("HALOTUNE_UPDATE_GOLDEN"):
        os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
        with open(GOLDEN, "w", encoding="utf-8") as f:
            f.write(got)
    with open(GOLDEN, encoding="utf-8") as f:
        want = f.read()
    if canonical(got) != canonical(want):
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                            "golden/metrics-reference.txt", "render()"))
        pytest.fail("the /metrics exposition differs from the golden file "
                    "(HALOTUNE_UPDATE_GOLDEN=1 to accept):\n" + diff, pytrace=False)


def test_golden_lists_the_whole_contract_in_order():
    with open(GOLDEN, encoding="utf-8") as f:
        golden = f.read()
    assert list(exposed_types(golden)) == [m.name for m in METRICS]
    types = {"gauge": "gauge", "info": "gauge", "counter": "counter"}   # text format 0.0.4
    assert exposed_types(golden) == {m.name: types[m.kind] for m in METRICS}


def test_no_sample_timestamps(ref_snapshot):
    """Prometheus stamps a scrape itself; an exporter timestamp would only break staleness."""
    assert all(s.timestamp is None for s in samples(text_of(ref_snapshot)))


# --- values ------------------------------------------------------------------------------------

def test_reference_values_in_base_units(ref_snapshot):
    t = text_of(ref_snapshot)
    assert value(t, "halotune_up") == 1
    assert value(t, "halotune_gpu_socket_power_watts", **REF_GPU) == pytest.approx(98.43)
    assert value(t, "halotune_gpu_gfx_power_watts", **REF_GPU) == pytest.approx(71.25)
    assert value(t, "halotune_package_power_watts") == pytest.approx(98.43)
    assert value(t, "halotune_gpu_busy_ratio", **REF_GPU) == pytest.approx(0.98)
    assert value(t, "halotune_gpu_clock_hertz", clock="sclk", **REF_GPU) == 2743e6
    assert value(t, "halotune_gpu_clock_hertz", clock="mclk", **REF_GPU) == 1000e6
    assert value(t, "halotune_gpu_clock_limit_hertz", clock="sclk", limit="max") == 2900e6
    assert value(t, "halotune_gpu_temperature_celsius", sensor="edge") == pytest.approx(62.37)
    assert value(t, "halotune_gpu_temperature_celsius", sensor="soc") == pytest.approx(64.81)
    assert value(t, "halotune_memory_gtt_used_bytes", **REF_GPU) == 61847080960
    assert value(t, "halotune_memory_gtt_total_bytes", **REF_GPU) == 118111600640
    assert value(t, "halotune_memory_vram_total_bytes", **REF_GPU) == 536870912
    assert value(t, "halotune_memory_ttm_pages_limit_bytes") == 28835840 * 4096
    assert value(t, "halotune_memory_gpu_usable_bytes") == 118648471552
    assert value(t, "halotune_dram_read_bytes_per_second", **REF_GPU) == 48213000000
    assert value(t, "halotune_dram_write_bytes_per_second", **REF_GPU) == 9137000000
    assert value(t, "halotune_dram_counters_saturated", **REF_GPU) == 0
    assert value(t, "halotune_cpu_utilization_ratio") == pytest.approx(0.088)
    assert value(t, "halotune_snapshot_timestamp_seconds") == FIXED_TIME_UNIX
    assert value(t, "halotune_daemon_start_time_seconds") == INFO["daemon_start_time"]


def test_ids_are_labels(ref_snapshot):
    t = text_of(ref_snapshot)
    (info,) = find(t, "halotune_gpu_info")
    assert info.value == 1
    assert info.labels == {**REF_GPU, "device_id": "0x1586",
                           "name": "AMD Strix Halo (Radeon 8060S / 8050S)", "revision": "0xc1",
                           "vbios_version": "113-STRXLGEN-001", "smc_fw_version": "0x0a640600",
                           "gpu_metrics_version": "3.0"}
    assert find(t, "halotune_platform_profile_info")[0].labels == {"profile": "performance"}
    assert find(t, "halotune_cpu_scaling_info")[0].labels == {
        "driver": "amd-pstate-epp", "governor": "powersave", "epp": "balance_performance"}


def test_throttle_residency_is_a_counter_per_reason(ref_snapshot):
    t = text_of(ref_snapshot)
    fam = next(f for f in text_string_to_metric_families(t)
               if f.name == "halotune_gpu_throttle_residency")
    assert fam.type == "counter"
    got = {s.labels["reason"]: s.value for s in fam.samples}
    assert got == {"prochot": 0, "spl": 18231, "fppt": 0, "sppt": 2871, "thm_core": 0,
                   "thm_gfx": 0, "thm_soc": 0}
    assert {s.name for s in fam.samples} == {"halotune_gpu_throttle_residency_total"}


def test_power_limits_absent_when_unknown(ref_snapshot):
    """The reference tree has no ryzenadj: no limit sample rather than a made-up 0."""
    assert ref_snapshot.power.stapm_limit_w is None
    t = text_of(ref_snapshot)
    assert find(t, "halotune_power_limit_watts") == []
    assert "halotune_power_limit_watts" in exposed_types(t)      # still documented in HELP/TYPE


def test_power_limits_present_when_known(ref_snapshot):
    snap = copy.deepcopy(ref_snapshot)
    p = snap.power
    p.stapm_limit_w, p.fast_limit_w, p.slow_limit_w = 120.0, 140.0, 130.0
    t = text_of(snap)
    got = {s.labels["limit"]: s.value for s in find(t, "halotune_power_limit_watts")}
    assert got == {"stapm": 120.0, "fast": 140.0, "slow": 130.0}     # apu_slow unknown: absent


@pytest.mark.parametrize("verified, label", [(True, "true"), (False, "false"), (None, "unknown")])
def test_profile_info(ref_snapshot, verified, label):
    (s,) = find(text_of(ref_snapshot, verified=verified), "halotune_profile_info")
    assert s.labels == {"profile": "llm-max", "verified": label} and s.value == 1


def test_no_profile_no_profile_info(ref_snapshot):
    assert find(text_of(ref_snapshot, profile=None, verified=None), "halotune_profile_info") == []


def test_no_snapshot_yet():
    """Before the first sample: up 0, the daemon's own facts, nothing about the machine."""
    t = text_of(None)
    assert value(t, "halotune_up") == 0
    assert {s.name for s in samples(t)} == {"halotune_up", "halotune_daemon_start_time_seconds",
                                            "halotune_profile_info"}


def test_no_gpus_and_all_unknown():
    """gpus=[] and every optional field None: renders, keeps halotune_up, emits no guesses."""
    t = text_of(Snapshot(time=FIXED_TIME, root="/"), profile=None, daemon_start_time=None)
    assert {s.name for s in samples(t)} == {"halotune_up", "halotune_snapshot_timestamp_seconds"}
    assert value(t, "halotune_up") == 1
    assert list(exposed_types(t)) == [m.name for m in METRICS]


def test_gpu_with_identity_only():
    """An unknown card: labels it cannot fill are "", no busy/DRAM samples (nor a 0 for
    dram_counters_saturated, whose False default means nothing without DRAM readings)."""
    gpu = GpuSnapshot(card="card0", pci_slot=None, device_id="0x744c", gfx_target=None,
                      name="unknown AMD GPU")
    t = text_of(Snapshot(time=FIXED_TIME, root="/", gpus=[gpu]))
    (info,) = find(t, "halotune_gpu_info")
    assert (info.labels["card"], info.labels.get("pci_slot", ""), info.labels["device_id"]) == \
        ("card0", "", "0x744c")
    gpu_families = {s.name for s in samples(t) if s.name.startswith("halotune_gpu_")}
    assert gpu_families == {"halotune_gpu_info"}
    assert find(t, "halotune_dram_counters_saturated") == []


def test_each_scrape_reads_the_state_afresh(ref_snapshot):
    current = {"snap": ref_snapshot}
    collector = exporter.SnapshotCollector(lambda: (current["snap"], INFO))
    first = {f.name: f for f in collector.collect()}
    hotter = copy.deepcopy(ref_snapshot)
    hotter.gpus[0].edge_temp_c = 80.5
    current["snap"] = hotter
    second = {f.name: f for f in collector.collect()}

    def edge(fams):
        return next(s.value for s in fams["halotune_gpu_temperature_celsius"].samples
                    if s.labels["sensor"] == "edge")

    assert (edge(first), edge(second)) == (62.37, 80.5)


# --- naming ------------------------------------------------------------------------------------

DEVICE_ID_IN_NAME = re.compile(r"card\d|gfx\d{3,4}|0x[0-9a-f]{3,}|[0-9a-f]{4}_[0-9a-f]{2}_|"
                               r"_\d+(_|$)|hwmon\d")


def test_names_follow_prometheus_conventions(ref_snapshot):
    t = text_of(ref_snapshot)
    names = exposed_types(t)
    assert len(names) == len(METRICS) >= 40
    for name, typ in names.items():
        assert re.fullmatch(r"halotune_[a-z0-9_]+", name), name
        assert "__" not in name and not name.endswith("_"), name
        assert not DEVICE_ID_IN_NAME.search(name), f"{name}: device ids belong in labels"
        if typ == "counter":
            assert name.endswith("_total"), name
        elif name.endswith("_info"):
            assert all(s.value == 1 for s in find(t, name)), name
        else:
            assert name.endswith(UNIT_SUFFIXES) or name in UNITLESS_GAUGES, \
                f"{name}: base unit suffix missing"
            assert not name.endswith("_total"), f"{name}: _total is for counters"
    for s in samples(t):
        for label in s.labels:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", label), (s.name, label)


def test_no_non_base_units_in_names():
    for m in METRICS:
        assert not re.search(r"_(mhz|khz|percent|mib|gib|kb|mw|w|c|ms)(_|$)", m.name), m.name


def test_spec_kinds_match_names():
    for m in METRICS:
        assert m.kind in ("gauge", "counter", "info"), m
        assert (m.kind == "counter") == m.name.endswith("_total"), m.name
        assert (m.kind == "info") == m.name.endswith("_info"), m.name
    assert len({m.name for m in METRICS}) == len(METRICS)


def test_every_metric_is_documented():
    with open(CONTRIB_README, encoding="utf-8") as f:
        readme = f.read()
    for m in METRICS:
        assert re.search(rf"\b{m.name}\b", exporter.__doc__), f"{m.name} not in module docstring"
        assert re.search(rf"`{m.name}`", readme), f"{m.name} not in contrib/README.md"


def test_importing_the_exporter_does_not_import_prometheus_client(subprocess_env):
    code = ("import sys, halotune, halotune.daemon.exporter; "
            "print('prometheus_client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env, timeout=60, check=True).stdout
    assert out.strip() == "False"


# --- HTTP server -------------------------------------------------------------------------------

def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode("utf-8")


def test_server_serves_metrics_and_stops(ref_snapshot):
    server = MetricsServer(state(ref_snapshot), "127.0.0.1", 0)
    server.start()
    try:
        host, port = server.address
        assert host == "127.0.0.1" and port > 0 and server.running
        status, ctype, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert ctype.startswith("text/plain; version=0.0.4")
        assert value(body, "halotune_gpu_socket_power_watts", **REF_GPU) == pytest.approx(98.43)
        assert get(f"http://127.0.0.1:{port}/")[0] == 200
        assert get(f"http://127.0.0.1:{port}/other")[0] == 404
        with pytest.raises(RuntimeError):
            server.start()
    finally:
        server.stop()
    assert not server.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # The port is free again: a new server binds it.
    with MetricsServer(state(None), "127.0.0.1", port) as again:
        assert again.address == ("127.0.0.1", port)
        assert value(get(f"http://127.0.0.1:{port}/metrics")[2], "halotune_up") == 0
    server.stop()                                        # idempotent


def test_server_on_ipv6_loopback(ref_snapshot):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with MetricsServer(state(ref_snapshot), "[::1]", 0) as server:
        host, port = server.address
        assert host == "::1"
        assert get(f"http://[::1]:{port}/metrics")[0] == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "[2001:db8::1]",
                                  "example.com", "strix.local"])
def test_non_loopback_host_refused(host):
    with pytest.raises(ValueError, match="allow_remote"):
        MetricsServer(state(None), host, 0)


def test_non_loopback_host_allowed_when_configured():
    server = MetricsServer(state(None), "0.0.0.0", 9874, allow_remote=True)   # not started
    assert server.address == ("0.0.0.0", 9874)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host):
    assert exporter.is_loopback(host)
    MetricsServer(state(None), host, 0)


def test_bad_port_refused():
    with pytest.raises(ValueError, match="port"):
        MetricsServer(state(None), "127.0.0.1", 70000)


@pytest.mark.parametrize("listen, want", [("127.0.0.1:9874", ("127.0.0.1", 9874)),
                                          ("[::1]:9100", ("::1", 9100)),
                                          ("localhost:0", ("localhost", 0))])
def test_parse_listen(listen, want):
    assert parse_listen(listen) == want


@pytest.mark.parametrize("listen", ["127.0.0.1", ":9874", "host:port"])
def test_parse_listen_rejects(listen):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(listen)


# --- Grafana dashboard -------------------------------------------------------------------------

def _queries(node) -> list[str]:
    """Every PromQL string of the dashboard: panel targets and template variable queries."""
    found = []
    if isinstance(node, dict):
        for key, v in node.items():
            if key in ("expr", "definition") and isinstance(v, str):
                found.append(v)
            elif key == "query" and isinstance(v, str):
                found.append(v)
            else:
                found.extend(_queries(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(_queries(v))
    return found


def test_dashboard_uses_only_exported_metrics():
    with open(DASHBOARD, encoding="utf-8") as f:
        dash = json.load(f)
    with open(GOLDEN, encoding="utf-8") as f:
        golden_names = set(exposed_types(f.read()))
    used = {n for q in _queries(dash) for n in re.findall(r"halotune_[a-z0-9_]+", q)}
    assert used, "no halotune_ query found in the dashboard"
    assert used <= golden_names, f"not exported: {sorted(used - golden_names)}"
    assert len(used) >= 30            # the dashboard covers most of the contract


def test_dashboard_is_importable():
    with open(DASHBOARD, encoding="utf-8") as f:
        dash = json.load(f)
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance", "card"} <= variables
    for p in dash["panels"]:
        if p["type"] != "row":            # every query goes to the chosen data source
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"], p["title"]


def test_idle_connections_cannot_take_a_thread_each_or_stall_a_scrape(ref_snapshot):
    # An outsider (the port is open to every local user) opens 300 connections and sends
    # nothing: no thread is started for them, at most MAX_WAITING are kept (the oldest are
    # closed first), each is closed after its timeout, and Prometheus' scrape is answered.
    from halotune.daemon import exporter

    with MetricsServer(state(ref_snapshot), "127.0.0.1", 0) as server:
        port = server.address[1]
        before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(300)]
        try:
            status, _ctype, body = get(f"http://127.0.0.1:{port}/metrics")
            assert status == 200 and "halotune_up 1" in body
            assert threading.active_count() - before <= exporter.SCRAPE_WORKERS
            idle[0].settimeout(exporter.SCRAPE_TIMEOUT_S * 4)
            assert idle[0].recv(1) == b""              # evicted: closed by the server
            idle[-1].settimeout(exporter.SCRAPE_TIMEOUT_S * 4)
            assert idle[-1].recv(1) == b""             # timed out: closed by the server
        finally:
            for s in idle:
                s.close()
