"""halotune.machine.parse on literal kernel text, byte for byte as the kernel prints it."""

from __future__ import annotations

import pytest

from halotune.machine import parse
from halotune.machine.parse import ClockLevel
from halotune.machine.rootfs import clean_text


# --- parse_int ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("0x1586\n", 0x1586),            # PCI device id
    ("0x0a640600\n", 0x0A640600),    # smc_fw_version
    ("0X744C", 0x744C),
    ("98043000\n", 98043000),
    ("  42 \n", 42),
    ("-1\n", -1),                    # amdgpu.gttsize default
    ("", None), ("\n", None), (None, None), ("auto\n", None), ("0x", None), ("12 MHz", None),
])
def test_parse_int(text, expected):
    assert parse.parse_int(text) == expected


# --- clock tables ---------------------------------------------------------------------------

def levels(*triples):
    return [ClockLevel(i, mhz, cur) for i, mhz, cur in triples]


def test_clock_table_smu14_trailing_space_and_one_star():
    # Real bytes of LACT's Strix Point pp_dpm_sclk: non-current lines end in "Mhz ".
    text = "0: 600Mhz \n1: 848Mhz *\n2: 2900Mhz \n"
    assert parse.parse_clock_table(text) == levels((0, 600, False), (1, 848, True), (2, 2900, False))
    assert parse.current_clock(parse.parse_clock_table(text)) == 848


def test_clock_table_star_on_min_phoenix_capture():
    # LACT Phoenix pp_dpm_sclk (idle): the star is on level 0, the middle line is the 1100 placeholder.
    lv = parse.parse_clock_table("0: 800Mhz *\n1: 1100Mhz \n2: 2700Mhz \n")
    assert [l.mhz for l in lv] == [800, 1100, 2700]
    assert parse.current_clock(lv) == 800


def test_clock_table_without_any_star():
    # Strix Point pp_dpm_mclk capture: the current clock matched no level exactly.
    lv = parse.parse_clock_table("0: 400Mhz \n1: 800Mhz \n2: 1000Mhz \n")
    assert [l.mhz for l in lv] == [400, 800, 1000]
    assert not any(l.current for l in lv)
    assert parse.current_clock(lv) is None


def test_clock_table_several_stars_and_repeated_frequency():
    # The driver stars every level equal to the current clock: a repeated frequency gets two.
    text = ("0: 600Mhz \n1: 736Mhz \n2: 883Mhz \n3: 981Mhz \n4: 1104Mhz \n"
            "5: 1261Mhz *\n6: 1261Mhz *\n7: 1472Mhz \n")
    lv = parse.parse_clock_table(text)
    assert len(lv) == 8
    assert [l.index for l in lv if l.current] == [5, 6]
    assert parse.current_clock(lv) == 1261


def test_clock_table_two_different_stars_reports_the_highest():
    lv = parse.parse_clock_table("0: 400Mhz *\n1: 800Mhz *\n2: 1000Mhz \n")
    assert parse.current_clock(lv) == 800


def test_clock_table_descending_order_is_kept():
    text = "0: 2800Mhz *\n1: 2400Mhz \n2: 1400Mhz \n3: 400Mhz \n"
    lv = parse.parse_clock_table(text)
    assert [(l.index, l.mhz) for l in lv] == [(0, 2800), (1, 2400), (2, 1400), (3, 400)]
    assert parse.current_clock(lv) == 2800


def test_clock_table_dgpu_fine_grained_without_trailing_space():
    # smu_v13_0_0 fine-grained GFXCLK: "0: %uMhz\n1: %uMhz *\n2: %uMhz\n".
    lv = parse.parse_clock_table("0: 500Mhz\n1: 2482Mhz *\n2: 2529Mhz\n")
    assert lv == levels((0, 500, False), (1, 2482, True), (2, 2529, False))


@pytest.mark.parametrize("empty", ["\n", "", None, "\x00" * 4096, "   \n"])
def test_clock_table_empty(empty):
    # pp_dpm_dcefclk / pp_dpm_pcie on the APU read "\n".
    assert parse.parse_clock_table(empty) == []
    assert parse.current_clock(parse.parse_clock_table(empty)) is None


def test_clock_table_nul_padded_capture():
    text = "0: 400Mhz \n1: 800Mhz \n2: 1000Mhz *\n" + "\x00" * (4096 - 37)
    lv = parse.parse_clock_table(text)
    assert [l.mhz for l in lv] == [400, 800, 1000]
    assert parse.current_clock(lv) == 1000


