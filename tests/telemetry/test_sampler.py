"""Sampler -> Snapshot -> the "halotune.status/1" dict, on every tree: contract values, every
contract key present (null, never absent), and samples that follow in-place changes."""

from __future__ import annotations

import os

import pytest

import build_trees as bt
from halotune.machine.rootfs import RootFS
from halotune.model.snapshot import SCHEMA
from halotune.telemetry.sampler import Sampler

from status_contract import NPU_KEYS, RFC3339_UTC, assert_contract_keys


def status(root) -> dict:
    sampler = Sampler(RootFS(root))
    try:
        return sampler.sample().to_dict()
    finally:
        sampler.close()


def test_reference_contract_values(reference_root):
    d = status(reference_root)
    assert_contract_keys(d)
    assert d["schema"] == SCHEMA == "halotune.status/1"
    assert list(d)[0] == "schema"
    assert RFC3339_UTC.match(d["time"]), d["time"]
    assert d["root"] == os.path.abspath(reference_root)
    (g,) = d["gpus"]
    assert g["card"] == "card1" and g["pci_slot"] == "0000:c3:00.0"
    assert g["device_id"] == "0x1586" and g["gfx_target"] == "gfx1151"
    assert g["socket_power_w"] == pytest.approx(98.43)
    assert g["gfx_power_w"] == pytest.approx(71.25)
    assert g["sclk_mhz"] == 2743 and g["mclk_mhz"] == 1000 and g["fclk_mhz"] == 1960
    assert g["edge_temp_c"] == pytest.approx(62.37)          # gpu_metrics, not hwmon's 62.0
    assert g["sources"]["edge_temp_c"] == "gpu_metrics v3.0"
    assert g["vram_total_bytes"] == 536870912
    assert g["gtt_total_bytes"] == 118111600640
    assert g["dram_read_bytes_per_s"] == 48213000000
    assert g["dram_write_bytes_per_s"] == 9137000000
    assert g["dram_counters_saturated"] is False
    assert g["gpu_metrics_version"] == "3.0"
    assert g["power_cap_w"] is None and g["is_apu"] is True
    m = d["memory"]
    assert m["ttm_pages_limit"] == 28835840 and m["ttm_module"] == "ttm"
    assert m["gpu_usable_bytes"] == 118648471552 == 536870912 + 118111600640
    assert m["system_total_bytes"] == 131752264 * 1024
    p = d["power"]
    assert p["platform_profile"] == "performance"
    assert p["platform_profile_choices"] == ["low-power", "balanced", "performance"]
    assert p["socket_power_w"] == pytest.approx(98.43)
    assert p["stapm_limit_w"] is None and p["limits_source"] is None
    assert "ryzenadj" in p["limits_hint"]
    c = d["cpu"]
    assert (c["governor"], c["epp"], c["scaling_driver"]) == ("powersave", "balance_performance",
                                                             "amd-pstate-epp")
    # No second proc/stat sample in a one-shot: utilisation from the C0 residency table.
    assert c["utilization_source"] == "gpu_metrics core C0 residency"
    assert c["utilization_percent"] == pytest.approx(round(sum(
        [97, 4, 6, 3, 5, 2, 4, 3, 3, 2, 2, 1, 3, 2, 2, 1]) / 16, 1))
    assert c["temp_c"] == pytest.approx(61.20) and c["power_w"] == pytest.approx(9.87)
    assert d["npu"] == {"activity_percent": 0.0, "power_w": 0.0, "read_bytes_per_s": 0,
                        "write_bytes_per_s": 0}
    assert d["pending_reboot"] == []
    assert d["warnings"] == []


def test_navi31_nulls_are_present_not_absent(navi31_root):
    d = status(navi31_root)
    assert_contract_keys(d)
    (g,) = d["gpus"]
    assert g["gfx_target"] == "gfx1100" and g["device_id"] == "0x744c" and g["is_apu"] is False
    assert g["gpu_metrics_version"] == "1.3"
    assert g["socket_power_w"] == 305.0 and g["power_cap_w"] == 339.0
    assert (g["edge_temp_c"], g["hotspot_temp_c"], g["mem_temp_c"]) == (55.0, 71.0, 64.0)
    for key in ("dram_read_bytes_per_s", "dram_write_bytes_per_s", "soc_temp_c", "gfx_power_w",
                "throttle_residency", "skin_temp_c", "gfx_maxfreq_mhz"):
        assert key in g and g[key] is None, key
    assert g["dram_counters_saturated"] is False
    assert d["npu"] == dict.fromkeys(NPU_KEYS)
    assert d["memory"]["gpu_usable_bytes"] == 25769803776
    assert d["memory"]["gpu_usable_explained"] == "dedicated VRAM"
    assert d["memory"]["swap_used_bytes"] == 0
    p = d["power"]
    assert p["socket_power_w"] is None                  # package power is an APU notion
    assert p["platform_profile"] is None and p["platform_profile_choices"] == []
    assert p["limits_source"] is None and p["limits_hint"] is None   # no APU: ryzenadj not asked
    assert d["cpu"]["governor"] is None and d["cpu"]["epp"] is None


