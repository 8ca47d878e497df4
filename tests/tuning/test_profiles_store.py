"""Inheritance, the admin directory, load_all, diff, requirements, import cost."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from halotune.tuning.loader import ProfileError, ProfileStore, check_requirements

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(REPO, "profiles")
SHIPPED_NAMES = ["bench-stable", "llm-efficient", "llm-max", "quiet", "stock"]


def write(d, name: str, text: str) -> str:
    path = os.path.join(str(d), f"{name}.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def store(d) -> ProfileStore:
    return ProfileStore(str(d), shipped_dir=SHIPPED)


# --- inheritance -----------------------------------------------------------------------------

def test_child_overrides_one_key_and_keeps_the_rest(tmp_path):
    path = write(tmp_path, "mine", 'description = "llm-max at 100 W"\ninherits = "llm-max"\n'
                                   "[power]\nstapm_w = 100\n")
    p = store(tmp_path).load("mine")
    parent = store(tmp_path).load("llm-max")
    assert p.chain == ["mine", "llm-max"]
    assert p.description == "llm-max at 100 W"
    assert p.values["power.stapm_w"] == 100 and p.sources["power.stapm_w"] == path
    assert {k: v for k, v in p.values.items() if k != "power.stapm_w"} == \
        {k: v for k, v in parent.values.items() if k != "power.stapm_w"}
    assert p.sources["power.fast_w"] == "profiles/llm-max.toml"
    assert p.requires == {"gfx_target": ["gfx1151"]}
    assert p.sources["requires.gfx_target"] == "profiles/llm-max.toml"
    assert p.display_path == path and p.path == path


def test_chain_of_three(tmp_path):
    write(tmp_path, "c", 'description = "c"\n[power]\nstapm_w = 60\nslow_w = 60\nfast_w = 70\n'
                         '[thp]\nenabled = "never"\n')
    write(tmp_path, "b", 'description = "b"\ninherits = "c"\n[power]\nslow_w = 80\nfast_w = 90\n'
                         '[cpu]\nboost = false\n')
    a = write(tmp_path, "a", 'description = "a"\ninherits = "b"\n[power]\nstapm_w = 75\n'
                             '[requires]\ndevice_id = ["0x1586"]\n')
    p = store(tmp_path).load("a")
    assert p.chain == ["a", "b", "c"]
    assert p.values == {"power.stapm_w": 75, "power.fast_w": 90, "power.slow_w": 80,
                        "cpu.boost": False, "thp.enabled": "never"}
    assert [p.sources[k] for k in p.values] == [
        a, str(tmp_path / "b.toml"), str(tmp_path / "b.toml"), str(tmp_path / "b.toml"),
        str(tmp_path / "c.toml")]
    assert p.requires == {"device_id": ["0x1586"]}


def test_inheritance_cycle(tmp_path):
    a = write(tmp_path, "a", 'description = "a"\ninherits = "b"\n')
    write(tmp_path, "b", 'description = "b"\ninherits = "a"\n')
    with pytest.raises(ProfileError) as info:
        store(tmp_path).load("a")
    assert str(info.value) == f'{a}: inherits = "b": inheritance cycle a -> b -> a'


def test_longer_cycle_shows_the_whole_chain(tmp_path):
    write(tmp_path, "x", 'description = "x"\ninherits = "a"\n')
    a = write(tmp_path, "a", 'description = "a"\ninherits = "b"\n')
    write(tmp_path, "b", 'description = "b"\ninherits = "a"\n')
    s = write(tmp_path, "s", 'description = "s"\ninherits = "s"\n')
    with pytest.raises(ProfileError) as info:
        store(tmp_path).load("x")
    assert str(info.value) == f'{a}: inherits = "b": inheritance cycle x -> a -> b -> a'
    with pytest.raises(ProfileError) as info:
        store(tmp_path).load("s")
    assert str(info.value) == f'{s}: inherits = "s": inheritance cycle s -> s'


def test_missing_parent(tmp_path):
    path = write(tmp_path, "orphan", 'description = "x"\ninherits = "llm-maximum"\n')
    with pytest.raises(ProfileError) as info:
        store(tmp_path).load("orphan")
    assert str(info.value) == (f'{path}: inherits = "llm-maximum": no such profile (known: '
                               "bench-stable, llm-efficient, llm-max, orphan, quiet, stock)")


def test_cannot_inherit_from_a_rollback(tmp_path):
    path = write(tmp_path, "x", 'description = "x"\ninherits = "stock"\n')
    with pytest.raises(ProfileError) as info:
        store(tmp_path).load("x")
    assert str(info.value) == (
        f'{path}: inherits = "stock": cannot inherit from a profile with restore_baseline = true '
        '(applying "stock" rolls back to the machine\'s original values; it has no values to '
        "inherit)")


def test_an_error_in_the_parent_names_the_parent(tmp_path):
    parent = write(tmp_path, "parent", 'description = "p"\n[cpu]\nepp = "fast"\n')
    write(tmp_path, "child", 'description = "c"\ninherits = "parent"\n')
    with pytest.raises(ProfileError) as info:
        store(tmp_path).load("child")
    assert str(info.value).startswith(f'{parent}: cpu.epp = "fast": must be one of')
    assert info.value.profile == "child"


# --- directories -----------------------------------------------------------------------------

def test_admin_profile_overrides_shipped_by_name(tmp_path):
    path = write(tmp_path, "llm-max", 'description = "site llm-max"\n[power]\nstapm_w = 110\n'
                                      "slow_w = 110\nfast_w = 110\n")
    s = store(tmp_path)
    assert s.names() == SHIPPED_NAMES
    assert s.path_of("llm-max") == path
    p = s.load("llm-max")
    assert p.description == "site llm-max" and p.display_path == path
    assert p.values == {"power.stapm_w": 110, "power.fast_w": 110, "power.slow_w": 110}
    # Shipped profiles that inherit llm-max now inherit the admin's.
    eff = s.load("llm-efficient")
    assert eff.chain == ["llm-efficient", "llm-max"]
    assert "thp.enabled" not in eff.values
    assert s.path_of("quiet").endswith(os.path.join("profiles", "quiet.toml"))


def test_profiles_dir_adds_to_the_shipped_profiles(tmp_path):
    write(tmp_path, "site-extra", 'description = "extra"\n[cpu]\nboost = false\n')
    assert store(tmp_path).names() == sorted(SHIPPED_NAMES + ["site-extra"])


def test_default_admin_dir_and_profiles_dir(tmp_path):
    assert ProfileStore().admin_dir == "/etc/halotune/profiles"
    assert ProfileStore(str(tmp_path)).admin_dir == str(tmp_path)
    assert ProfileStore(admin_dir=str(tmp_path)).admin_dir == str(tmp_path)


def test_missing_admin_dir_is_not_an_error(tmp_path):
    profiles, errors = store(tmp_path / "absent").load_all()
    assert [p.name for p in profiles] == SHIPPED_NAMES and errors == []


def test_load_all_with_one_broken_profile(tmp_path):
    broken = write(tmp_path, "broken", 'description = "x"\n[power]\nstapm_w = 500\n')
    write(tmp_path, "good", 'description = "fine"\ninherits = "quiet"\n')
    write(tmp_path, "Bad Name", 'description = "x"\n')
    write(tmp_path, "child-of-broken", 'description = "x"\ninherits = "broken"\n')
    (tmp_path / "notes.txt").write_text("not a profile")
    profiles, errors = store(tmp_path).load_all()
    assert [p.name for p in profiles] == ["bench-stable", "good", "llm-efficient", "llm-max",
                                          "quiet", "stock"]
    assert [str(e) for e in errors] == [
        f'{tmp_path}/Bad Name.toml: "Bad Name" is not a valid profile name (lowercase letters, '
        "digits, '.', '_', '-'; starting with a letter or digit): skipped",
        f"{broken}: power.stapm_w = 500: must be between 45 and 120",
        f"{broken}: power.stapm_w = 500: must be between 45 and 120",
    ]
    assert [e.profile for e in errors] == [None, "broken", "child-of-broken"]


def test_diff(tmp_path):
    s = store(tmp_path)
    rows = s.diff("llm-max", "quiet")
    keys = [k for k, _, _ in rows]
    assert keys == ["power.stapm_w", "power.fast_w", "power.slow_w", "power.platform_profile",
                    "gpu.performance_level", "gpu.sclk_max_mhz", "cpu.governor", "cpu.epp",
                    "cpu.boost", "sysctl.vm.swappiness", "thp.enabled", "thp.defrag"]
    d = {k: (a, b) for k, a, b in rows}
    assert d["power.stapm_w"] == (120, 50)
    assert d["gpu.sclk_max_mhz"] == (None, 2000)
    assert d["thp.enabled"] == ("always", None)
    assert [r for r in s.diff("llm-max", "llm-efficient") if r[1] == r[2]] == [
        ("gpu.performance_level", "auto", "auto"), ("cpu.boost", True, True),
        ("sysctl.vm.swappiness", 10, 10), ("thp.enabled", "always", "always"),
        ("thp.defrag", "madvise", "madvise")]
    assert s.diff("stock", "stock") == []


# --- requirements ----------------------------------------------------------------------------

def test_check_requirements(tmp_path):
    write(tmp_path, "dev", 'description = "x"\n[requires]\ndevice_id = ["0x1586"]\n')
    s = store(tmp_path)
    llm = s.load("llm-max")
    assert check_requirements(llm, ["gfx1151"], ["0x1586"]) is None
    assert check_requirements(llm, ["gfx1100 (AMD Navi 31)", "gfx1151 (Strix Halo)"], []) is None
    assert check_requirements(llm, ["gfx1100 (AMD Navi 31 [Radeon RX 7900 XTX])"], ["0x744c"]) == (
        'profiles/llm-max.toml: requires.gfx_target = ["gfx1151"]: this machine has gfx1100 '
        "(AMD Navi 31 [Radeon RX 7900 XTX])")
    assert check_requirements(llm, [], []) == (
        'profiles/llm-max.toml: requires.gfx_target = ["gfx1151"]: this machine has no GPU with '
        "a known gfx target")
    # A child inherits the requirement; the message names the file that set it.
    write(tmp_path, "kid", 'description = "x"\ninherits = "llm-max"\n')
    assert check_requirements(s.load("kid"), ["", "gfx1103"], []).startswith(
        'profiles/llm-max.toml: requires.gfx_target = ["gfx1151"]: this machine has gfx1103')
    dev = s.load("dev")
    assert dev.requires == {"device_id": ["0x1586"]}
    assert check_requirements(dev, ["gfx1100"], ["0X1586"]) is None
    assert check_requirements(dev, [], ["1586"]) is None
    assert check_requirements(dev, [], ["0x744c (Navi 31)"]) == (
        f'{tmp_path}/dev.toml: requires.device_id = ["0x1586"]: this machine has 0x744c (Navi 31)')


# --- import cost -----------------------------------------------------------------------------

def test_listing_names_does_not_import_pydantic(tmp_path):
    code = ("import sys\n"
            "from halotune.tuning.loader import ProfileStore\n"
            f"print(ProfileStore({str(tmp_path)!r}).names())\n"
            "assert 'pydantic' not in sys.modules, 'pydantic imported'\n"
            "import halotune.tuning.schema\n"
            "assert 'pydantic' in sys.modules\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALOTUNE_")}
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=60)
    assert out.returncode == 0, out.stderr
    assert "llm-max" in out.stdout
