"""Wait, bounded, until the machine stands still after a profile change.

After an apply the SMU moves to its new limits over a second or two and the temperatures drift
toward a new level; a probe started at once would measure the transition. Settled means: over
the last `window` samples every temperature (GPU edge and SoC, the hottest CPU core) moved by at
most `temp_tol_c`, and the clock limits in force (gpu_metrics current_gfx_maxfreq, the OD soft
maximum, the cores' maximum) did not change. Current clocks are not compared: at idle they
follow DPM from one millisecond to the next and never stand still.

Bounded: after `max_s` the probe runs anyway and the result says what was still moving.
Snapshots come from halotune.telemetry.sampler.Sampler (TDP limits not read: no ryzenadj
process per sample).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

TEMPS = (("gpu_edge_c", "GPU edge temperature"), ("gpu_soc_c", "SoC temperature"),
         ("cpu_c", "hottest CPU core temperature"))
LIMITS = (("gfx_maxfreq_mhz", "GFX clock limit in force"),
          ("sclk_limit_mhz", "GFX clock soft maximum"),
          ("core_maxfreq_mhz", "CPU core clock limit"))


@dataclass
class SettleConfig:
    max_s: float = 30.0          # give up waiting after this long
    interval_s: float = 1.0      # between samples
    window: int = 5              # samples that must agree
    temp_tol_c: float = 1.0      # largest temperature movement within the window
    min_s: float = 3.0           # wait at least this long (the SMU's own transition)

    @classmethod
    def for_machine(cls, fs, max_s: float | None = None) -> "SettleConfig":
        """Defaults for a real machine; short ones for the simulated machine, whose state
        only moves when something writes it."""
        cfg = cls(max_s=2.0, interval_s=0.05, window=3, min_s=0.0) \
            if fs.is_simulated else cls()
        if max_s is not None:
            cfg.max_s = max_s
            cfg.min_s = min(cfg.min_s, max_s)
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SettleResult:
    settled: bool
    waited_s: float
    samples: int
    reason: str
    last: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"settled": self.settled, "waited_s": round(self.waited_s, 3),
                "samples": self.samples, "reason": self.reason, "last": self.last}


def readings(snap) -> dict:
    """The values compared, from one Snapshot (None where the machine does not report one)."""
    g = snap.primary_gpu
    return {"gpu_edge_c": g.edge_temp_c if g else None,
            "gpu_soc_c": g.soc_temp_c if g else None,
            "cpu_c": snap.cpu.temp_c,
            "gfx_maxfreq_mhz": g.gfx_maxfreq_mhz if g else None,
            "sclk_limit_mhz": g.sclk_limit_mhz if g else None,
            "core_maxfreq_mhz": snap.cpu.core_maxfreq_mhz}


def moving(window: list[dict], temp_tol_c: float) -> list[str]:
    """What still moves within `window` (empty: settled)."""
    out = []
    for key, label in TEMPS:
        vals = [w[key] for w in window if w.get(key) is not None]
        if vals and max(vals) - min(vals) > temp_tol_c:
            out.append(f"{label} {min(vals):.1f}-{max(vals):.1f} C")
    for key, label in LIMITS:
        vals = {w.get(key) for w in window}
        if len(vals) > 1:
            shown = ", ".join("-" if v is None else f"{v:g}" for v in sorted(
                vals, key=lambda v: (v is None, v or 0)))
            out.append(f"{label} changed ({shown} MHz)")
    return out


def settle(fs, config: SettleConfig | None = None, *, sample=None, clock=time.monotonic,
           sleep=time.sleep) -> SettleResult:
    """Sample until settled or config.max_s has passed. `sample()` -> Snapshot may be given
    (tests); by default a Sampler on `fs` is used."""
    cfg = config or SettleConfig.for_machine(fs)
    if cfg.max_s <= 0:
        return SettleResult(False, 0.0, 0, "not waited (settle time 0)")
    sampler = None
    if sample is None:
        from halotune.telemetry.sampler import Sampler

        sampler = Sampler(fs, read_tdp=False)
        sample = sampler.sample
    start = clock()
    seen: list[dict] = []
    try:
        while True:
            try:
                seen.append(readings(sample()))
            except OSError as e:
                # A reading that fails is not stability: say so and let the probe run.
                return SettleResult(False, clock() - start, len(seen),
                                    f"telemetry failed ({e}); not waiting",
                                    seen[-1] if seen else {})
            now = clock() - start
            window = seen[-cfg.window:]
            still = moving(window, cfg.temp_tol_c)
            if len(window) >= cfg.window and not still and now >= cfg.min_s:
                return SettleResult(True, now, len(seen), "stable", window[-1])
            if now + cfg.interval_s > cfg.max_s:
                what = "; ".join(still) if still else (
                    f"only {len(window)} of {cfg.window} samples" if len(window) < cfg.window
                    else "minimum wait not reached")
                return SettleResult(False, now, len(seen),
                                    f"not settled after {cfg.max_s:g} s: {what}", window[-1])
            sleep(cfg.interval_s)
    finally:
        if sampler is not None:
            sampler.close()
