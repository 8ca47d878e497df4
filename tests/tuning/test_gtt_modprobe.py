"""memory.gtt_gib against every modprobe.d directory kmod reads (libkmod-config.c): apply warns
about a file that overrides halotune's, `status --json` reports the GTT size the next boot will
really use, and a reboot of the simulated machine (which reads modprobe.d on its own, from
bootconf.py) lands on that same size. verify tells a value waiting for a reboot from a live one.
"""

from __future__ import annotations

import os

import pytest

from halotune.machine import modprobe
from halotune.machine.rootfs import RootFS
from halotune.sim.reboot import reboot

from .conftest import CMDLINE_NO_TTM, read_file, write_profile

GTT_TOTAL = "sys/class/drm/card1/device/mem_info_gtt_total"
GIB_PAGES = 262144


@pytest.fixture
def machine(kernel_root):
    """A simulated machine whose command line leaves the GTT to modprobe.d."""
    _put(kernel_root, "proc/cmdline", CMDLINE_NO_TTM)
    return kernel_root


@pytest.fixture
def gtt64(profiles_dir):
    return write_profile(profiles_dir, "gtt64", 'description = "t"\n[memory]\ngtt_gib = 64\n')


def _put(root: str, rel: str, text: str) -> None:
    """A file as a package or an admin puts it there (not through the simulator)."""
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _args(root, state_dir, profiles_dir):
    return ["--root", root, "--state-dir", state_dir, "--profiles-dir", profiles_dir]


def _pending(run_cli, root) -> tuple[int | None, list]:
    r = run_cli("status", "--json", "--root", root)
    assert r.rc == 0, r
    doc = r.json()
    return doc["memory"]["gtt_pending_bytes"], doc["pending_reboot"]


def _gtt_total(root) -> int:
    return int(read_file(root, GTT_TOTAL))


def test_a_file_read_after_halotunes_wins_and_everyone_agrees(machine, state_dir, profiles_dir,
                                                            gtt64, run_cli):
    # AMD's amd-ttm tool writes /etc/modprobe.d/ttm.conf, which sorts after halotune-gtt.conf.
    _put(machine, "etc/modprobe.d/ttm.conf", f"options ttm pages_limit={96 * GIB_PAGES}\n")
    r = run_cli("apply", "gtt64", *_args(machine, state_dir, profiles_dir))
    assert r.rc == 0, r
    assert f"pages_limit={64 * GIB_PAGES}" in read_file(machine, "etc/modprobe.d/halotune-gtt.conf")
    warning = next(line for line in r.out.splitlines() if line.startswith("warning:"))
    assert "/etc/modprobe.d/ttm.conf sets `ttm pages_limit=25165824`" in warning
    assert "the next boot sizes GTT to 96 GiB, not 64 GiB" in warning
    pending, entries = _pending(run_cli, machine)
    assert pending == 96 << 30
    assert entries[0]["file"] == "/etc/modprobe.d/ttm.conf"
    reboot(machine)
    assert _gtt_total(machine) == pending
    assert _pending(run_cli, machine)[0] is None


def test_same_name_in_etc_hides_usr_lib(machine, state_dir, profiles_dir, gtt64, run_cli):
    # A package's file that would win over halotune's (later name) ...
    _put(machine, "usr/lib/modprobe.d/zz-gtt.conf", f"options ttm pages_limit={32 * GIB_PAGES}\n")
    r = run_cli("apply", "gtt64", "--dry-run", *_args(machine, state_dir, profiles_dir))
    assert "warning: /usr/lib/modprobe.d/zz-gtt.conf sets `ttm pages_limit=8388608`" in r.out, r
    # ... masked by the admin with an empty file of the same name in /etc/modprobe.d.
    _put(machine, "etc/modprobe.d/zz-gtt.conf", "# masks the package's GTT setting\n")
    r = run_cli("apply", "gtt64", *_args(machine, state_dir, profiles_dir))
    assert r.rc == 0, r
    assert "warning:" not in r.out
    pending, entries = _pending(run_cli, machine)
    assert pending == 64 << 30 and entries[0]["file"] == "/etc/modprobe.d/halotune-gtt.conf"
    reboot(machine)
    assert _gtt_total(machine) == 64 << 30


