"""lay_out: the reference scenario reproduces the reference snapshot, plus the files it lacks."""

from __future__ import annotations

import os
import re
import stat
import sys

import pytest

from halotune.machine.gpu_metrics import decode, encode
from halotune.sim import paths, scenarios, store
from halotune.sim.tree import lay_out

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "fixtures", "strix-halo")
DEV = paths.DEV
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n\Z")

# Files where the simulator differs from the snapshot on purpose (see halotune/sim/README.md).
PARTIAL = {"proc/meminfo", "proc/stat", "proc/sys/kernel/random/boot_id"}


def _fixture_entries():
    """(root-relative path, is_symlink) of every file and symlink of the snapshot."""
    for dirpath, dirnames, filenames in os.walk(FIXTURE):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = os.path.relpath(os.path.join(dirpath, name), FIXTURE)
            if rel != "README.md":
                yield rel, os.path.islink(os.path.join(dirpath, name))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_reference_reproduces_every_snapshot_file(sim_root):
    entries = list(_fixture_entries())
    assert len(entries) > 80
    for rel, is_link in entries:
        want_path, got_path = os.path.join(FIXTURE, rel), os.path.join(sim_root, rel)
        if is_link or os.path.islink(got_path):
            # The shared snapshot stores its links as files holding the target.
            want = os.readlink(want_path) if is_link else _read(want_path).decode()
            assert os.readlink(got_path) == want, rel
        elif rel not in PARTIAL:
            assert _read(got_path) == _read(want_path), rel


def test_partial_files_keep_the_snapshot_lines(sim_root):
    # meminfo: the snapshot holds the first 6 lines of the full file.
    want = _read(os.path.join(FIXTURE, "proc/meminfo"))
    assert _read(os.path.join(sim_root, "proc/meminfo")).startswith(want)
    # stat: 32 CPUs instead of 2; every other line is the snapshot's, in the same order.
    want_lines = _read(os.path.join(FIXTURE, "proc/stat")).decode().splitlines()
    got_lines = _read(os.path.join(sim_root, "proc/stat")).decode().splitlines()
    expected = [line for line in want_lines if not line.startswith("cpu ")]
    assert [line for line in got_lines if line in expected] == expected
    assert sum(1 for line in got_lines if re.match(r"cpu\d+ ", line)) == 32
    # boot_id: a new random one per lay_out, like a boot.
    assert UUID.match(_read(os.path.join(sim_root, "proc/sys/kernel/random/boot_id")).decode())


def test_gpu_metrics_is_the_snapshot_blob(sim_fs):
    blob = sim_fs.read_bytes(f"{DEV}/gpu_metrics")
    assert blob == _read(os.path.join(FIXTURE, DEV, "gpu_metrics"))
    assert blob == encode(scenarios.REFERENCE_METRICS)
    m = decode(blob)
    assert (len(blob), m.version, m.socket_power_w) == (264, "3.0", 98.43)


def test_class_symlinks_resolve_like_sysfs(sim_fs):
    assert sim_fs.realpath("sys/class/drm/card1/device/vendor") == f"{DEV}/vendor"
    assert sim_fs.read_text("sys/class/hwmon/hwmon3/power1_average") == "98043000"
    assert sim_fs.realpath("sys/class/kfd/kfd/topology/nodes/1/name").startswith(paths.KFD)


def test_thirty_two_cpus_follow_their_cores(sim_fs):
    clocks = scenarios.REFERENCE_METRICS["current_coreclk"]
    for n in range(32):
        cpufreq = f"sys/devices/system/cpu/cpu{n}/cpufreq"
        assert sim_fs.realpath(cpufreq) == paths.policy(n)
        assert sim_fs.read_int(f"{cpufreq}/scaling_cur_freq") == clocks[n % 16] * 1000
        siblings = sim_fs.read_text(f"sys/devices/system/cpu/cpu{n}/topology/thread_siblings_list")
        assert siblings == f"{n % 16},{n % 16 + 16}"
    assert not sim_fs.exists("sys/devices/system/cpu/cpu32")


