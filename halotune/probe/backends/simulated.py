"""The `simulated` probe backend: pp/tg of a model on the simulated Strix Halo, from its state.

CPU llama.cpp speed does not follow a simulated TDP, so validate, sweep and the regression
alarm are exercised with this backend. It reads the machine through the Sampler like any
consumer (TDP limits through the ryzenadj stand-in, clock limits, memory clock) and derives:

- the GFX clock the power limit allows: socket power = GFX (0.5 W + 74.64 W x (sclk/2900)^2 at
  full activity) + the rest of the SoC (OTHER_W); the coefficients mirror the simulator's
  physics (halotune/sim/physics.py, CHOSEN there), capped by the clock limits in force;
- tg: the bandwidth bound (peak from the memory clock x BW_EFFICIENCY, over bytes_per_token at
  the depth) combined with a compute bound proportional to sclk by a 4-norm, so it rises with
  the TDP and levels off at the bandwidth roofline (the community's 55 -> 85 W +9 %,
  85 -> 120 W +2 % shape);
- pp: compute-bound, 2 FLOP per parameter per token at PP_EFFICIENCY of the peak FLOP/s at
  that clock;
- power: the modelled socket power of that operating point (simulated, like the machine).

Deterministic: noise of NOISE_PERCENT (Gaussian) from a fixed seed, so the runner's stopping
rules are exercised the same way every time. Always labelled backend "simulated".
"""

from __future__ import annotations

import math
import random
import time

from halotune.probe.backends.base import Backend, BackendInfo, BackendUnavailable, Rep, TestCase

SCLK_MAX_MHZ = 2900
GFX_IDLE_W, GFX_FULL_W = 0.5, 74.64     # sim/physics.py _Point.gfx_mw at full activity
OTHER_W = 15.0                          # cores + SoC/fabric/DRAM under an LLM load (CHOSEN)
BW_EFFICIENCY = 0.85                    # measured GPU 212-234 of 256 GB/s (interfaces §7)
TG_COMPUTE_HEADROOM = 1.6               # compute bound / bandwidth bound at full clock (CHOSEN)
PEAK_FLOPS_AT_MAX = 59.4e12             # 40 CU x 2900 MHz x 512 FLOP/clk (FP16, dual issue)
PP_EFFICIENCY = 0.30                    # CHOSEN
DEFAULT_LIMIT_W = 120.0
NOISE_PERCENT = 1.0


class SimulatedBackend(Backend):
    name = "simulated"
    simulated = True

    def __init__(self, fs, programs=None, seed: int = 0, noise_percent: float = NOISE_PERCENT,
                 time_scale: float = 0.0, model_info=None):
        """time_scale > 0 sleeps that fraction of each modelled repetition (for demos)."""
        if fs.is_host:
            raise BackendUnavailable("the simulated backend needs a simulated machine: "
                                     "`halotune sim DIR`, then --root DIR")
        self.fs = fs
        self.programs = programs
        self.rng = random.Random(seed)
        self.noise = noise_percent / 100.0
        self.time_scale = time_scale
        self.model_info = model_info
        self.last_point: dict | None = None
        self._points: dict[int, dict] = {}

    def info(self) -> BackendInfo:
        return BackendInfo("simulated", build=None, device="simulated Strix Halo",
                           cpu_backend=False, threads=None,
                           threads_reason="modelled, no threads run", path=self.fs.root)

    def load(self, model_path: str, n_ctx: int) -> float:
        self._points.clear()            # the machine may have changed since the last probe
        if self.model_info is None:
            from halotune.probe.gguf_info import read_gguf

            self.model_info = read_gguf(model_path)
        return 0.0

    # --- the model ---------------------------------------------------------------------
    def operating_point(self, depth: int = 0) -> dict:
        """Clocks, limits and rates the machine allows now (read fresh: the TDP may change
        between probes of a sweep)."""
        from halotune.probe.gguf_info import bytes_per_token
        from halotune.probe.roofline import peak_bandwidth
        from halotune.telemetry.sampler import Sampler

        sampler = Sampler(self.fs, programs=self.programs)
        try:
            snap = sampler.sample()
        finally:
            sampler.close()
        g = snap.primary_gpu
        if g is None:
            raise BackendUnavailable(f"no AMD GPU under {self.fs.root}: the simulated backend "
                                     "models the simulated machine's GPU")
        p = snap.power
        limits = [v for v in (p.stapm_limit_w, p.fast_limit_w, p.slow_limit_w,
                              p.apu_slow_limit_w) if v]
        limit_w = min(limits) if limits else (g.power_cap_w or DEFAULT_LIMIT_W)
        caps = [v for v in (g.sclk_limit_mhz, g.gfx_maxfreq_mhz) if v]
        sclk_cap = min([SCLK_MAX_MHZ, *caps])
        gfx_w = max(limit_w - OTHER_W, GFX_IDLE_W)
        sclk_power = SCLK_MAX_MHZ * math.sqrt(max(gfx_w - GFX_IDLE_W, 0.0) / GFX_FULL_W)
        sclk = max(min(sclk_cap, sclk_power), 1.0)
        peak, source = peak_bandwidth(snap, measure=False)
        peak = peak or 256e9
        bpt = max(bytes_per_token(self.model_info, depth), 1)
        tg_bw = peak * BW_EFFICIENCY / bpt
        tg_max_compute = TG_COMPUTE_HEADROOM * tg_bw * (sclk / SCLK_MAX_MHZ)
        tg = (tg_bw ** -4 + tg_max_compute ** -4) ** -0.25
        n_params = max(self.model_info.n_params, 1)
        pp = PP_EFFICIENCY * PEAK_FLOPS_AT_MAX * (sclk / SCLK_MAX_MHZ) / (2.0 * n_params)
        power_w = min(OTHER_W + GFX_IDLE_W + GFX_FULL_W * (sclk / SCLK_MAX_MHZ) ** 2, limit_w)
        self.last_point = {"limit_w": limit_w, "sclk_mhz": round(sclk), "pp_tps": pp,
                           "tg_tps": tg, "tg_bandwidth_bound_tps": tg_bw, "power_w": power_w,
                           "peak_bytes_per_s": peak, "peak_source": source}
        return self.last_point

    def measure(self, test: TestCase, reps: int, warmup: bool) -> list[Rep]:
        # One reading of the machine per load and depth: a probe runs at one setting.
        pt = self._points.get(test.n_depth)
        if pt is None:
            pt = self._points[test.n_depth] = self.operating_point(test.n_depth)
        self.last_point = pt
        out = []
        for _ in range(reps):
            if test.n_prompt and test.n_gen:
                secs = test.n_prompt / pt["pp_tps"] + test.n_gen / pt["tg_tps"]
                rate = test.tokens / secs
            else:
                rate = pt["pp_tps"] if test.n_prompt else pt["tg_tps"]
            rate *= max(1.0 + self.rng.gauss(0.0, self.noise), 0.5)
            t0 = time.monotonic()
            if self.time_scale > 0:
                time.sleep(self.time_scale * test.tokens / rate)
            out.append(Rep(rate, t0, time.monotonic(), power_w=pt["power_w"]))
        return out
