"""The thermal guard on the real daemon: a hot simulated machine gets its TDP stepped down."""

from __future__ import annotations

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
    import time
    time.sleep(1.5)                                   # no flapping between capped and not
    assert d.profile() == "stock+thermal-120w"
    applies = d.events("apply")
    assert len(applies) == 2 and not d.events("rollback")
    assert all("thermal guard" in e["message"] for e in applies)
