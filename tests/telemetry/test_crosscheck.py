"""The libdrm cross-check: runs only on the host root with /dev/dri; compares per device."""

import os
import types

from halotune.machine.libdrm import read_libdrm
from halotune.machine.rootfs import RootFS
from halotune.telemetry.crosscheck import compare
from halotune.telemetry.sampler import Sampler

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(HERE, "fixtures", "strix-halo")


def fake_pyamdgpuinfo(gtt_used: int):
    gpu = types.SimpleNamespace(
        pci_slot="0000:c3:00.0",
        memory_info={"vram_size": 536870912, "gtt_size": 118111600640, "vis_vram_size": 536870912},
        query_vram_usage=lambda: 168820736,
        query_gtt_usage=lambda: gtt_used,
        query_sclk=lambda: 2743000000,
        query_load=lambda: 0.98,
    )
    return types.SimpleNamespace(detect_gpus=lambda: 1, get_gpu=lambda i: gpu)


def test_not_run_on_a_fake_tree_or_without_dri(tmp_path):
    assert read_libdrm(REFERENCE, module=fake_pyamdgpuinfo(0)) is None
    assert read_libdrm("/", module=fake_pyamdgpuinfo(0), dri_dir=str(tmp_path / "nodri")) is None


def test_readings_and_comparison(tmp_path):
    (tmp_path / "dri").mkdir()
    readings = read_libdrm("/", module=fake_pyamdgpuinfo(61847080960 + (1 << 20)),
                           dri_dir=str(tmp_path / "dri"))
    assert readings[0].sclk_mhz == 2743 and readings[0].load_percent == 98.0
    snap = Sampler(RootFS(REFERENCE), read_tdp=False).sample()
    rows = {r["field"]: r for r in compare(snap, readings)}
    assert set(rows) == {"vram_total_bytes", "gtt_total_bytes", "vram_used_bytes", "gtt_used_bytes"}
    assert all(r["agree"] for r in rows.values())    # 1 MiB of GTT drift is within tolerance

    far = read_libdrm("/", module=fake_pyamdgpuinfo(1 << 30), dri_dir=str(tmp_path / "dri"))
    rows = {r["field"]: r for r in compare(snap, far)}
    assert rows["gtt_used_bytes"]["agree"] is False
    assert rows["vram_total_bytes"]["agree"] is True


def test_device_libdrm_does_not_see_is_reported(tmp_path):
    snap = Sampler(RootFS(REFERENCE), read_tdp=False).sample()
    rows = compare(snap, [])
    assert rows == [{"card": "card1", "field": None, "sysfs": None, "libdrm": None,
                     "agree": False, "note": "libdrm does not see this device"}]
