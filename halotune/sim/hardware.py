"""Fixed facts of the simulated machine: a Framework Desktop, Ryzen AI Max+ 395, 128 GB.

Sources: ../../tests/fixtures/strix-halo/README.md (provenance of every reference value) and
/work/shared/reference/strix-halo-interfaces.md (the "spec"). Values the reference does not
give are marked CHOSEN here and listed in README.md next to this file.
"""

from __future__ import annotations

# --- GPU clocks (MHz) ------------------------------------------------------------------------
SCLK_MIN, SCLK_MAX = 600, 2900            # OD_RANGE; spec §1.5 (min from Strix Point)
SCLK_UMD_PSTATE = 700                     # SMU_14_0_0_UMD_PSTATE_GFXCLK (spec §1.4)
FCLK_LEVELS = (400, 1050, 1200, 1400, 1500, 1600, 1800, 1960)   # Strix Point table (spec §1.5)
FCLK_UMD_PSTATE = 1800                    # SMU_14_0_0_UMD_PSTATE_FCLK
SOCCLK_LEVELS = (600, 736, 883, 981, 1104, 1261, 1261, 1472)
SOCCLK_UMD_PSTATE = 678                   # SMU_14_0_0_UMD_PSTATE_SOCCLK (not a table level)
MCLK_LEVELS = (400, 800, 1000)
UCLK_MHZ = 1000                           # LPDDR5X-8000
VPECLK_MHZ = 600

# power_dpm_force_performance_level: the words amdgpu_set_power_dpm_force_performance_level
# compares, in its order (strncmp on the word's length, so "lowest" means "low").
PERF_LEVEL_WORDS = ("low", "high", "auto", "manual", "profile_exit", "profile_standard",
                    "profile_min_sclk", "profile_min_mclk", "profile_peak", "perf_determinism")
PROFILE_LEVELS = ("profile_standard", "profile_min_sclk", "profile_min_mclk", "profile_peak")

# --- CPU -------------------------------------------------------------------------------------
CORES = 16
CPUS = 32
# Logical CPU n runs on core n % 16: cpu0-15 are the first SMT threads and cpu16-31 their
# siblings, the order Linux enumerates Zen APUs in (thread_siblings_list "0,16").
CPUINFO_MIN_KHZ = 625_000                 # UNCONFIRMED (inxi 625/5188 MHz, spec §6)
CPUINFO_MAX_KHZ = 5_188_000
NOMINAL_KHZ = 3_000_000                   # 395 base clock; cpuinfo_max_freq with boost off
CORE_MAX_MHZ = 5100                       # gpu_metrics current_core_maxfreq
CORE_BASE_MHZ = 3000
EPP_CHOICES = ("default", "performance", "balance_performance", "balance_power", "power")
EPP_DEFAULT = "balance_performance"       # amd-pstate epp_default on a non-server FADT profile
ACTIVE_GOVERNORS = ("performance", "powersave")
# Target (passive/guided) drivers list every registered governor; CHOSEN: an Ubuntu kernel's.
PASSIVE_GOVERNORS = ("conservative", "ondemand", "userspace", "powersave", "performance",
                     "schedutil")
PASSIVE_DEFAULT_GOVERNOR = "schedutil"

# --- platform profile (drivers/acpi/platform_profile.c profile_names) ------------------------
# Linux 6.11-6.13 know the first six names; 6.14 adds "custom" (what the legacy file shows when
# handlers disagree). "max-power" comes after 6.18 (patch of Nov 2025), outside the modelled range.
PROFILE_NAMES = ("low-power", "cool", "quiet", "balanced", "balanced-performance",
                 "performance", "custom")
PROFILE_CHOICES = ("low-power", "balanced", "performance")   # amd-pmf sps.c
# amd-pmf sends BIOS slider limits to the SMU on every profile write (spec §5.1). The watts are
# UNCONFIRMED; CHOSEN (stapm, fast, slow) mW around Framework's 120 W sustained / 140 W boost.
PROFILE_LIMITS_MW = {
    "performance": (120_000, 140_000, 120_000),
    "balanced": (100_000, 120_000, 100_000),
    "low-power": (60_000, 70_000, 60_000),
}
# Platform-profile handlers the simulator can register, in the order of the tuple given to
# lay_out (the order sets platform-profile-N). choices: the driver's probe; hidden: its
# hidden_choices (6.14+); parent: the platform device the class device hangs under (CHOSEN
# device names); power_on: the profile right after boot (amd-pmf's is the reference
# snapshot's; asus-wmi's CHOSEN: its default thermal policy).
PROFILE_HANDLERS = {
    # drivers/platform/x86/amd/pmf/sps.c amd_pmf_profile_probe / amd_pmf_hidden_choices
    "amd-pmf": {"choices": PROFILE_CHOICES, "hidden": ("quiet", "balanced-performance"),
                "parent": "sys/devices/platform/AMDI0105:00", "power_on": "performance"},
    # drivers/platform/x86/asus-wmi.c asus_wmi_platform_profile_probe (throttle_thermal_policy)
    "asus-wmi": {"choices": ("quiet", "balanced", "performance"), "hidden": (),
                 "parent": "sys/devices/platform/asus-nb-wmi", "power_on": "balanced"},
}
DEFAULT_PROFILE_HANDLERS = ("amd-pmf",)

# --- memory management -----------------------------------------------------------------------
THP_ENABLED_CHOICES = ("always", "madvise", "never")
THP_DEFRAG_CHOICES = ("always", "defer", "defer+madvise", "madvise", "never")
SWAPPINESS_MAX = 200
COMPACTION_PROACTIVENESS_MAX = 100
# kernel.numa_balancing: proc_dointvec_minmax with extra2 SYSCTL_FOUR (kernel/sched/core.c), so
# 0..4 are accepted although only bits 0 (normal) and 1 (memory tiering) mean anything.
NUMA_BALANCING_MAX = 4

# --- memory sizes ----------------------------------------------------------------------------
MEMTOTAL_KB = 131_752_264                 # REAL-derived (reference README)
GTT_TOTAL_BYTES = 118_111_600_640         # ttm.pages_limit 28835840 x 4096
PAGE_BYTES = 4096
# ttm_global_init: with no pages_limit/page_pool_size given, half of totalram in pages.
TTM_DEFAULT_PAGES = MEMTOTAL_KB * 1024 // PAGE_BYTES // 2
