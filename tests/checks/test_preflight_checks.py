"""Each preflight check on the simulated machine, in a passing and a failing (or warning)
state. The clean state is the simulator's "idle" scenario; each test changes one thing."""

from __future__ import annotations

import os

import pytest

from halotune.checks.preflight import SCHEMA, run_preflight
from halotune.machine.rootfs import RootFS
from halotune.sim.kernel import SimKernel

from .conftest import add_process, later, sim_edit, write, write_gguf

WINDOW = 0.05


def pf(root, state_dir, **kw):
    kw.setdefault("window_s", WINDOW)
    return run_preflight(RootFS(root), state_dir=state_dir, **kw)


def check(report, cid):
    return next(c for c in report["checks"] if c["id"] == cid)


def apply(root, state_dir, name="llm-max"):
    from halotune.tuning.engine import Engine
    from halotune.tuning.loader import ProfileStore

    out = Engine(RootFS(root), state_dir).apply(ProfileStore().load(name))
    assert out.ok, out.summary


# --- the clean machine ------------------------------------------------------------------------

def test_clean_idle_machine_is_ready(idle_root, state_dir):
    r = pf(idle_root, state_dir)
    assert r["schema"] == SCHEMA
    assert r["ready"] and r["status"] == "pass", [c for c in r["checks"] if c["status"] != "pass"]
    assert r["snapshot"]["schema"] == "halotune.status/1"
    assert isinstance(r["fingerprint"], dict)
    assert r["forecast"] is None
    for c in r["checks"]:
        assert set(c) == {"id", "title", "status", "value", "expected", "fix"}
        assert c["status"] in ("pass", "skip")


# --- profile, pending reboot, TDP, platform profile, CPU policy ----------------------------------

def test_profile_skipped_without_one(idle_root, state_dir):
    assert check(pf(idle_root, state_dir), "profile")["status"] == "skip"


def test_profile_applied_passes(idle_root, state_dir):
    apply(idle_root, state_dir)
    r = pf(idle_root, state_dir, profile="llm-max")
    assert check(r, "profile")["status"] == "pass"
    assert "llm-max" in check(r, "profile")["value"]
    for cid in ("tdp", "platform_profile", "cpu_policy"):
        assert check(r, cid)["status"] == "pass", check(r, cid)
        assert check(r, cid)["expected"]


def test_profile_not_applied_fails(idle_root, state_dir):
    c = check(pf(idle_root, state_dir, profile="llm-max"), "profile")
    assert c["status"] == "fail"
    assert c["value"] == "no profile applied" and "halotune apply llm-max" in c["fix"]


def test_other_profile_applied_fails(idle_root, state_dir):
    apply(idle_root, state_dir, "quiet")
    c = check(pf(idle_root, state_dir, profile="llm-max"), "profile")
    assert c["status"] == "fail" and c["value"] == "quiet"


def test_profile_drift_fails(idle_root, state_dir):
    apply(idle_root, state_dir)
    SimKernel(idle_root).write("sys/firmware/acpi/platform_profile", "balanced")
    r = pf(idle_root, state_dir, profile="llm-max")
    c = check(r, "profile")
    assert c["status"] == "fail" and "power.platform_profile" in c["value"]
    p = check(r, "platform_profile")
    assert p["status"] == "fail" and p["value"] == "balanced" and p["expected"] == "performance"


def test_applied_profile_is_verified_without_profile_option(idle_root, state_dir):
    apply(idle_root, state_dir)
    r = pf(idle_root, state_dir)
    assert check(r, "profile")["status"] == "pass"
    SimKernel(idle_root).write("sys/firmware/acpi/platform_profile", "low-power")
    r = pf(idle_root, state_dir)
    assert check(r, "profile")["status"] == "fail"
    assert check(r, "platform_profile")["status"] == "fail"


def test_unknown_profile_fails_with_message(idle_root, state_dir):
    c = check(pf(idle_root, state_dir, profile="no-such-profile"), "profile")
    assert c["status"] == "fail" and "no-such-profile" in c["value"]


