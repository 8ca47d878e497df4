"""Kernel text formats and number parsers the simulator reproduces."""

from __future__ import annotations

import pytest

from halotune.sim import formats as fmt
from halotune.sim.kparse import kstrtol, kstrtoul, proc_int, sscanf_ul


@pytest.mark.parametrize(("cur", "text"), [
    (2743, "0: 600Mhz \n1: 2743Mhz *\n2: 2900Mhz \n"),   # strictly inside: shown, starred
    (600, "0: 600Mhz *\n1: 1100Mhz \n2: 2900Mhz \n"),     # on min: the 1100 placeholder
    (2900, "0: 600Mhz \n1: 1100Mhz \n2: 2900Mhz *\n"),
])
def test_sclk_levels(cur, text):
    assert fmt.sclk_levels(600, cur, 2900) == text


def test_pinned_sclk_stars_the_max_line():
    assert fmt.sclk_levels(2900, 2900, 2900) == "0: 2900Mhz \n1: 1100Mhz \n2: 2900Mhz *\n"


def test_dpm_levels_star_every_exact_match_and_none_otherwise():
    assert fmt.dpm_levels((1104, 1261, 1261), 1261) == "0: 1104Mhz \n1: 1261Mhz *\n2: 1261Mhz *\n"
    assert "*" not in fmt.dpm_levels((600, 736), 678)


def test_od_clk_voltage_widths():
    assert fmt.od_clk_voltage(600, 2900, 600, 2900) == (
        "OD_SCLK:\n0:        600Mhz\n1:       2900Mhz\nOD_RANGE:\nSCLK:     600Mhz       2900Mhz\n")


@pytest.mark.parametrize(("mw", "uw"), [(98430, 98043000), (9870, 9087000), (12005, 12000000)])
def test_hwmon_power_packing(mw, uw):
    assert fmt.hwmon_power_uw(mw) == uw


def test_hwmon_temperature_truncates_to_whole_degrees():
    assert fmt.hwmon_temp_mc(6237) == 62000


@pytest.mark.parametrize(("text", "ul", "l"), [
    ("42", 42, 42), ("42\n", 42, 42), ("+42", 42, 42), ("0x2a", 42, 42), ("052", 42, 42),
    ("-42", None, -42), ("42\n\n", None, None), (" 42", None, None), ("4 2", None, None),
    ("", None, None), ("-+42", None, None), ("08", None, None),
])
def test_kstrto(text, ul, l):
    for parse, want in ((kstrtoul, ul), (kstrtol, l)):
        if want is None:
            with pytest.raises(ValueError):
                parse(text)
        else:
            assert parse(text) == want


def test_sscanf_and_proc_ints():
    assert sscanf_ul("  3000000kHz") == 3000000
    for bad in ("-1", "+1", "", "x1"):
        with pytest.raises(ValueError):
            sscanf_ul(bad)
    assert proc_int(" 60 \n") == 60 and proc_int("-1") == -1
    for bad in ("+1", "6 0", "60x", "99999999999"):
        with pytest.raises(ValueError):
            proc_int(bad)
