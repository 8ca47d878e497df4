"""Every tunable on the simulated machine: read, plan (dry run), validate, write, verify and roll
back through the engine, plus each one's own rules (mixed per-policy machines, the GPU clock
pair, the unsupported pp_power_profile_mode, the boot-time GTT size)."""

from __future__ import annotations

import json
import os

import pytest

from halotune.machine.rootfs import RootFS
from halotune.sim.reboot import reboot
from halotune.tuning.engine import EngineError
from halotune.tuning.tunables import all_tunables, by_key

from .conftest import (CARD, CPUFREQ, DEV, assert_same_tree, drop_ttm_from_cmdline,
                       live_states, make_profile, read_file, read_journal, tdp_state,
                       tree_snapshot, write_plain, writes)

OD = f"{DEV}/pp_od_clk_voltage"
LEVEL = f"{DEV}/power_dpm_force_performance_level"
GTT_CONF = "etc/modprobe.d/halotune-gtt.conf"


def _policies(attr: str, value: str) -> list[tuple[str, str]]:
    return [(f"{CPUFREQ}/policy{n}/{attr}", value) for n in range(32)]


# tunable name -> (profile values, expected state afterwards, expected (path, value) writes)
CASES = {
    "platform_profile": ({"power.platform_profile": "balanced"},
                         {"power.platform_profile": "balanced"},
                         [("sys/firmware/acpi/platform_profile", "balanced")]),
    "tdp": ({"power.stapm_w": 100.0, "power.slow_w": 110.0, "power.fast_w": 130.0},
            {"power.stapm_w": 100.0, "power.slow_w": 110.0, "power.fast_w": 130.0},
            [("ryzenadj:stapm-limit", "100000"), ("ryzenadj:fast-limit", "130000"),
             ("ryzenadj:slow-limit", "110000")]),
    # EPP too: the performance governor forces it (see test_governor_alone_... below)
    "cpu_governor": ({"cpu.governor": "performance", "cpu.epp": "performance"},
                     {"cpu.governor": {f"policy{n}": "performance" for n in range(32)},
                      "cpu.epp": {f"policy{n}": "performance" for n in range(32)}},
                     _policies("scaling_governor", "performance")),
    "cpu_epp": ({"cpu.epp": "power"},
                {"cpu.epp": {f"policy{n}": "power" for n in range(32)}},
                _policies("energy_performance_preference", "power")),
    "cpu_boost": ({"cpu.boost": False},
                  {"cpu.boost": {"global": 0, **{f"policy{n}": 0 for n in range(32)}}},
                  _policies("boost", "0") + [(f"{CPUFREQ}/boost", "0")]),
    "gpu_performance_level": ({"gpu.performance_level": "low"},
                              {"gpu.performance_level": "low"}, [(LEVEL, "low")]),
    "gpu_clock_range": ({"gpu.performance_level": "manual", "gpu.sclk_min_mhz": 1000,
                         "gpu.sclk_max_mhz": 2500},
                        {"gpu.sclk_min_mhz": 1000, "gpu.sclk_max_mhz": 2500},
                        [(LEVEL, "manual"), (OD, "s 0 1000"), (OD, "s 1 2500"), (OD, "c")]),
    "sysctl_vm_swappiness": ({"sysctl.vm.swappiness": 100}, {"sysctl.vm.swappiness": 100},
                             [("proc/sys/vm/swappiness", "100")]),
    "sysctl_vm_compaction_proactiveness": (
        {"sysctl.vm.compaction_proactiveness": 0}, {"sysctl.vm.compaction_proactiveness": 0},
        [("proc/sys/vm/compaction_proactiveness", "0")]),
    "sysctl_kernel_numa_balancing": ({"sysctl.kernel.numa_balancing": 1},
                                     {"sysctl.kernel.numa_balancing": 1},
                                     [("proc/sys/kernel/numa_balancing", "1")]),
    "thp_enabled": ({"thp.enabled": "never"}, {"thp.enabled": "never"},
                    [("sys/kernel/mm/transparent_hugepage/enabled", "never")]),
    "thp_defrag": ({"thp.defrag": "defer+madvise"}, {"thp.defrag": "defer+madvise"},
                   [("sys/kernel/mm/transparent_hugepage/defrag", "defer+madvise")]),
}
# Tested on their own below: the GPU power profile is hidden on Strix Halo, the GTT size is a
# boot-time file.
SEPARATE = {"gpu_power_profile", "gtt"}


