"""The thermal guard on the real daemon: a hot simulated machine gets its TDP stepped down."""

from __future__ import annotations

import signal

import pytest

from halotune.sim.animate import Animator

from .conftest import tdp_limits, wait_for

CONFIG = """
[daemon]
default_profile = "llm-max"

[rules.thermal]
enabled = true
limit_c = 50
seconds = 1
step_w = 10
min_w = 110
"""


@pytest.fixture
def hot_machine(sim_root):
    anim = Animator(sim_root, interval=0.25)
    anim.set_load(1.0)                 # prompt processing flat out: well above 50 °C
    anim.start()
    yield sim_root
    anim.stop(5)


def test_hot_machine_steps_tdp_down(start_daemon, hot_machine):
    d = start_daemon(CONFIG)
    assert d.profile() == "llm-max"
    ev = d.wait_event(lambda e: e["kind"] == "rule" and "thermal guard" in e["message"]
                      and "->" in e["message"], 8, "the thermal step")
    assert ev["data"]["before"]["power.stapm_w"] == 120.0
    assert ev["data"]["after"] == {"power.stapm_w": 110.0, "power.slow_w": 110.0,
                                   "power.fast_w": 110.0}
    wait_for(lambda: tdp_limits(hot_machine) == {"stapm": 110.0, "fast": 110.0, "slow": 110.0},
             8, what="the lower limits in the SMU")
    wait_for(lambda: (d.profile() or "").startswith("llm-max+thermal-110"), 5,
             what="the capped profile active")
    # at min_w it stops: one more event says so, the limits stay
    d.wait_event(lambda e: "floor" in e["message"], 8, "the floor event")
    assert tdp_limits(hot_machine)["stapm"] == 110.0
    status = d.call("status")
    assert status["daemon"]["verified"] is True


def test_hot_machine_without_a_profile_caps_its_own_limits(start_daemon, hot_machine):
    d = start_daemon(CONFIG.replace('default_profile = "llm-max"', "").replace("min_w = 110",
                                                                            "min_w = 120"))
    # the machine's own 120/140/120 W (stapm/fast/slow): fast steps 140 -> 130 -> 120, the
    # floor, then it holds
    wait_for(lambda: tdp_limits(hot_machine) == {"stapm": 120.0, "fast": 120.0, "slow": 120.0},
             8, what="the capped fast limit")
    wait_for(lambda: d.profile() == "stock+thermal-120w", 5, what="the capped machine")
    # Still hot one `seconds` later, at the floor: the guard says so and keeps the ceiling,
    # with no switch back to the uncapped machine in between (no flapping).
    wait_for(lambda: len(d.events("apply")) == 2, 8, what="both steps applied")
    d.wait_event(lambda e: "floor" in e["message"], 8, "the floor event")
    assert d.profile() == "stock+thermal-120w"
    applies = d.events("apply")
    assert len(applies) == 2 and not d.events("rollback")
    assert all("thermal guard" in e["message"] for e in applies)


def test_a_restart_under_the_ceiling_resumes_it_and_releases_it_in_steps(start_daemon,
                                                                          hot_machine):
    # Issue 15: after a crash with the guard's profile applied, the restarted daemon took it
    # for a manual apply (which outranks the guard) and kept the ceiling forever.
    config = CONFIG.replace('default_profile = "llm-max"', "").replace("min_w = 110",
                                                                       "min_w = 100")
    d = start_daemon(config)
    wait_for(lambda: d.profile() == "stock+thermal-100w", 15, what="two steps down")
    d.stop(signal.SIGKILL)
    anim = Animator(hot_machine, interval=0.25)
    anim.set_load(0.0)                                # idle: the machine cools down
    again = start_daemon(config, state_dir=d.state_dir, socket=d.socket)
    again.wait_event(lambda e: "resuming the ceiling" in e["message"], 10, "the resume")
    assert not [e for e in again.events() if e["kind"] == "rule"
                and e["message"].startswith("stock+thermal")]
    wait_for(lambda: again.profile() is None, 60, 0.2, "the release")
    events = again.events()
    start = next(i for i, e in enumerate(events) if "stepping the TDP back up" in e["message"])
    ups = [e["data"] for e in events[start:] if e["kind"] == "rule" and "->" in e["message"]]
    # In stages of step_w, each raising the limits, not one jump back to the machine's own.
    assert len(ups) >= 2, ups
    for step in ups:
        assert all(0 < step["after"][k] - step["before"][k] <= 10 for k in step["after"]
                   if step["after"][k] != step["before"][k]), step
        assert any(step["after"][k] > step["before"][k] for k in step["after"]), step
    assert ups[-1]["after"] == {"power.stapm_w": 120.0, "power.slow_w": 120.0,
                                "power.fast_w": 140.0}
    assert tdp_limits(hot_machine) == {"stapm": 120.0, "fast": 140.0, "slow": 120.0}
