"""The probe's measurement loop with a deterministic fake backend and a fake clock: when it
stops and why, how the budget is shared, how power is integrated over timed windows only, and
that simulated power never meets real throughput."""

from __future__ import annotations

import math

import pytest

from halotune.probe.backends.base import Backend, Rep, TestCase
from halotune.probe.runner import (STOP_BUDGET, STOP_CI, STOP_MAX, Plan, overall_stop,
                                   run_probe)
from halotune.probe.watch import Reading


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeBackend(Backend):
    """Rates from a script per test kind; each repetition advances the fake clock by its
    duration (plus overhead per call), like a real run would."""

    name = "fake"

    def __init__(self, clock: Clock, rates: dict, overhead_s: float = 0.0, round_reps: int = 1,
                 power_w: float | None = None, simulated: bool = False, warmup_s: float = 0.0):
        self.clock = clock
        self.rates = {k: list(v) for k, v in rates.items()}
        self.overhead_s = overhead_s
        self.round_reps = round_reps
        self.warmup_every_round = overhead_s > 0     # llama-bench style: a process per round
        self.power_w = power_w
        self.simulated = simulated
        self.warmup_s = warmup_s
        self.calls: list[tuple[str, int, bool]] = []
        self.loaded = None

    def load(self, model_path, n_ctx):
        self.loaded = (model_path, n_ctx)
        self.clock.t += 0.5
        return 0.5

    def measure(self, test, reps, warmup):
        self.calls.append((test.name, reps, warmup))
        self.clock.t += self.overhead_s + (self.warmup_s if warmup else 0.0)
        key = "tg_d" if test.n_depth else test.kind
        out = []
        for _ in range(reps):
            seq = self.rates[key]
            rate = seq.pop(0) if len(seq) > 1 else seq[0]
            t0 = self.clock.t
            self.clock.t += test.tokens / rate
            out.append(Rep(rate, t0, self.clock.t, power_w=self.power_w))
        return out


class FakeWatch:
    """The TelemetryWatch surface the runner uses, with scripted readings."""

    def __init__(self, source="sysfs", watts=50.0, readings=None):
        self.source = source
        self.watts = watts
        self.readings = readings or []
        self.windows = []

    def power_source(self):
        return (self.source, None) if self.source else (None, "no AMD GPU found")

    def average_power(self, t0, t1):
        self.windows.append((t0, t1))
        return self.watts(t0, t1) if callable(self.watts) else self.watts

    def summary(self, t0=None, t1=None):
        return {"samples": 3, "duration_s": t1 - t0, "avg_socket_power_w": 50.0,
                "short_window": False}


PP, TG, TGD = TestCase(n_prompt=128), TestCase(n_gen=32), TestCase(n_gen=32, n_depth=256)


def steady(rate):
    return [rate]


def test_stops_on_ci_target_with_steady_rates():
    clock = Clock()
    be = FakeBackend(clock, {"pp": steady(100.0), "tg": steady(20.0), "tg_d": steady(18.0)})
    res = run_probe(be, "m.gguf", Plan([PP, TG, TGD], budget_s=60), clock=clock)
    assert [t.stopped_because for t in res.tests] == [STOP_CI] * 3
    assert res.stopped_because == STOP_CI
    assert [len(t.reps) for t in res.tests] == [3, 3, 3]     # the minimum, then the CI holds
    assert res.tests[0].summary.mean == pytest.approx(100.0)
    assert be.loaded == ("m.gguf", 32 + 256)                    # n_ctx covers the depth test
    # warm-up once per test, before its first repetition
    assert [c for c in be.calls if c[2]] == [("pp128", 1, True), ("tg32", 1, True),
                                             ("tg32 @ d256", 1, True)]


def test_noisy_rates_run_to_max_reps_within_a_large_budget():
    clock = Clock()
    noisy = [100.0 + (30.0 if i % 2 else -30.0) for i in range(100)]
    be = FakeBackend(clock, {"pp": noisy, "tg": steady(20.0)})
    res = run_probe(be, "m", Plan([PP, TG], budget_s=1e6, max_reps=7), clock=clock)
    assert res.tests[0].stopped_because == STOP_MAX
    assert len(res.tests[0].reps) == 7
    assert res.tests[1].stopped_because == STOP_CI
    assert res.stopped_because == STOP_MAX