def test_every_tunable_has_a_case():
    names = {t.name for t in all_tunables()}
    assert names == set(CASES) | SEPARATE, "a tunable without a test here"


def _ok(out):
    assert out.ok, (out.summary, out.rows, out.warnings)


@pytest.mark.parametrize("name", sorted(CASES))
def test_tunable_roundtrip(sim_root, state_dir, engine_for, name):
    values, expected, expected_writes = CASES[name]
    before = tree_snapshot(sim_root)
    originals = live_states(sim_root)
    profile = make_profile(name, **values)

    # read: what the engine reads is what the tree says (journal-able JSON)
    t = next(t for t in all_tunables() if t.name == name)
    for key in t.keys:
        assert key in originals

    # plan: a dry run lists the change, writes nothing
    dry = engine_for(sim_root).apply(profile, dry_run=True)
    by_row = {r.key: r for r in dry.rows}
    for key in expected:
        assert by_row[key].status == "change", dry.rows
    assert writes(sim_root) == []

    # write + verify
    out = engine_for(sim_root).apply(profile)
    _ok(out)
    assert {r.key: r.status for r in out.rows if r.key in expected} == \
        {k: "ok" for k in expected}
    now = live_states(sim_root)
    for key, state in expected.items():
        assert now[key] == state, key
    done = writes(sim_root)
    assert all(res == "ok" for _p, _v, res in done), done
    assert [(p, v) for p, v, _ in done] == expected_writes
    assert engine_for(sim_root).verify().ok

    # journal: originals of every key touched, with this boot's id
    j = read_journal(state_dir)
    for key in expected:
        assert j["baseline"][key]["state"] == originals[key]
        assert j["baseline"][key]["boot_id"] == RootFS(sim_root).read_text(
            "proc/sys/kernel/random/boot_id")

    # rollback: exactly the originals, verified
    back = engine_for(sim_root).rollback()
    _ok(back)
    assert {r.key: r.status for r in back.rows if r.key in expected} == \
        {k: "restored" for k in expected}
    assert_same_tree(before, sim_root, f"{name} apply + rollback")
    assert live_states(sim_root) == originals


# --- validation: refused before anything is written --------------------------------------------

INVALID = [
    ({"power.platform_profile": "turbo"},
     'test/t.toml: power.platform_profile = "turbo": must be one of low-power, balanced, '
     "performance (sys/firmware/acpi/platform_profile_choices)"),
    ({"power.platform_profile": "custom"}, "must be one of low-power, balanced, performance"),
    ({"power.fast_w": 100.0}, "power.fast_w = 100: must be >= power.slow_w (120 W)"),
    ({"power.slow_w": 150.0}, "power.fast_w = 140: must be >= power.slow_w (150 W)"),
    ({"power.stapm_w": 130.0}, "power.slow_w = 120: must be >= power.stapm_w (130 W)"),
    ({"cpu.governor": "schedutil"},
     'cpu.governor = "schedutil": must be one of performance, powersave '
     "(sys/devices/system/cpu/cpufreq/policy0/scaling_available_governors)"),
    ({"cpu.governor": "performance", "cpu.epp": "power"},
     'cpu.epp = "power": must be performance under the performance governor (policy0; the '
     "kernel answers EBUSY)"),
    ({"cpu.epp": "turbo"}, 'cpu.epp = "turbo": must be one of'),
    ({"gpu.performance_level": "perf_determinism"},
     'gpu.performance_level = "perf_determinism": must be one of auto, low, high, manual'),
    ({"gpu.sclk_max_mhz": 2000},
     'gpu.sclk_max_mhz = 2000: needs gpu.performance_level = "manual"'),
    ({"gpu.performance_level": "manual", "gpu.sclk_max_mhz": 3500},
     "gpu.sclk_max_mhz = 3500: must be between 600 and 2900 (OD_RANGE of pp_od_clk_voltage)"),
    ({"gpu.performance_level": "manual", "gpu.sclk_min_mhz": 100},
     "gpu.sclk_min_mhz = 100: must be between 600 and 2900"),
    ({"gpu.performance_level": "manual", "gpu.sclk_min_mhz": 2500, "gpu.sclk_max_mhz": 2000},
     "gpu.sclk_min_mhz = 2500: must be <= gpu.sclk_max_mhz (2000)"),
    ({"sysctl.vm.swappiness": 201},
     "sysctl.vm.swappiness = 201: must be an integer between 0 and 200"),
    ({"sysctl.vm.swappiness": True}, "must be an integer between 0 and 200"),
    ({"sysctl.kernel.numa_balancing": 4},
     "sysctl.kernel.numa_balancing = 4: must be an integer between 0 and 3"),
    ({"sysctl.vm.compaction_proactiveness": -1}, "must be an integer between 0 and 100"),
    ({"thp.enabled": "sometimes"},
     'thp.enabled = "sometimes": must be one of always, madvise, never '
     "(sys/kernel/mm/transparent_hugepage/enabled)"),
    ({"thp.defrag": "always-ish"}, "must be one of always, defer, defer+madvise, madvise, never"),
    ({"memory.gtt_gib": 64}, "the kernel command line sets ttm.pages_limit=28835840"),
    ({"memory.gtt_gib": 0}, "memory.gtt_gib = 0: must be a positive number of GiB"),
]


