"""find_amd_gpus() on the reference tree, its variants, and the Navi 31 and Phoenix trees."""

from __future__ import annotations

import os
import shutil

import pytest

import build_trees as bt
from halotune.machine.discovery import find_amd_gpus, gfx_target_from_gc
from halotune.machine.rootfs import RootFS


def only_gpu(root):
    gpus = find_amd_gpus(RootFS(root))
    assert len(gpus) == 1, [g.card for g in gpus]
    return gpus[0]


def test_reference_identity(reference_root):
    g = only_gpu(reference_root)
    assert g.card == "card1"
    assert g.device_dir == "sys/class/drm/card1/device"
    assert g.pci_slot == "0000:c3:00.0"
    assert (g.vendor_id, g.device_id, g.device_id_hex) == (0x1002, 0x1586, "0x1586")
    assert g.revision == 0xC1 and g.subsystem == "f111:000a"
    assert g.gc_version == (11, 5, 1) and g.mp1_version == (14, 0, 1)
    assert g.gfx_target == "gfx1151"                  # from ip_discovery: no KFD in this tree
    assert g.smc_fw_version == 0x0A640600 and g.vbios_version == "113-STRXLGEN-001"
    assert g.hwmon_dir == "sys/class/drm/card1/device/hwmon/hwmon3"
    assert g.known_apu is True and g.is_strix_halo
    assert g.name == "AMD Strix Halo (Radeon 8060S / 8050S)"


def test_reference_with_other_card_and_hwmon_index(ref_copy):
    bt.renumber_reference(ref_copy, card=0, hwmon=7)
    g = only_gpu(ref_copy)
    assert g.card == "card0" and g.device_dir == "sys/class/drm/card0/device"
    assert g.hwmon_dir == "sys/class/drm/card0/device/hwmon/hwmon7"
    assert g.pci_slot == "0000:c3:00.0" and g.gfx_target == "gfx1151"


def test_slot_from_the_resolved_device_path_without_uevent(ref_copy):
    os.unlink(os.path.join(ref_copy, bt.REF_DEV, "uevent"))
    assert only_gpu(ref_copy).pci_slot == "0000:c3:00.0"


# Regression test. Bug found by this test (fixed in halotune since): halotune/machine/rootfs.py
# RootFS.realpath() compares the resolved path with the unresolved root (os.path.abspath, not
# realpath): when --root is given through a symlink (e.g. /tmp/link -> tree) every resolved path
# looks outside the root, so with a uevent lacking PCI_SLOT_NAME discovery reports pci_slot=None
# instead of '0000:c3:00.0'
def test_slot_when_the_root_itself_is_a_symlink(ref_copy, tmp_path):
    os.unlink(os.path.join(ref_copy, bt.REF_DEV, "uevent"))
    link = tmp_path / "link-to-tree"
    os.symlink(ref_copy, link)
    assert only_gpu(str(link)).pci_slot == "0000:c3:00.0"


def test_reference_kfd_node_with_matching_location_names_the_target(ref_copy):
    # A KFD node for 0000:c3:00.0 (location_id 0xc300 = 49920) is preferred to ip_discovery.
    bt.write(ref_copy, "sys/class/kfd/kfd/topology/nodes/1/properties",
             "gfx_target_version 110501\nvendor_id 4098\ndevice_id 5510\nlocation_id 49920\ndomain 0\n")
    for n in ("major", "minor", "revision"):
        os.unlink(os.path.join(ref_copy, bt.REF_DEV, f"ip_discovery/die/0/11/0/{n}"))
    g = only_gpu(ref_copy)
    assert g.gc_version is None and g.gfx_target == "gfx1151"


def test_navi31_plain_directories_connectors_and_render_nodes(navi31_root):
    fs = RootFS(navi31_root)
    # The trap is real: the render node's device link reaches a 0x1002 PCI device.
    assert fs.read_int("sys/class/drm/renderD128/device/vendor") == 0x1002
    assert not os.path.islink(fs.path("sys/class/drm/card0"))
    assert not os.path.islink(fs.path("sys/class/drm/card0/device"))
    assert sorted(os.listdir(fs.path("sys/class/drm"))) == ["card0", "card0-DP-1", "renderD128", "version"]
    g = only_gpu(navi31_root)
    assert g.card == "card0"
    assert g.pci_slot == "0000:03:00.0"              # only the uevent knows it here
    assert (g.device_id, g.revision, g.subsystem) == (0x744C, 0xC8, "1da2:e471")
    assert g.gc_version == (11, 0, 0) and g.mp1_version == (13, 0, 0)
    assert g.gfx_target == "gfx1100"
    assert g.hwmon_dir == "sys/class/drm/card0/device/hwmon/hwmon5"
    assert g.known_apu is False and not g.is_strix_halo
    assert g.smc_fw_version == 0x004E7E00


def test_connector_whose_device_link_reaches_the_gpu_is_not_a_card(navi31_root):
    # Even a (flattened) connector entry that resolves to the PCI device is skipped by name.
    c = os.path.join(navi31_root, "sys/class/drm/card0-DP-1/device")
    os.unlink(c)
    os.symlink("../card0/device", c)
    assert RootFS(navi31_root).read_int("sys/class/drm/card0-DP-1/device/vendor") == 0x1002
    assert [g.card for g in find_amd_gpus(RootFS(navi31_root))] == ["card0"]