def test_clock_table_skips_garbage_and_pcie_lines():
    text = ("garbage\n"
            "0: 2.5GT/s, x1 97Mhz \n"            # pp_dpm_pcie format: not a clock level
            "1: 16.0GT/s, x16 619Mhz *\n"
            "x: 500Mhz *\n"
            "2: abcMhz *\n"
            "OD_SCLK:\n"
            "3: 1940Mhz *\n")
    assert parse.parse_clock_table(text) == levels((3, 1940, True))


# --- pp_od_clk_voltage ----------------------------------------------------------------------

def test_od_clk_voltage_smu14_apu():
    text = ("OD_SCLK:\n0:        600Mhz\n1:       2900Mhz\n"
            "OD_RANGE:\nSCLK:     600Mhz       2900Mhz\n")
    od = parse.parse_od_clk_voltage(text)
    assert (od.sclk_min, od.sclk_max, od.range_min, od.range_max) == (600, 2900, 600, 2900)
    assert set(od.sections) == {"OD_SCLK", "OD_RANGE"}


def test_od_clk_voltage_with_nul_and_space_padding_between_sections():
    # The LACT Strix Point capture carries sysfs-buffer padding between the two sections.
    text = ("OD_SCLK:\n0:        700Mhz\n1:       2400Mhz\n"
            + "\x00" * 37 + "\n" + " " * 12 + "\n" + "\x00" * 5 + "   "
            + "OD_RANGE:\nSCLK:     600Mhz       2900Mhz\n" + "\x00" * 200)
    od = parse.parse_od_clk_voltage(text)
    assert (od.sclk_min, od.sclk_max) == (700, 2400)
    assert (od.range_min, od.range_max) == (600, 2900)
    assert od.sections["OD_SCLK"] == ["0:        700Mhz", "1:       2400Mhz"]


def test_od_clk_voltage_navi10_capture_keeps_unknown_sections():
    # LACT rx5500xt pp_od_clk_voltage (Navi 14), verbatim.
    text = ("OD_SCLK:\n0: 500Mhz\n1: 1900Mhz\nOD_MCLK:\n1: 875MHz\nOD_VDDC_CURVE:\n"
            "0: 500MHz 736mV\n1: 1200MHz 779mV\n2: 1900MHz 1102mV\nOD_RANGE:\n"
            "SCLK:     800Mhz       2200Mhz\nMCLK:     625Mhz        930Mhz\n"
            "VDDC_CURVE_SCLK[0]:     800Mhz       2200Mhz\nVDDC_CURVE_VOLT[0]:     700mV        1150mV\n")
    od = parse.parse_od_clk_voltage(text)
    assert (od.sclk_min, od.sclk_max) == (500, 1900)
    assert (od.range_min, od.range_max) == (800, 2200)
    assert od.sections["OD_MCLK"] == ["1: 875MHz"]
    assert len(od.sections["OD_VDDC_CURVE"]) == 3


@pytest.mark.parametrize("text", [None, "", "\n", "\x00" * 64])
def test_od_clk_voltage_empty(text):
    od = parse.parse_od_clk_voltage(text)
    assert (od.sclk_min, od.sclk_max, od.range_min, od.range_max) == (None,) * 4
    assert od.sections == {}


# --- bracket choices ------------------------------------------------------------------------

@pytest.mark.parametrize("text, selected, choices", [
    ("always [madvise] never\n", "madvise", ["always", "madvise", "never"]),
    ("always defer defer+madvise [madvise] never", "madvise",
     ["always", "defer", "defer+madvise", "madvise", "never"]),
    ("[always] madvise never", "always", ["always", "madvise", "never"]),
    ("low-power balanced performance ", None, ["low-power", "balanced", "performance"]),
    ("", None, []), (None, None, []),
])
def test_bracket_choice(text, selected, choices):
    assert parse.parse_bracket_choice(text) == (selected, choices)


# --- hwmon power ----------------------------------------------------------------------------

@pytest.mark.parametrize("uw, watts", [
    (98043000, 98.43),     # Strix Halo reference: 98 W + 43 cW packed
    (9087000, 9.87),       # LACT Strix Point capture
    (5000, 0.05),
    (120000000, 120.0),
    (0, 0.0),
])
def test_hwmon_apu_power_decode(uw, watts):
    assert parse.hwmon_apu_power_w(uw) == pytest.approx(watts, abs=1e-9)


def test_hwmon_apu_power_is_not_plain_microwatts():
    assert parse.hwmon_power_w(98043000) == pytest.approx(98.043)
    assert parse.hwmon_apu_power_w(98043000) != pytest.approx(98.043)


