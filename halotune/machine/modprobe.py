"""Module options configured for the next module load (modprobe.d) and on the command line.

Interfaces: modprobe.d(5): `*.conf` files in /etc/modprobe.d, /run/modprobe.d,
/usr/local/lib/modprobe.d, /usr/lib/modprobe.d and /lib/modprobe.d; a file name in an earlier
directory hides the same name in a later one; lines `options MODULE PARAM=VALUE ...`, `#`
comments, `\\` continues a line. Module and parameter names treat `-` and `_` alike, as the
kernel does (/proc/cmdline `module.param=value` words, parse_args()).
"""

from __future__ import annotations

from dataclasses import dataclass

from halotune.machine import parse
from halotune.machine.rootfs import RootFS

DIRS = ("etc/modprobe.d", "run/modprobe.d", "usr/local/lib/modprobe.d", "usr/lib/modprobe.d",
        "lib/modprobe.d")


def norm(name: str) -> str:
    return name.replace("-", "_")


@dataclass(frozen=True)
class ModuleOption:
    module: str
    param: str
    value: str
    where: str        # "/etc/modprobe.d/x.conf" or "kernel command line"


def _logical_lines(text: str):
    buf = ""
    for line in text.splitlines():
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        yield buf + line
        buf = ""
    if buf:
        yield buf


def modprobe_options(fs: RootFS) -> list[ModuleOption]:
    seen: dict[str, str] = {}
    for d in DIRS:
        for name in fs.listdir(d):
            if name.endswith(".conf") and name not in seen:
                seen[name] = f"{d}/{name}"
    out = []
    for name in sorted(seen):
        rel = seen[name]
        raw = fs.read_bytes(rel, 1 << 16)
        if raw is None:
            continue
        for line in _logical_lines(raw.decode("utf-8", "replace")):
            words = line.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "options":
                for w in words[2:]:
                    k, _, v = w.partition("=")
                    out.append(ModuleOption(norm(words[1]), norm(k), v, "/" + rel))
    return out


def cmdline_options(fs: RootFS) -> list[ModuleOption]:
    out = []
    for key, value in parse.parse_cmdline(fs.read_text("proc/cmdline")).items():
        module, dot, param = key.partition(".")
        if dot and module and param:
            out.append(ModuleOption(norm(module), norm(param), value, "kernel command line"))
    return out


def configured(fs: RootFS, module: str, param: str) -> list[ModuleOption]:
    """Every place that sets module.param for the next load (command line last: it wins)."""
    m, p = norm(module), norm(param)
    return [o for o in modprobe_options(fs) + cmdline_options(fs) if o.module == m and o.param == p]