def test_unreadable_journal_warns(idle_root, state_dir):
    write(state_dir, "journal.json", "{not json")
    c = check(pf(idle_root, state_dir, profile="llm-max"), "profile")
    assert c["status"] == "warn" and "journal" in c["value"]


def test_pending_reboot_warns(idle_root, state_dir):
    assert check(pf(idle_root, state_dir), "pending_reboot")["status"] == "pass"
    write(idle_root, "etc/modprobe.d/halotune-gtt.conf", "options ttm pages_limit=16777216\n")
    # The command line's ttm.pages_limit=28835840 wins over modprobe.d: nothing pending.
    assert check(pf(idle_root, state_dir), "pending_reboot")["status"] == "pass"
    write(idle_root, "proc/cmdline", "BOOT_IMAGE=/boot/vmlinuz-6.17.0-5-generic ro quiet\n")
    c = check(pf(idle_root, state_dir), "pending_reboot")
    assert c["status"] == "warn" and "memory.gtt_gib" in c["value"]


def test_tdp_mismatch_fails(idle_root, state_dir):
    apply(idle_root, state_dir)
    from halotune.sim import ryzenadj
    assert ryzenadj.main(["--stapm-limit=60000"], idle_root) == 0
    c = check(pf(idle_root, state_dir, profile="llm-max"), "tdp")
    assert c["status"] == "fail" and "STAPM 60 W (want 120 W)" in c["value"]


def test_tdp_unreadable_warns_with_profile_and_skips_without(idle_root, state_dir):
    os.remove(os.path.join(idle_root, "usr/local/bin/ryzenadj"))
    assert check(pf(idle_root, state_dir), "tdp")["status"] == "skip"
    c = check(pf(idle_root, state_dir, profile="llm-max"), "tdp")
    assert c["status"] == "warn" and "ryzenadj" in c["value"].lower()


def test_tdp_reported_without_profile(idle_root, state_dir):
    c = check(pf(idle_root, state_dir), "tdp")
    assert c["status"] == "pass" and c["value"] == "STAPM 120 W, fast PPT 140 W, slow PPT 120 W"


def test_platform_profile_missing_skips(idle_root, state_dir):
    os.remove(os.path.join(idle_root, "sys/firmware/acpi/platform_profile"))
    assert check(pf(idle_root, state_dir), "platform_profile")["status"] == "skip"


def test_cpu_governor_differs_from_profile_fails(idle_root, state_dir):
    apply(idle_root, state_dir)
    k = SimKernel(idle_root)
    for n in range(32):
        k.write(f"sys/devices/system/cpu/cpufreq/policy{n}/scaling_governor", "powersave")
    c = check(pf(idle_root, state_dir, profile="llm-max"), "cpu_policy")
    assert c["status"] == "fail" and "governor powersave (want performance)" in c["value"]


def test_mixed_cpu_policy_warns(idle_root, state_dir):
    SimKernel(idle_root).write("sys/devices/system/cpu/cpufreq/policy3/scaling_governor",
                               "performance")
    c = check(pf(idle_root, state_dir), "cpu_policy")
    assert c["status"] == "warn" and "not the same on every CPU" in c["value"]


# --- GPU activity, clients, servers ---------------------------------------------------------------

def test_busy_gpu_fails(busy_root, state_dir):
    c = check(pf(busy_root, state_dir), "gpu_busy")
    assert c["status"] == "fail" and c["value"].startswith("98 % busy")


def test_idle_gpu_passes(idle_root, state_dir):
    c = check(pf(idle_root, state_dir), "gpu_busy")
    assert c["status"] == "pass" and c["value"].startswith("2 % busy")


def test_competing_gpu_client_fails_by_name(idle_root, state_dir):
    add_process(idle_root, 4242, "blender", ["/usr/bin/blender"], drm=True)
    r = pf(idle_root, state_dir)
    c = check(r, "gpu_clients")
    assert c["status"] == "fail" and "blender (pid 4242" in c["value"]
    assert not r["ready"]


def test_halotune_own_processes_are_not_clients(idle_root, state_dir):
    add_process(idle_root, os.getpid(), "python3", ["python3", "-m", "pytest"], drm=True)
    add_process(idle_root, 4243, "python3", ["python3", "-m", "halotune", "daemon"], drm=True)
    c = check(pf(idle_root, state_dir), "gpu_clients")
    assert c["status"] == "pass", c


