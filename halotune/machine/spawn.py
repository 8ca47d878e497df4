"""Host programs halotune starts besides ryzenadj and llama-bench: systemctl and friends for
`service install`, a Python interpreter probe, and the detached confirm-or-revert helper.

Same rules as programs.py: fixed argument vectors, never a shell, stdin closed. These are
host-level actions (systemd, this interpreter), so they are not resolved under a root.
"""

from __future__ import annotations

import shutil
import subprocess

from halotune.machine.programs import ProgramError, ProgramNotFound, ProgramResult


def run_host(argv: list[str], timeout: float, cwd: str | None = None,
             env: dict[str, str] | None = None, search_path: bool = True) -> ProgramResult:
    """Run argv (argv[0] looked up on PATH when search_path) and capture its output."""
    exe = shutil.which(argv[0]) if search_path else argv[0]
    if exe is None:
        raise ProgramNotFound(f"{argv[0]} not found")
    try:
        cp = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout,
                            cwd=cwd, env=env, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise ProgramError(f"{argv[0]} did not finish within {timeout:g} s") from None
    except OSError as e:
        raise ProgramError(f"{argv[0]}: {e.strerror}") from None
    return ProgramResult([exe, *argv[1:]], cp.returncode, cp.stdout, cp.stderr)


def spawn_detached(argv: list[str]) -> None:
    """Start argv in its own session (a closing SSH session's SIGHUP does not reach it), with
    no terminal and no inherited descriptors; do not wait for it."""
    subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
