"""Random damage to the shipped profiles: the loader answers with a ResolvedProfile or a
ProfileError that starts with a file path, never with any other exception."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import tomllib

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from halotune.tuning import limits
from halotune.tuning.loader import ProfileError, ProfileStore, ResolvedProfile
from halotune.tuning.schema import TUNABLE_KEYS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(REPO, "profiles")
NAMES = sorted(f[:-5] for f in os.listdir(SHIPPED) if f.endswith(".toml"))
DOCS = {}
for _n in NAMES:
    with open(os.path.join(SHIPPED, f"{_n}.toml"), "rb") as _f:
        DOCS[_n] = tomllib.load(_f)

KNOWN = {
    "": ["description", "inherits", "restore_baseline"],
    "requires": ["gfx_target", "device_id"],
    "power": ["stapm_w", "fast_w", "slow_w", "max_w", "max_w_source", "platform_profile"],
    "gpu": ["performance_level", "sclk_min_mhz", "sclk_max_mhz", "power_profile",
            "power_profile_required"],
    "cpu": ["governor", "epp", "boost"],
    "memory": ["gtt_gib"],
    "sysctl": ["vm.swappiness", "vm.compaction_proactiveness", "kernel.numa_balancing"],
    "thp": ["enabled", "defrag"],
}
WORDS = ["auto", "manual", "high", "performance", "powersave", "balance_performance", "power",
         "always", "madvise", "never", "defer+madvise", "low-power", "balanced", "COMPUTE",
         "gfx1151", "0x1586", "stock", "llm-max", "quiet", "bench-stable", "llm-efficient",
         "x", "", "Bad Name", "line\nbreak"]

scalars = st.one_of(
    st.integers(min_value=-10, max_value=3000),
    st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.floats(min_value=-10.0, max_value=300.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["a", "stapm_w", "vm.swappiness", "x y"]), scalars,
                    max_size=2),
)

_watts = st.one_of(st.integers(40, 130), st.floats(40.0, 130.0))
_mhz = st.integers(400, 3000)
# Values near the valid ones, so that many mutants still resolve and the cross-key rules run.
PLAUSIBLE = {
    "stapm_w": _watts, "fast_w": _watts, "slow_w": _watts, "max_w": st.integers(110, 210),
    "max_w_source": st.sampled_from(["board ships 140 W", ""]),
    "platform_profile": st.sampled_from(["performance", "balanced", "low-power"]),
    "performance_level": st.sampled_from(["auto", "manual", "high", "manual"]),
    "sclk_min_mhz": _mhz, "sclk_max_mhz": _mhz,
    "power_profile": st.just("COMPUTE"), "power_profile_required": st.booleans(),
    "governor": st.sampled_from(["performance", "powersave"]),
    "epp": st.sampled_from(["performance", "balance_performance", "power", "default"]),
    "boost": st.booleans(), "gtt_gib": st.one_of(st.integers(1, 128), st.floats(0.5, 128.0)),
    "vm.swappiness": st.integers(0, 210), "vm.compaction_proactiveness": st.integers(0, 110),
    "kernel.numa_balancing": st.integers(0, 4),
    "enabled": st.sampled_from(["always", "madvise", "never"]),
    "defrag": st.sampled_from(["always", "defer", "defer+madvise", "madvise", "never"]),
    "inherits": st.sampled_from(NAMES + ["nope"]), "restore_baseline": st.booleans(),
    "description": st.sampled_from(["changed", "ünïcode ok", ""]),
    "gfx_target": st.just(["gfx1151"]), "device_id": st.just(["0x1586"]),
}


def value_for(key: str):
    return st.one_of(PLAUSIBLE[key], values) if key in PLAUSIBLE else values


def toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        r = repr(v)
        return r if any(c in r for c in ".e") else r + ".0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def dump(doc: dict) -> str:
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_key(k)}]")
            lines += [f"{toml_key(kk)} = {toml_value(vv)}" for kk, vv in table.items()]
    return "\n".join(lines) + "\n"


def mutate(data, doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))          # deep copy (profiles hold only JSON types)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        op = data.draw(st.sampled_from(["set"] * 5 + ["delete"] * 2 + ["add"] * 3
                                       + ["retype", "section"]), label="op")
        tables = [k for k, v in doc.items() if isinstance(v, dict)]
        paths = [(None, k) for k, v in doc.items() if not isinstance(v, dict)]
        paths += [(t, k) for t in tables for k in doc[t]]
        if op in ("set", "delete", "retype") and paths:
            table, key = data.draw(st.sampled_from(paths), label="path")
            holder = doc if table is None else doc[table]
            if op == "delete":
                del holder[key]
            elif op == "set":
                holder[key] = data.draw(value_for(key), label="value")
            else:                              # same value, another type
                v = holder[key]
                holder[key] = data.draw(st.sampled_from(
                    [str(v), [v], {"v": v} if not isinstance(v, dict) else 1, bool(v), 0,
                     float(v) if isinstance(v, (int, float)) else 1.5]), label="retyped")
        elif op == "add":
            section = data.draw(st.sampled_from(sorted(KNOWN) * 3 + ["fan"]), label="section")
            key = data.draw(st.sampled_from(KNOWN.get(section, ["duty"]) * 4 + [None]),
                            label="key") or data.draw(st.text(min_size=1, max_size=8))
            value = data.draw(value_for(key), label="value")
            if section == "":
                if not isinstance(doc.get(key), dict):
                    doc[key] = value
            else:
                if not isinstance(doc.get(section), dict):
                    doc[section] = {}
                doc[section][key] = value
        elif op == "section":
            section = data.draw(st.sampled_from(sorted(KNOWN)[1:]), label="section")
            doc[section] = data.draw(st.one_of(values, st.just({})), label="value")
    return doc

PATHS = {f"{t}.{k}" if t else k for t, ks in KNOWN.items() for k in ks}


@pytest.fixture(scope="module")
def dirs():
    with tempfile.TemporaryDirectory() as tmp:
        admin = os.path.join(tmp, "admin")
        os.mkdir(admin)
        yield admin


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_mutations_never_crash(dirs, data):
    admin = dirs
    for f in os.listdir(admin):
        os.unlink(os.path.join(admin, f))
    name = data.draw(st.sampled_from(NAMES), label="profile")
    text = dump(mutate(data, DOCS[name]))
    if data.draw(st.integers(0, 3), label="damage text") == 0:
        at = data.draw(st.integers(0, len(text)), label="at")
        cut = data.draw(st.integers(0, 3), label="cut")
        junk = data.draw(st.sampled_from(["", "=", "[", "]", '"', "\n", "{", ",", "#", "\x00"]),
                         label="junk")
        text = text[:at] + junk + text[at + cut:]
    path = os.path.join(admin, f"{name}.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)

    starts = tuple([f"{path}: "] + [f"profiles/{n}.toml: " for n in NAMES])
    try:
        p = ProfileStore(admin, shipped_dir=SHIPPED).load(name)
    except ProfileError as e:
        event("ProfileError: " + ("TOML syntax" if e.line else e.key if e.key in PATHS
                                  else "other key" if e.key else e.message[:20]))
        assert str(e).startswith(starts), str(e)
        assert e.file and (e.file == path or e.file.startswith("profiles/"))
        return
    assert isinstance(p, ResolvedProfile)
    event("resolved")
    # Whatever resolves obeys the cross-key rules.
    assert set(p.values) <= set(TUNABLE_KEYS)
    v = p.values
    ceiling = p.max_w or limits.TDP_MAX_W
    for k in ("power.stapm_w", "power.slow_w", "power.fast_w"):
        if k in v:
            assert limits.TDP_MIN_W <= v[k] <= ceiling
    if "power.slow_w" in v and "power.stapm_w" in v:
        assert v["power.slow_w"] >= v["power.stapm_w"]
    if "power.fast_w" in v and "power.slow_w" in v:
        assert v["power.fast_w"] >= v["power.slow_w"]
    if "gpu.sclk_min_mhz" in v or "gpu.sclk_max_mhz" in v:
        assert v.get("gpu.performance_level") == "manual"
    if p.max_w is not None:
        assert p.max_w_source
    if p.restore_baseline:
        assert v == {} and p.requires == {}


def test_fuzz_helpers_round_trip():
    for name, doc in DOCS.items():
        assert tomllib.loads(dump(doc)) == doc, name
