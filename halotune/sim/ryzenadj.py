"""A RyzenAdj stand-in for the simulated machine (installed as ROOT/usr/local/bin/ryzenadj).

It speaks the real tool's command line and output (FlyGoat/RyzenAdj main.c and argparse.c,
spec §5.2 and §10): `-i/--info` prints the header and the PM-table summary, the limit options
take mW (or s, degC), each accepted value prints "Sucessfully set <name> to <n>" (the real
tool's spelling) and the exit status is the only success signal. Limits go into the simulated
SMU's state, so the physics model obeys them. It never needs root.

Exit status: 0 on success, 1 for a malformed command line (argparse.c exit(1)), 255 when the
"SMU" rejects a value or the tree is not a simulated machine (main returns -1).
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Sequence

from halotune.machine.rootfs import SIM_MARKER
from halotune.sim import store

VERSION = "v0.17.0"
PM_TABLE_VERSION = 0x64020C
BIOS_IF_VERSION = 25

# long option -> (short option, state["limits"] key, name in messages, accepted range).
# Ranges are what the simulated SMU takes (CHOSEN: the real SMU's bounds are undocumented).
# Listed in the order main.c applies them.
OPTIONS = {
    "stapm-limit": ("a", "stapm_mw", "stapm_limit", (5_000, 200_000)),
    "fast-limit": ("b", "fast_mw", "fast_limit", (5_000, 200_000)),
    "slow-limit": ("c", "slow_mw", "slow_limit", (5_000, 200_000)),
    "slow-time": ("d", "slow_time_s", "slow_time", (1, 3_600)),
    "stapm-time": ("e", "stapm_time_s", "stapm_time", (1, 3_600)),
    "tctl-temp": ("f", "tctl_c", "tctl_temp", (40, 105)),
    "apu-slow-limit": (None, "apu_slow_mw", "apu_slow_limit", (5_000, 200_000)),
}
_SHORT = {short: name for name, (short, *_rest) in OPTIONS.items() if short}
_UNSET = 0xFFFFFFFF  # main.c treats the u32 maximum as "option not given"

USAGE = "Usage: ryzenadj [options]\n\n Ryzen Power Management adjust tool (halotune simulator).\n"


class _Exit(Exception):
    def __init__(self, code: int):
        self.code = code


def _strtoul(text: str, flag: str) -> int:
    """argparse.c OPT_U32: strtoul(base 0) over the whole value, then a u32 assignment."""
    m = re.fullmatch(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not m and text.strip(" \t\n\v\f\r"):
        print(f"error: option `{flag}` expects an unsigned 32-bit integer value", file=sys.stderr)
        raise _Exit(1)
    if not m:
        return 0  # an empty value: strtoul converts nothing and stops at the terminator
    neg, digits = m.group(1) == "-", m.group(2)
    if digits[:2].lower() == "0x":
        value = int(digits, 16)
    else:
        value = int(digits, 8 if digits.startswith("0") else 10)
    if value >= 1 << 64:
        print(f"error: option `{flag}` Numerical result out of range", file=sys.stderr)
        raise _Exit(1)
    return (-value if neg else value) & 0xFFFFFFFF


def _parse(argv: Sequence[str]) -> tuple[bool, dict[str, int]]:
    """(info requested, option -> value) following argparse.c's rules."""
    info, values = False, {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            break
        if arg in ("-h", "--help"):
            print(USAGE, end="")
            raise _Exit(0)
        if arg in ("-i", "--info"):
            info = True
            continue
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            flag = f"--{name}"
        elif arg.startswith("-") and len(arg) > 1 and arg[1] in _SHORT:
            name, value, eq = _SHORT[arg[1]], arg[2:], bool(arg[2:])
            flag = f"-{arg[1]}"
        else:
            name, flag = None, arg
        if name not in OPTIONS:
            print(f"error: unknown option `{arg}`", file=sys.stderr)
            print(USAGE, end="")
            raise _Exit(1)
        if not eq:
            if not args:
                print(f"error: option `{flag}` requires a value", file=sys.stderr)
                raise _Exit(1)
            value = args.pop(0)
        values[name] = _strtoul(value, flag)
    return info, values


def _table(state: dict) -> str:
    lim, smu = state["limits"], state["smu"]
    hottest = max(smu["metrics"]["temperature_core"]) / 100
    nan = math.nan
    rows = [
        ("STAPM LIMIT", lim["stapm_mw"] / 1000, "stapm-limit"),
        ("STAPM VALUE", smu["p_stapm_mw"] / 1000, ""),
        ("PPT LIMIT FAST", lim["fast_mw"] / 1000, "fast-limit"),
        ("PPT VALUE FAST", smu["p_fast_mw"] / 1000, ""),
        ("PPT LIMIT SLOW", lim["slow_mw"] / 1000, "slow-limit"),
        ("PPT VALUE SLOW", smu["p_slow_mw"] / 1000, ""),
        ("StapmTimeConst", lim["stapm_time_s"], "stapm-time"),
        ("SlowPPTTimeConst", lim["slow_time_s"], "slow-time"),
        ("PPT LIMIT APU", lim["apu_slow_mw"] / 1000, "apu-slow-limit"),
        ("PPT VALUE APU", smu["p_slow_mw"] / 1000, ""),
        ("TDC LIMIT VDD", nan, "vrm-current"), ("TDC VALUE VDD", nan, ""),
        ("TDC LIMIT SOC", nan, "vrmsoc-current"), ("TDC VALUE SOC", nan, ""),
        ("EDC LIMIT VDD", nan, "vrmmax-current"), ("EDC VALUE VDD", nan, ""),
        ("EDC LIMIT SOC", nan, "vrmsocmax-current"), ("EDC VALUE SOC", nan, ""),
        ("THM LIMIT CORE", lim["tctl_c"], "tctl-temp"),
        ("THM VALUE CORE", hottest, ""),
        ("STT LIMIT APU", nan, "apu-skin-temp"), ("STT VALUE APU", nan, ""),
        ("STT LIMIT dGPU", nan, "dgpu-skin-temp"), ("STT VALUE dGPU", nan, ""),
        ("CCLK Boost SETPOINT", nan, "power-saving /"),
        ("CCLK BUSY VALUE", nan, "max-performance"),
    ]
    lines = [f"PM Table Version: {PM_TABLE_VERSION:x}",
             "|        Name         |   Value   |     Parameter      |",
             "|---------------------|-----------|--------------------|"]
    lines += [f"| {name:<19} | {v:9.3f} | {param:<18} |" for name, v, param in rows]
    return "\n".join(lines) + "\n"


def _adjust(state: dict, values: dict[str, int], log: list[dict]) -> bool:
    """Apply the given options in main.c's order, a writes.log entry each; False if any was
    rejected."""
    ok = True
    for option, (_short, key, label, (low, high)) in OPTIONS.items():
        value = values.get(option, _UNSET)
        if value == _UNSET:
            continue
        if low <= value <= high:
            state["limits"][key] = value
            print(f"Sucessfully set {label} to {value}")
            result = "ok"
        else:
            print(f"set_{label} is rejected by SMU")
            ok, result = False, "rejected"
        log.append(store.write_entry(f"ryzenadj:{option}", str(value), result))
    return ok


def main(argv: Sequence[str], root: str) -> int:
    """Run the stand-in against the simulated machine at `root`; returns the exit status."""
    try:
        info, values = _parse(argv)
    except _Exit as e:
        return e.code
    if not os.path.isdir(os.path.join(root, SIM_MARKER)):
        print("Unable to init ryzenadj")
        return 255
    if info:
        print(f"CPU Family: Strix Halo\nSMU BIOS Interface Version: {BIOS_IF_VERSION}\n"
              f"Version: {VERSION} ")  # main.c prints a space before the newline
    with store.locked(root):
        state = store.load_state(root)
        log: list[dict] = []
        ok = _adjust(state, values, log)
        store.commit(root, state, log, render=False)   # limits show in no file directly
        if ok and info:
            print(_table(state), end="")
    sys.stdout.flush()
    return 0 if ok else 255
