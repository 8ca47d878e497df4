"""GpuReader: what one sample of one GPU yields on every tree, where each value came from, and
the fallbacks to hwmon / pp_dpm_* when gpu_metrics is missing, short or of an unknown version."""

from __future__ import annotations

import os

import pytest

import build_trees as bt
from halotune.machine.amdgpu import GpuReader
from halotune.machine.discovery import find_amd_gpus
from halotune.machine.rootfs import RootFS

REF_HW = "sys/class/drm/card1/device/hwmon/hwmon3"
METRICS = f"{bt.REF_DEV}/gpu_metrics"


def read_once(root, is_apu=None):
    fs = RootFS(root)
    dev = find_amd_gpus(fs)[0]
    reader = GpuReader(fs, dev, is_apu=is_apu)
    try:
        return reader.read()
    finally:
        reader.close()


def rewrite_in_place(path, data: bytes):
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()


def test_reference_from_gpu_metrics(reference_root):
    r = read_once(reference_root)
    assert r.metrics.version == "3.0" and r.warnings == []
    assert r.busy_percent == 98.0 and r.sclk_mhz == 2743 and r.mclk_mhz == 1000
    assert r.fclk_mhz == 1960 and r.socclk_mhz == 1104
    assert r.edge_temp_c == pytest.approx(62.37) and r.soc_temp_c == pytest.approx(64.81)
    assert r.socket_power_w == pytest.approx(98.43) and r.gfx_power_w == pytest.approx(71.25)
    assert set(r.sources.values()) == {"gpu_metrics v3.0"}
    assert r.hotspot_temp_c is None and r.mem_temp_c is None
    assert r.power_cap_w is None                       # no power1_cap on APUs
    assert r.performance_level == "auto" and r.runtime_status == "active"
    assert (r.vram_total_bytes, r.vram_used_bytes) == (536870912, 168820736)
    assert (r.gtt_total_bytes, r.gtt_used_bytes) == (118111600640, 61847080960)
    assert (r.od.sclk_min, r.od.sclk_max, r.od.range_min, r.od.range_max) == (600, 2900, 600, 2900)


def test_apu_vddgfx_and_vddnb_are_never_reported(reference_root):
    fs = RootFS(reference_root)
    assert fs.read_int(f"{REF_HW}/in0_input") == 0 and fs.read_text(f"{REF_HW}/in0_label") == "vddgfx"
    r = read_once(reference_root)
    assert r.voltage_gfx_mv is None
    assert not any("in0" in s or "in1" in s for s in r.sources.values())


def test_missing_gpu_metrics_falls_back_file_by_file(ref_copy):
    os.unlink(os.path.join(ref_copy, METRICS))
    r = read_once(ref_copy)
    assert r.metrics is None and r.warnings == []
    expected = {
        "busy_percent": (98, "gpu_busy_percent"),
        "sclk_mhz": (2743, f"{REF_HW}/freq1_input"),
        "mclk_mhz": (1000, "pp_dpm_mclk"),
        "fclk_mhz": (1960, "pp_dpm_fclk"),
        "socclk_mhz": (1104, "pp_dpm_socclk"),
        "edge_temp_c": (62.0, f"{REF_HW}/temp1_input"),
        "socket_power_w": (98.43, f"{REF_HW}/power1_average"),   # packed APU decode
    }
    for name, (value, source) in expected.items():
        assert getattr(r, name) == pytest.approx(value), name
        assert r.sources[name] == source, name
    assert set(r.sources) == set(expected)
    assert r.gfx_power_w is None and r.soc_temp_c is None


def test_fallbacks_without_hwmon_sclk_and_power_average(ref_copy):
    os.unlink(os.path.join(ref_copy, METRICS))
    hw = os.path.join(ref_copy, bt.REF_DEV, "hwmon/hwmon3")
    for name in ("freq1_input", "freq1_label", "power1_average"):
        os.unlink(os.path.join(hw, name))
    r = read_once(ref_copy)
    assert (r.sclk_mhz, r.sources["sclk_mhz"]) == (2743, "pp_dpm_sclk")
    assert r.socket_power_w == pytest.approx(98.43)
    assert r.sources["socket_power_w"] == f"{REF_HW}/power1_input"


def test_fallback_uses_hwmon_at_another_index(ref_copy):
    bt.renumber_reference(ref_copy, card=0, hwmon=7)
    os.unlink(os.path.join(ref_copy, METRICS))
    r = read_once(ref_copy)
    hw = "sys/class/drm/card0/device/hwmon/hwmon7"
    assert r.sources["edge_temp_c"] == f"{hw}/temp1_input" and r.edge_temp_c == 62.0
    assert r.sources["socket_power_w"] == f"{hw}/power1_average"
    assert r.sources["sclk_mhz"] == f"{hw}/freq1_input"