@pytest.mark.parametrize("values,message", INVALID, ids=[str(v) for v, _ in INVALID])
def test_invalid_target_is_refused_untouched(sim_root, state_dir, engine_for, values, message):
    before = tree_snapshot(sim_root)
    with pytest.raises(EngineError) as exc:
        engine_for(sim_root).apply(make_profile(**values))
    assert any(message in p for p in exc.value.problems), exc.value.problems
    assert exc.value.code == 2
    assert writes(sim_root) == []
    assert_same_tree(before, sim_root, f"refused {values}")
    assert read_journal(state_dir) is None


def test_unknown_key_is_a_refusal_not_a_crash(sim_root, engine_for):
    with pytest.raises(EngineError, match="no.such_key: no tunable handles this key"):
        engine_for(sim_root).apply(make_profile(**{"no.such_key": 1}))


def test_all_problems_are_reported_at_once(sim_root, engine_for):
    with pytest.raises(EngineError) as exc:
        engine_for(sim_root).apply(make_profile(**{"power.platform_profile": "turbo",
                                                   "thp.enabled": "sometimes"}))
    assert len(exc.value.problems) == 2, exc.value.problems


def test_epp_checked_against_the_governor_going_back(sim_root, engine_for):
    """EPP under the performance governor is EBUSY, but a profile that also sets the
    governor to powersave may set it: the plan checks EPP against the planned governor."""
    fs = RootFS(sim_root)
    for n in range(32):
        fs.write_text(f"{CPUFREQ}/policy{n}/scaling_governor", "performance")
    with pytest.raises(EngineError, match="must be performance under the performance governor"):
        engine_for(sim_root).apply(make_profile(**{"cpu.epp": "power"}))
    out = engine_for(sim_root).apply(make_profile(**{"cpu.governor": "powersave",
                                                     "cpu.epp": "power"}))
    _ok(out)
    log = [p for p, _v, _r in writes(sim_root)]
    for n in range(32):
        assert log.index(f"{CPUFREQ}/policy{n}/scaling_governor") < \
            log.index(f"{CPUFREQ}/policy{n}/energy_performance_preference")


# --- per-policy states: mixed machines are restored exactly ------------------------------------

def test_governor_alone_rollback_restores_the_epp_it_forced(sim_root, engine_for):
    before = tree_snapshot(sim_root)
    _ok(engine_for(sim_root).apply(make_profile(**{"cpu.governor": "performance"})))
    _ok(engine_for(sim_root).rollback())
    assert live_states(sim_root)["cpu.epp"]["policy0"] == "balance_performance"
    assert_same_tree(before, sim_root, "governor-only apply + rollback")


