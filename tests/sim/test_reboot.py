"""reboot(): runtime settings back to power-on values, boot-time configuration applied."""

from __future__ import annotations

import os
import re

import pytest

from halotune.machine.rootfs import RootFS
from halotune.machine.ryzenadj import parse_info
from halotune.sim import bootconf, paths, scenarios, store
from halotune.sim import hardware as hw
from halotune.sim.animate import Animator
from halotune.sim.reboot import reboot
from halotune.sim.ryzenadj import main as ryzenadj
from halotune.sim.tree import lay_out

CARD = "sys/class/drm/card1/device"
GTT_TOTAL = f"{CARD}/mem_info_gtt_total"
PAGES_LIMIT = f"{paths.TTM_PARAMS}/pages_limit"
POOL_SIZE = f"{paths.TTM_PARAMS}/page_pool_size"
CONF = f"{paths.MODPROBE_D}/halotune-gtt.conf"
PLAIN_CMDLINE = "BOOT_IMAGE=/boot/vmlinuz-6.17.0-5-generic root=UUID=x ro quiet splash\n"

# Every attribute a write can change, with a value each accepts.
RUNTIME_WRITES = [
    (f"{CARD}/power_dpm_force_performance_level", "manual"),
    (f"{CARD}/pp_od_clk_voltage", "s 1 2000"),
    (f"{CARD}/pp_od_clk_voltage", "c"),
    (f"{CARD}/pp_dpm_fclk", "1 2"),
    (f"{CARD}/pp_dpm_socclk", "3"),
    (paths.PLATFORM_PROFILE, "low-power"),
    (f"{paths.policy(3)}/scaling_governor", "performance"),
    (f"{paths.policy(4)}/energy_performance_preference", "power"),
    (f"{paths.policy(5)}/scaling_max_freq", "3000000"),
    (f"{paths.policy(5)}/scaling_min_freq", "2000000"),
    (f"{paths.policy(6)}/boost", "0"),
    (paths.BOOST, "0"),
    (paths.THP_ENABLED, "never"),
    (paths.THP_DEFRAG, "always"),
    (paths.SWAPPINESS, "10"),
    (paths.COMPACTION_PROACTIVENESS, "0"),
    (paths.NUMA_BALANCING, "1"),
    (PAGES_LIMIT, "1000"),
    (POOL_SIZE, "1000"),
    (f"{paths.TTM_PARAMS}/dma32_pages_limit", "1000"),
    (paths.GTTSIZE, "4096"),
    (paths.PSTATE_STATUS, "guided"),   # last: re-registering the driver resets the policies
]


def _runtime_files(fs: RootFS) -> dict[str, bytes | None]:
    rels = {rel for rel, _ in RUNTIME_WRITES} | {GTT_TOTAL, f"{CARD}/mem_info_gtt_used"}
    for n in range(hw.CPUS):
        for name in ("scaling_driver", "scaling_governor", "energy_performance_preference",
                     "energy_performance_available_preferences", "scaling_min_freq",
                     "scaling_max_freq", "cpuinfo_max_freq", "boost"):
            rels.add(f"{paths.policy(n)}/{name}")
    return {rel: fs.read_bytes(rel) for rel in sorted(rels)}


def _write_file(fs: RootFS, rel: str, text: str) -> None:
    """Change a file the way the user would outside halotune (an editor, a boot-loader tool)."""
    with open(fs.path(rel), "w", encoding="utf-8") as f:
        f.write(text)


def test_runtime_settings_return_to_their_power_on_values(sim_fs):
    lay_out(sim_fs.root, "idle")   # GTT used then matches the idle value a reboot leaves
    power_on = _runtime_files(sim_fs)
    power_on_state = store.load_state(sim_fs.root)
    unseen = []
    for rel, value in RUNTIME_WRITES:
        before = sim_fs.read_bytes(rel)
        sim_fs.write_text(rel, value)
        if sim_fs.read_bytes(rel) == before:
            unseen.append(rel)
    # The OD commit changes what the SMU enforces, the masks show at the next tick.
    assert unseen == [f"{CARD}/pp_od_clk_voltage", f"{CARD}/pp_dpm_fclk", f"{CARD}/pp_dpm_socclk"]
    assert sim_fs.read_bytes(GTT_TOTAL) == power_on[GTT_TOTAL]   # no runtime write resizes GTT

    reboot(sim_fs.root)
    assert _runtime_files(sim_fs) == power_on
    state = store.load_state(sim_fs.root)
    for key in ("gpu", "cpu", "platform_profile", "mm", "limits", "params"):
        assert state[key] == power_on_state[key], key