def test_phoenix_nulls_are_present_not_absent(phoenix_root):
    d = status(phoenix_root)
    assert_contract_keys(d)
    (g,) = d["gpus"]
    assert g["gfx_target"] == "gfx1103" and g["is_apu"] is True and g["card"] == "card0"
    assert g["gpu_metrics_version"] == "2.1"
    assert g["busy_percent"] == pytest.approx(86.5)
    assert g["socket_power_w"] == pytest.approx(25.43)
    assert g["dram_read_bytes_per_s"] is None and g["dram_write_bytes_per_s"] is None
    assert g["dram_counters_saturated"] is False and g["throttle_residency"] is None
    assert d["npu"] == dict.fromkeys(NPU_KEYS)
    m = d["memory"]
    assert m["ttm_pages_limit"] == 7674311
    assert m["gpu_usable_bytes"] == 2147483648 + 31433977856
    assert d["power"]["platform_profile"] == "balanced"
    assert d["power"]["socket_power_w"] == pytest.approx(25.43)
    c = d["cpu"]
    assert c["temp_c"] == pytest.approx(59.02)          # hottest of the 8 v2.1 core temps
    assert c["power_w"] is None                          # average_cpu_power not filled on 13.0.4
    assert c["core_power_w"][0] == pytest.approx(1.21)
    assert c["utilization_percent"] is None              # no proc/stat, no C0 table in v2.1


def test_empty_root_has_every_top_level_key(empty_root):
    d = status(empty_root)
    assert_contract_keys(d)
    assert d["gpus"] == [] and d["memory"]["gpu_usable_bytes"] is None
    assert d["power"]["limits_hint"] is None


def test_truncated_and_missing_gpu_metrics_in_the_snapshot(ref_copy):
    path = os.path.join(ref_copy, bt.REF_DEV, "gpu_metrics")
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(blob[:100])
    d = status(ref_copy)
    (g,) = d["gpus"]
    assert g["gpu_metrics_version"] == "3.0"
    assert g["dram_read_bytes_per_s"] == 48213000000        # inside the first 100 bytes
    assert g["socket_power_w"] == pytest.approx(98.43)      # from hwmon now
    assert g["sources"]["socket_power_w"].endswith("hwmon3/power1_average")
    assert any(w.startswith("card1: gpu_metrics v3.0: 100 bytes") for w in d["warnings"])
    os.unlink(path)
    d = status(ref_copy)
    (g,) = d["gpus"]
    assert g["gpu_metrics_version"] is None and g["dram_read_bytes_per_s"] is None
    assert g["edge_temp_c"] == 62.0 and g["socket_power_w"] == pytest.approx(98.43)
    assert d["npu"] == dict.fromkeys(NPU_KEYS) and d["warnings"] == []


def test_dram_counters_cut_off_are_unknown_not_saturated(ref_copy):
    # Regression test for a bug found by these tests: a blob cut before offset 94 used to
    # report dram_counters_saturated=true for counters that were never read.
    path = os.path.join(ref_copy, bt.REF_DEV, "gpu_metrics")
    with open(path, "r+b") as f:
        f.truncate(90)
    (g,) = status(ref_copy)["gpus"]
    assert g["dram_read_bytes_per_s"] is None and g["dram_write_bytes_per_s"] is None
    assert g["dram_counters_saturated"] is False
    assert g["edge_temp_c"] == pytest.approx(62.37)


def test_unknown_gpu_metrics_version_in_the_snapshot(ref_copy):
    path = os.path.join(ref_copy, bt.REF_DEV, "gpu_metrics")
    with open(path, "r+b") as f:
        f.seek(2)
        f.write(b"\x04\x00")
    d = status(ref_copy)
    (g,) = d["gpus"]
    assert g["gpu_metrics_version"] == "4.0"
    assert g["dram_read_bytes_per_s"] is None and g["gfx_power_w"] is None
    assert g["edge_temp_c"] == 62.0
    assert "card1: gpu_metrics: unknown version 4.0 (264 bytes); header only" in d["warnings"]


@pytest.mark.parametrize("frev, crev, is_apu", [(3, 0, True), (2, 1, True), (1, 3, False)])
def test_unknown_device_id_is_classified_by_gpu_metrics_format(ref_copy, frev, crev, is_apu):
    bt.write(ref_copy, f"{bt.REF_DEV}/device", "0x1900")
    bt.write(ref_copy, f"{bt.REF_DEV}/gpu_metrics", bt.pack(frev, crev, {}))
    (g,) = status(ref_copy)["gpus"]
    assert g["is_apu"] is is_apu and g["name"] == "AMD GPU [1002:1900] (gfx1151)"


def test_samples_follow_in_place_changes(navi31_root):
    stat = os.path.join(navi31_root, "proc/stat")
    metrics = os.path.join(navi31_root, "sys/class/drm/card0/device/gpu_metrics")
    sampler = Sampler(RootFS(navi31_root))
    try:
        first = sampler.sample()
        assert first.cpu.utilization_percent is None       # proc/stat did not move
        assert first.gpus[0].busy_percent == 97.0
        # Next interval: +300 busy ticks (user) and +700 idle ticks on cpu and cpu0.
        with open(stat, "r+b") as f:
            f.write(b"cpu  10432 55 4012 880911 310 0 88 0 0 0\n"
                    b"cpu0 10432 55 4012 880911 310 0 88 0 0 0\n"
                    b"intr 123456 0 9\nctxt 998877\nbtime 1764050000\n")
            f.truncate()
        with open(metrics, "r+b") as f:
            f.write(bt.pack(1, 3, dict(bt.NAVI31_V1_3, average_gfx_activity=3,
                                       average_socket_power=61, temperature_edge=41)))
            f.truncate()
        second = sampler.sample()
    finally:
        sampler.close()
    assert second.cpu.utilization_percent == 30.0
    assert second.cpu.utilization_source == "proc/stat"
    assert second.cpu.per_cpu_utilization_percent == [30.0]
    g = second.gpus[0]
    assert (g.busy_percent, g.socket_power_w, g.edge_temp_c) == (3.0, 61.0, 41.0)