def test_truncated_gpu_metrics_mixes_prefix_and_fallbacks(ref_copy):
    path = os.path.join(ref_copy, METRICS)
    with open(path, "rb") as f:
        blob = f.read()
    rewrite_in_place(path, blob[:100])
    r = read_once(ref_copy)
    assert len(r.warnings) == 1 and "100 bytes" in r.warnings[0]
    assert r.edge_temp_c == pytest.approx(62.37) and r.sources["edge_temp_c"] == "gpu_metrics v3.0"
    assert r.busy_percent == 98.0 and r.sources["busy_percent"] == "gpu_metrics v3.0"
    # average_socket_power (offset 112) and the clocks (174+) are cut off: hwmon/pp_dpm answer.
    assert r.socket_power_w == pytest.approx(98.43)
    assert r.sources["socket_power_w"] == f"{REF_HW}/power1_average"
    assert (r.sclk_mhz, r.sources["sclk_mhz"]) == (2743, f"{REF_HW}/freq1_input")
    assert (r.mclk_mhz, r.sources["mclk_mhz"]) == (1000, "pp_dpm_mclk")
    assert r.gfx_power_w is None


@pytest.mark.parametrize("frev, crev", [(3, 9), (4, 0)])
def test_unknown_gpu_metrics_version_falls_back_with_a_warning(ref_copy, frev, crev):
    path = os.path.join(ref_copy, METRICS)
    with open(path, "r+b") as f:
        f.seek(2)
        f.write(bytes([frev, crev]))
    r = read_once(ref_copy)
    assert r.metrics.version == f"{frev}.{crev}" and not r.metrics.decoded
    assert any(f"unknown version {frev}.{crev}" in w for w in r.warnings)
    assert r.socket_power_w == pytest.approx(98.43) and r.edge_temp_c == 62.0
    assert not any(s.startswith("gpu_metrics") for s in r.sources.values())


def test_nul_padded_and_space_padded_text_files(ref_copy):
    dev = os.path.join(ref_copy, bt.REF_DEV)
    os.unlink(os.path.join(dev, "gpu_metrics"))
    for name in ("gpu_busy_percent", "pp_dpm_mclk", "mem_info_gtt_used", "pp_od_clk_voltage",
                 "hwmon/hwmon3/temp1_input", "hwmon/hwmon3/power1_average"):
        bt.pad_with_nuls(os.path.join(dev, name))
    bt.write(dev, "power_dpm_force_performance_level", "manual  ")
    r = read_once(ref_copy)
    assert r.busy_percent == 98 and r.mclk_mhz == 1000 and r.gtt_used_bytes == 61847080960
    assert r.edge_temp_c == 62.0 and r.socket_power_w == pytest.approx(98.43)
    assert r.od.sclk_max == 2900 and r.od.range_max == 2900
    assert r.performance_level == "manual"


def test_navi31_dgpu_from_gpu_metrics_v1_3(navi31_root):
    r = read_once(navi31_root)
    assert r.metrics.version == "1.3" and r.warnings == []
    assert (r.edge_temp_c, r.hotspot_temp_c, r.mem_temp_c) == (55.0, 71.0, 64.0)
    assert r.busy_percent == 97.0 and r.socket_power_w == 305.0
    assert (r.sclk_mhz, r.mclk_mhz, r.socclk_mhz) == (2482, 1249, 1084)
    assert (r.fclk_mhz, r.sources["fclk_mhz"]) == (1940, "pp_dpm_fclk")   # not in v1.x
    hw = "sys/class/drm/card0/device/hwmon/hwmon5"
    assert (r.power_cap_w, r.sources["power_cap_w"]) == (339.0, f"{hw}/power1_cap")
    assert (r.voltage_gfx_mv, r.sources["voltage_gfx_mv"]) == (1050, f"{hw}/in0_input")
    assert r.soc_temp_c is None and r.gfx_power_w is None
    assert r.vram_total_bytes == 24 * 2**30 and r.vram_used_bytes == 20 * 2**30
    assert (r.od.sclk_min, r.od.sclk_max, r.od.range_min, r.od.range_max) == (500, 2529, 500, 3150)


def test_navi31_dgpu_hwmon_fallbacks_are_plain_microwatts(navi31_root):
    dev = os.path.join(navi31_root, "sys/class/drm/card0/device")
    os.unlink(os.path.join(dev, "gpu_metrics"))
    r = read_once(navi31_root)
    hw = "sys/class/drm/card0/device/hwmon/hwmon5"
    assert (r.edge_temp_c, r.sources["edge_temp_c"]) == (55.0, f"{hw}/temp1_input")
    assert (r.hotspot_temp_c, r.sources["hotspot_temp_c"]) == (71.0, f"{hw}/temp2_input")
    assert (r.mem_temp_c, r.sources["mem_temp_c"]) == (64.0, f"{hw}/temp3_input")
    assert (r.socket_power_w, r.sources["socket_power_w"]) == (305.0, f"{hw}/power1_average")
    assert (r.sclk_mhz, r.sources["sclk_mhz"]) == (2482, f"{hw}/freq1_input")
    assert (r.mclk_mhz, r.sources["mclk_mhz"]) == (1249, "pp_dpm_mclk")
    assert (r.busy_percent, r.sources["busy_percent"]) == (97, "gpu_busy_percent")
    # SMU 13.0.0 prints whole watts (AverageSocketPower << 8), where every decoding agrees. A
    # fractional reading (low Q8 byte 128, as older powerplay dGPUs print) separates them: plain
    # µW gives 305.128 W, the Q8 reading 305.5 W; the SMU 14 APU packing would give 306.28 W.
    bt.write(dev, "hwmon/hwmon5/power1_average", "305128000")
    w = read_once(navi31_root).socket_power_w
    assert w == pytest.approx(305.128) or w == pytest.approx(305.5), w


