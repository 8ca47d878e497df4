"""Every kind of profile error, message by message (string equality)."""

from __future__ import annotations

import os
import shutil

import pytest

from halotune.tuning.loader import ProfileError, ProfileStore, format_value

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(REPO, "profiles")
GPU_KEYS = "performance_level, sclk_min_mhz, sclk_max_mhz, power_profile, power_profile_required"
TOP_KEYS = ("description, inherits, restore_baseline, requires, power, gpu, cpu, memory, sysctl, "
            "thp, validate")


def write(d, name: str, text: str) -> str:
    path = os.path.join(str(d), f"{name}.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def error_of(d, name: str, text: str) -> tuple[str, ProfileError]:
    path = write(d, name, text)
    with pytest.raises(ProfileError) as info:
        ProfileStore(str(d), shipped_dir=SHIPPED).load(name)
    return path, info.value


def test_tdp_out_of_range_in_an_admin_override(tmp_path):
    path, e = error_of(tmp_path, "llm-max",
                       'description = "x"\n[power]\nstapm_w = 150\n')
    assert str(e) == f"{path}: power.stapm_w = 150: must be between 45 and 120"
    assert (e.file, e.key, e.value, e.message) == (path, "power.stapm_w", 150,
                                                   "must be between 45 and 120")
    assert e.profile == "llm-max"


def test_tdp_out_of_range_in_a_shipped_profile_shows_the_repo_path(tmp_path):
    # A copy of the shipped profiles, loaded as the shipped set: shown as profiles/<name>.toml.
    shipped = tmp_path / "shipped"
    shutil.copytree(SHIPPED, shipped)
    text = (shipped / "llm-max.toml").read_text()
    (shipped / "llm-max.toml").write_text(text.replace("stapm_w = 120", "stapm_w = 150"))
    admin = tmp_path / "admin"
    admin.mkdir()
    with pytest.raises(ProfileError) as info:
        ProfileStore(str(admin), shipped_dir=str(shipped)).load("llm-max")
    assert str(info.value) == \
        "profiles/llm-max.toml: power.stapm_w = 150: must be between 45 and 120"


def test_formatter():
    e = ProfileError("profiles/llm-max.toml", "power.stapm_w", 150.0, "must be between 45 and 120")
    assert str(e) == "profiles/llm-max.toml: power.stapm_w = 150: must be between 45 and 120"
    assert str(ProfileError("f.toml", "description", None, "missing")) == \
        "f.toml: description: missing"
    assert str(ProfileError(None, message="no profile")) == "no profile"
    assert format_value(85.5) == "85.5"
    assert format_value(True) == "true"
    assert format_value(["gfx1151"]) == '["gfx1151"]'
    assert format_value({"a": 1, "b c": "x"}) == '{ a = 1, "b c" = "x" }'
    assert format_value(float("inf")) == "inf"


def test_max_w_raises_the_ceiling_and_names_it(tmp_path):
    write(tmp_path, "boost", 'description = "x"\n[power]\nfast_w = 140\nmax_w = 140\n'
                             'max_w_source = "board ships 140 W fast"\n')
    p = ProfileStore(str(tmp_path), shipped_dir=SHIPPED).load("boost")
    assert p.values == {"power.fast_w": 140} and p.max_w == 140
    assert p.max_w_source == "board ships 140 W fast"
    path, e = error_of(tmp_path, "over", 'description = "x"\n[power]\nfast_w = 150\nmax_w = 140\n'
                                         'max_w_source = "board"\n')
    assert str(e) == f"{path}: power.fast_w = 150: must be between 45 and 140"


def test_max_w_above_the_hard_ceiling(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\n[power]\nmax_w = 250\n'
                                      'max_w_source = "mine"\n')
    assert str(e) == f"{path}: power.max_w = 250: must be between 120 and 200"


def test_max_w_without_source(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\n[power]\nfast_w = 140\nmax_w = 140\n')
    assert str(e) == (f"{path}: power.max_w = 140: needs power.max_w_source (say where a limit "
                      "above 120 W comes from)")


def test_unknown_key(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\n[gpu]\nsclk_maxx = 2900\n')
    assert str(e) == f"{path}: gpu.sclk_maxx = 2900: unknown key (known: {GPU_KEYS})"


def test_unknown_table_and_top_level_key(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\n[fan]\nduty = 100\n')
    assert str(e) == f"{path}: fan = {{ duty = 100 }}: unknown key (known: {TOP_KEYS})"
    path, e = error_of(tmp_path, "y", 'description = "x"\nstapm_w = 100\n')
    assert str(e) == f"{path}: stapm_w = 100: unknown key (known: {TOP_KEYS})"


def test_unquoted_sysctl_name(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\n[sysctl]\nvm.swappiness = 10\n')
    assert str(e) == (f"{path}: sysctl.vm = {{ swappiness = 10 }}: unknown key (known: "
                      "vm.swappiness, vm.compaction_proactiveness, kernel.numa_balancing); "
                      'sysctl names need quotes: "vm.swappiness" = 10')


@pytest.mark.parametrize("body,expected", [
    ('[power]\nstapm_w = "high"', 'power.stapm_w = "high": expected a number (watts)'),
    ("[gpu]\nsclk_max_mhz = 2000.5", "gpu.sclk_max_mhz = 2000.5: expected an integer (MHz)"),
    ("[cpu]\nboost = 1", "cpu.boost = 1: expected true or false"),
    ("[cpu]\ngovernor = 3", "cpu.governor = 3: expected a string"),
    ("power = 100", "power = 100: expected a table ([power])"),
    ('[requires]\ngfx_target = "gfx1151"', 'requires.gfx_target = "gfx1151": expected a list of '
                                           "strings"),
    ('[requires]\ngfx_target = ["gfx1151", 5]', 'requires.gfx_target = ["gfx1151", 5]: expected a '
                                                "list of strings"),
    ('[sysctl]\n"vm.swappiness" = "10"', 'sysctl.vm.swappiness = "10": expected an integer'),
])
def test_wrong_type(tmp_path, body, expected):
    path, e = error_of(tmp_path, "x", f'description = "x"\n{body}\n')
    assert str(e) == f"{path}: {expected}"


@pytest.mark.parametrize("body,expected", [
    ('[gpu]\nperformance_level = "turbo"',
     'gpu.performance_level = "turbo": must be one of auto, low, high, manual, profile_standard, '
     "profile_min_sclk, profile_min_mclk, profile_peak"),
    ('[cpu]\nepp = "max"', 'cpu.epp = "max": must be one of default, performance, '
                           "balance_performance, balance_power, power"),
    ('[thp]\nenabled = "yes"', 'thp.enabled = "yes": must be one of always, madvise, never'),
    ('[thp]\ndefrag = "sometimes"', 'thp.defrag = "sometimes": must be one of always, defer, '
                                    "defer+madvise, madvise, never"),
])
def test_bad_choice_lists_the_choices(tmp_path, body, expected):
    path, e = error_of(tmp_path, "x", f'description = "x"\n{body}\n')
    assert str(e) == f"{path}: {expected}"


@pytest.mark.parametrize("body,expected", [
    ('[sysctl]\n"vm.swappiness" = 300', "sysctl.vm.swappiness = 300: must be between 0 and 200"),
    ('[sysctl]\n"vm.compaction_proactiveness" = -1',
     "sysctl.vm.compaction_proactiveness = -1: must be between 0 and 100"),
    ('[sysctl]\n"kernel.numa_balancing" = 4', "sysctl.kernel.numa_balancing = 4: must be between "
                                              "0 and 3"),
    ("[gpu]\nsclk_min_mhz = 0", "gpu.sclk_min_mhz = 0: must be greater than 0"),
    ("[memory]\ngtt_gib = -5", "memory.gtt_gib = -5: must be greater than 0"),
    ("[power]\nstapm_w = nan", "power.stapm_w = nan: must be a finite number"),
    ("[power]\nslow_w = 30", "power.slow_w = 30: must be between 45 and 120"),
    ('[power]\nplatform_profile = "Low Power"', 'power.platform_profile = "Low Power": must be one '
                                                "lowercase word (a-z, 0-9, '_', '+', '-')"),
    ('[requires]\ngfx_target = ["navi31"]', 'requires.gfx_target = ["navi31"]: expected a list of '
                                            'gfx targets like "gfx1151"'),
    ('[requires]\ndevice_id = ["1586"]', 'requires.device_id = ["1586"]: expected a list of PCI '
                                         'device ids like "0x1586"'),
    ("[requires]\ngfx_target = []", "requires.gfx_target = []: must not be empty"),
])
def test_out_of_range_and_malformed(tmp_path, body, expected):
    path, e = error_of(tmp_path, "x", f'description = "x"\n{body}\n')
    assert str(e) == f"{path}: {expected}"


def test_description_is_required_and_one_line(tmp_path):
    path, e = error_of(tmp_path, "x", "[power]\nstapm_w = 100\n")
    assert str(e) == f"{path}: description: missing (every profile needs a one-line description)"
    path, e = error_of(tmp_path, "y", 'description = "two\\nlines"\n')
    assert str(e) == f'{path}: description = "two\\nlines": must be one non-empty line'


def test_first_problem_in_document_order(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\n[thp]\nenabled = "yes"\n'
                                      "[power]\nstapm_w = true\n")
    assert e.key == "thp.enabled"


def test_toml_syntax_error_names_line_and_column(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\n[power]\nstapm_w = = 100\n')
    assert str(e) == f"{path}: line 3, column 11: invalid TOML: Invalid value"
    assert (e.line, e.column) == (3, 11)
    path, e = error_of(tmp_path, "y", 'description = "x"\n[power')
    assert str(e) == (f"{path}: line 2, column 7: invalid TOML: Expected ']' at the end of a "
                      "table declaration")


def test_not_utf8(tmp_path):
    path = os.path.join(tmp_path, "x.toml")
    with open(path, "wb") as f:
        f.write(b'description = "caf\xe9"\n')
    with pytest.raises(ProfileError) as info:
        ProfileStore(str(tmp_path), shipped_dir=SHIPPED).load("x")
    assert str(info.value) == f"{path}: not UTF-8 text (bad byte at offset 18)"


def test_fast_below_stapm(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\n[power]\nstapm_w = 100\nfast_w = 90\n')
    assert str(e) == f"{path}: power.fast_w = 90: must be at least power.stapm_w (100)"


def test_slow_below_stapm(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\n[power]\nstapm_w = 100\nslow_w = 90\n')
    assert str(e) == f"{path}: power.slow_w = 90: must be at least power.stapm_w (100)"


def test_cross_key_error_blames_the_child_that_broke_the_rule(tmp_path):
    # The key the child set is blamed, and the parent's value is named with its file.
    path, e = error_of(tmp_path, "x", 'description = "x"\ninherits = "bench-stable"\n'
                                      "[power]\nfast_w = 100\n")
    assert str(e) == (f"{path}: power.fast_w = 100: must be at least power.slow_w (120, set in "
                      "profiles/bench-stable.toml)")
    # quiet: stapm 50, slow 50, fast 55. A child raising stapm_w breaks slow >= stapm.
    path, e = error_of(tmp_path, "y", 'description = "x"\ninherits = "quiet"\n'
                                      "[power]\nstapm_w = 60\n")
    assert str(e) == (f"{path}: power.stapm_w = 60: must be at most power.slow_w (50, set in "
                      "profiles/quiet.toml)")


def test_sclk_without_manual_level(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\n[gpu]\nsclk_max_mhz = 2000\n')
    assert str(e) == (f'{path}: gpu.sclk_max_mhz = 2000: needs gpu.performance_level = "manual" '
                      "(it is not set)")
    path, e = error_of(tmp_path, "y", 'description = "x"\ninherits = "llm-max"\n'
                                      "[gpu]\nsclk_max_mhz = 2000\n")
    assert str(e) == (f'{path}: gpu.sclk_max_mhz = 2000: needs gpu.performance_level = "manual" '
                      '(it is "auto", set in profiles/llm-max.toml)')
    # The child that switches a manual parent back to auto is the one blamed.
    path, e = error_of(tmp_path, "z", 'description = "x"\ninherits = "quiet"\n'
                                      '[gpu]\nperformance_level = "auto"\n')
    assert str(e) == (f'{path}: gpu.performance_level = "auto": must be "manual": '
                      "gpu.sclk_max_mhz is set (2000, set in profiles/quiet.toml)")


def test_sclk_min_above_max(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\n[gpu]\nperformance_level = "manual"\n'
                                      "sclk_min_mhz = 2600\nsclk_max_mhz = 2000\n")
    assert str(e) == f"{path}: gpu.sclk_max_mhz = 2000: must be at least gpu.sclk_min_mhz (2600)"


def test_epp_under_the_performance_governor(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\ninherits = "llm-max"\n'
                                      '[cpu]\nepp = "power"\n')
    assert str(e) == (f'{path}: cpu.epp = "power": the performance governor accepts only '
                      '"performance" (cpu.governor = "performance", set in profiles/llm-max.toml)')


def test_power_profile_required_needs_a_profile(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\n[gpu]\npower_profile_required = true\n')
    assert str(e) == f"{path}: gpu.power_profile_required = true: needs gpu.power_profile"


def test_restore_baseline_takes_no_other_keys(tmp_path):
    path, e = error_of(tmp_path, "x", 'description = "x"\nrestore_baseline = true\n'
                                      "[power]\nstapm_w = 100\n")
    assert str(e) == (f"{path}: power.stapm_w = 100: not allowed with restore_baseline = true "
                      "(applying this profile rolls back to the machine's original values; it "
                      "sets nothing else)")
    path, e = error_of(tmp_path, "y", 'description = "x"\nrestore_baseline = true\n'
                                      'inherits = "llm-max"\n')
    assert e.key == "inherits" and e.file == path


def test_unknown_profile_name(tmp_path):
    with pytest.raises(ProfileError) as info:
        ProfileStore(str(tmp_path), shipped_dir=SHIPPED).load("turbo")
    assert str(info.value) == ('no profile named "turbo" (known: bench-stable, llm-efficient, '
                               "llm-max, quiet, stock)")
    assert info.value.file is None


def test_values_in_messages_escape_terminal_controls():
    """DEL and C1 controls (\\x9b opens a terminal sequence) never reach the terminal raw;
    ordinary non-ASCII stays readable."""
    assert format_value("a\x9b2Jb") == '"a\\u009b2Jb"'
    assert format_value("a\x7fb") == '"a\\u007fb"'
    assert format_value("café") == '"café"'
