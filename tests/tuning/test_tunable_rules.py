"""Each tuning rule lives once, in its tunable (issue 12): the static checks a profile gets
before any machine is read, and the limits a journaled state must meet to be written back."""

from __future__ import annotations

import pytest

from halotune.sim.tree import lay_out
from halotune.tuning.loader import ProfileError, ProfileStore
from halotune.tuning.tunables import all_tunables, by_key

from .conftest import live_states, write_profile


@pytest.mark.parametrize("kernel", ["6.12", "6.17"])
def test_every_state_the_machine_reports_may_be_restored(tmp_path, kernel):
    """What a rollback writes back was read from the machine: the restore checks must accept
    every state the simulated Strix Halo reports, or a rollback would be refused."""
    root = str(tmp_path / "root")
    lay_out(root, kernel=kernel)
    owners = by_key()
    states = live_states(root)
    assert {"power.stapm_w", "cpu.governor", "cpu.epp", "sysctl.vm.swappiness",
            "thp.enabled", "gpu.performance_level"} <= set(states)
    for key, state in states.items():
        assert owners[key].check_restore_state(key, state) is None, (key, state)


@pytest.mark.parametrize("key,bad", [
    ("power.stapm_w", 900.0), ("power.apu_slow_w", float("inf")), ("power.slow_w", "80"),
    ("cpu.governor", ["performance"]), ("cpu.boost", {"global": 2}), ("cpu.boost", {"global": True}),
    ("sysctl.kernel.numa_balancing", 4), ("thp.defrag", "sometimes"),
    ("gpu.sclk_max_mhz", -5), ("gpu.power_profile", "compute; reboot"),
    ("power.platform_profile", "Balanced Mode"), ("memory.gtt_gib", 12),
])
def test_restore_checks_refuse_wrong_types_and_ranges(key, bad):
    why = by_key()[key].check_restore_state(key, bad)
    assert isinstance(why, str) and why, (key, bad)


def test_static_checks_need_no_machine_and_match_the_loader(tmp_path):
    """The TDP order rule, asked directly of the tunable (a profile built in code) and through
    the loader (a file): one rule, one wording."""
    tdp = by_key()["power.fast_w"]
    problems = tdp.check_profile_values({"power.stapm_w": 80.0, "power.slow_w": 90.0,
                                         "power.fast_w": 85.0})
    assert [(p.key, p.value, p.message) for p in problems] == [
        ("power.fast_w", 85.0, "must be at least power.slow_w (90)")]
    admin = str(tmp_path / "profiles")
    write_profile(admin, "x", 'description = "x"\n[power]\nstapm_w = 80\nslow_w = 90\n'
                              'fast_w = 85\n')
    with pytest.raises(ProfileError) as e:
        ProfileStore(admin).load("x")
    assert str(e.value).endswith("power.fast_w = 85: must be at least power.slow_w (90)")
    # The ceiling a profile states is honoured by the same rule.
    assert tdp.check_profile_values({"power.fast_w": 130.0, "power.max_w": 140.0}) == []
    assert [p.message for p in tdp.check_profile_values({"power.fast_w": 130.0})] == [
        "must be between 45 and 120"]


def test_every_tunable_answers_the_static_api():
    for t in all_tunables():
        assert t.check_profile_values({}) == [], t.name
        for key in t.keys:
            assert t.check_restore_state(key, None) is None, key
