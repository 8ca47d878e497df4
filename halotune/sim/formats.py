"""Kernel text formats: each function renders one attribute exactly as its driver prints it.

Pure functions of values; the same renderers build the reference tree (byte-identical to the
snapshot) and every later update, so a format cannot drift between the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# sclk's middle line when the current clock sits on min or max ("UMD PSTATE GFXCLK 1100").
SCLK_PLACEHOLDER_MHZ = 1100


def value(v: object) -> str:
    """A one-value attribute: sysfs_emit(buf, "%...\\n")."""
    return f"{v}\n"


def sclk_levels(min_mhz: int, cur_mhz: int, max_mhz: int) -> str:
    """pp_dpm_sclk: smu_v14_0_0_emit_clk_levels, SMU_SCLK: always 3 lines, "%d: %uMhz %s\\n"."""
    star = 2 if cur_mhz == max_mhz else 0 if cur_mhz == min_mhz else 1
    mid = cur_mhz if star == 1 else SCLK_PLACEHOLDER_MHZ
    return "".join(f"{i}: {mhz}Mhz {'*' if star == i else ''}\n"
                   for i, mhz in enumerate((min_mhz, mid, max_mhz)))


def dpm_levels(levels: Sequence[int], cur_mhz: int) -> str:
    """pp_dpm_{fclk,socclk,mclk}: "%d: %uMhz %s\\n", star on exact matches (none, one or more)."""
    return "".join(f"{i}: {mhz}Mhz {'*' if mhz == cur_mhz else ''}\n"
                   for i, mhz in enumerate(levels))


def od_clk_voltage(od_min: int, od_max: int, range_min: int, range_max: int) -> str:
    """pp_od_clk_voltage: OD_SCLK "0: %10uMhz\\n", OD_RANGE "SCLK: %7uMhz %10uMhz\\n"."""
    return (f"OD_SCLK:\n0: {od_min:>10}Mhz\n1: {od_max:>10}Mhz\n"
            f"OD_RANGE:\nSCLK: {range_min:>7}Mhz {range_max:>10}Mhz\n")


def hwmon_power_uw(socket_mw: int) -> int:
    """power1_{average,input}: the ppt packs (W << 8 | centiwatts) and hwmon unpacks the low
    byte as milliwatts, so 98430 mW reads 98043000 (spec §2)."""
    return (socket_mw // 1000) * 1_000_000 + ((socket_mw % 1000) // 10) * 1000


def hwmon_temp_mc(centi_c: int) -> int:
    """temp1_input: GfxTemperature / 100 * 1000 in integer math, always a multiple of 1000."""
    return centi_c // 100 * 1000


def bracketed(choices: Iterable[str], current: str) -> str:
    """transparent_hugepage/{enabled,defrag}: the current choice in brackets."""
    return " ".join(f"[{c}]" if c == current else c for c in choices) + "\n"


def words(items: Iterable[str], trailing_space: bool = False) -> str:
    """Space-separated lists; loops printing "%s " leave a space before the newline."""
    items = list(items)
    return " ".join(items) + (" " if trailing_space else "") + "\n"


def meminfo(rows: Iterable[tuple[str, int]]) -> str:
    """/proc/meminfo rows "Label:   value kB" (fs/proc/meminfo.c).

    Values are right-aligned to column 25 as in the reference snapshot. The kernel's
    show_val_kb pads to width 8 after a 16-column label, so on a 128 GB machine the real file
    is ragged by a column; readers must split on white space either way.
    """
    out = []
    for label, kb in rows:
        if label.startswith("HugePages_"):
            out.append(f"{label + ':':<19}{kb:>5}\n")          # "HugePages_Total:   %5lu\n"
        elif label == "HardwareCorrupted":
            out.append(f"HardwareCorrupted: {kb:>5} kB\n")
        else:
            out.append(f"{label + ':':<16}{kb:>9} kB\n")
    return "".join(out)


def proc_stat(cpus: Sequence[Sequence[int]], intr: Sequence[int], ctxt: int, btime: int,
              processes: int, running: int, blocked: int, softirq: Sequence[int]) -> str:
    """/proc/stat (fs/proc/stat.c): "cpu " + " %llu" x 10 summed over CPUs, one "cpuN" line
    per CPU, then the counters. `intr` and `softirq` are [total, per-source counts...]."""
    total = [sum(col) for col in zip(*cpus)]
    lines = ["cpu " + "".join(f" {v}" for v in total)]
    lines += [f"cpu{n}" + "".join(f" {v}" for v in row) for n, row in enumerate(cpus)]
    lines += ["intr " + " ".join(str(v) for v in intr), f"ctxt {ctxt}", f"btime {btime}",
              f"processes {processes}", f"procs_running {running}", f"procs_blocked {blocked}",
              "softirq " + " ".join(str(v) for v in softirq)]
    return "\n".join(lines) + "\n"


def uptime(seconds: float, idle_seconds: float) -> str:
    """/proc/uptime: "%lu.%02lu %lu.%02lu\\n" (hundredths truncated, not rounded)."""
    a, b = int(seconds * 100), int(idle_seconds * 100)
    return f"{a // 100}.{a % 100:02d} {b // 100}.{b % 100:02d}\n"


def properties(rows: Iterable[tuple[str, int]]) -> str:
    """KFD topology properties (kfd_topology.c node_show): "%s %u\\n" per property."""
    return "".join(f"{name} {v}\n" for name, v in rows)
