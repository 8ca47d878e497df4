"""Plain configuration files under the simulated root's `etc/`.

`etc/modprobe.d/*.conf` is not a kernel attribute but an ordinary file that the next boot reads
(see bootconf.py), so a write through RootFS.write_text creates or replaces it. Every other
path under `etc/` is refused with EACCES: the simulator offers a tuning engine only the
configuration it is meant to touch, never files such as `etc/passwd`. Removing a file needs no
hook (os.unlink works on the tree as it does on a real /etc).
"""

from __future__ import annotations

import errno
import os
import re

from halotune.sim import paths

# kmod reads only *.conf and skips hidden files (libkmod-config.c conf_files_filter_out).
_MODPROBE_CONF = re.compile(rf"{re.escape(paths.MODPROBE_D)}/[^/.][^/]*\.conf")


def owns(resolved: str) -> bool:
    """True for a root-relative real path this module answers (anything under etc/)."""
    return resolved == "etc" or resolved.startswith("etc/")


def write(root: str, resolved: str, value: str) -> None:
    """Create or replace a modprobe.d file with `value`, a newline added like `echo` (as the
    host path of RootFS.write_text does); OSError(EACCES) for any other etc/ path.

    The caller holds the simulator lock, which reboot.py also takes, so a boot never reads
    half a file.
    """
    full = os.path.join(root, resolved)
    if os.path.isdir(full):
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
    if not _MODPROBE_CONF.fullmatch(resolved):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))
    data = value if value.endswith("\n") else value + "\n"
    fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