def test_time_budget_is_shared_and_respected():
    clock = Clock()
    noisy = [40.0 + (12.0 if i % 2 else -12.0) for i in range(1000)]
    # pp128 at 28-52 t/s: 2.5-4.6 s per repetition; tg32 0.6-1.1 s.
    be = FakeBackend(clock, {"pp": noisy, "tg": list(noisy)})
    res = run_probe(be, "m", Plan([PP, TG], budget_s=60, max_reps=100), clock=clock)
    assert [t.stopped_because for t in res.tests] == [STOP_BUDGET, STOP_BUDGET]
    assert res.stopped_because == STOP_BUDGET
    # the first test's share is half the budget: another round would have overrun it
    assert res.tests[0].wall_s <= 30.0 + 1e-9
    assert res.tests[0].wall_s + max(r.seconds for r in res.tests[0].reps) > 30.0
    # the whole measurement stays within the budget (after the load)
    assert res.duration_s - 0.5 <= 60.0 + 1e-9


def test_unused_share_flows_to_later_tests():
    clock = Clock()
    noisy = [10.0 + (3.0 if i % 2 else -3.0) for i in range(1000)]
    be = FakeBackend(clock, {"pp": steady(1000.0), "tg": noisy})
    res = run_probe(be, "m", Plan([PP, TG], budget_s=60, max_reps=1000), clock=clock)
    assert res.tests[0].stopped_because == STOP_CI
    assert res.tests[0].wall_s < 1.0
    assert res.tests[1].wall_s > 50.0          # nearly all of the 60 s went to tg


def test_a_slow_warm_up_does_not_end_the_test_early():
    clock = Clock()
    noisy = [100.0 + (30.0 if i % 2 else -30.0) for i in range(1000)]
    be = FakeBackend(clock, {"pp": noisy}, warmup_s=20.0)     # reps 0.98-1.83 s
    res = run_probe(be, "m", Plan([PP], budget_s=30, max_reps=100), clock=clock)
    t = res.tests[0]
    assert t.stopped_because == STOP_BUDGET and len(t.reps) >= 6    # not 3: the warm-up
    assert t.wall_s <= 30.0


def test_min_reps_even_when_one_round_exceeds_the_share():
    clock = Clock()
    be = FakeBackend(clock, {"pp": [1.0, 1.5, 2.0]})       # 128 s, 85 s, 64 s per rep
    res = run_probe(be, "m", Plan([PP], budget_s=150, max_reps=10), clock=clock)
    assert len(res.tests[0].reps) == 3
    assert res.tests[0].stopped_because == STOP_BUDGET


def test_hard_limit_stops_below_min_reps_with_a_warning():
    clock = Clock()
    be = FakeBackend(clock, {"pp": [1.0]})                  # 128 s per repetition
    res = run_probe(be, "m", Plan([PP], budget_s=10), clock=clock)
    assert len(res.tests[0].reps) == 1
    assert res.tests[0].stopped_because == STOP_BUDGET
    assert "past 2x its 10 s budget" in res.warnings[0]


def test_llamabench_style_rounds_accumulate_samples():
    clock = Clock()
    be = FakeBackend(clock, {"tg": [20.0, 21.0, 19.0, 20.5, 19.5, 20.0]}, overhead_s=2.0,
                     round_reps=3)
    res = run_probe(be, "m", Plan([TG], budget_s=100, ci_target_percent=50), clock=clock)
    assert [c[1] for c in be.calls] == [3]
    assert res.tests[0].samples == [20.0, 21.0, 19.0]
    assert res.tests[0].stopped_because == STOP_CI


