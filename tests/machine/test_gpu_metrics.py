"""The gpu_metrics decoder against blobs packed independently (tests/fixtures/trees/build_trees.py
packs with the format strings of the reference documents, not with halotune's encoder), and
against the reference Strix Halo blob."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import build_trees as bt
from halotune.machine import gpu_metrics

decode = gpu_metrics.decode

with open(bt.REF_BLOB_PATH, "rb") as _f:
    REF_BLOB = _f.read()

# --- one value set per version (CHOSEN, in the unit each version defines) -------------------

VEGA20_V1_0 = {   # Vega 20 fills neither mm activity, energy nor vclk/dclk
    "system_clock_counter": 123456789012,
    "temperature_edge": 48, "temperature_hotspot": 60, "temperature_mem": 52,
    "temperature_vrgfx": 45, "temperature_vrsoc": 44, "temperature_vrmem": 46,
    "average_gfx_activity": 88, "average_umc_activity": 35, "average_socket_power": 212,
    "average_gfxclk_frequency": 1750, "average_socclk_frequency": 1000,
    "average_uclk_frequency": 1000, "current_gfxclk": 1801, "current_socclk": 1001,
    "current_uclk": 1002, "throttle_status": 0, "current_fan_speed": 2100,
    "pcie_link_width": 16, "pcie_link_speed": 80,
}
NAVI21_V1_1 = {
    "temperature_edge": 61, "temperature_hotspot": 77, "temperature_mem": 70,
    "temperature_vrgfx": 58, "temperature_vrsoc": 52, "temperature_vrmem": 55,
    "average_gfx_activity": 99, "average_umc_activity": 60, "average_mm_activity": 3,
    "average_socket_power": 255, "energy_accumulator": 0x11223344,
    "system_clock_counter": 222333444555,
    "average_gfxclk_frequency": 2250, "average_uclk_frequency": 1000,
    "average_vclk0_frequency": 0, "average_dclk0_frequency": 0,
    "average_vclk1_frequency": 0, "average_dclk1_frequency": 0,
    "current_gfxclk": 2251, "current_socclk": 1200, "current_uclk": 1000,
    "current_vclk0": 0, "current_dclk0": 0, "current_vclk1": 0, "current_dclk1": 0,
    "throttle_status": 0x4, "current_fan_speed": 1500,
    "pcie_link_width": 16, "pcie_link_speed": 160,
}
MI200_V1_2 = {
    "temperature_edge": 0, "temperature_hotspot": 52, "temperature_mem": 49,
    "temperature_vrgfx": 40, "temperature_vrsoc": 41, "temperature_vrmem": 42,
    "average_gfx_activity": 100, "average_umc_activity": 12, "average_socket_power": 540,
    "energy_accumulator": 9876543210123, "system_clock_counter": 333444555666,
    "average_gfxclk_frequency": 1700, "average_socclk_frequency": 1090,
    "average_uclk_frequency": 1600, "average_vclk0_frequency": 0, "average_dclk0_frequency": 0,
    "current_gfxclk": 1700, "current_socclk": 1090, "current_uclk": 1600,
    "current_vclk0": 0, "current_dclk0": 0, "throttle_status": 0, "current_fan_speed": 0,
    "pcie_link_width": 16, "pcie_link_speed": 160,
    "gfx_activity_acc": 55551234, "mem_activity_acc": 4444123,
    "temperature_hbm": [40, 41, 42, 43], "firmware_timestamp": 98765432100,
}
RENOIR_V2_0 = {   # Renoir leaves average_gfx_power and average_uclk_frequency unset
    "system_clock_counter": 444555666777,
    "temperature_gfx": 4512, "temperature_soc": 4630,
    "temperature_core": [4701, 4688, 4723, 4650, 4699, 4712, 4666, 4690],
    "temperature_l3": [4400, 4410], "average_gfx_activity": 2750, "average_mm_activity": 120,
    "average_socket_power": 18750, "average_cpu_power": 9120, "average_soc_power": 2230,
    "average_core_power": [1500, 1100, 1050, 1000, 990, 980, 970, 960],
    "average_gfxclk_frequency": 1750, "average_socclk_frequency": 1000,
    "average_fclk_frequency": 1600, "average_vclk_frequency": 400, "average_dclk_frequency": 400,
    "current_gfxclk": 1800, "current_socclk": 1001, "current_uclk": 1600, "current_fclk": 1601,
    "current_vclk": 401, "current_dclk": 402,
    "current_coreclk": [4200, 4100, 4000, 3900, 3800, 3700, 3600, 3500],
    "current_l3clk": [4150, 4140], "throttle_status": 0, "fan_pwm": 300,
}
VANGOGH_V2_2 = {  # 4 of 8 cores, 1 of 2 L3; fan_pwm unset
    "temperature_gfx": 6010, "temperature_soc": 6230,
    "temperature_core": [6100, 6120, 6090, 6140, None, None, None, None],
    "temperature_l3": [6000, None], "average_gfx_activity": 6100, "average_mm_activity": 0,
    "system_clock_counter": 555666777888,
    "average_socket_power": 14500, "average_cpu_power": 5200, "average_soc_power": 2100,
    "average_gfx_power": 6200, "average_core_power": [1400, 1300, 1250, 1250, None, None, None, None],
    "average_gfxclk_frequency": 1600, "average_socclk_frequency": 800,
    "average_uclk_frequency": 1375, "average_fclk_frequency": 1375,
    "average_vclk_frequency": 0, "average_dclk_frequency": 0,
    "current_gfxclk": 1601, "current_socclk": 801, "current_uclk": 1375, "current_fclk": 1375,
    "current_vclk": 0, "current_dclk": 0,
    "current_coreclk": [3500, 3400, 3300, 3200, None, None, None, None],
    "current_l3clk": [3450, None], "throttle_status": 0x10, "indep_throttle_status": 0x10,
}
VANGOGH_V2_3 = dict(VANGOGH_V2_2, average_temperature_gfx=5990, average_temperature_soc=6200,
                    average_temperature_core=[6080, 6100, 6070, 6120, None, None, None, None],
                    average_temperature_l3=[5990, None])
VANGOGH_V2_4 = dict(VANGOGH_V2_3, average_cpu_voltage=1100, average_soc_voltage=900,
                    average_gfx_voltage=1050, average_cpu_current=4500,
                    average_soc_current=2100, average_gfx_current=5800)
STRIXPOINT_V3_0 = {  # 12-core part: 4 core slots stay unfilled
    "temperature_gfx": 4523, "temperature_soc": 4711,
    "temperature_core": [4600, 4610, 4620, 4630, 4640, 4650, 4660, 4670, 4680, 4690, 4700, 4710]
                        + [None] * 4,
    "temperature_skin": 3850, "average_gfx_activity": 3, "average_vcn_activity": 0,
    "average_ipu_activity": [10, 20, 30, 40, 0, 0, 0, 0],
    "average_core_c0_activity": [12, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4] + [None] * 4,
    "average_dram_reads": 3125, "average_dram_writes": 1203,
    "average_ipu_reads": 250, "average_ipu_writes": 125,
    "system_clock_counter": 666777888999,
    "average_socket_power": 9870, "average_ipu_power": 1234, "average_apu_power": 9870,
    "average_gfx_power": 1234, "average_dgpu_power": 0, "average_all_core_power": 4321,
    "average_core_power": [600, 500, 400, 300, 300, 300, 300, 300, 300, 300, 300, 321] + [None] * 4,
    "average_sys_power": 63536,
    "average_gfxclk_frequency": 848, "average_socclk_frequency": 1104,
    "average_vpeclk_frequency": 600, "average_ipuclk_frequency": 1000,
    "average_fclk_frequency": 1960, "average_vclk_frequency": 0,
    "average_uclk_frequency": 800, "average_mpipu_frequency": 0,
    "current_coreclk": [5000, 4900, 4800, 4700, 4600, 4500, 4400, 4300, 4200, 4100, 4000, 3900]
                       + [None] * 4,
    "current_core_maxfreq": 5100, "current_gfx_maxfreq": 2900,
    "throttle_residency_prochot": 1, "throttle_residency_spl": 2, "throttle_residency_fppt": 3,
    "throttle_residency_sppt": 4, "throttle_residency_thm_core": 5,
    "throttle_residency_thm_gfx": 6, "throttle_residency_thm_soc": 7,
    "time_filter_alphavalue": 1000000,
}

SAMPLES = {
    (1, 0): VEGA20_V1_0, (1, 1): NAVI21_V1_1, (1, 2): MI200_V1_2, (1, 3): bt.NAVI31_V1_3,
    (2, 0): RENOIR_V2_0, (2, 1): bt.PHOENIX_V2_1, (2, 2): VANGOGH_V2_2, (2, 3): VANGOGH_V2_3,
    (2, 4): VANGOGH_V2_4, (3, 0): STRIXPOINT_V3_0,
}
VERSIONS = sorted(SAMPLES)
SIZES = {(1, 0): 80, (1, 1): 96, (1, 2): 104, (1, 3): 120, (2, 0): 120, (2, 1): 120,
         (2, 2): 128, (2, 3): 152, (2, 4): 168, (3, 0): 264}
BLOBS = {v: bt.pack(*v, SAMPLES[v]) for v in VERSIONS}
_HEADER = {"structure_size", "format_revision", "content_revision"}
_ELEM = {"B": 1, "H": 2, "I": 4, "Q": 8}


def expected_raw(ver):
    """Every named field of the version (padding excluded) -> value, None where not filled."""
    out = {"structure_size": SIZES[ver], "format_revision": ver[0], "content_revision": ver[1]}
    for name, (_, _, count) in bt.layout(*ver).items():
        if name in _HEADER or name.startswith("padding"):
            continue
        v = SAMPLES[ver].get(name)
        out[name] = ([None] * count if v is None else list(v)) if count > 1 else v
    return out


# --- the independent packer itself -----------------------------------------------------------

@pytest.mark.parametrize("ver", VERSIONS, ids=lambda v: f"v{v[0]}.{v[1]}")
def test_packer_size_header_and_ff_padding(ver):
    blob = BLOBS[ver]
    assert len(blob) == SIZES[ver]
    assert struct.unpack_from("<HBB", blob) == (SIZES[ver], *ver)
    fmt = bt.FORMATS[ver][0]
    _, pads, _ = bt._walk(fmt)
    for off, n in pads:
        assert blob[off:off + n] == b"\xff" * n


def test_packer_reproduces_the_reference_blob_byte_for_byte():
    # Two packers written separately (make_gpu_metrics.py's aligned layout walk, and the §3
    # format string here) must agree on every byte of the reference blob.
    mgm = bt.load_make_gpu_metrics()
    values = {name: value for name, _, _, value, _ in mgm.FIELDS if name not in _HEADER}
    assert bt.pack(3, 0, values) == REF_BLOB


# --- every field of every version ------------------------------------------------------------

@pytest.mark.parametrize("ver", VERSIONS, ids=lambda v: f"v{v[0]}.{v[1]}")
def test_every_field_decodes_at_its_documented_offset(ver):
    m = decode(BLOBS[ver])
    assert m.warnings == []
    assert m.decoded
    assert (m.structure_size, m.format_revision, m.content_revision) == (SIZES[ver], *ver)
    assert m.version == f"{ver[0]}.{ver[1]}"
    assert m.raw == expected_raw(ver)
    assert m.system_clock_counter_ns == SAMPLES[ver]["system_clock_counter"]


def test_v1_units_are_degrees_percent_watts():
    m = decode(BLOBS[(1, 3)])
    assert (m.edge_temp_c, m.hotspot_temp_c, m.mem_temp_c) == (55.0, 71.0, 64.0)
    assert m.gfx_temp_c == 55.0
    assert (m.gfx_activity_pct, m.umc_activity_pct, m.mm_activity_pct) == (97.0, 41.0, 0.0)
    assert m.socket_power_w == 305.0
    assert (m.gfxclk_mhz, m.uclk_mhz, m.socclk_mhz) == (2482, 1249, 1084)
    assert m.fan_rpm == 1650
    assert m.indep_throttle_status == 0 and m.throttle_status == 0
    assert m.soc_temp_c is None and m.gfx_power_w is None
    assert m.dram_read_bps is None and m.dram_reads_saturated is False


def test_v1_0_units_and_current_clock_preferred():
    m = decode(BLOBS[(1, 0)])
    assert (m.edge_temp_c, m.hotspot_temp_c) == (48.0, 60.0)
    assert m.socket_power_w == 212.0
    assert m.gfx_activity_pct == 88.0 and m.mm_activity_pct is None
    assert (m.gfxclk_mhz, m.socclk_mhz, m.uclk_mhz) == (1801, 1001, 1002)
    assert m.raw["pcie_link_width"] == 16 and m.raw["pcie_link_speed"] == 80
    assert m.indep_throttle_status is None            # no such field before v1.3


def test_v1_1_and_v1_2_tail_fields():
    m11, m12 = decode(BLOBS[(1, 1)]), decode(BLOBS[(1, 2)])
    assert "firmware_timestamp" not in m11.raw
    assert m12.raw["firmware_timestamp"] == 98765432100
    assert m12.raw["temperature_hbm"] == [40, 41, 42, 43]
    assert m12.edge_temp_c == 0.0                      # 0 is a value, not "not provided"
    assert m11.socket_power_w == 255.0 and m12.socket_power_w == 540.0


def test_v2_units_are_centidegrees_centipercent_milliwatts():
    m = decode(BLOBS[(2, 1)])
    assert m.gfx_temp_c == pytest.approx(51.40) and m.edge_temp_c == pytest.approx(51.40)
    assert m.soc_temp_c == pytest.approx(55.20)
    assert m.core_temps_c == pytest.approx([58.10, 57.66, 59.02, 56.88, 57.35, 58.41, 57.99, 57.12])
    assert m.gfx_activity_pct == pytest.approx(86.5)
    assert m.mm_activity_pct == 0.0
    assert m.socket_power_w == pytest.approx(25.43)
    assert m.gfx_power_w == pytest.approx(14.87)
    assert m.soc_power_w == pytest.approx(3.12)
    assert m.cpu_power_w is None                      # left at 0xFFFF by smu_v13_0_4
    assert m.core_power_w[0] == pytest.approx(1.21)
    # All six current_* clocks are 0xFFFF on v2.1 emitters: the averages are used.
    assert m.raw["current_gfxclk"] is None
    assert (m.gfxclk_mhz, m.socclk_mhz, m.uclk_mhz) == (2650, 1200, 2800)
    # average_fclk_frequency holds a copy of MemclkFrequency on SMU 13.0.4: not an FCLK.
    assert m.raw["average_fclk_frequency"] == 2800 and m.fclk_mhz != 2800
    assert m.core_clocks_mhz == [4512, 3985, 4020, 3890, 3950, 3870, 3860, 3845]
    assert m.raw["temperature_l3"] == [5600, None]
    assert m.dram_read_bps is None and m.dram_reads_saturated is False


def test_v2_0_hole_after_header_and_units():
    m = decode(BLOBS[(2, 0)], smc_fw_version=0x00370000, mp1_version=(12, 0, 1))   # Renoir
    assert m.system_clock_counter_ns == 444555666777
    assert m.gfx_temp_c == pytest.approx(45.12)
    assert m.gfx_activity_pct == pytest.approx(27.5) and m.mm_activity_pct == pytest.approx(1.2)
    assert m.socket_power_w == pytest.approx(18.75) and m.cpu_power_w == pytest.approx(9.12)
    assert m.gfx_power_w is None
    assert (m.gfxclk_mhz, m.fclk_mhz) == (1800, 1601)   # current_* preferred when filled
    assert m.raw["fan_pwm"] == 300


def test_v2_2_to_v2_4_tail_fields():
    m2, m3, m4 = (decode(BLOBS[v]) for v in [(2, 2), (2, 3), (2, 4)])
    assert m2.indep_throttle_status == 0x10
    assert "average_temperature_gfx" not in m2.raw
    assert m3.raw["average_temperature_gfx"] == 5990 and "average_gfx_voltage" not in m3.raw
    assert m4.raw["average_gfx_voltage"] == 1050 and m4.raw["average_gfx_current"] == 5800
    for m in (m2, m3, m4):
        assert m.core_temps_c[:4] == pytest.approx([61.0, 61.2, 60.9, 61.4])
        assert m.core_temps_c[4:] == [None] * 4
        assert m.socket_power_w == pytest.approx(14.5)
        assert m.gfxclk_mhz == 1601


def test_v3_units_are_centidegrees_percent_milliwatts():
    m = decode(BLOBS[(3, 0)])
    assert m.gfx_temp_c == pytest.approx(45.23) and m.soc_temp_c == pytest.approx(47.11)
    assert m.skin_temp_c == pytest.approx(38.50)
    assert m.core_temps_c[:12] == pytest.approx([46.0 + i / 10 for i in range(12)])
    assert m.core_temps_c[12:] == [None] * 4
    assert m.gfx_activity_pct == 3.0                  # whole percent in v3, not centi
    assert m.ipu_activity_pct == [10.0, 20.0, 30.0, 40.0, 0.0, 0.0, 0.0, 0.0]
    assert m.socket_power_w == pytest.approx(9.87)
    assert m.gfx_power_w == pytest.approx(1.234)
    assert m.cpu_power_w == pytest.approx(4.321)
    assert m.ipu_power_w == pytest.approx(1.234)
    assert m.sys_power_w == pytest.approx(63.536)
    assert (m.dram_read_bps, m.dram_write_bps) == (3125 * 10**6, 1203 * 10**6)
    assert (m.ipu_read_bps, m.ipu_write_bps) == (250 * 10**6, 125 * 10**6)
    assert (m.gfxclk_mhz, m.fclk_mhz, m.uclk_mhz, m.socclk_mhz) == (848, 1960, 800, 1104)
    assert (m.gfx_maxfreq_mhz, m.core_maxfreq_mhz) == (2900, 5100)
    assert m.throttle_residency == {"prochot": 1, "spl": 2, "fppt": 3, "sppt": 4,
                                    "thm_core": 5, "thm_gfx": 6, "thm_soc": 7}
    assert m.raw["stapm_power_limit"] is None and m.raw["current_stapm_power_limit"] is None


# --- the reference blob ----------------------------------------------------------------------

def test_reference_blob_decodes_to_readme_values():
    m = decode(REF_BLOB, smc_fw_version=0x0A640600, mp1_version=(14, 0, 1))
    assert len(REF_BLOB) == 264 and m.version == "3.0" and m.warnings == []
    assert m.gfx_temp_c == pytest.approx(62.37) and m.soc_temp_c == pytest.approx(64.81)
    assert m.skin_temp_c == pytest.approx(41.25)
    assert m.gfx_activity_pct == 98.0
    assert m.socket_power_w == pytest.approx(98.43)
    assert m.gfx_power_w == pytest.approx(71.25)
    assert m.cpu_power_w == pytest.approx(9.87)
    assert m.sys_power_w == 0.0
    assert m.dram_read_bps == 48213000000 and m.dram_write_bps == 9137000000
    assert not m.dram_reads_saturated and not m.dram_writes_saturated
    assert (m.gfxclk_mhz, m.socclk_mhz, m.fclk_mhz, m.uclk_mhz) == (2743, 1104, 1960, 1000)
    assert (m.gfx_maxfreq_mhz, m.core_maxfreq_mhz) == (2900, 5100)
    assert m.core_clocks_mhz[:2] == [5087, 4312]
    assert m.core_c0_pct[0] == 97.0
    assert m.throttle_residency["spl"] == 18231 and m.throttle_residency["sppt"] == 2871
    assert m.raw["stapm_power_limit"] is None                 # never written: 0xFFFF
    assert m.raw["time_filter_alphavalue"] == 1000000
    assert m.system_clock_counter_ns == 5412345678901


def test_v3_activity_is_centipercent_on_old_firmware():
    # amdgpu_top: GfxActivity is centi-percent on SMU firmware <= 0x5d4600.
    assert decode(REF_BLOB, smc_fw_version=0x005D4600).gfx_activity_pct == pytest.approx(0.98)
    assert decode(REF_BLOB, smc_fw_version=0x005D4601).gfx_activity_pct == 98.0


def test_v3_vcn_activity_never_above_100_percent():
    assert decode(bt.pack(3, 0, {"average_vcn_activity": 4200})).mm_activity_pct == pytest.approx(42.0)
    assert decode(bt.pack(3, 0, {"average_vcn_activity": 42})).mm_activity_pct == 42.0


def test_renoir_socket_power_watts_rule():
    blob = bt.pack(2, 2, {"average_socket_power": 15, "average_cpu_power": 9000})
    new_fw = decode(blob, smc_fw_version=0x0040000F, mp1_version=(12, 0, 1))
    old_fw = decode(blob, smc_fw_version=0x0040000E, mp1_version=(12, 0, 1))
    assert new_fw.socket_power_w == 15.0                # W on new PMFW
    assert old_fw.socket_power_w == pytest.approx(0.015)  # mW before
    assert new_fw.cpu_power_w == pytest.approx(9.0)     # other rails stay mW
    assert decode(blob, smc_fw_version=0x00373200, mp1_version=(12, 0, 0)).socket_power_w == 15.0
    # Phoenix (no MP1 12.0.x): always mW.
    assert decode(blob, smc_fw_version=0x0040000F, mp1_version=(13, 0, 4)).socket_power_w == pytest.approx(0.015)


# --- not provided, saturated, truncated, unknown --------------------------------------------

def test_all_ones_is_none_and_zero_is_a_value():
    m = decode(bt.pack(3, 0, {"average_gfx_power": 0, "temperature_gfx": 0}))
    assert m.socket_power_w is None                   # 0xFFFFFFFF
    assert m.gfx_power_w == 0.0 and m.gfx_temp_c == 0.0
    assert m.soc_temp_c is None                       # 0xFFFF
    assert m.system_clock_counter_ns is None          # 0xFFFF_FFFF_FFFF_FFFF
    m1 = decode(bt.pack(1, 3, {"energy_accumulator": 0xFFFFFFFFFFFFFFFF, "average_socket_power": 0xFFFF}))
    assert m1.raw["energy_accumulator"] is None and m1.socket_power_w is None
    m0 = decode(bt.pack(1, 0, {"pcie_link_width": 0xFF, "pcie_link_speed": 0xFE}))
    assert m0.raw["pcie_link_width"] is None and m0.raw["pcie_link_speed"] == 0xFE


def test_v3_dram_counter_at_65535_is_saturated_not_missing():
    m = decode(bt.pack(3, 0, dict(STRIXPOINT_V3_0, average_dram_reads=65535)))
    assert m.dram_read_bps is None and m.dram_reads_saturated is True
    assert m.dram_write_bps == 1203 * 10**6 and m.dram_writes_saturated is False
    top = decode(bt.pack(3, 0, dict(STRIXPOINT_V3_0, average_dram_reads=65534)))
    assert top.dram_read_bps == 65534 * 10**6 and top.dram_reads_saturated is False


def test_truncated_reference_blob_keeps_the_prefix():
    m = decode(REF_BLOB[:100])
    assert m.version == "3.0" and m.decoded
    assert len(m.warnings) == 1 and "100 bytes" in m.warnings[0]
    assert m.gfx_temp_c == pytest.approx(62.37)               # offset 4
    assert m.dram_read_bps == 48213000000                      # offset 94..96
    assert m.dram_write_bps == 9137000000                      # offset 96..98
    assert m.socket_power_w is None and m.gfx_power_w is None  # offsets 112, 124
    assert m.gfxclk_mhz is None and m.gfx_maxfreq_mhz is None
    assert set(m.throttle_residency.values()) == {None}
    assert m.system_clock_counter_ns is None


@pytest.mark.parametrize("ver", VERSIONS, ids=lambda v: f"v{v[0]}.{v[1]}")
def test_every_truncation_decodes_exactly_the_whole_fields_present(ver):
    full = BLOBS[ver]
    want = expected_raw(ver)
    lay = bt.layout(*ver)
    for length in range(4, len(full)):       # every cut, between fields and inside them
        m = decode(full[:length])
        assert m.decoded and len(m.warnings) == 1, length
        for name, expected in want.items():
            off, code, count = lay[name]
            elem = _ELEM[code]
            if count == 1:
                assert m.raw[name] == (expected if off + elem <= length else None), (length, name)
            else:
                got = [expected[i] if off + (i + 1) * elem <= length else None for i in range(count)]
                assert m.raw[name] == got, (length, name)


# Regression test. Bug found by this test (fixed in halotune since):
# halotune/machine/gpu_metrics.py decode() pads a short blob with 0xFF and unpacks it, so a field
# cut in the middle mixes real low bytes with 0xFF high bytes: decode(reference_blob[:114]) reads
# average_socket_power (u32 at offset 112, 98430 mW) as 0xFFFF807E and reports socket_power_w =
# 4294934.654 W instead of None (not provided)
def test_field_cut_in_the_middle_is_not_provided():
    m = decode(REF_BLOB[:114])
    assert m.socket_power_w is None
    assert m.raw["average_socket_power"] is None


def test_structure_size_shorter_than_the_blob_is_honoured():
    blob = bt.pack(3, 0, STRIXPOINT_V3_0, structure_size=100)
    m = decode(blob)
    assert m.structure_size == 100 and m.warnings
    assert m.socket_power_w is None and m.gfx_temp_c == pytest.approx(45.23)


# Regression test. Bug found by this test (fixed in halotune since):
# halotune/machine/gpu_metrics.py _mbps() (used by _units_v3) maps a DRAM counter that is absent
# because the blob is truncated (decode pads the missing tail with 0xFF) to saturated=True:
# decode(reference_blob[:90]) gives dram_reads_saturated=True, and the status then reports
# dram_counters_saturated=true / '>=65.5 GB/s (counter saturated)' for a counter that was never
# read; expected saturated=False with value None
def test_truncated_v3_missing_dram_counters_are_not_saturated():
    m = decode(REF_BLOB[:90])
    assert m.dram_read_bps is None and m.dram_write_bps is None
    assert m.dram_reads_saturated is False and m.dram_writes_saturated is False


@pytest.mark.parametrize("frev, crev", [(3, 9), (4, 0), (1, 4), (2, 5), (0, 0), (255, 255)])
def test_unknown_version_gives_header_only_and_a_warning(frev, crev):
    blob = bytearray(REF_BLOB)
    blob[2], blob[3] = frev, crev
    m = decode(bytes(blob))
    assert (m.structure_size, m.format_revision, m.content_revision) == (264, frev, crev)
    assert m.version == f"{frev}.{crev}"
    assert not m.decoded and m.raw == {}
    assert len(m.warnings) == 1 and f"unknown version {frev}.{crev}" in m.warnings[0]
    assert m.socket_power_w is None and m.gfx_temp_c is None and m.dram_read_bps is None


@pytest.mark.parametrize("blob", [None, b"", b"\x08", b"\x08\x01", b"\x08\x01\x03"])
def test_blob_without_a_header(blob):
    m = decode(blob)
    assert m.format_revision is None and m.version is None and not m.decoded
    assert len(m.warnings) == 1 and "no header" in m.warnings[0]


def test_dispatch_is_by_header_not_by_length():
    b13, b20, b21 = BLOBS[(1, 3)], BLOBS[(2, 0)], BLOBS[(2, 1)]
    assert len(b13) == len(b20) == len(b21) == 120
    m13, m20, m21 = decode(b13), decode(b20), decode(b21)
    assert (m13.version, m20.version, m21.version) == ("1.3", "2.0", "2.1")
    assert m13.edge_temp_c == 55.0 and m13.socket_power_w == 305.0
    assert m20.gfx_temp_c == pytest.approx(45.12) and m20.system_clock_counter_ns == 444555666777
    assert m21.gfx_temp_c == pytest.approx(51.40) and m21.system_clock_counter_ns == 987654321012
    # The same 116 body bytes under another header are read with that header's offsets.
    relabelled = decode(b21[:2] + bytes([2, 0]) + b21[4:])
    assert relabelled.version == "2.0"
    assert relabelled.system_clock_counter_ns == struct.unpack_from("<Q", b21, 8)[0]
    assert relabelled.gfx_temp_c == pytest.approx(struct.unpack_from("<H", b21, 16)[0] / 100)


# --- property tests --------------------------------------------------------------------------

def _check_invariants(m, blob):
    assert isinstance(m, gpu_metrics.GpuMetrics)
    if blob is None or len(blob) < 4:
        assert m.format_revision is None and m.warnings
        return
    size, frev, crev = struct.unpack_from("<HBB", blob)
    assert (m.structure_size, m.format_revision, m.content_revision) == (size, frev, crev)
    if (frev, crev) in gpu_metrics.LAYOUTS:
        assert m.decoded
        limit = gpu_metrics.layout_size(frev, crev)
        assert bool(m.warnings) == (min(len(blob), size) < limit)
    else:
        assert not m.decoded and m.warnings
    for v in (m.dram_read_bps, m.dram_write_bps):
        assert v is None or 0 <= v <= 65534 * 10**6
    if m.mm_activity_pct is not None and m.format_revision == 3:
        assert m.mm_activity_pct <= 655.35


@settings(max_examples=2000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.none(), st.binary(max_size=600)),
       st.one_of(st.none(), st.integers(0, 2**32 - 1)),
       st.one_of(st.none(), st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))))
def test_decode_never_raises_on_arbitrary_bytes(blob, smc, mp1):
    _check_invariants(decode(blob, smc, mp1), blob)


_SEEDS = [REF_BLOB] + [BLOBS[v] for v in VERSIONS]


@settings(max_examples=800, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(_SEEDS),
       edits=st.lists(st.tuples(st.integers(0, 263), st.integers(0, 255)), max_size=12),
       header=st.one_of(st.none(), st.sampled_from(sorted(gpu_metrics.LAYOUTS))),
       cut=st.one_of(st.none(), st.integers(0, 264)),
       tail=st.binary(max_size=64),
       smc=st.sampled_from([None, 0x0A640600, 0x005D4600, 0x0040000F]),
       mp1=st.sampled_from([None, (12, 0, 1), (14, 0, 1)]))
def test_decode_never_raises_on_mutated_real_blobs(seed, edits, header, cut, tail, smc, mp1):
    blob = bytearray(seed)
    for pos, value in edits:                 # flip bytes anywhere, header included
        blob[pos % len(blob)] = value
    if header is not None:                   # or keep a known header over a broken body
        blob[2], blob[3] = header
    if cut is not None:
        blob = blob[:cut]
    blob = bytes(blob) + tail
    _check_invariants(decode(blob, smc, mp1), blob)
