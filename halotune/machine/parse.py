"""Pure parsers for the text formats of the kernel files halotune reads.

Each takes the text (or bytes) of one file and returns plain Python values; none touches the
filesystem, so each is tested on literal captures, including NUL padding and trailing spaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


def is_uint(s: str) -> bool:
    """s is a plain unsigned decimal (ASCII 0-9 only). str.isdigit() alone is not enough before
    int(): it is true for superscripts ("\u00b2") that int() refuses."""
    return s.isascii() and s.isdecimal()


def parse_int(text: str | None) -> int | None:
    """Decimal, or hex with 0x (PCI ids, smc_fw_version). None for anything else."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    try:
        return int(text, 16) if text[:2].lower() == "0x" else int(text, 10)
    except ValueError:
        return None


# --- amdgpu clock tables ------------------------------------------------------------------

@dataclass
class ClockLevel:
    index: int
    mhz: int
    current: bool


_LEVEL = re.compile(r"^\s*(\d+):\s*(\d+)\s*[Mm]hz\s*(\*)?\s*$")


def parse_clock_table(text: str | None) -> list[ClockLevel]:
    """pp_dpm_{sclk,mclk,fclk,socclk}: `"%d: %uMhz %s\\n"` per level (smu_v14_0_0_emit_clk_levels).

    A non-current line ends in "Mhz " (trailing space). Real captures have zero, one or several
    starred lines, repeated frequencies, and an order that is not re-sorted; empty tables read
    "\\n" (pp_dpm_dcefclk, pp_dpm_pcie on APUs). Lines that do not parse are skipped.
    """
    if not text:
        return []
    out = []
    for line in text.replace("\x00", "").splitlines():
        m = _LEVEL.match(line)
        if m:
            out.append(ClockLevel(int(m.group(1)), int(m.group(2)), m.group(3) is not None))
    return out


def current_clock(levels: list[ClockLevel]) -> int | None:
    """The starred level's clock; with several stars the highest (the table cannot tell)."""
    starred = [lv.mhz for lv in levels if lv.current]
    return max(starred) if starred else None


@dataclass
class OdClock:
    sclk_min: int | None = None      # OD_SCLK 0: the hard minimum in force
    sclk_max: int | None = None      # OD_SCLK 1: the soft maximum in force
    range_min: int | None = None     # OD_RANGE SCLK: what the hardware allows
    range_max: int | None = None
    sections: dict[str, list[str]] = field(default_factory=dict)


_OD_LEVEL = re.compile(r"^\s*(\d+):\s*(\d+)\s*[Mm]hz\s*$")
_OD_RANGE = re.compile(r"^\s*SCLK:\s*(\d+)\s*[Mm]hz\s+(\d+)\s*[Mm]hz\s*$")


def parse_od_clk_voltage(text: str | None) -> OdClock:
    """pp_od_clk_voltage on SMU 14.0.x APUs (smu_v14_0_print_clk_levels):

        OD_SCLK:\\n0:        600Mhz\\n1:       2900Mhz\\nOD_RANGE:\\nSCLK:     600Mhz       2900Mhz\\n

    Captures contain NUL/space padding between sections: skip blank or all-NUL lines. Sections
    this parser does not know (OD_MCLK, OD_VDDC_CURVE on dGPUs) are kept raw in `sections`.
    """
    od = OdClock()
    if not text:
        return od
    section = None
    for line in text.replace("\x00", "").splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("OD_") and s.endswith(":"):
            section = s.rstrip(":")
            od.sections.setdefault(section, [])
            continue
        if section is not None:
            od.sections[section].append(s)
        if section == "OD_SCLK":
            m = _OD_LEVEL.match(s)
            if m:
                if m.group(1) == "0":
                    od.sclk_min = int(m.group(2))
                elif m.group(1) == "1":
                    od.sclk_max = int(m.group(2))
        elif section == "OD_RANGE":
            m = _OD_RANGE.match(s)
            if m:
                od.range_min, od.range_max = int(m.group(1)), int(m.group(2))
    return od


# --- choices -------------------------------------------------------------------------------

def parse_bracket_choice(text: str | None) -> tuple[str | None, list[str]]:
    """`always [madvise] never` (THP): (selected, choices). No bracket: (None, words)."""
    if not text:
        return None, []
    selected, choices = None, []
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            word = word[1:-1]
            selected = word
        choices.append(word)
    return selected, choices


# --- hwmon ---------------------------------------------------------------------------------

