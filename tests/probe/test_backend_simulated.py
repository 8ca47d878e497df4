"""The simulated probe backend follows the simulated machine: a higher TDP gives a higher tg,
levelling off at the bandwidth roofline; a lower clock limit costs pp; it is always labelled
simulated, and its modelled power is what joules per token are computed from."""

from __future__ import annotations

import pytest

from halotune.machine.programs import Programs
from halotune.machine.rootfs import RootFS
from halotune.machine.ryzenadj import RyzenAdj
from halotune.probe.backends import make_backend
from halotune.probe.backends.base import BackendUnavailable, TestCase
from halotune.probe.backends.simulated import BW_EFFICIENCY, SimulatedBackend
from halotune.probe.gguf_info import bytes_per_token
from halotune.sim.tree import lay_out


@pytest.fixture(scope="module")
def _tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("simprobe") / "root")
    lay_out(root)
    return root


@pytest.fixture
def sim(_tree):
    lay_out(_tree)                       # back to the reference moment
    return _tree


@pytest.fixture(scope="module")
def cpu_info(tmp_path_factory):
    """Header of the generated s preset (84 MiB): what the simulated backend reads."""
    from halotune.probe.gguf_info import read_gguf
    from halotune.probe.gguf_model import PRESETS, ensure_model

    return read_gguf(ensure_model(PRESETS["s"],
                                  cache_dir=str(tmp_path_factory.mktemp("m"))).path)


def set_tdp(root: str, watts: int) -> None:
    mw = watts * 1000
    RyzenAdj(Programs(RootFS(root))).set_limits(stapm_mw=mw, fast_mw=mw, slow_mw=mw,
                                                apu_slow_mw=mw)


def tg_at(root: str, info, watts: int, depth: int = 0) -> dict:
    set_tdp(root, watts)
    fs = RootFS(root)
    be = SimulatedBackend(fs, Programs(fs), noise_percent=0.0, model_info=info)
    return be.operating_point(depth)


def test_higher_tdp_gives_higher_tg_bounded_by_bandwidth(sim, cpu_info):
    points = {w: tg_at(sim, cpu_info, w) for w in (30, 45, 55, 85, 120)}
    tgs = [points[w]["tg_tps"] for w in (30, 45, 55, 85, 120)]
    assert tgs == sorted(tgs) and len(set(tgs)) == len(tgs)      # strictly rising
    bound = points[120]["tg_bandwidth_bound_tps"]
    assert bound == pytest.approx(256e9 * BW_EFFICIENCY / bytes_per_token(cpu_info, 0))
    assert all(t < bound for t in tgs)                           # never past the roofline
    # the knee: 55 -> 85 W gains far more than 85 -> 120 W
    gain_low = tgs[3] / tgs[2] - 1
    gain_high = tgs[4] / tgs[3] - 1
    assert gain_low > 3 * gain_high and gain_high < 0.03
    assert points[120]["limit_w"] == 120 and points[30]["limit_w"] == 30
    assert points[30]["power_w"] <= 30 + 1e-9
    # pp is compute-bound: it follows the clock the power allows
    assert points[30]["pp_tps"] < points[120]["pp_tps"]


def test_depth_costs_tg(sim, cpu_info):
    assert tg_at(sim, cpu_info, 120, depth=4096)["tg_tps"] < tg_at(sim, cpu_info, 120)["tg_tps"]


def test_clock_limit_lowers_pp(sim, cpu_info):
    from halotune.sim.kernel import SimKernel

    fs = RootFS(sim)
    base = SimulatedBackend(fs, noise_percent=0.0, model_info=cpu_info).operating_point()
    dev = "sys/class/drm/card1/device"
    k = SimKernel(sim)
    k.write(f"{dev}/power_dpm_force_performance_level", "manual")
    k.write(f"{dev}/pp_od_clk_voltage", "s 1 1500")
    k.write(f"{dev}/pp_od_clk_voltage", "c")
    capped = SimulatedBackend(fs, noise_percent=0.0, model_info=cpu_info).operating_point()
    assert capped["sclk_mhz"] == 1500
    assert capped["pp_tps"] == pytest.approx(base["pp_tps"] * 1500 / base["sclk_mhz"], rel=1e-3)


def test_measure_is_deterministic_with_noise_and_power(sim, cpu_info):
    fs = RootFS(sim)
    runs = []
    for _ in range(2):
        be = SimulatedBackend(fs, seed=7, model_info=cpu_info)
        reps = be.measure(TestCase(n_gen=32), 5, warmup=True)
        runs.append([r.tokens_per_s for r in reps])
        assert all(r.power_w == pytest.approx(be.last_point["power_w"]) for r in reps)
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == 5                       # noisy, but reproducibly so
    assert be.info().name == "simulated"


def test_needs_a_simulated_tree():
    with pytest.raises(BackendUnavailable, match="simulated machine"):
        SimulatedBackend(RootFS("/"))


def test_auto_picks_simulated_on_a_simulated_machine(sim):
    fs = RootFS(sim)
    assert make_backend("auto", fs, Programs(fs)).name == "simulated"


def test_probe_document_on_the_simulated_machine(sim, tmp_path):
    from halotune.probe.runner import ProbeOptions, probe

    opts = ProbeOptions(root=sim, backend="simulated", preset="ci", budget_s=5,
                        calibration_path=str(tmp_path / "cal.json"),
                        cache_dir=str(tmp_path / "models"))
    set_tdp(sim, 120)
    high = probe(opts)
    set_tdp(sim, 45)
    low = probe(opts)
    for doc in (high, low):
        assert doc["backend"] == "simulated"
        assert all(t["joules_per_token"] is not None for t in doc["tests"])
        assert all(t["power_source"] == "simulated" for t in doc["tests"])
        assert doc["roofline"]["source"].startswith("derived: memory clock 1000 MHz")
        assert 0 < doc["roofline"]["tg_efficiency"] < BW_EFFICIENCY
    tg = {d["tests"][1]["name"]: d["tests"][1] for d in (high, low)}
    assert len(tg) == 1                                     # the identical test both times
    assert high["tests"][1]["tokens_per_s"] > low["tests"][1]["tokens_per_s"]
    assert high["tests"][1]["avg_power_w"] > low["tests"][1]["avg_power_w"]