def test_llm_server_fails_unless_allowed(idle_root, state_dir):
    add_process(idle_root, 5001, "llama-server", ["/opt/llama/llama-server", "-m", "x.gguf"])
    add_process(idle_root, 5002, "ollama", ["/usr/bin/ollama", "serve"])
    c = check(pf(idle_root, state_dir), "llm_servers")
    assert c["status"] == "fail"
    assert "llama-server (pid 5001)" in c["value"] and "ollama (pid 5002)" in c["value"]
    c = check(pf(idle_root, state_dir, allow=("llama-server", "ollama")), "llm_servers")
    assert c["status"] == "pass" and "allowed" in c["value"]


def test_vllm_found_through_python_module(idle_root, state_dir):
    add_process(idle_root, 5003, "python3", ["python3", "-m", "vllm.entrypoints.openai.api_server"])
    assert check(pf(idle_root, state_dir), "llm_servers")["status"] == "fail"


# --- CPU, I/O, swap ---------------------------------------------------------------------------

def _c0(value):
    def edit(state):
        state["smu"]["metrics"]["average_core_c0_activity"] = [value] * 16
    return edit


def test_cpu_busy_fails_and_warns(idle_root, state_dir):
    sim_edit(idle_root, _c0(80))
    c = check(pf(idle_root, state_dir), "cpu_load")
    assert c["status"] == "fail" and c["value"].startswith("80 % busy")
    sim_edit(idle_root, _c0(25))
    assert check(pf(idle_root, state_dir), "cpu_load")["status"] == "warn"


def test_high_load_average_warns(idle_root, state_dir):
    write(idle_root, "proc/loadavg", "0.30 0.20 0.10 1/900 4242\n")
    assert check(pf(idle_root, state_dir), "cpu_load")["status"] == "pass"
    write(idle_root, "proc/loadavg", "24.00 20.00 10.00 30/900 4242\n")
    c = check(pf(idle_root, state_dir), "cpu_load")
    assert c["status"] == "warn" and "load 24.00 on 32 CPUs" in c["value"]


NET = ("Inter-|   Receive                                                |  Transmit\n"
       " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets\n"
       "    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n"
       "  eth0: {rx} 100 0 0 0 0 0 0 5000 50 0 0 0 0 0 0\n")
DISK = "   8       0 sda {r} 0 {rs} 0 {w} 0 {ws} 0 0 0 0\n   8       1 sda1 1 0 999999 0 1 0 999999 0 0 0 0\n"


def test_quiet_io_passes(idle_root, state_dir):
    write(idle_root, "proc/net/dev", NET.format(rx=10_000_000))
    write(idle_root, "proc/diskstats", DISK.format(r=1, rs=100, w=1, ws=100))
    c = check(pf(idle_root, state_dir), "io")
    assert c["status"] == "pass" and "disk 0 kB/s" in c["value"]


def test_download_warns(idle_root, state_dir):
    write(idle_root, "proc/net/dev", NET.format(rx=10_000_000))
    later(0.05, lambda: write(idle_root, "proc/net/dev", NET.format(rx=60_000_000)))
    c = check(pf(idle_root, state_dir, window_s=0.3), "io")
    assert c["status"] == "warn" and "download" in c["value"] and "eth0" in c["value"]


def test_busy_disk_warns(idle_root, state_dir):
    write(idle_root, "proc/diskstats", DISK.format(r=1, rs=0, w=1, ws=0))
    later(0.05, lambda: write(idle_root, "proc/diskstats", DISK.format(r=9, rs=200_000, w=9, ws=0)))
    c = check(pf(idle_root, state_dir, window_s=0.3), "io")
    assert c["status"] == "warn" and "disks are busy" in c["value"]