def test_phoenix_target_from_kfd_without_ip_discovery(phoenix_root):
    fs = RootFS(phoenix_root)
    assert not fs.exists("sys/class/drm/card0/device/ip_discovery")
    assert sorted(os.listdir(fs.path("sys/class/drm"))) == ["card0", "card0-eDP-1"]
    g = only_gpu(phoenix_root)
    assert g.card == "card0" and g.pci_slot == "0000:c4:00.0"
    assert g.gc_version is None and g.mp1_version is None
    assert g.gfx_target == "gfx1103"
    assert g.hwmon_dir == "sys/class/drm/card0/device/hwmon/hwmon2"
    assert g.known_apu is True and g.device_id_hex == "0x15bf"
    assert g.name == "AMD Phoenix (Radeon 780M / 760M)"


def test_phoenix_kfd_node_of_another_device_is_not_used(phoenix_root):
    props = os.path.join(phoenix_root, "sys/class/kfd/kfd/topology/nodes/1/properties")
    with open(props) as f:
        text = f.read()
    with open(props, "w") as f:
        f.write(text.replace("location_id 50176\n", "location_id 49408\n"))   # 0000:c1:00.0
    g = only_gpu(phoenix_root)
    assert g.gfx_target is None
    assert g.name == "AMD Phoenix (Radeon 780M / 760M)"


def test_cards_are_ordered_numerically_and_foreign_vendors_skipped(navi31_root):
    drm = os.path.join(navi31_root, "sys/class/drm")
    for n in (10, 2):
        shutil.copytree(os.path.join(drm, "card0"), os.path.join(drm, f"card{n}"), symlinks=True)
    nvidia = os.path.join(drm, "card3/device")
    os.makedirs(nvidia)
    bt.write(nvidia, "vendor", "0x10de")
    bt.write(nvidia, "device", "0x2684")
    assert [g.card for g in find_amd_gpus(RootFS(navi31_root))] == ["card0", "card2", "card10"]


def test_unknown_device_id_is_named_from_its_target(ref_copy):
    bt.write(ref_copy, f"{bt.REF_DEV}/device", "0x1900")
    g = only_gpu(ref_copy)
    assert g.known_apu is None
    assert g.name == "AMD GPU [1002:1900] (gfx1151)"


def test_empty_and_non_amd_roots(empty_root, tmp_path):
    assert find_amd_gpus(RootFS(empty_root)) == []
    other = tmp_path / "intel"
    bt.write(str(other), "sys/class/drm/card0/device/vendor", "0x8086")
    bt.write(str(other), "sys/class/drm/card0/device/device", "0x7d55")
    assert find_amd_gpus(RootFS(str(other))) == []


# GC IP version -> LLVM target as the kernel names it (drivers/gpu/drm/amd/amdkfd/kfd_device.c,
# kgd2kfd_probe: gfx_target_version per IP_VERSION). Several RDNA parts do NOT follow
# gfx{major}{minor}{revision}: Navi 10 is GC 10.1.10, Phoenix GC 11.0.1, Navi 32 GC 11.0.3.
@pytest.mark.parametrize("gc, target", [
    ((11, 5, 1), "gfx1151"), ((11, 5, 0), "gfx1150"), ((11, 0, 0), "gfx1100"),
    ((11, 0, 2), "gfx1102"), ((10, 3, 0), "gfx1030"), ((12, 0, 0), "gfx1200"),
    ((12, 0, 1), "gfx1201"), ((9, 4, 2), "gfx90a"), ((9, 4, 1), "gfx908"), ((9, 4, 0), "gfx906"),
    ((9, 3, 0), "gfx90c"), ((9, 0, 1), "gfx900"), ((8, 0, 3), None), (None, None),
    pytest.param((11, 0, 1), "gfx1103", id="phoenix-11.0.1"),
    pytest.param((11, 0, 4), "gfx1103", id="phoenix2-11.0.4"),
    pytest.param((11, 0, 3), "gfx1101", id="navi32-11.0.3"),
    pytest.param((10, 1, 10), "gfx1010", id="navi10-10.1.10"),
    pytest.param((10, 3, 2), "gfx1031", id="navi22-10.3.2"),
    pytest.param((10, 3, 3), "gfx1035", id="rembrandt-10.3.3"),
    pytest.param((10, 3, 1), "gfx1033", id="vangogh-10.3.1"),
    pytest.param((10, 1, 2), "gfx1011", id="navi12-10.1.2"),
    pytest.param((10, 1, 1), "gfx1012", id="navi14-10.1.1"),
    pytest.param((10, 3, 7), "gfx1036", id="mendocino-10.3.7"),
])
def test_gfx_target_from_gc(gc, target):
    assert gfx_target_from_gc(gc) == target


def test_phoenix_target_from_ip_discovery_without_kfd(phoenix_root):
    dev = os.path.join(phoenix_root, bt.PHOENIX_DEV)
    for k, v in {"major": "11", "minor": "0", "revision": "1"}.items():
        bt.write(dev, f"ip_discovery/die/0/11/0/{k}", v)
    shutil.rmtree(os.path.join(phoenix_root, "sys/class/kfd"))
    g = only_gpu(phoenix_root)
    assert g.gc_version == (11, 0, 1)
    assert g.gfx_target == "gfx1103"
