"""Arbitration on the real daemon: a hold pauses the rules; a manual apply wins over them
until a rollback."""

from __future__ import annotations

import time

from .conftest import wait_for

RULE = """
[rules]
min_switch_interval_s = 1

[[rules.process]]
name = "llama"
match = ["llama-server"]
profile = "llm-max"
hold_s = 5      # the minimum (any local user can start a matching process)
"""


def test_hold_pauses_process_rule_until_release(start_daemon, fake_process):
    d = start_daemon(RULE)
    with d.client() as holder:                       # the hold lives as long as this connection
        hold_id = holder.call("hold", {"owner": "bench", "reason": "llama-bench run",
                                       "ttl_s": 60})["hold_id"]
        fake_process("llama-server", detached=True)     # not the holder's own process
        d.wait_event(lambda e: e["kind"] == "rule" and "started" in e["message"])
        time.sleep(1.5)
        assert d.profile() is None                   # the rule did not fire while held
        assert not d.events("apply")
        holder.call("release", {"hold_id": hold_id})
        wait_for(lambda: d.profile() == "llm-max", 5, what="the rule after the release")


def test_hold_ends_with_its_connection(start_daemon, fake_process):
    d = start_daemon(RULE)
    holder = d.client()
    holder.call("hold", {"owner": "probe"})
    fake_process("llama-server", detached=True)
    d.wait_event(lambda e: e["kind"] == "rule" and "started" in e["message"])
    assert d.profile() is None
    holder.close()
    wait_for(lambda: d.profile() == "llm-max", 5, what="the rule after the holder left")


def test_holders_own_processes_never_trigger_rules(start_daemon, fake_process):
    """The probe's or bench's llama-bench (a child of the hold's owner) is not a workload
    the rules react to: no event while it runs, nor after the hold ends."""
    d = start_daemon(RULE)
    holder = d.client()
    holder.call("hold", {"owner": "bench"})
    child = fake_process("llama-server")             # a child of this (the holding) process
    time.sleep(2.5)                                  # process rules poll once a second
    child.kill()
    child.wait(5)
    holder.close()                                   # as bench does: command ends, then release
    time.sleep(1.5)
    assert not [e for e in d.events("rule") if "llama" in e["message"]], d.events()
    assert d.profile() is None


def test_manual_apply_wins_until_rollback(start_daemon, fake_process):
    d = start_daemon(RULE)
    assert d.call("apply", {"profile": "llm-efficient"})["ok"]
    fake_process("llama-server")
    d.wait_event(lambda e: e["kind"] == "rule" and "started" in e["message"])
    time.sleep(1.5)
    assert d.profile() == "llm-efficient"            # manual beats the process rule
    d.call("rollback")
    wait_for(lambda: d.profile() == "llm-max", 5, what="the rule after the rollback")
