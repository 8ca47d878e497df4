"""The profiles shipped in profiles/: every one loads, resolves, and says what the issue asks."""

from __future__ import annotations

import os
import tomllib

import pytest

from halotune.tuning import limits
from halotune.tuning.loader import ProfileStore, ResolvedProfile, check_requirements
from halotune.tuning.schema import TUNABLE_KEYS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(REPO, "profiles")
NAMES = sorted(f[:-5] for f in os.listdir(SHIPPED) if f.endswith(".toml"))


@pytest.fixture
def store(tmp_path) -> ProfileStore:
    # An empty admin directory: never the host's /etc/halotune/profiles.
    return ProfileStore(str(tmp_path), shipped_dir=SHIPPED)


def test_the_five_profiles_are_shipped():
    assert NAMES == ["bench-stable", "llm-efficient", "llm-max", "quiet", "stock"]


@pytest.mark.parametrize("name", NAMES)
def test_every_shipped_profile_loads_and_resolves(store, name):
    p = store.load(name)
    assert isinstance(p, ResolvedProfile)
    assert p.name == name and p.chain[0] == name
    assert p.display_path == f"profiles/{name}.toml"
    assert os.path.samefile(p.path, os.path.join(SHIPPED, f"{name}.toml"))
    assert p.description and "\n" not in p.description
    assert set(p.values) <= set(TUNABLE_KEYS)
    assert set(p.values) <= set(p.sources)
    for key in ("power.stapm_w", "power.slow_w", "power.fast_w"):
        if key in p.values:
            assert limits.TDP_MIN_W <= p.values[key] <= (p.max_w or limits.TDP_MAX_W)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_profiles_explain_themselves(name):
    with open(os.path.join(SHIPPED, f"{name}.toml"), encoding="utf-8") as f:
        text = f.read()
    assert text.startswith(f"# {name}:"), "header comment naming the profile's intent"
    lines = text.splitlines()
    # Every setting is explained: walking up from a key line (over the key lines of the same
    # paragraph) reaches a comment before a blank line or a table header.
    for i, line in enumerate(lines):
        if not line or line.startswith(("#", "[", "description =")):
            continue
        j = i - 1
        while j >= 0 and lines[j] and not lines[j].startswith(("#", "[")):
            j -= 1
        assert j >= 0 and lines[j].startswith("#"), f"{name}: {line!r} has no comment"


@pytest.mark.parametrize("name", NAMES)
def test_no_shipped_profile_sets_the_gtt_size(name):
    # gtt_gib is boot-time and machine-specific: at most a commented-out example.
    with open(os.path.join(SHIPPED, f"{name}.toml"), "rb") as f:
        data = tomllib.load(f)
    assert "gtt_gib" not in data.get("memory", {})


def test_stock_is_a_rollback(store):
    p = store.load("stock")
    assert p.restore_baseline is True
    assert p.values == {} and p.requires == {}
    assert check_requirements(p, ["gfx1100 (AMD Navi 31)"], ["0x744c"]) is None


def test_llm_max(store):
    p = store.load("llm-max")
    assert p.chain == ["llm-max"]
    assert p.requires == {"gfx_target": ["gfx1151"]}
    assert p.values["power.stapm_w"] == p.values["power.slow_w"] == limits.TDP_MAX_W
    assert p.values["power.fast_w"] == limits.TDP_MAX_W and p.max_w is None
    assert p.values["power.platform_profile"] == "performance"
    assert p.values["gpu.performance_level"] == "auto"
    assert (p.values["cpu.governor"], p.values["cpu.epp"]) == ("performance", "performance")
    assert p.values["sysctl.vm.swappiness"] <= 10
    assert "memory.gtt_gib" not in p.values


def test_llm_efficient_inherits_llm_max(store):
    p = store.load("llm-efficient")
    assert p.chain == ["llm-efficient", "llm-max"]
    v = p.values
    assert (v["power.stapm_w"], v["power.slow_w"], v["power.fast_w"]) == (85, 85, 100)
    assert v["power.platform_profile"] == "balanced"
    assert v["cpu.epp"] == "balance_performance" and v["cpu.governor"] == "powersave"
    # Kept from llm-max, and attributed to it.
    assert v["thp.enabled"] == "always" and p.sources["thp.enabled"] == "profiles/llm-max.toml"
    assert p.sources["power.stapm_w"] == "profiles/llm-efficient.toml"
    assert p.requires == {"gfx_target": ["gfx1151"]}


def test_quiet(store):
    v = store.load("quiet").values
    assert limits.TDP_MIN_W <= v["power.stapm_w"] <= v["power.fast_w"] <= 55
    assert v["power.platform_profile"] == "low-power"
    assert v["cpu.epp"] in ("power", "balance_power")
    assert v["gpu.performance_level"] == "manual" and v["gpu.sclk_max_mhz"] == 2000


def test_bench_stable(store):
    p = store.load("bench-stable")
    v = p.values
    assert p.chain == ["bench-stable"]
    assert v["power.stapm_w"] == v["power.slow_w"] == v["power.fast_w"]
    assert v["gpu.performance_level"] == "manual"
    assert v["gpu.sclk_min_mhz"] == v["gpu.sclk_max_mhz"] < 2900
    assert (v["cpu.governor"], v["cpu.epp"]) == ("performance", "performance")
    assert v["sysctl.kernel.numa_balancing"] == 0
    assert v["sysctl.vm.compaction_proactiveness"] == 0
    assert {"thp.enabled", "thp.defrag", "sysctl.vm.swappiness"} <= set(v)


def test_shipped_requirements_refuse_another_gpu(store):
    p = store.load("llm-max")
    assert check_requirements(p, ["gfx1151"], ["0x1586"]) is None
    assert check_requirements(p, ["gfx1100 (AMD Navi 31)"], ["0x744c"]) == (
        'profiles/llm-max.toml: requires.gfx_target = ["gfx1151"]: '
        "this machine has gfx1100 (AMD Navi 31)")
