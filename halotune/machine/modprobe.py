"""Module options the next module load gets: modprobe.d files and the kernel command line.

Read as kmod reads them (kmod-project/kmod libkmod/libkmod-config.c, libkmod.c, util.c; the
rules below hold from kmod 29, which added /usr/lib/modprobe.d, to kmod 34):

- Directories, highest priority first (libkmod.c default_config_paths): /etc/modprobe.d,
  /run/modprobe.d, /usr/local/lib/modprobe.d, /usr/lib/modprobe.d, /lib/modprobe.d.
- conf_files_filter_out: only names ending in `.conf` (kmod < 33 also took `.alias`), not
  starting with `.`, and not directories (a directory is skipped before it can hide anything).
- conf_files_insert_sorted: a name already taken by an earlier directory is ignored ("Ignoring
  duplicate config file"), so /etc/modprobe.d/x.conf hides /usr/lib/modprobe.d/x.conf; a
  symlink to /dev/null (or an empty file) hides it with nothing. The surviving files are read
  in strcmp() order of their names, whatever their directory.
- kmod_config_parse: logical lines (getline_wrapped: backslash-newline is removed, nothing put
  in its place); a line whose first character is `#` is a comment (there are no inline
  comments); `options MODULE REST` keeps REST whole; module names `-` == `_` (underscores()).
- kmod_config_new parses /proc/cmdline last (kmod_config_parse_kcmdline): `module.param=value`
  words are options too, after every file.
- modprobe hands a module all its options in that order; the kernel's parse_args() sets them
  one by one (parameq: `-` == `_`), so the last one given wins. A module built into the kernel
  (lib/modules/RELEASE/modules.builtin) is never loaded by modprobe: only the command line
  reaches it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from halotune.machine import parse
from halotune.machine.rootfs import RootFS

DIRS = ("etc/modprobe.d", "run/modprobe.d", "usr/local/lib/modprobe.d", "usr/lib/modprobe.d",
        "lib/modprobe.d")
CMDLINE = "kernel command line"
_MAX_CONF_BYTES = 1 << 20


def norm(name: str) -> str:
    return name.replace("-", "_")


@dataclass(frozen=True)
class ModuleOption:
    module: str
    param: str
    value: str | None   # None: a bare name (a bool parameter set to true)
    where: str          # "/etc/modprobe.d/x.conf" or "kernel command line"


def conf_files(fs: RootFS, overlay: dict[str, str | None] | None = None) -> list[str]:
    """Root-relative paths of the modprobe.d files kmod reads, in its order. `overlay` maps
    root-relative paths to the content they are about to get (None: about to be removed)."""
    overlay = overlay or {}
    chosen: dict[str, str] = {}
    for d in DIRS:
        names = set(fs.listdir(d)) | {r.rsplit("/", 1)[1] for r, text in overlay.items()
                                      if text is not None and r.rsplit("/", 1)[0] == d}
        names -= {r.rsplit("/", 1)[1] for r, text in overlay.items()
                  if text is None and r.rsplit("/", 1)[0] == d}
        for name in sorted(names):
            if name in chosen or name.startswith(".") or len(name) < 6 \
                    or not name.endswith(".conf") \
                    or (f"{d}/{name}" not in overlay and fs.isdir(f"{d}/{name}")):
                continue
            chosen[name] = f"{d}/{name}"
    return [chosen[n] for n in sorted(chosen, key=os.fsencode)]


def stamp(fs: RootFS) -> tuple:
    """Changes whenever a file kmod would read (or a directory it lists) changes."""
    out = []
    for rel in DIRS + tuple(conf_files(fs)):
        try:
            st = os.stat(fs.path(rel))
        except OSError:
            out.append(None)
            continue
        out.append((rel, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _logical_lines(text: str):
    # getline_wrapped: "\\\n" joins two lines with nothing between them; a backslash before
    # any other character is dropped and the character kept.
    out, i, n = [], 0, len(text)
    line: list[str] = []
    while i < n:
        c = text[i]
        if c == "\n":
            out.append("".join(line))
            line = []
        elif c == "\\" and i + 1 < n:
            i += 1
            if text[i] != "\n":
                line.append(text[i])
        elif c != "\\":
            line.append(c)
        i += 1
    if line:
        out.append("".join(line))
    return out


def _param_words(rest: str) -> list[str]:
    """The kernel's next_arg(): whitespace-separated, double quotes group (and are dropped)."""
    return [w.replace('"', "") for w in re.findall(r'(?:[^\s"]+|"[^"]*")+', rest)]