def test_mixed_governors_restored_per_policy(sim_root, engine_for):
    fs = RootFS(sim_root)
    fs.write_text(f"{CPUFREQ}/policy5/scaling_governor", "performance")
    before = tree_snapshot(sim_root)
    n = len(writes(sim_root))
    _ok(engine_for(sim_root).apply(make_profile(**{"cpu.governor": "powersave"})))
    assert [(p, v) for p, v, _ in writes(sim_root)[n:]] == \
        [(f"{CPUFREQ}/policy5/scaling_governor", "powersave")]
    out = engine_for(sim_root).rollback()
    _ok(out)
    assert live_states(sim_root)["cpu.governor"]["policy5"] == "performance"
    assert "mixed" in next(r.target for r in out.rows if r.key == "cpu.governor")
    assert_same_tree(before, sim_root, "mixed governors")


def test_mixed_epp_restored_per_policy(sim_root, engine_for):
    RootFS(sim_root).write_text(f"{CPUFREQ}/policy3/energy_performance_preference", "power")
    before = tree_snapshot(sim_root)
    _ok(engine_for(sim_root).apply(make_profile(**{"cpu.epp": "balance_performance"})))
    _ok(engine_for(sim_root).rollback())
    assert live_states(sim_root)["cpu.epp"]["policy3"] == "power"
    assert_same_tree(before, sim_root, "mixed EPP")


def test_boost_order_and_mixed_restore(sim_root, engine_for):
    """Off: per-policy flags first, the global switch last. On again: the global switch first
    (a per-policy write is EINVAL while it is off), then the odd policy back off."""
    RootFS(sim_root).write_text(f"{CPUFREQ}/policy7/boost", "0")
    before = tree_snapshot(sim_root)
    n = len(writes(sim_root))
    _ok(engine_for(sim_root).apply(make_profile(**{"cpu.boost": False})))
    log = writes(sim_root)[n:]
    assert log[-1][:2] == (f"{CPUFREQ}/boost", "0")
    assert f"{CPUFREQ}/policy7/boost" not in [p for p, _v, _r in log]
    n = len(writes(sim_root))
    _ok(engine_for(sim_root).rollback())
    log = [(p, v) for p, v, _r in writes(sim_root)[n:]]
    assert log == [(f"{CPUFREQ}/boost", "1"), (f"{CPUFREQ}/policy7/boost", "0")]
    assert all(r == "ok" for _p, _v, r in writes(sim_root))
    assert_same_tree(before, sim_root, "mixed boost")


# --- the GPU clock range -------------------------------------------------------------------------

def test_clock_cap_rollback_leaves_manual_and_the_level_resets_the_range(sim_root, engine_for):
    """Back to auto, the SMU sends the default GFX range itself
    (smu_v14_0_common_set_performance_level): no `r`/`c` is needed, and none could follow
    (OD edits are refused outside manual)."""
    before = tree_snapshot(sim_root)
    _ok(engine_for(sim_root).apply(make_profile(**{"gpu.performance_level": "manual",
                                                   "gpu.sclk_max_mhz": 2000})))
    assert "2000Mhz" in read_file(sim_root, f"{CARD}/pp_od_clk_voltage")
    n = len(writes(sim_root))
    _ok(engine_for(sim_root).rollback())
    assert [(p, v) for p, v, _ in writes(sim_root)[n:]] == [(LEVEL, "auto")]
    assert_same_tree(before, sim_root, "clock cap")


def test_clock_rollback_to_non_default_values(sim_root, engine_for):
    """Another tool had set manual 1000-2500 MHz: the rollback writes those back (s 0, s 1, c)
    before leaving the level alone (it was manual)."""
    fs = RootFS(sim_root)
    fs.write_text(f"{CARD}/power_dpm_force_performance_level", "manual")
    for v in ("s 0 1000", "s 1 2500", "c"):
        fs.write_text(f"{CARD}/pp_od_clk_voltage", v)
    before = tree_snapshot(sim_root)
    _ok(engine_for(sim_root).apply(make_profile(**{"gpu.performance_level": "manual",
                                                   "gpu.sclk_min_mhz": 2600,
                                                   "gpu.sclk_max_mhz": 2700})))
    assert live_states(sim_root)["gpu.sclk_min_mhz"] == 2600
    n = len(writes(sim_root))
    _ok(engine_for(sim_root).rollback())
    assert [(p, v) for p, v, _ in writes(sim_root)[n:]] == \
        [(OD, "s 0 1000"), (OD, "s 1 2500"), (OD, "c")]
    assert_same_tree(before, sim_root, "non-default clocks")


