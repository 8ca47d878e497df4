"""The external programs halotune runs (ryzenadj, llama-bench), resolved and run safely.

Resolution order: a configured path, then ROOT/usr/local/bin, then ROOT/usr/bin, and on the
root "/" the system directories (as root) or PATH (as another user). When halotune runs as root,
whatever the root, a program must be owned by root and not writable by group or others (nor its
directory, nor those of a symlink's target), and PATH is not consulted, so an environment
variable or a tree someone else owns can never make root execute a file they planted. Commands
are fixed argument vectors, never a shell.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from halotune.machine.rootfs import RootFS

# Searched instead of PATH when running as root: root's PATH can be inherited from a user
# (sudo without secure_path, a unit's Environment=), the system directories cannot.
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class ProgramError(Exception):
    """A program could not be run; the message says why and what to do."""


class ProgramNotFound(ProgramError):
    pass


class ProgramRefused(ProgramError):
    pass


@dataclass
class ProgramResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _untrusted_reason(path: str) -> str | None:
    real = os.path.realpath(path)   # a root-owned symlink to a user's file is the user's file
    for p in dict.fromkeys((path, os.path.dirname(path), real, os.path.dirname(real))):
        st = os.stat(p)
        if st.st_uid != 0:
            return f"{p} is owned by uid {st.st_uid}, not root"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"{p} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


class Programs:
    def __init__(self, fs: RootFS, configured: dict[str, str] | None = None):
        self.fs = fs
        self.configured = dict(configured or {})

    def candidates(self, name: str) -> list[str]:
        out = []
        if name in self.configured:
            out.append(self.configured[name])
        out += [self.fs.path(f"usr/local/bin/{name}"), self.fs.path(f"usr/bin/{name}")]
        if self.fs.is_host:
            if os.geteuid() == 0:
                out += [os.path.join(d, name) for d in SYSTEM_DIRS]
            else:
                import shutil  # off the status path: only a non-root user's PATH look-up

                found = shutil.which(name)
                if found:
                    out.append(found)
        return list(dict.fromkeys(out))

    def resolve(self, name: str) -> str:
        for path in self.candidates(name):
            if os.path.isfile(path) and os.access(path, os.X_OK):
                # Every candidate, the configured one and the host's too: root must never
                # run a file another user can replace.
                if os.geteuid() == 0:
                    reason = _untrusted_reason(path)
                    if reason:
                        under = "" if self.fs.is_host else f" under root {self.fs.root}"
                        raise ProgramRefused(f"refusing to run {path} as root{under}: {reason} "
                                             "(as root halotune runs only programs owned by root "
                                             "and writable by root alone)")
                return path
        where = ", ".join(self.candidates(name)) or "(nowhere)"
        raise ProgramNotFound(f"{name} not found (looked in {where})")

    def run(self, name: str, args: list[str], timeout: float = 15.0) -> ProgramResult:
        import subprocess  # off the import path of commands that never run a program

        argv = [self.resolve(name), *args]
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise ProgramError(f"{name} did not finish within {timeout:g} s") from None
        except OSError as e:
            raise ProgramError(f"{name}: {e.strerror}") from None
        return ProgramResult(argv, cp.returncode, cp.stdout, cp.stderr)