def test_round_overhead_counts_against_the_budget():
    clock = Clock()
    noisy = [20.0 + (5.0 if i % 2 else -5.0) for i in range(100)]
    be = FakeBackend(clock, {"tg": noisy}, overhead_s=5.0, round_reps=3)
    res = run_probe(be, "m", Plan([TG], budget_s=30, max_reps=30), clock=clock)
    # a round is ~5 s overhead + 3 x 1.6 s; the next one would overrun 30 s
    assert res.tests[0].stopped_because == STOP_BUDGET
    assert res.tests[0].wall_s <= 30.0
    assert len(res.tests[0].samples) % 3 == 0


def test_progress_events():
    clock = Clock()
    events = []
    be = FakeBackend(clock, {"pp": steady(100.0)})
    run_probe(be, "m", Plan([PP], budget_s=10), clock=clock, progress=events.append)
    assert events[0]["phase"] == "loaded"
    rounds = [e for e in events if e["phase"] == "round"]
    assert [e["reps"] for e in rounds] == [1, 2, 3]
    assert all(e["test"] == "pp128" and e["budget_s"] == 10 for e in rounds)


def test_overall_stop():
    assert overall_stop([STOP_CI, STOP_CI]) == STOP_CI
    assert overall_stop([STOP_CI, STOP_MAX]) == STOP_MAX
    assert overall_stop([STOP_MAX, STOP_BUDGET, STOP_CI]) == STOP_BUDGET


# --- power ---------------------------------------------------------------------------------

def test_joules_per_token_integrates_timed_windows_only():
    clock = Clock()
    be = FakeBackend(clock, {"tg": [20.0, 25.0, 20.0, 22.0, 21.0, 20.0]})
    # 100 W during the first repetition, 50 W after: watts per window as the watch reports
    first = {}

    def watts(t0, t1):
        first.setdefault("t0", t0)
        return 100.0 if t0 == first["t0"] else 50.0

    watch = FakeWatch(watts=watts)
    res = run_probe(be, "m", Plan([TG], budget_s=100, ci_target_percent=50), clock=clock,
                    watch=watch)
    t = res.tests[0]
    d = [32 / 20.0, 32 / 25.0, 32 / 20.0]
    energy = 100.0 * d[0] + 50.0 * d[1] + 50.0 * d[2]
    assert t.power["energy_j"] == pytest.approx(energy)
    assert t.power["joules_per_token"] == pytest.approx(energy / 96)
    assert t.power["avg_power_w"] == pytest.approx(energy / sum(d))
    assert t.power["power_source"] == "sysfs"
    # exactly the three timed windows were integrated (not the load or the warm-up)
    assert watch.windows == [(r.t0, r.t1) for r in t.reps]
    assert t.power["short_window"] is True          # 4.5 s of timed work
    doc = t.to_dict()
    assert doc["joules_per_token"] == pytest.approx(energy / 96, abs=1e-5)
    assert doc["telemetry"]["short_window"] is True


def test_no_gpu_power_is_null_with_a_reason():
    clock = Clock()
    be = FakeBackend(clock, {"tg": steady(20.0)})
    res = run_probe(be, "m", Plan([TG], budget_s=10), clock=clock, watch=FakeWatch(source=None))
    p = res.tests[0].power
    assert p["joules_per_token"] is None and p["avg_power_w"] is None
    assert "no AMD GPU" in p["power_null_reason"]


def test_simulated_power_never_meets_real_throughput():
    clock = Clock()
    be = FakeBackend(clock, {"tg": steady(20.0)})            # real throughput
    res = run_probe(be, "m", Plan([TG], budget_s=10), clock=clock,
                    watch=FakeWatch(source="simulated"))
    p = res.tests[0].power
    assert p["joules_per_token"] is None
    assert "simulated" in p["power_null_reason"] and "real" in p["power_null_reason"]


def test_simulated_throughput_never_meets_real_power():
    clock = Clock()
    be = FakeBackend(clock, {"tg": steady(20.0)}, simulated=True)
    res = run_probe(be, "m", Plan([TG], budget_s=10), clock=clock, watch=FakeWatch("sysfs"))
    assert res.tests[0].power["joules_per_token"] is None