def test_files_the_snapshot_lacks(sim_fs):
    kfd = dict(line.split() for line in
               sim_fs.read_text("sys/class/kfd/kfd/topology/nodes/1/properties").splitlines())
    assert (kfd["gfx_target_version"], kfd["location_id"], kfd["domain"]) == \
        ("110501", "49920", "0")
    assert sim_fs.read_text("sys/class/kfd/kfd/topology/nodes/1/name") == "gfx1151"
    assert "cpu_cores_count 32" in sim_fs.read_text("sys/class/kfd/kfd/topology/nodes/0/properties")
    assert sim_fs.read_bytes(paths.THP_ENABLED) == b"always [madvise] never\n"
    assert sim_fs.read_bytes(paths.THP_DEFRAG) == b"always defer defer+madvise [madvise] never\n"
    assert (sim_fs.read_int(paths.SWAPPINESS), sim_fs.read_int(paths.COMPACTION_PROACTIVENESS)) \
        == (60, 20)
    assert sim_fs.read_text("sys/class/power_supply/ACAD/type") == "Mains"
    assert sim_fs.read_int("sys/class/power_supply/ACAD/online") == 1
    assert sim_fs.read_int(paths.BOOST) == 1
    assert sim_fs.read_int(paths.NUMA_BALANCING) == 0
    assert {sim_fs.read_int(f"{paths.policy(n)}/boost") for n in range(32)} == {1}
    assert sim_fs.isdir(paths.MODPROBE_D) and sim_fs.listdir(paths.MODPROBE_D) == []
    modules = "lib/modules/6.17.0-5-generic"
    builtin = sim_fs.read_text(f"{modules}/modules.builtin").splitlines()
    assert "kernel/fs/ext4/ext4.ko" in builtin
    assert not [m for m in builtin if "/ttm/" in m or "/amdgpu/" in m]   # loadable modules
    assert sim_fs.read_bytes(f"{modules}/kernel/drivers/gpu/drm/ttm/ttm.ko.zst") == b""
    meminfo = sim_fs.read_text("proc/meminfo")
    for key in ("SwapTotal:", "SwapFree:", "Hugepagesize:", "DirectMap1G:"):
        assert key in meminfo
    assert sim_fs.read_text("proc/version").startswith("Linux version 6.17.0-5-generic ")


def test_modes_and_the_ryzenadj_script(sim_root):
    gtt = os.stat(os.path.join(sim_root, paths.GTTSIZE))
    assert stat.S_IMODE(gtt.st_mode) == 0o600
    script = os.path.join(sim_root, paths.RYZENADJ)
    assert stat.S_IMODE(os.stat(script).st_mode) == 0o755
    assert _read(script).decode().splitlines()[0] == f"#!{sys.executable}"
    assert store.read_log(sim_root) == []
    assert store.load_state(sim_root)["scenario"] == "reference"


def test_a_reset_empties_modprobe_d(sim_fs):
    conf = sim_fs.path(f"{paths.MODPROBE_D}/halotune-gtt.conf")
    with open(conf, "w") as f:
        f.write("options ttm pages_limit=1\n")
    lay_out(sim_fs.root)
    assert sim_fs.listdir(paths.MODPROBE_D) == []


def test_each_lay_out_is_a_new_boot(sim_fs):
    boot_id = "proc/sys/kernel/random/boot_id"
    first = sim_fs.read_text(boot_id)
    lay_out(sim_fs.root)
    assert sim_fs.read_text(boot_id) != first


def test_idle_scenario(sim_fs):
    lay_out(sim_fs.root, "idle")
    m = decode(sim_fs.read_bytes(f"{DEV}/gpu_metrics"))
    assert sim_fs.read_int(f"{DEV}/gpu_busy_percent") <= 3
    assert m.gfxclk_mhz == 600
    assert 9 <= m.socket_power_w <= 15
    assert sim_fs.read_bytes(f"{DEV}/pp_dpm_sclk") == b"0: 600Mhz *\n1: 1100Mhz \n2: 2900Mhz \n"
    assert store.load_state(sim_fs.root)["scenario"] == "idle"


def test_lay_out_guards_its_target(tmp_path):
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        lay_out(str(stranger))
    lay_out(str(stranger), force=True)
    assert (stranger / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError):
        lay_out(str(tmp_path / "x"), "unknown-scenario")


def test_the_kernel_version_is_chosen_at_lay_out(tmp_path):
    from halotune.sim import kversion
    from halotune.sim.reboot import reboot

    root = str(tmp_path / "m")
    lay_out(root, kernel="6.12")
    with open(os.path.join(root, "proc/sys/kernel/osrelease")) as f:
        assert f.read() == "6.12.0-1-generic\n"
    assert os.path.isdir(os.path.join(root, "lib/modules/6.12.0-1-generic"))
    assert store.load_state(root)["kernel"] == "6.12"
    reboot(root)                                   # a reboot runs the same kernel again
    assert store.load_state(root)["kernel"] == "6.12"
    lay_out(root)                                  # the default: the reference snapshot's 6.17
    assert store.load_state(root)["kernel"] == kversion.DEFAULT
    assert sorted(os.listdir(os.path.join(root, "lib/modules"))) == ["6.17.0-5-generic"]


@pytest.mark.parametrize("bad", ["6.5", "7", "six.twelve", "6.99"])
def test_an_unmodelled_kernel_version_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="is not modelled"):
        lay_out(str(tmp_path / "m"), kernel=bad)
