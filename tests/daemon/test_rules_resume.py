"""Resume and GPU reset on the real daemon: the active profile is applied again. The
simulator's clock offset (.halotune-sim/suspended_s) models a suspend; its uevent feed
(.halotune-sim/uevents) a drm change."""

from __future__ import annotations

import os
import time

from halotune.machine.eventsources import send_sim_uevent
from halotune.machine.rootfs import RootFS

from .conftest import read, wait_for

# drift checks far apart: only the resume rule can put the value back in time
CONFIG = '[daemon]\ndefault_profile = "llm-max"\n\n[rules.drift]\ninterval_s = 3600\n'
SWAPPINESS = "proc/sys/vm/swappiness"


def test_resume_and_gpu_reset_reapply(start_daemon, sim_root):
    d = start_daemon(CONFIG)
    RootFS(sim_root).write_text(SWAPPINESS, "60")        # the firmware/kernel reset it
    time.sleep(0.6)
    assert read(sim_root, SWAPPINESS) == "60"
    with open(os.path.join(sim_root, ".halotune-sim", "suspended_s"), "w") as f:
        f.write("120\n")                                 # 2 minutes asleep
    wait_for(lambda: read(sim_root, SWAPPINESS) == "10", 5, what="re-applied after resume")
    ev = d.wait_event(lambda e: e["kind"] == "rule" and "resume after" in e["message"])
    assert "120 s" in ev["message"]

    # GPU reset: a drm change uevent (not a hotplug)
    dev = "/devices/pci0000:00/0000:00:08.1/0000:c3:00.0/drm/card1"
    RootFS(sim_root).write_text(SWAPPINESS, "60")
    send_sim_uevent(sim_root, "drm", "change", dev, HOTPLUG="1")     # a monitor, not a reset
    time.sleep(1.0)
    assert read(sim_root, SWAPPINESS) == "60"
    send_sim_uevent(sim_root, "drm", "change", dev, LEASE="1")        # a lease, not a reset
    time.sleep(1.0)
    assert read(sim_root, SWAPPINESS) == "60"
    # drm_dev_wedged_event() after a recovered reset (drm_drv.c, 6.14+)
    send_sim_uevent(sim_root, "drm", "change", dev, WEDGED="none")
    wait_for(lambda: read(sim_root, SWAPPINESS) == "10", 5, what="re-applied after the reset")
    ev = d.wait_event(lambda e: e["kind"] == "rule" and "GPU reset" in e["message"])
    assert "card1" in ev["message"]
