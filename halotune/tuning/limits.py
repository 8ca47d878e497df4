"""Ranges a profile may request, defined once.

TDP: the Ryzen AI Max+ 395's configurable TDP range (cTDP 45-120 W, AMD product page). A
profile may raise the ceiling with power.max_w, naming its source in power.max_w_source (some
boards ship a 140 W fast limit; owners run up to 160 W), but never above TDP_HARD_CEILING_W.
What a rollback restores is whatever was read from the machine, even outside these ranges.
"""

TDP_MIN_W = 45.0
TDP_MAX_W = 120.0
TDP_HARD_CEILING_W = 200.0        # above this no Strix Halo board has been reported to run
TDP_VERIFY_TOLERANCE_W = 0.5      # ryzenadj -i readback vs request

GTT_MAX_FRACTION = 0.90           # amd-ttm warns above 90 % of MemTotal; refuse unless --force
GIB_PAGES = 262144                # 4 KiB pages per GiB

SWAPPINESS_RANGE = (0, 200)       # proc/sys/vm/swappiness (Linux >= 5.8 allows up to 200)
COMPACTION_PROACTIVENESS_RANGE = (0, 100)
NUMA_BALANCING_RANGE = (0, 3)     # 0 off, 1 NUMA, 2 memory tiering, 3 both (Linux >= 6.0)
