"""Process rules on the real daemon: a fake llama-server (a copy of /bin/sleep) switches the
profile; its exit, after hold_s, switches back."""

from __future__ import annotations

import time

from .conftest import machine_digest, read, wait_for

RULE = """
[rules]
min_switch_interval_s = 1

[[rules.process]]
name = "llama.cpp server"
match = ["llama-server", "llama-cli"]
profile = "llm-max"
hold_s = 5      # the minimum (any local user can start a matching process)
"""
SWAPPINESS = "proc/sys/vm/swappiness"


def test_process_starts_and_exits_back_to_the_originals(start_daemon, sim_root, fake_process):
    original = machine_digest(sim_root)
    d = start_daemon(RULE)
    assert d.profile() is None
    fake_process("llama-serverx")                          # not matches
    fake_process("ollama")
    time.sleep(1.3)                                        # at least one process poll
    assert d.profile() is None
    assert not [e for e in d.events() if e["kind"] in ("rule", "apply")]
    proc = fake_process("llama-server")
    wait_for(lambda: d.profile() == "llm-max", 8, what="llm-max applied")
    assert read(sim_root, SWAPPINESS) == "10"
    started = d.wait_event(lambda e: e["kind"] == "rule" and "started" in e["message"])
    assert f"pid {proc.pid}" in started["message"] and "llama.cpp server" in started["message"]
    assert any(e["kind"] == "apply" and "llama-server" in e["message"] for e in d.events())

    proc.kill()
    proc.wait()
    d.wait_event(lambda e: e["kind"] == "rule" and "exited" in e["message"], what="the exit")
    wait_for(lambda: d.profile() is None, 15, what="the rollback")
    assert machine_digest(sim_root) == original
    rb = [e for e in d.events() if e["kind"] == "rollback"]
    assert rb and "rules" in rb[-1]["message"]


def test_process_exit_returns_to_the_default_profile(start_daemon, sim_root, fake_process):
    d = start_daemon('[daemon]\ndefault_profile = "quiet"\n' + RULE)
    assert d.profile() == "quiet"                               # applied at start
    assert read(sim_root, "sys/firmware/acpi/platform_profile") == "low-power"
    proc = fake_process("llama-cli")
    wait_for(lambda: d.profile() == "llm-max", 8, what="llm-max applied")
    assert read(sim_root, "sys/firmware/acpi/platform_profile") == "performance"
    proc.kill()
    proc.wait()
    wait_for(lambda: d.profile() == "quiet", 15, what="back to the default")
    assert read(sim_root, "sys/firmware/acpi/platform_profile") == "low-power"
    kinds = [e["kind"] for e in d.events()]
    assert kinds.count("apply") == 3


def test_rule_switches_are_rate_limited(start_daemon, sim_root, fake_process):
    # Issue 15: with hold_s = 0 a user starting and killing a process cycled apply/rollback
    # 12 times in 30 s. A switch within min_switch_interval_s of the last one waits.
    d = start_daemon(RULE.replace("min_switch_interval_s = 1", "min_switch_interval_s = 40"))
    proc = fake_process("llama-server")
    wait_for(lambda: d.profile() == "llm-max", 8, what="llm-max applied")
    proc.kill()
    proc.wait()
    waits = d.wait_event(lambda e: e["kind"] == "rule" and "waits" in e["message"], 15,
                         "the deferred switch back")
    assert "min_switch_interval_s = 40" in waits["message"]
    assert d.profile() == "llm-max"                 # not rolled back within the interval
    assert not d.events("rollback")


def test_a_hold_below_the_minimum_is_refused(start_daemon, tmp_path, daemon_env):
    import subprocess
    import sys

    cfg = tmp_path / "bad.toml"
    cfg.write_text(RULE.replace("hold_s = 5 ", "hold_s = 0 "))
    p = subprocess.run([sys.executable, "-m", "halotune", "daemon", "--check-config",
                        "--config", str(cfg)], capture_output=True, text=True, env=daemon_env,
                       timeout=30)
    assert p.returncode != 0
    assert "rules.process[0].hold_s = 0" in p.stderr and "5" in p.stderr, p.stderr