# --- TDP -----------------------------------------------------------------------------------------

def test_tdp_verify_tolerance():
    t = by_key()["power.stapm_w"]
    assert t.matches("power.stapm_w", 100.4, 100.0)
    assert not t.matches("power.stapm_w", 100.6, 100.0)
    assert t.matches("power.stapm_w", None, None) and not t.matches("power.stapm_w", None, 1.0)


def test_platform_profile_moves_tdp_and_rollback_restores_it(sim_root, engine_for):
    """amd-pmf re-sends its slider limits on a profile write (the simulator does too)."""
    before = tree_snapshot(sim_root)
    _ok(engine_for(sim_root).apply(make_profile(**{"power.platform_profile": "low-power"})))
    assert "|    60.000 | stapm-limit" in tdp_state(sim_root)
    _ok(engine_for(sim_root).rollback())
    assert_same_tree(before, sim_root, "platform profile + TDP")


def test_tdp_unavailable_rows_skipped_rest_applied(sim_root, engine_for):
    os.unlink(os.path.join(sim_root, "usr/local/bin/ryzenadj"))
    out = engine_for(sim_root).apply(make_profile(**{"power.stapm_w": 80.0,
                                                     "sysctl.vm.swappiness": 30}))
    _ok(out)
    rows = {r.key: r for r in out.rows}
    assert rows["power.stapm_w"].status == "skipped"
    assert "ryzenadj not found" in rows["power.stapm_w"].note
    assert rows["sysctl.vm.swappiness"].status == "ok"
    assert any("the platform profile alone sets the power level" in n for n in out.notes)


# --- gpu.power_profile: hidden on Strix Halo -----------------------------------------------------

def test_power_profile_unsupported_is_skipped(sim_root, engine_for):
    before = tree_snapshot(sim_root)
    out = engine_for(sim_root).apply(make_profile(**{"gpu.power_profile": "COMPUTE",
                                                     "thp.defrag": "defer"}))
    _ok(out)
    row = next(r for r in out.rows if r.key == "gpu.power_profile")
    assert row.status == "skipped"
    assert "not supported on this GPU" in row.note
    assert writes(sim_root) == [("sys/kernel/mm/transparent_hugepage/defrag", "defer", "ok")]
    _ok(engine_for(sim_root).rollback())
    assert_same_tree(before, sim_root, "power profile skipped")


def test_power_profile_required_is_an_error(sim_root, state_dir, engine_for):
    before = tree_snapshot(sim_root)
    profile = make_profile(**{"gpu.power_profile": "COMPUTE", "thp.defrag": "defer"})
    profile.power_profile_required = True
    with pytest.raises(EngineError) as exc:
        engine_for(sim_root).apply(profile)
    assert exc.value.problems == [
        'test/t.toml: gpu.power_profile = "COMPUTE": not supported on this GPU (no '
        "pp_power_profile_mode; Strix Halo hides it) (marked required)"]
    assert writes(sim_root) == []
    assert_same_tree(before, sim_root, "required power profile")


MODES = ("PROFILE_INDEX(NAME) TRANSITION_TIME ACTIVATION_HYSTERESIS\n"
         "  0 BOOTUP_DEFAULT*:\n"
         "  1 3D_FULL_SCREEN :\n"
         "  5 COMPUTE        :\n")