def test_amdgpu_gttsize_in_usr_lib_is_refused_and_still_counted(machine, state_dir, profiles_dir,
                                                                gtt64, run_cli):
    _put(machine, "usr/lib/modprobe.d/amdgpu-gtt.conf", "options amdgpu gttsize=81920\n")
    r = run_cli("apply", "gtt64", *_args(machine, state_dir, profiles_dir))
    assert r.rc == 2, r
    assert ("memory.gtt_gib = 64: /usr/lib/modprobe.d/amdgpu-gtt.conf sets `options amdgpu "
            "gttsize=81920`, which overrides ttm.pages_limit (and is deprecated): remove that "
            "option, then apply again") in r.err
    assert not os.path.exists(os.path.join(machine, "etc/modprobe.d/halotune-gtt.conf"))
    # amdgpu_ttm_init: a set gttsize (MiB) wins over the TTM limit, at every kernel version.
    pending, entries = _pending(run_cli, machine)
    assert pending == 81920 << 20 and entries[0]["file"] == "/usr/lib/modprobe.d/amdgpu-gtt.conf"
    reboot(machine)
    assert _gtt_total(machine) == pending


def test_verify_tells_pending_from_live(machine, state_dir, profiles_dir, gtt64, run_cli):
    assert run_cli("apply", "gtt64", *_args(machine, state_dir, profiles_dir)).rc == 0
    args = ["--root", machine, "--state-dir", state_dir]
    row = run_cli("verify", "--json", *args).json()["rows"][0]
    assert row["key"] == "memory.gtt_gib" and row["status"] == "ok"
    # the laid-out machine booted with ttm.pages_limit=28835840 (110 GiB)
    assert row["note"] == "written, pending reboot (running: 110 GiB)"
    reboot(machine)
    row = run_cli("verify", "--json", *args).json()["rows"][0]
    assert row["note"] == "live", row
    # Another file taking over after the reboot is not "live" any more.
    _put(machine, "run/modprobe.d/zz.conf", f"options ttm pages_limit={80 * GIB_PAGES}\n")
    row = run_cli("verify", "--json", *args).json()["rows"][0]
    assert row["note"] == "overridden by /run/modprobe.d/zz.conf: 80 GiB at the next boot", row


def test_stale_initramfs_is_named(machine, state_dir, profiles_dir, gtt64, run_cli):
    release = read_file(machine, "proc/sys/kernel/osrelease").strip()
    image = os.path.join(machine, f"boot/initrd.img-{release}")
    _put(machine, f"boot/initrd.img-{release}", "")
    os.utime(image, (1_000_000_000, 1_000_000_000))
    r = run_cli("apply", "gtt64", *_args(machine, state_dir, profiles_dir))
    assert r.rc == 0, r
    assert (f"note: /boot/initrd.img-{release} is older than /etc/modprobe.d/halotune-gtt.conf"
            in r.out)
    assert f"`update-initramfs -u -k {release}`" in r.out


def test_kmod_file_rules(tmp_path):
    from halotune.machine.memory import gtt_next_boot

    root = str(tmp_path)
    _put(root, "lib/modprobe.d/50-a.conf", "options ttm pages_limit=1\n")
    _put(root, "usr/local/lib/modprobe.d/50-a.conf", "options ttm pages_limit=2\n")  # hides lib/
    _put(root, "run/modprobe.d/.hidden.conf", "options ttm pages_limit=3\n")
    _put(root, "run/modprobe.d/60-b.conf.bak", "options ttm pages_limit=4\n")
    os.makedirs(os.path.join(root, "etc/modprobe.d/70-c.conf"))   # a directory hides nothing
    _put(root, "usr/lib/modprobe.d/70-c.conf", "options ttm pages-limit=5\\\n0 page_pool_size=6\n")
    _put(root, "etc/modprobe.d/10-z.conf", "#options ttm pages_limit=7\n")
    fs = RootFS(root)
    assert modprobe.conf_files(fs) == ["etc/modprobe.d/10-z.conf",
                                       "usr/local/lib/modprobe.d/50-a.conf",
                                       "usr/lib/modprobe.d/70-c.conf"]
    # backslash-newline joins with nothing in between: "pages-limit=50"
    assert [(o.param, o.value) for o in modprobe.modprobe_options(fs)] == [
        ("pages_limit", "2"), ("pages_limit", "50"), ("page_pool_size", "6")]
    _put(root, "proc/meminfo", "MemTotal:       131712996 kB\n")
    unknown = gtt_next_boot(fs)     # the command line, which would win, cannot be read
    assert unknown.bytes is None and unknown.problem.startswith("/proc/cmdline cannot be read")
    _put(root, "proc/cmdline", "BOOT_IMAGE=/boot/vmlinuz ro quiet\n")
    after = gtt_next_boot(fs)
    assert (after.bytes, after.where) == (50 * 4096, "/usr/lib/modprobe.d/70-c.conf")
    assert [o.where for o in after.overridden] == ["/usr/local/lib/modprobe.d/50-a.conf"]