def test_phoenix_from_gpu_metrics_v2_1(phoenix_root):
    r = read_once(phoenix_root)
    assert r.metrics.version == "2.1" and r.warnings == []
    assert r.busy_percent == pytest.approx(86.5)
    assert r.edge_temp_c == pytest.approx(51.40) and r.soc_temp_c == pytest.approx(55.20)
    assert r.socket_power_w == pytest.approx(25.43) and r.gfx_power_w == pytest.approx(14.87)
    assert (r.sclk_mhz, r.mclk_mhz, r.socclk_mhz) == (2650, 2800, 1200)
    assert r.sources["sclk_mhz"] == "gpu_metrics v2.1"
    assert r.hotspot_temp_c is None and r.power_cap_w is None and r.voltage_gfx_mv is None
    assert r.gtt_total_bytes == 31433977856


# Regression test. Bug found by this test (fixed in halotune since): halotune/machine/amdgpu.py
# GpuReader.read() takes fclk_mhz from gpu_metrics v2.x average_fclk_frequency, which smu_v13_0_4
# (and Van Gogh, Yellow Carp, 13.0.5, Cyan Skillfish) fill with MemclkFrequency (gpu-metrics-
# layouts.md §5.0/§6.8): on the Phoenix tree fclk_mhz is 2800 (the memory clock, source
# 'gpu_metrics v2.1') instead of 1800 (the starred pp_dpm_fclk level)
def test_phoenix_fclk_is_not_the_memclk_copy(phoenix_root):
    r = read_once(phoenix_root)
    assert r.fclk_mhz == bt.PHOENIX_TRUE_FCLK_MHZ


def test_phoenix_fallbacks_without_gpu_metrics(tmp_path):
    root = bt.build_phoenix(str(tmp_path / "phx"), with_gpu_metrics=False)
    r = read_once(root)
    hw = "sys/class/drm/card0/device/hwmon/hwmon2"
    assert (r.edge_temp_c, r.sources["edge_temp_c"]) == (51.0, f"{hw}/temp1_input")
    assert (r.busy_percent, r.sources["busy_percent"]) == (86, "gpu_busy_percent")
    assert (r.sclk_mhz, r.sources["sclk_mhz"]) == (2650, "pp_dpm_sclk")   # no hwmon freq1
    assert (r.mclk_mhz, r.fclk_mhz) == (2800, 1800)
    assert r.sources["socket_power_w"] == f"{hw}/power1_input"


# Regression test. Bug found by this test (fixed in halotune since): halotune/machine/amdgpu.py
# _fallbacks() decodes every APU's hwmon power with parse.hwmon_apu_power_w (the SMU 14 packed-
# centiwatt quirk), but SMU 13.0.4 (Phoenix) reports (mW << 8) / 1000, a Q8 value whose low byte
# is 1/256 W: power1_input 25110000 (25.43 W) is reported as 26.1 W; expected 25 + 110/256 = 25.43
# W
def test_phoenix_hwmon_power_is_q8_not_packed_centiwatts(tmp_path):
    root = bt.build_phoenix(str(tmp_path / "phx"), with_gpu_metrics=False)
    assert RootFS(root).read_int("sys/class/drm/card0/device/hwmon/hwmon2/power1_input") == 25110000
    assert read_once(root).socket_power_w == pytest.approx(bt.PHOENIX_SOCKET_W, abs=0.005)


# --- kept-open files see in-place rewrites ----------------------------------------------------

def test_reader_sees_in_place_rewrites_without_reopening(ref_copy, monkeypatch):
    fs = RootFS(ref_copy)
    dev = find_amd_gpus(fs)[0]
    reader = GpuReader(fs, dev)
    first = reader.read()
    assert first.busy_percent == 98.0 and first.gtt_used_bytes == 61847080960

    with open(fs.path(METRICS), "rb") as f:
        blob = bytearray(f.read())
    lay = bt.layout(3, 0)
    off = lay["average_gfx_activity"][0]
    blob[off:off + 2] = (12).to_bytes(2, "little")
    off = lay["average_socket_power"][0]
    blob[off:off + 4] = (45120).to_bytes(4, "little")

    watched = {fs.path(METRICS), fs.path(f"{bt.REF_DEV}/mem_info_gtt_used")}
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: (opened.append(p) if os.fspath(p) in watched else None)
                        or real_open(p, *a, **k))
    rewrite_in_place(fs.path(METRICS), bytes(blob))
    rewrite_in_place(fs.path(f"{bt.REF_DEV}/mem_info_gtt_used"), b"1048576\n")
    second = reader.read()
    reader.close()
    assert second.busy_percent == 12.0
    assert second.socket_power_w == pytest.approx(45.12)
    assert second.gtt_used_bytes == 1048576
    assert opened == []
