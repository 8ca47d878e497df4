"""The simulated kernel's write path: one attribute write, answered like the real driver.

RootFS.write_text reaches this through the writer the CLI (or a test) wires with
`halotune.sim.wire()` whenever the root holds `.halotune-sim/`. Each attempt, accepted or
not, is appended to `.halotune-sim/writes.log`. Paths under `etc/` are plain configuration
files, answered by etc.py.

An accepted write changes the state, the files and the log in one `store.commit`, so a writer
killed mid-write leaves the machine as if the write() had completed or never started, as a
real store() does.
"""

from __future__ import annotations

import errno
import os
import re

from halotune.sim import etc, store
from halotune.sim.rules import amdgpu, cpufreq, platform_profile, system

# errno.errorcode names 95 ENOTSUP; the kernel code (and the spec) say EOPNOTSUPP.
_ERRNO_NAMES = {**errno.errorcode, errno.EOPNOTSUPP: "EOPNOTSUPP"}

_RULES = tuple((re.compile(pattern), rule)
               for module in (amdgpu, cpufreq, platform_profile, system) for pattern, rule in module.RULES)


class SimKernel:
    """Driver rules for the simulated tree under `root`."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self._real_root = os.path.realpath(self.root)

    def write(self, rel: str, value: str) -> None:
        """Write `value` to the attribute at root-relative `rel` (symlinks followed).

        Raises OSError(errno, strerror, path) where the kernel fails the write: ENOENT for a
        missing file, EISDIR for a directory, EACCES for a read-only attribute, and the
        driver's own errno (EINVAL, EBUSY, EOPNOTSUPP) for a refused value. Under `etc/`, an
        `etc/modprobe.d/*.conf` file is created or replaced; anything else is EACCES.
        """
        path = os.path.join(self.root, rel.lstrip("/"))
        with store.locked(self.root):
            resolved = self._resolve(path)
            where = resolved or rel.lstrip("/")
            try:
                if resolved is None:  # the path leaves the simulated root
                    raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
                state = self._apply(resolved, value)
            except OSError as e:
                store.log_write(self.root, where, value,
                                _ERRNO_NAMES.get(e.errno or 0, str(e.errno)))
                raise OSError(e.errno, os.strerror(e.errno or 0), path) from None
            except BaseException:
                store.log_write(self.root, where, value, "error")  # a simulator bug
                raise
            if state is None:          # a configuration file: already in place
                store.log_write(self.root, where, value, "ok")
            else:
                store.commit(self.root, state, [store.write_entry(where, value, "ok")])

    def _resolve(self, path: str) -> str | None:
        """Root-relative real path: which attribute the write lands on (None: outside)."""
        real = os.path.realpath(path)
        if real.startswith(self._real_root + "/"):
            return os.path.relpath(real, self._real_root)
        return None

    def _apply(self, resolved: str, value: str) -> dict | None:
        """The new state after the write (None for a configuration file under etc/)."""
        if etc.owns(resolved):  # configuration files, not kernel attributes
            etc.write(self._real_root, resolved, value)
            return None
        full = os.path.join(self._real_root, resolved)
        if not os.path.lexists(full):
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        for pattern, rule in _RULES:
            match = pattern.fullmatch(resolved)
            if match:
                break
        else:
            if os.path.isdir(full):
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
            # No store method: kernfs refuses to open the attribute for writing, even for root.
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        # A rule's attribute shown as a directory is one whose reads fail (store.put_unreadable,
        # an inactive cpufreq policy): its store function still answers (-EBUSY there).
        state = store.load_state(self.root)
        rule(state, value, match)
        return state