def test_power_profile_where_the_file_exists(sim_root, engine_for):
    """A kernel that offers the table: the mode is planned by name, written by index; the
    simulator refuses the write (EACCES, attribute not modelled), so the apply is undone."""
    from halotune.tuning.tunables.gpu_power_profile import parse_modes

    assert parse_modes(MODES) == ({"BOOTUP_DEFAULT": 0, "3D_FULL_SCREEN": 1, "COMPUTE": 5},
                                  "BOOTUP_DEFAULT")
    write_plain(sim_root, f"{DEV}/pp_power_profile_mode", MODES)
    with pytest.raises(EngineError, match="must be one of BOOTUP_DEFAULT, 3D_FULL_SCREEN, COMPUTE"):
        engine_for(sim_root).apply(make_profile(**{"gpu.power_profile": "VR"}))
    before = tree_snapshot(sim_root)
    out = engine_for(sim_root).apply(make_profile(**{"thp.defrag": "defer",
                                                     "gpu.power_profile": "compute"}))
    assert not out.ok
    assert writes(sim_root)[-1] == (f"{DEV}/pp_power_profile_mode", "5", "EACCES")
    assert "failed and was undone" in out.summary
    assert any("EACCES" in w for w in out.warnings)
    assert {r.key: r.status for r in out.rows} == {"thp.defrag": "undone",
                                                   "gpu.power_profile": "undone"}
    assert_same_tree(before, sim_root, "failed apply undone")


# --- memory.gtt_gib: a boot-time file ------------------------------------------------------------

GTT64 = ("# Written by halotune for memory.gtt_gib = 64: the iGPU's GTT size.\n"
         "# ttm.pages_limit is in 4 KiB pages (GiB x 262144); it takes effect at the next boot.\n"
         "options ttm pages_limit=16777216 page_pool_size=16777216\n")


def test_gtt_refused_with_ttm_on_the_cmdline(sim_root, engine_for):
    before = tree_snapshot(sim_root)
    with pytest.raises(EngineError) as exc:
        engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 100}))
    assert exc.value.problems == [
        "test/t.toml: memory.gtt_gib = 100: the kernel command line sets "
        "ttm.pages_limit=28835840, which overrides modprobe.d: change it there instead to "
        "`ttm.pages_limit=26214400 ttm.page_pool_size=26214400` (e.g. in "
        "GRUB_CMDLINE_LINUX_DEFAULT of /etc/default/grub, then update-grub); halotune does not "
        "edit the bootloader"]
    assert_same_tree(before, sim_root, "gtt refused")


def test_gtt_refused_when_ttm_is_built_in(sim_root, engine_for):
    drop_ttm_from_cmdline(sim_root)
    builtin = "lib/modules/6.17.0-5-generic/modules.builtin"
    write_plain(sim_root, builtin,
                read_file(sim_root, builtin) + "kernel/drivers/gpu/drm/ttm/ttm.ko\n")
    with pytest.raises(EngineError) as exc:
        engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 64}))
    assert exc.value.problems == [
        "test/t.toml: memory.gtt_gib = 64: ttm is built into this kernel, so modprobe.d options "
        "never reach it: add `ttm.pages_limit=16777216 ttm.page_pool_size=16777216` to the "
        "kernel command line instead"]


def test_gtt_over_90_percent_needs_force(sim_root, state_dir, engine_for):
    drop_ttm_from_cmdline(sim_root)
    before = tree_snapshot(sim_root)
    with pytest.raises(EngineError) as exc:
        engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 120}))
    assert exc.value.problems == [
        "test/t.toml: memory.gtt_gib = 120: is more than 90% of MemTotal (125.6 GiB): the OS "
        "would be starved; use --force to override"]
    assert_same_tree(before, sim_root, "gtt > 90 %")
    _ok(engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 113})))   # 90.0 %
    assert "pages_limit=29622272" in read_file(sim_root, GTT_CONF)
    _ok(engine_for(sim_root, force=True).apply(make_profile(**{"memory.gtt_gib": 120})))
    assert "pages_limit=31457280" in read_file(sim_root, GTT_CONF)