@pytest.mark.parametrize("uw, watts", [
    (25110000, 25 + 110 / 256),     # Phoenix: (25430 mW << 8) / 1000 = 25 << 8 | 110
    (305000000, 305.0),             # RDNA3 dGPU: AverageSocketPower << 8, whole watts
    (35128000, 35.5),               # low byte 128 = half a watt
    (0, 0.0),
])
def test_hwmon_q8_power_decode(uw, watts):
    assert parse.hwmon_q8_power_w(uw) == pytest.approx(watts)
    assert parse.hwmon_q8_power_w(None) is None


@pytest.mark.parametrize("uw, watts", [(305000000, 305.0), (339000000, 339.0), (15500000, 15.5)])
def test_hwmon_plain_power(uw, watts):
    assert parse.hwmon_power_w(uw) == pytest.approx(watts)


def test_hwmon_power_none():
    assert parse.hwmon_apu_power_w(None) is None
    assert parse.hwmon_power_w(None) is None


# --- /proc/meminfo --------------------------------------------------------------------------

MEMINFO = (
    "MemTotal:       131752264 kB\n"
    "MemFree:         58420112 kB\n"
    "MemAvailable:    63118904 kB\n"
    "Active(anon):     1204352 kB\n"
    "SwapTotal:        8388604 kB\n"
    "SwapFree:         8388604 kB\n"
    "HugePages_Total:       0\n"
    "HugePages_Free:        0\n"
    "Hugepagesize:       2048 kB\n"
    "DirectMap1G:    103809024 kB\n"
)


def test_meminfo_kb_to_bytes_and_counts():
    mi = parse.parse_meminfo(MEMINFO)
    assert mi["MemTotal"] == 131752264 * 1024 == 134914318336
    assert mi["MemAvailable"] == 63118904 * 1024
    assert mi["Active(anon)"] == 1204352 * 1024
    assert mi["HugePages_Total"] == 0                 # a count, no unit
    assert mi["Hugepagesize"] == 2097152
    assert len(mi) == 10


def test_meminfo_nul_padded_capture_and_junk_lines():
    raw = (b"MemTotal:       16 kB\nnot a line\nBroken:   abc kB\nMemFree:        8 kB\n"
           + b"\x00" * (4096 - 64))
    mi = parse.parse_meminfo(clean_text(raw))          # as RootFS hands it over
    assert mi == {"MemTotal": 16384, "MemFree": 8192}
    assert parse.parse_meminfo(None) == {} and parse.parse_meminfo("") == {}


# --- /proc/stat -----------------------------------------------------------------------------

STAT = (
    "cpu  2255034 1219 471123 39113429 9821 0 12834 0 0 0\n"
    "cpu0 1851233 610 240512 19400120 5001 0 10233 0 0 0\n"
    "cpu1 403801 609 230611 19713309 4820 0 2601 0 0 0\n"
    "intr 1284402113 0 9 0 0 0 0 0 0 0 0\n"
    "ctxt 2318840123\nbtime 1764050000\nprocesses 812340\n"
    "procs_running 3\nprocs_blocked 0\nsoftirq 512233401 4 123212 21 0 0 0 2 0 0 0\n"
)


def test_proc_stat_cpu_lines():
    st = parse.parse_proc_stat(STAT)
    assert set(st) == {"cpu", "cpu0", "cpu1"}
    # busy = user+nice+system+irq+softirq+steal; idle = idle+iowait
    assert st["cpu0"].busy == 1851233 + 610 + 240512 + 0 + 10233 + 0
    assert st["cpu0"].total == st["cpu0"].busy + 19400120 + 5001
    assert st["cpu"].total == 2255034 + 1219 + 471123 + 39113429 + 9821 + 12834


def test_proc_stat_guest_columns_are_not_counted_twice():
    # guest and guest_nice are already included in user and nice (fs/proc/stat.c).
    with_guest = parse.parse_proc_stat("cpu  1000 10 200 5000 50 0 30 0 400 7\n")["cpu"]
    without = parse.parse_proc_stat("cpu  1000 10 200 5000 50 0 30 0\n")["cpu"]
    assert with_guest == without
    assert with_guest.busy == 1240 and with_guest.total == 6290


def test_proc_stat_old_kernel_with_four_columns():
    st = parse.parse_proc_stat("cpu  100 0 50 850\n")
    assert (st["cpu"].busy, st["cpu"].total) == (150, 1000)


def test_proc_stat_skips_malformed_cpu_lines():
    assert parse.parse_proc_stat("cpu  1 2\ncpuX a b c d\n") == {}
    assert parse.parse_proc_stat(None) == {}


