"""settle(): bounded waiting for temperatures and clock limits to stand still."""

import time
from types import SimpleNamespace

from halotune.machine.rootfs import RootFS
from halotune.validation.settle import SettleConfig, settle


def snap(edge=50.0, soc=50.0, cpu=50.0, gfx_max=2900, sclk_limit=None, core_max=5100):
    gpu = SimpleNamespace(edge_temp_c=edge, soc_temp_c=soc, gfx_maxfreq_mhz=gfx_max,
                          sclk_limit_mhz=sclk_limit)
    return SimpleNamespace(primary_gpu=gpu, cpu=SimpleNamespace(temp_c=cpu,
                                                                core_maxfreq_mhz=core_max))


class FakeTime:
    def __init__(self):
        self.t = 0.0

    def clock(self):
        return self.t

    def sleep(self, s):
        self.t += s


def run(seq, cfg):
    ft = FakeTime()
    it = iter(seq)
    last = [None]

    def sample():
        last[0] = next(it, last[0])
        return last[0]
    return settle(None, cfg, sample=sample, clock=ft.clock, sleep=ft.sleep)


CFG = SettleConfig(max_s=10.0, interval_s=1.0, window=3, temp_tol_c=1.0, min_s=0.0)


def test_settles_once_temperatures_stop_moving():
    seq = [snap(edge=60), snap(edge=56), snap(edge=53), snap(edge=52.6), snap(edge=52.4),
           snap(edge=52.3)]
    r = run(seq, CFG)
    assert r.settled and r.reason == "stable"
    assert r.samples == 5          # 53, 52.6, 52.4: within 1 C over 3 samples
    assert r.waited_s == 4.0


def test_bounded_and_says_what_still_moves():
    seq = [snap(edge=40 + 2 * i) for i in range(50)]
    r = run(seq, CFG)
    assert not r.settled
    assert r.waited_s <= CFG.max_s
    assert "not settled after 10 s" in r.reason and "GPU edge temperature" in r.reason


def test_a_clock_limit_change_is_movement():
    seq = [snap(gfx_max=2900), snap(gfx_max=2000), snap(gfx_max=2000), snap(gfx_max=2000)]
    r = run(seq, CFG)
    assert r.settled and r.samples == 4
    r = run([snap(gfx_max=2900 - 100 * (i % 2)) for i in range(30)], CFG)
    assert not r.settled and "GFX clock limit in force changed (2800, 2900 MHz)" in r.reason


def test_minimum_wait_and_zero():
    cfg = SettleConfig(max_s=10.0, interval_s=1.0, window=2, temp_tol_c=1.0, min_s=4.0)
    r = run([snap()] * 20, cfg)
    assert r.settled and r.waited_s == 4.0
    r = settle(None, SettleConfig(max_s=0.0), sample=lambda: snap())
    assert not r.settled and r.samples == 0 and "not waited" in r.reason


def test_simulated_machine_settles_fast(sim_root):
    fs = RootFS(sim_root)
    cfg = SettleConfig.for_machine(fs)
    assert cfg.max_s <= 2.0 and cfg.min_s == 0.0
    t0 = time.monotonic()
    r = settle(fs, cfg)
    assert r.settled, r.reason
    assert time.monotonic() - t0 < 1.5
    assert r.last["gfx_maxfreq_mhz"] is not None or r.last["gpu_edge_c"] is not None
    assert SettleConfig.for_machine(RootFS("/"), 5.0).max_s == 5.0