def test_a_new_boot_id_and_fresh_counters(sim_fs):
    boot_id = sim_fs.read_text(paths.BOOT_ID)
    btime = store.load_state(sim_fs.root)["btime"]
    uptime = float(sim_fs.read_text(paths.PROC_UPTIME).split()[0])
    sim_fs.write_text(paths.SWAPPINESS, "10")

    new_id = reboot(sim_fs.root)
    assert new_id != boot_id
    assert sim_fs.read_text(paths.BOOT_ID) == new_id
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        new_id)
    stat = sim_fs.read_text(paths.PROC_STAT).splitlines()
    assert stat[0] == "cpu  0 0 0 0 0 0 0 0 0 0"
    assert "ctxt 0" in stat and "processes 0" in stat
    new_btime = int(next(line for line in stat if line.startswith("btime ")).split()[1])
    assert new_btime >= btime + int(uptime)
    assert sim_fs.read_text(paths.PROC_UPTIME) == "0.00 0.00"
    Animator(sim_fs.root).step(2.0)   # and the machine runs on from there
    assert float(sim_fs.read_text(paths.PROC_UPTIME).split()[0]) == pytest.approx(2.0, abs=0.02)

    log = store.read_log(sim_fs.root)
    assert log[0]["path"] == paths.SWAPPINESS   # earlier lines are kept
    assert log[1]["event"] == "reboot" and log[1]["boot_id"] == new_id
    assert reboot(sim_fs.root) != new_id


def test_modprobe_d_sets_the_ttm_limits_and_gtt(sim_fs):
    _write_file(sim_fs, paths.PROC_CMDLINE, PLAIN_CMDLINE)
    sim_fs.write_text(CONF, "options ttm pages_limit=26214400 page_pool_size=26214400")
    assert sim_fs.read_int(PAGES_LIMIT) == 28835840   # nothing changes before the reboot
    reboot(sim_fs.root)
    assert (sim_fs.read_int(PAGES_LIMIT), sim_fs.read_int(POOL_SIZE)) == (26214400, 26214400)
    assert sim_fs.read_int(GTT_TOTAL) == 26214400 * 4096
    assert sim_fs.read_int(f"{CARD}/mem_info_gtt_used") == scenarios.IDLE_GTT_BYTES

    os.unlink(sim_fs.path(CONF))   # removing the file undoes it at the next boot
    reboot(sim_fs.root)
    assert sim_fs.read_int(PAGES_LIMIT) == hw.TTM_DEFAULT_PAGES == 16469033   # half of RAM
    assert sim_fs.read_int(GTT_TOTAL) == hw.TTM_DEFAULT_PAGES * 4096


def test_the_kernel_command_line_wins_over_modprobe_d(sim_fs):
    # The laid-out command line carries ttm.pages_limit=28835840 ttm.page_pool_size=28835840.
    sim_fs.write_text(CONF, "options ttm pages_limit=26214400 page_pool_size=26214400")
    reboot(sim_fs.root)
    assert (sim_fs.read_int(PAGES_LIMIT), sim_fs.read_int(GTT_TOTAL)) == \
        (28835840, 28835840 * 4096)
    _write_file(sim_fs, paths.PROC_CMDLINE, PLAIN_CMDLINE.replace("ro", "ro ttm.pages-limit=512"))
    reboot(sim_fs.root)   # "-" and "_" are the same in parameter names
    assert (sim_fs.read_int(PAGES_LIMIT), sim_fs.read_int(POOL_SIZE)) == (512, 26214400)


