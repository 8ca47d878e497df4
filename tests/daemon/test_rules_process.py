"""Process rules on the real daemon: a fake llama-server (a copy of /bin/sleep) switches the
profile; its exit, after hold_s, switches back."""

from __future__ import annotations

import time

from .conftest import machine_digest, read, wait_for

RULE = """
[[rules.process]]
name = "llama.cpp server"
match = ["llama-server", "llama-cli"]
profile = "llm-max"
hold_s = 0.5
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
    wait_for(lambda: d.profile() is None, 8, what="the rollback")
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
    wait_for(lambda: d.profile() == "quiet", 8, what="back to the default")
    assert read(sim_root, "sys/firmware/acpi/platform_profile") == "low-power"
    kinds = [e["kind"] for e in d.events()]
    assert kinds.count("apply") == 3
