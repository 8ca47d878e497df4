"""A short read-only memory-bandwidth test (numpy), for the roofline where no peak is known.

Token generation streams the weights once per token and writes next to nothing, so the figure
to compare it with is a read stream, not a copy (a copy counts read + write and reads ~2x the
stream rate a tg workload can use). An integer reduction (uint64 max) is used because a
float32 sum is compute-bound (~10 GB/s here against a 17.5 GB/s read stream: notes 3.1).
One thread per slice; numpy releases the GIL in reductions. The array is 8x a large L3 so the
figure is DRAM, not cache. About one second in all.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

DEFAULT_BYTES = 256 << 20
DEFAULT_SECONDS = 1.0


def read_bandwidth(threads: int = 1, nbytes: int = DEFAULT_BYTES,
                   seconds: float = DEFAULT_SECONDS) -> float:
    """Best read rate seen in bytes/s over repeated full passes within `seconds`."""
    import numpy as np

    threads = max(1, int(threads))
    n = nbytes // 8
    a = np.ones(n, dtype=np.uint64)       # written once: the pages exist before timing
    step = -(-n // threads)
    slices = [a[i:i + step] for i in range(0, n, step)]
    best = 0.0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(np.max, slices))    # warm: fault-in and TLB
        deadline = time.perf_counter() + seconds
        passes = 0
        while passes < 2 or time.perf_counter() < deadline:
            t0 = time.perf_counter()
            list(pool.map(np.max, slices))
            dt = time.perf_counter() - t0
            best = max(best, a.nbytes / dt)
            passes += 1
            if passes >= 50:
                break
    del slices, a
    return best
