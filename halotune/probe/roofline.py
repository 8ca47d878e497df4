"""The bandwidth roofline of token generation.

tg efficiency = tg tokens/s x bytes read per token / peak memory bandwidth. Bytes per token come
from the one helper shared with the forecast and history (gguf_info.bytes_per_token).

The peak, most exact first:
- Strix Halo (gfx1151): 256-bit LPDDR5X. From the memory clock when it is known (UCLK x 8
  transfers per clock x 32 bytes: 1000 MHz -> LPDDR5X-8000 -> 256 GB/s; the interfaces
  reference §1.5), else the labelled default 256 GB/s;
- elsewhere: a short read-only stream measured here (bandwidth.py), labelled "measured";
- nothing (measure=False and no known part): None, with the reason as the source.
pp against a peak FLOP/s is reported only where a sourced figure exists: none is built in.
"""

from __future__ import annotations

STRIX_HALO_TARGETS = ("gfx1151",)
STRIX_HALO_BUS_BYTES = 32               # 256-bit
LPDDR5X_TRANSFERS_PER_UCLK = 8          # LPDDR5X-8000 <-> 1000 MHz UCLK
STRIX_HALO_DEFAULT_PEAK = 256_000_000_000
MIN_PLAUSIBLE_UCLK_MHZ = 800            # below this the memory clock is an idle DPM level


def peak_bandwidth(snapshot, measure: bool = True, threads: int | None = None,
                   mclk_mhz: float | None = None) -> tuple[int | None, str]:
    """(peak bytes/s or None, source). `mclk_mhz` is the highest memory clock seen under load
    (the snapshot's may be an idle level)."""
    g = snapshot.primary_gpu if snapshot is not None else None
    if g is not None and g.gfx_target in STRIX_HALO_TARGETS:
        uclk = mclk_mhz if mclk_mhz is not None else g.mclk_mhz
        if uclk is not None and uclk >= MIN_PLAUSIBLE_UCLK_MHZ:
            peak = int(uclk * 1e6 * LPDDR5X_TRANSFERS_PER_UCLK * STRIX_HALO_BUS_BYTES)
            return peak, (f"derived: memory clock {uclk:g} MHz x {LPDDR5X_TRANSFERS_PER_UCLK} "
                          f"transfers x 256 bit (LPDDR5X, {g.gfx_target})")
        return STRIX_HALO_DEFAULT_PEAK, ("default: LPDDR5X-8000 x 256 bit (Strix Halo; memory "
                                         "clock unknown)")
    if not measure:
        return None, "not measured"
    from halotune.probe.bandwidth import read_bandwidth

    t = max(1, int(threads or 1))
    try:
        bw = read_bandwidth(threads=t)
    except (ImportError, MemoryError) as e:
        return None, f"not measured: {e}"
    return int(bw), (f"measured: read-only stream (numpy uint64 max, {t} thread"
                     f"{'s' if t != 1 else ''}, 256 MiB)")


def tg_efficiency(tg_tokens_per_s: float | None, bytes_per_token: int | None,
                  peak_bytes_per_s: float | None) -> float | None:
    """Fraction of the peak bandwidth token generation achieves (None when a term is
    missing). Rounded to 4 digits."""
    if not tg_tokens_per_s or not bytes_per_token or not peak_bytes_per_s:
        return None
    return round(tg_tokens_per_s * bytes_per_token / peak_bytes_per_s, 4)
