"""Root-relative paths of the simulated Strix Halo, in one place.

The layout copies the reference snapshot (tests/fixtures/strix-halo): the real PCI device
directory, with the class directories as symlinks into it, exactly as sysfs builds them.
"""

from __future__ import annotations

from halotune.machine.rootfs import SIM_MARKER

# --- the simulator's own files (not part of the machine) ---------------------------------
STATE = f"{SIM_MARKER}/state.json"
WRITES_LOG = f"{SIM_MARKER}/writes.log"
LOCK = f"{SIM_MARKER}/lock"
PENDING = f"{SIM_MARKER}/pending.json"   # a change being made (store.commit)
RYZENADJ = "usr/local/bin/ryzenadj"

# --- amdgpu -------------------------------------------------------------------------------
PCI_SLOT = "0000:c3:00.0"
DEV = f"sys/devices/pci0000:00/0000:00:08.1/{PCI_SLOT}"
HWMON = f"{DEV}/hwmon/hwmon3"
CARD_LINK = "sys/class/drm/card1"
HWMON_LINK = "sys/class/hwmon/hwmon3"

# --- CPU ----------------------------------------------------------------------------------
CPU = "sys/devices/system/cpu"
CPUFREQ = f"{CPU}/cpufreq"
PSTATE_STATUS = f"{CPU}/amd_pstate/status"
BOOST = f"{CPUFREQ}/boost"
SMT_CONTROL = f"{CPU}/smt/control"
SMT_ACTIVE = f"{CPU}/smt/active"


def policy(n: int) -> str:
    """cpufreq policy directory of logical CPU n (amd-pstate: one policy per CPU)."""
    return f"{CPUFREQ}/policy{n}"


def cpu_online(n: int) -> str:
    """cpuN/online (drivers/base/core.c dev_attr_online; absent for cpu0 on x86 since 6.5)."""
    return f"{CPU}/cpu{n}/online"


# --- platform, memory management, module parameters ----------------------------------------
PLATFORM_PROFILE = "sys/firmware/acpi/platform_profile"
PLATFORM_PROFILE_CHOICES = "sys/firmware/acpi/platform_profile_choices"
PLATFORM_PROFILE_CLASS = "sys/class/platform-profile"   # Linux >= 6.14, one dir per handler


def platform_profile_device(parent: str, n: int) -> str:
    """Real directory of class device platform-profile-N under its driver's device."""
    return f"{parent}/platform-profile/platform-profile-{n}"
THP = "sys/kernel/mm/transparent_hugepage"
THP_ENABLED = f"{THP}/enabled"
THP_DEFRAG = f"{THP}/defrag"
SWAPPINESS = "proc/sys/vm/swappiness"
COMPACTION_PROACTIVENESS = "proc/sys/vm/compaction_proactiveness"
NUMA_BALANCING = "proc/sys/kernel/numa_balancing"
TTM_PARAMS = "sys/module/ttm/parameters"
GTTSIZE = "sys/module/amdgpu/parameters/gttsize"
AMDTTM = "sys/module/amdttm"   # present only with the ROCm DKMS driver (spec §4.2)


def module_params(module: str) -> str:
    return f"sys/module/{module}/parameters"


# --- boot: what the next boot reads, and what tells one boot from the next ---------------
MODPROBE_D = "etc/modprobe.d"
PROC_CMDLINE = "proc/cmdline"
BOOT_ID = "proc/sys/kernel/random/boot_id"

# --- procfs -------------------------------------------------------------------------------
PROC_STAT = "proc/stat"
PROC_MEMINFO = "proc/meminfo"
PROC_UPTIME = "proc/uptime"

# --- KFD (ROCm's view of the GPU) -----------------------------------------------------------
KFD = "sys/devices/virtual/kfd/kfd"
KFD_LINK = "sys/class/kfd/kfd"
