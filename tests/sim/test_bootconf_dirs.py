"""The simulated next boot reads modprobe.d like kmod (libkmod-config.c): five directories, a
name in an earlier one hides the same name in a later one, all kept files in name order."""

from __future__ import annotations

import os

import pytest

from halotune.machine.rootfs import RootFS
from halotune.sim import bootconf, paths
from halotune.sim.reboot import reboot
from halotune.sim.tree import lay_out

GTT_TOTAL = "sys/class/drm/card1/device/mem_info_gtt_total"


def _put(root: str, rel: str, text: str) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


@pytest.mark.parametrize("kernel", ["6.11", "6.18"])
def test_every_directory_in_kmod_order(tmp_path, kernel):
    root = str(tmp_path / "root")
    lay_out(root, kernel=kernel)
    _put(root, paths.PROC_CMDLINE, "BOOT_IMAGE=/boot/vmlinuz ro quiet\n")
    _put(root, "etc/modprobe.d/halotune-gtt.conf", "options ttm pages_limit=16777216\n")
    _put(root, "usr/lib/modprobe.d/ttm.conf", "options ttm pages_limit=1000\n")
    _put(root, "etc/modprobe.d/ttm.conf", "")                 # hides usr/lib's ttm.conf
    _put(root, "lib/modprobe.d/zz.conf", "options ttm page_pool_size=2000\n")
    _put(root, "run/modprobe.d/.zz-hidden.conf", "options ttm pages_limit=3000\n")
    os.makedirs(os.path.join(root, "usr/local/lib/modprobe.d/zz.conf"))   # hides nothing
    assert bootconf.modprobe_files(root) == [
        "etc/modprobe.d/halotune-gtt.conf", "etc/modprobe.d/ttm.conf", "lib/modprobe.d/zz.conf"]
    reboot(root)
    fs = RootFS(root)
    assert fs.read_int(GTT_TOTAL) == 16777216 * 4096
    assert fs.read_int(f"{paths.TTM_PARAMS}/page_pool_size") == 2000
    # A later name in any directory wins: amdgpu.gttsize from /usr/lib (deprecated) sizes GTT.
    _put(root, "usr/lib/modprobe.d/amdgpu.conf", "options amdgpu gttsize=65536\n")
    reboot(root)
    assert fs.read_int(GTT_TOTAL) == 65536 << 20


def test_backslash_newline_joins_with_nothing():
    opts = bootconf.parse_modprobe("options ttm pages_limit=12\\\n34 x=\\y\n #options ttm a=1\n")
    assert opts["ttm"] == {"pages_limit": "1234", "x": "y"}