def test_gtt_written_applied_at_reboot_and_kept_across_boots(sim_root, state_dir, engine_for):
    drop_ttm_from_cmdline(sim_root)
    out = engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 64}))
    _ok(out)
    assert read_file(sim_root, GTT_CONF) == GTT64
    assert any("reboot to apply" in n and "update-initramfs -u" in n for n in out.notes)
    row = next(r for r in out.rows if r.key == "memory.gtt_gib")
    assert row.boot_time and row.after == "64 GiB at next boot"
    reboot(sim_root)
    assert read_file(sim_root, f"{DEV}/mem_info_gtt_total") == f"{64 << 30}\n"
    j = read_journal(state_dir)
    assert j["baseline"]["memory.gtt_gib"]["state"] is None
    assert j["baseline"]["memory.gtt_gib"]["boot_time"] is True
    v = engine_for(sim_root).verify()
    assert v.ok and [r.key for r in v.rows] == ["memory.gtt_gib"], v


def test_gtt_rollback_removes_the_file_halotune_created(sim_root, state_dir, engine_for):
    drop_ttm_from_cmdline(sim_root)
    before = tree_snapshot(sim_root)
    _ok(engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 64})))
    out = engine_for(sim_root).rollback()
    assert not os.path.exists(os.path.join(sim_root, GTT_CONF))
    _ok(out)
    assert_same_tree(before, sim_root, "gtt rollback")
    reboot(sim_root)
    assert read_file(sim_root, f"{DEV}/mem_info_gtt_total") == f"{16469033 * 4096}\n"


def test_gtt_rollback_restores_an_existing_file_byte_for_byte(sim_root, state_dir, engine_for):
    drop_ttm_from_cmdline(sim_root)
    admin = "# admin's own\noptions ttm pages_limit=20971520 page_pool_size=20971520\n"
    write_plain(sim_root, GTT_CONF, admin)
    _ok(engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 64})))
    reboot(sim_root)
    assert read_file(sim_root, f"{DEV}/mem_info_gtt_total") == f"{64 << 30}\n"
    out = engine_for(sim_root).rollback()
    _ok(out)
    assert read_file(sim_root, GTT_CONF) == admin
    assert any("takes effect at the next boot" in n for n in out.notes)
    reboot(sim_root)
    assert read_file(sim_root, f"{DEV}/mem_info_gtt_total") == f"{80 << 30}\n"


def test_gtt_with_the_dkms_amdttm_module(sim_root, engine_for):
    drop_ttm_from_cmdline(sim_root)
    os.makedirs(os.path.join(sim_root, "sys/module/amdttm/parameters"))
    _ok(engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 64})))
    assert "options amdttm pages_limit=16777216 page_pool_size=16777216\n" in \
        read_file(sim_root, GTT_CONF)
    reboot(sim_root)
    assert read_file(sim_root, f"{DEV}/mem_info_gtt_total") == f"{64 << 30}\n"
    write_plain(sim_root, "proc/cmdline", "ro quiet amdttm.pages_limit=1000\n")
    with pytest.raises(EngineError, match="sets amdttm.pages_limit=1000, which overrides"):
        engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 32}))


def test_gtt_refused_when_amdgpu_gttsize_overrides_it(sim_root, engine_for):
    write_plain(sim_root, "proc/cmdline", "ro quiet amdgpu.gttsize=65536\n")
    with pytest.raises(EngineError, match="amdgpu.gttsize"):
        engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 100}))


def test_gtt_file_cannot_be_written_outside_the_root_through_a_symlink(sim_root, tmp_path,
                                                                        engine_for):
    """A --root tree whose etc/modprobe.d leads elsewhere (someone else's tree): the boot-time
    file is refused, nothing lands outside, the apply is undone."""
    import shutil
    drop_ttm_from_cmdline(sim_root)
    outside = tmp_path / "outside-modprobe.d"
    outside.mkdir()
    conf_dir = os.path.join(sim_root, "etc/modprobe.d")
    shutil.rmtree(conf_dir, ignore_errors=True)
    os.symlink(str(outside), conf_dir)
    out = None
    try:
        out = engine_for(sim_root).apply(make_profile(**{"memory.gtt_gib": 64}))
    except EngineError:
        pass
    assert list(outside.iterdir()) == []
    if out is not None:
        assert not out.ok and "outside the root" in json.dumps(out.to_dict()), out.to_dict()