def test_swap_in_use_warns(idle_root, state_dir):
    assert check(pf(idle_root, state_dir), "swap")["status"] == "pass"
    path = os.path.join(idle_root, "proc/meminfo")
    with open(path) as f:
        text = f.read()
    lines = [("SwapFree:        7340032 kB" if ln.startswith("SwapFree:") else ln)
             for ln in text.splitlines()]
    write(idle_root, "proc/meminfo", "\n".join(lines) + "\n")
    c = check(pf(idle_root, state_dir), "swap")
    assert c["status"] == "warn" and "1.0 GiB of 8.0 GiB in use" in c["value"]


# --- temperature, throttling, AC ------------------------------------------------------------------

def _temps(centi):
    def edit(state):
        m = state["smu"]["metrics"]
        m["temperature_gfx"] = m["temperature_soc"] = centi
        m["temperature_core"] = [centi] * 16
    return edit


def test_hot_machine_fails(idle_root, state_dir):
    sim_edit(idle_root, _temps(9150))
    r = pf(idle_root, state_dir)
    c = check(r, "temperature")
    assert c["status"] == "fail" and c["value"].startswith("91.5 °C") and "hot" in c["value"]
    assert not r["ready"]


def test_warm_machine_warns(idle_root, state_dir):
    sim_edit(idle_root, _temps(7000))
    assert check(pf(idle_root, state_dir), "temperature")["status"] == "warn"


def _bump(root, key, by=100):
    def edit(state):
        state["smu"]["metrics"][f"throttle_residency_{key}"] += by
    return lambda: sim_edit(root, edit)


def test_thermal_throttling_during_window_fails(idle_root, state_dir):
    later(0.05, _bump(idle_root, "thm_gfx"))
    c = check(pf(idle_root, state_dir, window_s=0.3), "throttle")
    assert c["status"] == "fail" and "thm_gfx +100" in c["value"]


def test_power_limit_throttling_during_window_warns(idle_root, state_dir):
    later(0.05, _bump(idle_root, "spl"))
    c = check(pf(idle_root, state_dir, window_s=0.3), "throttle")
    assert c["status"] == "warn" and "spl +100" in c["value"]


def test_no_throttling_passes(idle_root, state_dir):
    assert check(pf(idle_root, state_dir), "throttle")["status"] == "pass"


def test_on_battery_fails(idle_root, state_dir):
    assert check(pf(idle_root, state_dir), "power_source")["value"] == "AC"
    write(idle_root, "sys/class/power_supply/ACAD/online", "0\n")
    c = check(pf(idle_root, state_dir), "power_source")
    assert c["status"] == "fail" and c["value"] == "on battery"


def test_desktop_without_mains_supply_skips(idle_root, state_dir):
    import shutil
    shutil.rmtree(os.path.join(idle_root, "sys/class/power_supply"))
    assert check(pf(idle_root, state_dir), "power_source")["status"] == "skip"


# --- memory ---------------------------------------------------------------------------------

def test_headroom_reported_without_model(idle_root, state_dir):
    c = check(pf(idle_root, state_dir), "memory")
    assert c["status"] == "pass" and "110.5 GiB usable by the GPU" in c["value"]


def test_model_fits(idle_root, state_dir, tmp_path):
    (path,) = write_gguf(str(tmp_path / "m.gguf"))
    r = pf(idle_root, state_dir, model=path, ctx=1024)
    c = check(r, "memory")
    assert c["status"] == "pass" and "KV cache" in c["value"] and "1024 tokens" in c["value"]
    assert r["forecast"]["tg_tokens_per_s"][0] > 0


def test_split_model_parts_are_summed(idle_root, state_dir, tmp_path):
    from halotune.probe.gguf_info import read_gguf

    parts = write_gguf(str(tmp_path / "s.gguf"), split=3)
    whole = write_gguf(str(tmp_path / "w.gguf"))[0]
    r = pf(idle_root, state_dir, model=parts[0])
    assert r["forecast"]["model"]["paths"] == parts
    assert r["forecast"]["model"]["size_bytes"] == read_gguf(whole).size_bytes


def test_model_too_big_fails(idle_root, state_dir, tmp_path):
    (path,) = write_gguf(str(tmp_path / "m.gguf"))
    write(idle_root, "sys/devices/pci0000:00/0000:00:08.1/0000:c3:00.0/mem_info_gtt_total", "0\n")
    c = check(pf(idle_root, state_dir, model=path), "memory")
    assert c["status"] == "fail" and "does not fit" in c["value"]


