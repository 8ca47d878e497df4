"""Facts about the host system itself (never rooted): is systemd shutting it down?"""

from __future__ import annotations

import os


def system_stopping() -> bool:
    """True while systemd shuts the system down (`systemctl is-system-running` = stopping):
    the firmware resets runtime values at power-off anyway, so a rollback would only slow it."""
    if not os.path.isdir("/run/systemd/system"):    # not booted with systemd
        return False
    import subprocess

    try:
        state = subprocess.run(["systemctl", "is-system-running"], capture_output=True,
                               text=True, timeout=2, stdin=subprocess.DEVNULL).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False
    return state == "stopping"