def test_modprobe_d_files_in_lexical_order(sim_fs):
    _write_file(sim_fs, paths.PROC_CMDLINE, PLAIN_CMDLINE)
    sim_fs.write_text(f"{paths.MODPROBE_D}/99-late.conf", "options ttm pages_limit=2000000")
    sim_fs.write_text(f"{paths.MODPROBE_D}/10-early.conf",
                      "# GTT for LLMs\n\nblacklist radeon\n"
                      "options ttm pages_limit=1000000 \\\n  page_pool_size=3000000\n"
                      "options amdgpu gttsize=65536\n")
    _write_file(sim_fs, f"{paths.MODPROBE_D}/50-ignored.conf.bak", "options ttm pages_limit=7\n")
    reboot(sim_fs.root)
    assert (sim_fs.read_int(PAGES_LIMIT), sim_fs.read_int(POOL_SIZE)) == (2000000, 3000000)
    # amdgpu.gttsize (deprecated) still overrides the GTT size (amdgpu_ttm_init).
    assert sim_fs.read_int(paths.GTTSIZE) == 65536
    assert sim_fs.read_int(GTT_TOTAL) == 65536 << 20


def test_amdttm_sizes_gtt_with_the_dkms_driver(tmp_path):
    root = str(tmp_path / "dkms")
    lay_out(root)
    fs = RootFS(root)
    os.makedirs(fs.path(paths.AMDTTM))
    _write_file(fs, paths.PROC_CMDLINE, PLAIN_CMDLINE.replace("ro", "ro ttm.pages_limit=1000"))
    fs.write_text(CONF, "options amdttm pages_limit=27648000 page_pool_size=27648000")
    reboot(root)
    assert fs.read_int(f"{paths.module_params('amdttm')}/pages_limit") == 27648000
    assert fs.read_int(GTT_TOTAL) == 27648000 * 4096
    assert fs.read_int(PAGES_LIMIT) == 1000   # ttm.* reaches only the in-kernel ttm


def test_tdp_limits_return_to_the_firmware_defaults(sim_root, capsys):
    assert ryzenadj(["--stapm-limit=85000", "--fast-limit=95000", "--tctl-temp=90"],
                    sim_root) == 0
    capsys.readouterr()
    reboot(sim_root)
    assert ryzenadj(["-i"], sim_root) == 0
    info = parse_info(capsys.readouterr().out)
    assert (info.stapm_limit_w, info.fast_limit_w, info.slow_limit_w) == (120, 140, 120)
    assert store.load_state(sim_root)["limits"] == scenarios.DEFAULT_LIMITS


def test_writes_are_still_validated_after_a_reboot(sim_fs):
    reboot(sim_fs.root)
    with pytest.raises(OSError):
        sim_fs.write_text(paths.NUMA_BALANCING, "5")
    sim_fs.write_text(paths.NUMA_BALANCING, "3")
    assert sim_fs.read_int(paths.NUMA_BALANCING) == 3
    sim_fs.write_text(paths.BOOST, "0")
    with pytest.raises(OSError):
        sim_fs.write_text(f"{paths.policy(0)}/boost", "1")


def test_reboot_needs_a_simulated_machine(tmp_path):
    with pytest.raises(FileNotFoundError):
        reboot(str(tmp_path))


def test_boot_option_parsing():
    opts = bootconf.parse_cmdline(
        'BOOT_IMAGE=/vmlinuz ro amdgpu.gttsize=128000 amd-ttm.pages_limit=5 '
        'ttm.page_pool_size="7" -- ttm.pages_limit=9')
    assert opts == {"amdgpu": {"gttsize": "128000"}, "amd_ttm": {"pages_limit": "5"},
                    "ttm": {"page_pool_size": "7"}}
    opts = bootconf.parse_modprobe("options ttm pages_limit=1\n#options ttm pages_limit=2\n"
                                   "  options ttm pages_limit=3 dma32\n", opts)
    assert opts["ttm"] == {"page_pool_size": "7", "pages_limit": "3", "dma32": None}
