"""Module options the next boot applies: `etc/modprobe.d/*.conf` and the kernel command line.

Read by reboot.py. Modelled like kmod reads them (libkmod-config.c): only `*.conf` files that
are not hidden, in lexical order of their names; `options MODULE NAME=VALUE ...` lines (other
commands and `#` comments ignored); module and parameter names compare with `-`
and `_` alike; a parameter given again later wins. Command-line `MODULE.NAME=VALUE` words
come last and so win over the files.

Simplifications (the simulator has no bootloader and no initramfs):
- The next boot's command line is the current `proc/cmdline`; a test models an edited boot
  entry by rewriting that file.
- `etc/modprobe.d` is read as if the initramfs had been rebuilt after each change. On a real
  machine where ttm.ko is loaded from the initramfs, a modprobe.d edit without
  `update-initramfs -u` has no effect, while the command line always has.
- Other directories kmod reads (`/run/modprobe.d`, `/lib/modprobe.d`) are not consulted.
"""

from __future__ import annotations

import os
import re

from halotune.sim import paths

Options = dict[str, dict[str, str | None]]   # module -> parameter -> value (None: bare name)

_CMDLINE_WORD = re.compile(r'(?:[^\s"]+|"[^"]*")+')


def _norm(name: str) -> str:
    return name.replace("-", "_")


def _set(options: Options, module: str, word: str) -> None:
    name, eq, value = word.partition("=")
    if name:
        options.setdefault(_norm(module), {})[_norm(name)] = value.strip('"') if eq else None


def parse_modprobe(text: str, options: Options | None = None) -> Options:
    """The `options` lines of one modprobe.d file, merged into `options` (later wins)."""
    options = {} if options is None else options
    # A backslash at the end of a line continues it (getline_wrapped).
    for line in re.sub(r"\\\n", " ", text).splitlines():
        words = line.split()   # a comment's first word is "#...", never "options"
        if len(words) < 3 or words[0] != "options":
            continue
        for word in words[2:]:
            _set(options, words[1], word)
    return options


def parse_cmdline(text: str, options: Options | None = None) -> Options:
    """`module.param=value` words of a kernel command line (up to `--`, after which the words
    belong to init), merged into `options` (later wins)."""
    options = {} if options is None else options
    for word in _CMDLINE_WORD.findall(text):
        if word == "--":
            break
        if "." in word.partition("=")[0]:
            module, _dot, rest = word.partition(".")
            _set(options, module, rest)
    return options


def modprobe_files(root: str) -> list[str]:
    """Root-relative paths of the modprobe.d files kmod would read, in its order."""
    try:
        names = os.listdir(os.path.join(root, paths.MODPROBE_D))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [f"{paths.MODPROBE_D}/{name}" for name in sorted(names)
            if name.endswith(".conf") and not name.startswith(".")
            and os.path.isfile(os.path.join(root, paths.MODPROBE_D, name))]


def boot_options(root: str) -> Options:
    """Every module option the next boot gives its modules: modprobe.d, then the command line."""
    options: Options = {}
    for rel in modprobe_files(root):
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            parse_modprobe(f.read(), options)
    try:
        with open(os.path.join(root, paths.PROC_CMDLINE), encoding="utf-8") as f:
            parse_cmdline(f.read(), options)
    except FileNotFoundError:
        pass
    return options
