"""Module options the next boot applies: modprobe.d files and the kernel command line.

Read by reboot.py. Modelled on kmod (kmod-project/kmod, kmod 29-34), independently of
halotune.machine.modprobe so that the two can check each other:
- libkmod.c default_config_paths: etc/modprobe.d, run/modprobe.d, usr/local/lib/modprobe.d,
  usr/lib/modprobe.d, lib/modprobe.d, highest priority first.
- libkmod-config.c conf_files_filter_out: only `*.conf` names (kmod < 33 also `.alias`), none
  starting with `.`, no directories. conf_files_insert_sorted: a name already taken by an
  earlier directory is ignored (so etc/modprobe.d/x.conf hides usr/lib/modprobe.d/x.conf), and
  the files kept are read in strcmp() order of their names whatever their directory.
- kmod_config_parse: util.c getline_wrapped joins a line ending in a backslash with the next
  (nothing put between them); a line whose first character is `#` is a comment; only
  `options MODULE NAME=VALUE ...` lines matter here. Module and parameter names compare with
  `-` and `_` alike; a parameter given again later wins (the kernel's parse_args sets them in
  order).
- kmod_config_new parses /proc/cmdline (kmod_config_parse_kcmdline) after every file: command
  line `MODULE.NAME=VALUE` words win over the files.

Simplifications (the simulator has no bootloader and no initramfs):
- The next boot's command line is the current `proc/cmdline`; a test models an edited boot
  entry by rewriting that file.
- modprobe.d is read as if the initramfs had been rebuilt after each change. On a real
  machine where ttm.ko is loaded from the initramfs, a modprobe.d edit without
  `update-initramfs -u` has no effect, while the command line always has.
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
    # getline_wrapped: backslash-newline vanishes; a backslash before anything else is dropped.
    text = re.sub(r"\\(.)", lambda m: "" if m[1] == "\n" else m[1], text, flags=re.S)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        words = line.split()
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


MODPROBE_DIRS = (paths.MODPROBE_D, "run/modprobe.d", "usr/local/lib/modprobe.d",
                 "usr/lib/modprobe.d", "lib/modprobe.d")


def modprobe_files(root: str) -> list[str]:
    """Root-relative paths of the modprobe.d files kmod would read, in its order."""
    kept: dict[str, str] = {}
    for directory in MODPROBE_DIRS:
        try:
            names = os.listdir(os.path.join(root, directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if (name not in kept and name.endswith(".conf") and len(name) >= 6
                    and not name.startswith(".")
                    and not os.path.isdir(os.path.join(root, directory, name))):
                kept[name] = f"{directory}/{name}"
    return [kept[name] for name in sorted(kept, key=os.fsencode)]


def boot_options(root: str) -> Options:
    """Every module option the next boot gives its modules: modprobe.d, then the command line."""
    options: Options = {}
    for rel in modprobe_files(root):
        try:
            with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
                parse_modprobe(f.read(), options)
        except OSError:      # kmod_config_new: a file it cannot open is skipped
            continue
    try:
        with open(os.path.join(root, paths.PROC_CMDLINE), encoding="utf-8") as f:
            parse_cmdline(f.read(), options)
    except FileNotFoundError:
        pass
    return options