def _options_of(module: str, rest: str, where: str) -> list[ModuleOption]:
    out = []
    for word in _param_words(rest):
        name, eq, value = word.partition("=")
        if name:
            out.append(ModuleOption(norm(module), norm(name), value if eq else None, where))
    return out


def parse_conf(text: str, where: str) -> list[ModuleOption]:
    """The `options` of one modprobe.d file, in order."""
    out = []
    for line in _logical_lines(text):
        if not line or line[0] == "#":
            continue
        words = line.split(None, 2)
        if len(words) == 3 and words[0] == "options":
            out += _options_of(words[1], words[2], where)
    return out


def modprobe_options(fs: RootFS, overlay: dict[str, str | None] | None = None
                     ) -> list[ModuleOption]:
    """Every option of every modprobe.d file kmod reads, in kmod's order (see conf_files for
    `overlay`)."""
    overlay = overlay or {}
    out = []
    for rel in conf_files(fs, overlay):
        if rel in overlay:
            out += parse_conf(overlay[rel] or "", "/" + rel)
            continue
        raw = fs.read_bytes(rel, _MAX_CONF_BYTES)
        if raw is not None:
            out += parse_conf(raw.decode("utf-8", "replace"), "/" + rel)
    return out


def cmdline_options(fs: RootFS) -> list[ModuleOption]:
    out = []
    for key, value in parse.parse_cmdline(fs.read_text("proc/cmdline")).items():
        module, dot, param = key.partition(".")
        if dot and module and param:
            out.append(ModuleOption(norm(module), norm(param), value, CMDLINE))
    return out


def builtin_modules(fs: RootFS, release: str | None) -> set[str]:
    """Modules built into the running kernel (lib/modules/RELEASE/modules.builtin)."""
    text = fs.read_bytes(f"lib/modules/{release}/modules.builtin", _MAX_CONF_BYTES) \
        if release else None
    names = set()
    for line in (text or b"").decode("utf-8", "replace").splitlines():
        base = line.strip().rsplit("/", 1)[-1]
        if base.endswith(".ko"):
            names.add(norm(base[:-3]))
    return names


def boot_options(fs: RootFS, builtin: set[str] = frozenset(),
                 overlay: dict[str, str | None] | None = None) -> list[ModuleOption]:
    """What the next load of each module is given, in order (the last of a name wins):
    modprobe.d (not for built-in modules), then the command line."""
    files = [o for o in modprobe_options(fs, overlay) if o.module not in builtin]
    return files + cmdline_options(fs)


def configured(fs: RootFS, module: str, param: str) -> list[ModuleOption]:
    """Every place that sets module.param for the next load (command line last: it wins)."""
    m, p = norm(module), norm(param)
    return [o for o in modprobe_options(fs) + cmdline_options(fs) if o.module == m and o.param == p]


def initramfs_image(fs: RootFS, release: str | None) -> str | None:
    """The running kernel's initramfs (root-relative), where the common layouts put it:
    initramfs-tools /boot/initrd.img-RELEASE, dracut /boot/initramfs-RELEASE.img."""
    for rel in ((f"boot/initrd.img-{release}", f"boot/initramfs-{release}.img")
                if release else ()):
        if fs.exists(rel):
            return rel
    return None


def settings(options: list[ModuleOption], module: str, param: str) -> list[ModuleOption]:
    """The options in `options` that set module.param, in order: the last one wins."""
    m, p = norm(module), norm(param)
    return [o for o in options if o.module == m and o.param == p]