def test_utilization_between_two_samples():
    a = parse.parse_proc_stat("cpu  100 0 100 800 0 0 0 0 0 0\n")["cpu"]
    b = parse.parse_proc_stat("cpu  160 0 140 900 0 0 0 0 0 0\n")["cpu"]
    assert parse.utilization_percent(a, b) == pytest.approx(50.0)
    assert parse.utilization_percent(a, a) is None          # no time passed
    assert parse.utilization_percent(b, a) is None          # counters went backwards
    assert parse.utilization_percent(None, b) is None


# --- /proc/cmdline --------------------------------------------------------------------------

def test_cmdline_reference():
    text = ("BOOT_IMAGE=/boot/vmlinuz-6.17.0-5-generic root=UUID=3f6d2c1e-8b7a-4e21-9c4d-5a0b1e2f3c4d "
            "ro quiet splash amd_iommu=off ttm.pages_limit=28835840 ttm.page_pool_size=28835840\n")
    cl = parse.parse_cmdline(text)
    assert cl["ttm.pages_limit"] == "28835840"
    assert cl["root"] == "UUID=3f6d2c1e-8b7a-4e21-9c4d-5a0b1e2f3c4d"   # only the first '=' splits
    assert cl["quiet"] == "" and cl["ro"] == ""
    assert cl["amd_iommu"] == "off"


def test_cmdline_quoted_value_keeps_spaces():
    cl = parse.parse_cmdline('quiet dyndbg="file drivers/gpu/drm/amd/* +p" amdgpu.gttsize=128000\n')
    assert cl["dyndbg"] == "file drivers/gpu/drm/amd/* +p"
    assert cl["amdgpu.gttsize"] == "128000"
    assert len(cl) == 3


def test_cmdline_later_duplicate_wins():
    cl = parse.parse_cmdline("ttm.pages_limit=25165824 quiet ttm.pages_limit=28835840")
    assert cl["ttm.pages_limit"] == "28835840"


# Regression test. Bug found by this test (fixed in halotune since): parse_cmdline keeps the
# leading quote of a parameter quoted as a whole ('"key=value with spaces"', accepted by the
# kernel's next_arg()): key comes out as '"ttm.pages_limit' instead of 'ttm.pages_limit'
def test_cmdline_whole_parameter_quoted():
    cl = parse.parse_cmdline('"ttm.pages_limit=28835840" quiet')
    assert cl == {"ttm.pages_limit": "28835840", "quiet": ""}


# --- uevent / KFD key-value -----------------------------------------------------------------

def test_uevent_key_value():
    text = ("DRIVER=amdgpu\nPCI_CLASS=38000\nPCI_ID=1002:1586\nPCI_SUBSYS_ID=F111:000A\n"
            "PCI_SLOT_NAME=0000:c3:00.0\nMODALIAS=pci:v00001002d00001586sv0000F111sd0000000Abc03sc80i00\n")
    kv = parse.parse_key_value_lines(text, sep="=")
    assert kv["PCI_SLOT_NAME"] == "0000:c3:00.0"
    assert kv["MODALIAS"].startswith("pci:v00001002d00001586")
    assert len(kv) == 6


def test_kfd_properties_key_value():
    # LACT Strix Point kfd/topology/nodes/1/properties (excerpt).
    text = ("cpu_cores_count 0\nsimd_count 24\ngfx_target_version 110500\nvendor_id 4098\n"
            "device_id 5390\nlocation_id 49408\ndomain 0\ndrm_render_minor 128\n")
    kv = parse.parse_key_value_lines(text)
    assert kv["gfx_target_version"] == "110500"
    assert parse.parse_int(kv["location_id"]) == 0xC100
    assert kv["device_id"] == "5390"
    assert parse.parse_key_value_lines("\n\n") == {} and parse.parse_key_value_lines(None) == {}


# --- gfx target from KFD --------------------------------------------------------------------

@pytest.mark.parametrize("version, target", [
    (110501, "gfx1151"),     # Strix Halo
    (110500, "gfx1150"),     # Strix Point
    (110003, "gfx1103"),     # Phoenix
    (110000, "gfx1100"),     # Navi 31
    (100300, "gfx1030"),
    (90010, "gfx90a"),       # MI200: stepping 10 -> hex digit
    (90012, "gfx90c"),
    (90402, "gfx942"),
    (120001, "gfx1201"),
    (0, None), (None, None),
])
def test_gfx_target_from_kfd(version, target):
    assert parse.gfx_target_from_kfd(version) == target
