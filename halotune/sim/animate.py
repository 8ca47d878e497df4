"""Run the simulated machine in time: one physics tick per interval, files updated in place.

By default the load follows a repeating LLM-serving pattern so a demo has something to show:
a prompt-processing burst (GPU-bound), token generation (moderate GPU activity, DRAM traffic
near the counter's limit) and an idle gap. set_load() pins a fixed load instead.
"""

from __future__ import annotations

import logging
import threading

from halotune.sim import physics, scenarios, store

log = logging.getLogger(__name__)

# Token generation: memory-bound, the GPU waits on DRAM. CHOSEN.
DECODE = {"gpu": 0.62, "cpu": 0.97, "dram_mbps": 92_000}
# (phase, seconds, workload): one request of the LLM pattern.
LLM_PATTERN = (("prefill", 8.0, scenarios.PREFILL), ("decode", 22.0, DECODE),
               ("idle", 10.0, scenarios.IDLE))
LLM_PERIOD_S = sum(seconds for _, seconds, _ in LLM_PATTERN)


def llm_phase(t_s: float) -> tuple[str, dict]:
    """(phase name, workload) of the LLM pattern at pattern time t_s."""
    t = t_s % LLM_PERIOD_S
    for name, seconds, workload in LLM_PATTERN:
        if t < seconds:
            return name, workload
        t -= seconds
    return LLM_PATTERN[-1][0], LLM_PATTERN[-1][2]  # float edge at the period's end


class Animator:
    """Advances the tree under `root`; every step holds the simulator lock, so writes from
    other processes (SimKernel, the ryzenadj stand-in) interleave safely."""

    def __init__(self, root: str, interval: float = 0.5):
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.root = root
        self.interval = interval
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self, dt: float | None = None) -> dict:
        """One tick of dt simulated seconds (default: the interval). Returns the new state."""
        with store.locked(self.root):
            state = store.load_state(self.root)
            workload = state["workload"]
            if workload["pattern"] == "llm":
                t = state["t_s"] + workload.get("pattern_offset_s", 0.0)
                workload.update(llm_phase(t)[1])
            physics.tick(state, self.interval if dt is None else dt)
            store.commit(self.root, state)
        return state

    def run(self, stop_event: threading.Event) -> None:
        """Step every interval until stop_event is set. A failing step (the tree was removed,
        say) is logged and ends the loop instead of repeating every interval."""
        while not stop_event.is_set():
            try:
                self.step()
            except (OSError, ValueError):
                log.exception("simulated machine at %s: animation stopped", self.root)
                return
            stop_event.wait(self.interval)

    def start(self) -> threading.Thread:
        """Run in a daemon thread; stop() (or setting self.stop_event) ends it."""
        self.stop_event.clear()
        self._thread = threading.Thread(target=self.run, args=(self.stop_event,),
                                        name="halotune-sim-animator", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = None) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def set_load(self, load: float | None, *, cpu: float | None = None,
                 dram_mbps: float | None = None) -> None:
        """Pin the GPU load target (0..1), optionally the host-CPU load and the DRAM read rate
        at full activity; None resumes the LLM pattern."""
        if load is not None and not 0.0 <= load <= 1.0:
            raise ValueError(f"load must be within 0..1, got {load}")
        with store.locked(self.root):
            state = store.load_state(self.root)
            workload = state["workload"]
            if load is None:
                workload["pattern"] = "llm"
            else:
                busy = load >= 0.05
                workload.update(
                    pattern="fixed", gpu=load,
                    cpu=cpu if cpu is not None else (0.97 if busy else 0.02),
                    dram_mbps=dram_mbps if dram_mbps is not None
                    else scenarios.PREFILL["dram_mbps"])
            store.save_state(self.root, state)

    def set_dram_saturated(self, saturated: bool) -> None:
        """Peg average_dram_reads at 65535 MB/s, the u16 counter's limit."""
        with store.locked(self.root):
            state = store.load_state(self.root)
            state["workload"]["dram_saturated"] = bool(saturated)
            store.save_state(self.root, state)