def hwmon_apu_power_w(microwatts: int | None) -> float | None:
    """amdgpu hwmon power1_* on SMU 14.0.x APUs (kernel >= 6.8).

    The ppt packs mW as (W << 8 | centiwatts) and hwmon unpacks the low byte as if it were mW,
    so 98.43 W reads as 98043000: the last three digits are 0, the next two the hundredths.
    """
    if microwatts is None:
        return None
    return microwatts // 1_000_000 + (microwatts % 1_000_000) / 100_000


def hwmon_q8_power_w(microwatts: int | None) -> float | None:
    """amdgpu hwmon power1_* everywhere else (amdgpu_pm.c amdgpu_hwmon_show_power_avg).

    The ppt hands hwmon watts in Q8 (W << 8 | 1/256 W); hwmon prints (q >> 8) * 1e6 +
    (q & 0xff) * 1000, so the thousands hold 256ths of a watt. dGPUs report whole watts (low
    byte 0), older APUs such as Phoenix ((mW << 8) / 1000) a real fraction: 25110000 = 25.43 W.
    """
    if microwatts is None:
        return None
    return microwatts // 1_000_000 + (microwatts % 1_000_000 // 1000) / 256


def hwmon_power_w(microwatts: int | None) -> float | None:
    """Generic hwmon power (power1_cap and non-amdgpu sensors): plain microwatts."""
    return None if microwatts is None else microwatts / 1_000_000


# --- procfs --------------------------------------------------------------------------------

def parse_meminfo(text: str | None) -> dict[str, int]:
    """/proc/meminfo: `Name:   123 kB` -> {"Name": bytes}. Lines without a unit are counts."""
    out: dict[str, int] = {}
    if not text:
        return out
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts or not is_uint(parts[0]):
            continue
        value = int(parts[0])
        if len(parts) > 1 and parts[1] == "kB":
            value *= 1024
        out[name.strip()] = value
    return out


@dataclass
class CpuTimes:
    """One `cpu` line of /proc/stat, in USER_HZ ticks."""

    busy: int
    total: int


def parse_proc_stat(text: str | None) -> dict[str, CpuTimes]:
    """/proc/stat cpu lines: user nice system idle iowait irq softirq steal [guest guest_nice].

    guest time is already counted in user, so it is not added again; idle = idle + iowait.
    """
    out: dict[str, CpuTimes] = {}
    if not text:
        return out
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        parts = line.split()
        try:
            nums = [int(x) for x in parts[1:9]]
        except ValueError:
            continue
        if len(nums) < 4:
            continue
        nums += [0] * (8 - len(nums))
        idle = nums[3] + nums[4]
        total = sum(nums)
        out[parts[0]] = CpuTimes(busy=total - idle, total=total)
    return out


def utilization_percent(prev: CpuTimes | None, cur: CpuTimes | None) -> float | None:
    if prev is None or cur is None:
        return None
    dt = cur.total - prev.total
    if dt <= 0:
        return None
    return max(0.0, min(100.0, 100.0 * (cur.busy - prev.busy) / dt))


def parse_cmdline(text: str | None) -> dict[str, str]:
    """/proc/cmdline -> {"ttm.pages_limit": "28835840", "quiet": ""}; later duplicates win, as
    for module parameters. Quoted values keep their spaces."""
    out: dict[str, str] = {}
    if not text:
        return out
    for token in re.findall(r'(?:[^\s"]+|"[^"]*")+', text):
        # The kernel's next_arg() accepts `key="a b"` and `"key=a b"` alike.
        key, _, value = token.replace('"', "").partition("=")
        out[key] = value
    return out


def parse_key_value_lines(text: str | None, sep: str | None = None) -> dict[str, str]:
    """uevent (`KEY=value`) and KFD properties (`key value`) files."""
    out: dict[str, str] = {}
    if not text:
        return out
    for line in text.splitlines():
        if sep is None:
            key, _, value = line.strip().partition(" ")
        else:
            key, _, value = line.strip().partition(sep)
        if key:
            out[key.strip()] = value.strip()
    return out


def gfx_target_from_kfd(version: int | None) -> str | None:
    """KFD topology `gfx_target_version` (e.g. 110501, 90010) -> LLVM name (gfx1151, gfx90a)."""
    if not version:
        return None
    major, minor, step = version // 10000, (version // 100) % 100, version % 100
    return f"gfx{major}{minor}{step:x}"