def test_backend_modelled_power_is_used_and_labelled():
    clock = Clock()
    be = FakeBackend(clock, {"tg": steady(20.0)}, power_w=80.0, simulated=True)
    res = run_probe(be, "m", Plan([TG], budget_s=10), clock=clock, watch=FakeWatch(None))
    p = res.tests[0].power
    assert p["power_source"] == "simulated"
    assert p["avg_power_w"] == pytest.approx(80.0)
    assert p["joules_per_token"] == pytest.approx(80.0 / 20.0)
    assert p["short_window"] is False


def test_test_dict_has_the_contract_keys_and_is_json_safe():
    import json

    clock = Clock()
    be = FakeBackend(clock, {"pp": [100.0, 101.0, 99.0]})
    res = run_probe(be, "m", Plan([PP], budget_s=10, ci_target_percent=5), clock=clock)
    d = res.tests[0].to_dict()
    assert list(d)[:10] == ["name", "n_prompt", "n_gen", "n_depth", "tokens_per_s", "stddev",
                            "cv_percent", "samples", "joules_per_token", "avg_power_w"]
    assert d["name"] == "pp128" and d["samples"] == [100.0, 101.0, 99.0]
    assert d["stddev"] == pytest.approx(1.0)
    assert d["cv_percent"] == pytest.approx(1.0)
    json.dumps(d, allow_nan=False)


def test_depth_test_names():
    assert TGD.name == "tg32 @ d256"
    assert TestCase(512, 128).name == "pp512+tg128"
    assert TestCase(512, 128).tokens == 640 and TestCase(512, 128).kind == "pg"


def test_watch_reading_dataclass_is_what_the_runner_reads():
    r = Reading(t=1.0, socket_w=10.0, gfx_w=None, temp_c=None, sclk_mhz=None, mclk_mhz=None,
                dram_read=None, dram_write=None, throttle=None)
    assert math.isclose(r.socket_w, 10.0)


# --- calibration: chosen once, then frozen -----------------------------------------------------

def test_calibration_fits_the_budget():
    from halotune.probe.calibration import choose

    # this 2-core VM with one benchmark thread: M Q4_0 pp ~48 t/s, tg ~9.3 t/s
    assert choose(48.0, 9.3, 30.0, 4096) == {"n_prompt": 64, "n_gen": 16, "n_depth": 128,
                                             "max_reps": 30}
    # a fast GPU: the largest sizes, the deepest point that leaves room for tg in 4096
    assert choose(1500.0, 120.0, 30.0, 4096) == {"n_prompt": 512, "n_gen": 128, "n_depth": 2048,
                                                 "max_reps": 30}
    assert choose(1500.0, 120.0, 30.0, 8192)["n_depth"] == 4096
    assert choose(1500.0, 120.0, 30.0, 4096, with_depth=False)["n_depth"] == 0


def test_frozen_spec_round_trip(tmp_path):
    from halotune.probe import calibration as cal

    path = str(tmp_path / "state" / "probe-calibration.json")
    spec = cal.FrozenSpec(n_prompt=128, n_gen=32, n_depth=256, max_reps=30, preset="cpu",
                          quant="Q4_0", budget_s=30.0, threads=1, backend="inprocess",
                          model="abc", calibrated={"pp_tps": 80.0, "tg_tps": 30.0},
                          created=cal.now_rfc3339())
    assert cal.load_spec(path, "m1", "abc") is None
    cal.save_spec(path, "m1", spec)
    back = cal.load_spec(path, "m1", "abc")
    assert back.source == "frozen"
    assert (back.n_prompt, back.n_gen, back.n_depth) == (128, 32, 256)
    assert [t.name for t in back.tests()] == ["pp128", "tg32", "tg32 @ d256"]
    assert cal.default_preset(path, "m1") == {"preset": "cpu", "quant": "Q4_0"}
    assert cal.load_spec(path, "m2", "abc") is None          # another machine
    with open(path, "w") as f:
        f.write("{not json")
    assert cal.load_spec(path, "m1", "abc") is None          # damaged: calibrate again