def test_memory_held_by_others_warns(idle_root, state_dir, tmp_path):
    (path,) = write_gguf(str(tmp_path / "m.gguf"))
    write(idle_root, "sys/devices/pci0000:00/0000:00:08.1/0000:c3:00.0/mem_info_gtt_used",
          f"{110 << 30}\n")
    c = check(pf(idle_root, state_dir, model=path), "memory")
    assert c["status"] == "warn" and "other processes hold GPU memory" in c["value"]


def test_missing_model_fails_naming_the_file(idle_root, state_dir, tmp_path):
    missing = str(tmp_path / "nope.gguf")
    r = pf(idle_root, state_dir, model=missing)
    c = check(r, "memory")
    assert c["status"] == "fail" and missing in c["value"]
    assert r["forecast"] is None


def test_missing_split_part_fails(idle_root, state_dir, tmp_path):
    parts = write_gguf(str(tmp_path / "s.gguf"), split=2)
    os.remove(parts[1])
    c = check(pf(idle_root, state_dir, model=parts[0]), "memory")
    assert c["status"] == "fail" and "missing" in c["value"]


# --- the report as a whole ------------------------------------------------------------------

def test_window_is_watched(idle_root, state_dir):
    r = pf(idle_root, state_dir, window_s=0.3)
    assert 0.3 <= r["window_s"] < 1.5
    assert "readings over" in check(r, "gpu_busy")["value"]


def test_thresholds_override(idle_root, state_dir, tmp_path):
    from halotune.checks.thresholds import ThresholdError

    f = write(str(tmp_path), "t.toml", "[gpu]\nbusy_fail_percent = 1.0\n")
    assert check(pf(idle_root, state_dir, thresholds=f), "gpu_busy")["status"] == "fail"
    bad = write(str(tmp_path), "bad.toml", "[gpu]\nbusy_fail_percnt = 1.0\n")
    with pytest.raises(ThresholdError, match="gpu.busy_fail_percnt"):
        pf(idle_root, state_dir, thresholds=bad)


def test_children_of_halotune_are_not_clients(idle_root, state_dir):
    add_process(idle_root, os.getpid(), "python3", ["python3", "-m", "pytest"])
    add_process(idle_root, 6001, "llama-bench", ["llama-bench", "-m", "m.gguf"], drm=True,
                ppid=os.getpid())
    r = pf(idle_root, state_dir)
    assert check(r, "gpu_clients")["status"] == "pass"
    assert check(r, "llm_servers")["status"] == "pass"


def test_window_lineage():
    from halotune.checks.window import lineage
    from halotune.machine.processes import ProcInfo

    table = {p.pid: p for p in (ProcInfo(10, 1, "a"), ProcInfo(11, 10, "b"), ProcInfo(12, 11, "c"),
                                 ProcInfo(20, 1, "d"))}
    assert lineage(table, 10) == {10, 11, 12}


def test_profile_verified_through_the_daemon_when_journal_unreadable(idle_root, state_dir,
                                                                     monkeypatch):
    """Not root: the journal is root-only; a daemon serving the root answers `verify`."""
    from halotune.daemon import client as daemon_client

    calls = []

    class FakeClient:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def call(self, method, params=None):
            calls.append(method)
            if method == "hello":
                return {"root": idle_root}
            return {"action": "verify", "profile": "llm-max", "ok": True, "summary": "ok",
                    "notes": [], "warnings": [],
                    "rows": [{"key": "power.platform_profile", "before": "",
                              "target": "performance", "after": "performance", "status": "ok"}]}

    monkeypatch.setattr(daemon_client.Client, "try_connect", classmethod(lambda cls, p: FakeClient()))
    write(state_dir, "journal.json", "{not json")
    c = check(pf(idle_root, state_dir, profile="llm-max"), "profile")
    assert calls == ["hello", "verify"]
    assert c["status"] == "pass" and c["value"] == "llm-max: all 1 value(s) hold"
