"""Fuzzing, campaign 2 of issue #8: the text parsers of kernel files, and the readers behind them.

Targets (each: random text built from the tokens these files contain, arbitrary Unicode, and
binary garbage decoded as the readers decode it, NUL padding included):
- halotune/machine/parse.py: pp_dpm_* clock tables, pp_od_clk_voltage, bracket choices (THP),
  integers, meminfo, /proc/stat (and the utilisation computed from two of them), cmdline,
  key=value files;
- the RyzenAdj `-i` table (machine/ryzenadj.parse_info), DRM fdinfo (machine/drmclients),
  pp_power_profile_mode (tuning/tunables/gpu_power_profile.parse_modes), RootFS.clean_text;
- end to end: one kernel file of the simulated Strix Halo replaced by garbage (mutated real
  content, tokens, binary, NUL-padded to a page), then `status --json` (exit 0, strict JSON,
  the contract's keys) and `apply PROFILE --dry-run` (the tunables' readers and checks: exit 0,
  2 or 3 with a message, never a traceback).
Figure: inputs tried per target, crashes (0).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os

from hypothesis import given
from hypothesis import strategies as st

from halotune.machine import drmclients, parse, ryzenadj
from halotune.machine.rootfs import clean_text
from halotune.tuning.tunables.gpu_power_profile import parse_modes
from status_contract import assert_contract_keys

from .conftest import Tally, fuzz_settings, record

TOKENS = ["0:", "1:", "2:", "7:", " ", "  ", "\n", "\n", "\t", "Mhz", "MHz", "mhz", "*", "600",
          "2900", "-1", "99999999999999999999999", "OD_SCLK:", "OD_RANGE:", "SCLK:", "OD_MCLK:",
          "OD_VDDC_CURVE:", "[", "]", "madvise", "[always]", "never", "low-power", "balanced",
          "performance", "\x00", "\x00" * 16, "0x", "0xff", "0X1586", "kB", ":", "=", '"',
          "cpu", "cpu0", "cpu ", "|", "| STAPM LIMIT |", "| PPT LIMIT FAST |", " nan ", " inf ",
          "1e999", "-0", "drm-driver:", "drm-engine-gfx:", "drm-memory-vram:", " ns", " KiB",
          " MiB", "drm-engine-capacity-gfx:", "CPU Family:", "PM Table Version:", "é", "\ufffd",
          "\r", "COMPUTE", "BOOTUP_DEFAULT", "ttm.pages_limit=", "quiet", "MemTotal:",
          "MemAvailable:", "intr", "BOOT_IMAGE=", "\\", "\x7f", "9" * 40, "\u00b2", "\u2460",
          "\u0663"]

text = st.one_of(
    st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=3)), max_size=40).map("".join),
    st.text(max_size=200),
    st.binary(max_size=300).map(lambda b: clean_text(b)),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
)


def _finite(x) -> bool:
    return not isinstance(x, float) or math.isfinite(x)


def _target(name: str, check) -> None:
    t = Tally()

    @fuzz_settings()
    @given(s=text)
    def run(s):
        t.hit(check(s))

    run()
    record(f"fuzz: {name}", **t.figures())


def test_clock_tables():
    def check(s):
        levels = parse.parse_clock_table(s)
        assert all(isinstance(lv.mhz, int) and isinstance(lv.index, int) for lv in levels)
        cur = parse.current_clock(levels)
        assert cur is None or cur in [lv.mhz for lv in levels]
    _target("pp_dpm_* clock tables", check)


def test_od_clk_voltage():
    def check(s):
        od = parse.parse_od_clk_voltage(s)
        for v in (od.sclk_min, od.sclk_max, od.range_min, od.range_max):
            assert v is None or isinstance(v, int)
        assert all(isinstance(k, str) and isinstance(v, list) for k, v in od.sections.items())
    _target("pp_od_clk_voltage", check)


def test_bracket_choices_and_word_lists():
    def check(s):
        selected, choices = parse.parse_bracket_choice(s)
        assert selected is None or selected in choices
        assert all(isinstance(c, str) and c for c in choices)
        # platform_profile_choices and the cpufreq *_available_* files: whitespace words
        words = clean_text(s.encode("utf-8", "surrogatepass")).split()
        assert all(w.strip() for w in words)
    _target("bracket choices (THP) and choices lists", check)


def test_integers_meminfo_stat_cmdline_kv():
    def check(s):
        n = parse.parse_int(s)
        assert n is None or isinstance(n, int)
        mem = parse.parse_meminfo(s)
        assert all(isinstance(v, int) and v >= 0 for v in mem.values())
        times = parse.parse_proc_stat(s)
        for ct in times.values():
            assert isinstance(ct.busy, int) and isinstance(ct.total, int)
        a, b = list(times.values())[:1], list(times.values())[-1:]
        if a and b:
            u = parse.utilization_percent(a[0], b[0])
            assert u is None or 0.0 <= u <= 100.0
        cmd = parse.parse_cmdline(s)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in cmd.items())
        for sep in (None, "="):
            kv = parse.parse_key_value_lines(s, sep)
            assert all(isinstance(k, str) and k for k in kv)
    _target("integers, meminfo, /proc/stat, cmdline, key=value", check)


def test_ryzenadj_info_table():
    def check(s):
        lim = ryzenadj.parse_info(s)
        for name in ryzenadj.INFO_ROWS.values():
            v = getattr(lim, name)
            assert v is None or isinstance(v, float)
    _target("ryzenadj -i table", check)


INF_TABLE = ("#!/bin/sh\nprintf 'CPU Family: Strix Halo\\n| Name | Value | Parameter |\\n"
             "| STAPM LIMIT | inf | stapm-limit |\\n| PPT LIMIT FAST | 120.000 | fast-limit |\\n"
             "| PPT LIMIT SLOW | 120.000 | slow-limit |\\n'\n")


def test_ryzenadj_reporting_inf_gives_null_not_infinity(tmp_path, no_daemon):
    from conftest import copy_reference

    assert ryzenadj.parse_info("| STAPM LIMIT | inf | x |").stapm_limit_w is None
    root = copy_reference(str(tmp_path / "ref"))
    os.makedirs(os.path.join(root, "usr/bin"))
    prog = os.path.join(root, "usr/bin/ryzenadj")
    with open(prog, "w") as f:
        f.write(INF_TABLE)
    os.chmod(prog, 0o755)
    rc, out, err = _main(["status", "--json", "--root", root])
    assert rc == 0, err
    doc = json.loads(out, parse_constant=_reject_constant)
    assert doc["power"]["stapm_limit_w"] is None
    rc, out, err = _main(["apply", "llm-max", "--root", root, "--state-dir",
                          str(tmp_path / "state")])
    # The limit RyzenAdj keeps reporting as inf never reads back as the 120 W written: the
    # apply completes and says so (exit 2), naming the key, with no "Infinity" anywhere.
    assert rc == 2, err
    assert "do not hold: power.stapm_w" in out and "Infinity" not in out + err, out


def test_fdinfo_and_power_profile_modes():
    def check(s):
        d = drmclients.parse_fdinfo(s)
        if d is not None:
            assert all(isinstance(v, int) for v in d["memory"].values())
            assert all(isinstance(v, int) for v in d["engines"].values())
        modes, current = parse_modes(s)
        assert all(isinstance(v, int) for v in modes.values())
        assert current is None or current in modes
    _target("DRM fdinfo, pp_power_profile_mode", check)


def test_clean_text_of_binary():
    t = Tally()

    @fuzz_settings()
    @given(raw=st.binary(max_size=4096))
    def run(raw):
        t.hit()
        s = clean_text(raw)
        assert "\x00" not in s and s == s.strip()

    run()
    record("fuzz: RootFS.clean_text of binary", **t.figures())


# --- end to end: a garbage kernel file in the simulated machine ------------------------------------

DEV = "sys/devices/pci0000:00/0000:00:08.1/0000:c3:00.0"
CPUFREQ = "sys/devices/system/cpu/cpufreq/policy0"
FILES = [
    f"{DEV}/pp_dpm_sclk", f"{DEV}/pp_dpm_mclk", f"{DEV}/pp_dpm_fclk", f"{DEV}/pp_dpm_socclk",
    f"{DEV}/pp_od_clk_voltage", f"{DEV}/power_dpm_force_performance_level",
    f"{DEV}/pp_power_profile_mode", f"{DEV}/gpu_busy_percent", f"{DEV}/mem_info_vram_total",
    f"{DEV}/mem_info_gtt_used", f"{DEV}/fw_version/smc_fw_version", f"{DEV}/uevent",
    f"{DEV}/hwmon/hwmon3/power1_average", f"{DEV}/hwmon/hwmon3/temp1_input",
    f"{DEV}/hwmon/hwmon3/temp1_label",
    "sys/firmware/acpi/platform_profile", "sys/firmware/acpi/platform_profile_choices",
    f"{CPUFREQ}/scaling_governor", f"{CPUFREQ}/scaling_available_governors",
    f"{CPUFREQ}/energy_performance_preference",
    f"{CPUFREQ}/energy_performance_available_preferences", f"{CPUFREQ}/boost",
    "sys/kernel/mm/transparent_hugepage/enabled", "sys/kernel/mm/transparent_hugepage/defrag",
    "proc/sys/vm/swappiness", "proc/sys/vm/compaction_proactiveness",
    "proc/sys/kernel/numa_balancing", "proc/meminfo", "proc/stat", "proc/cmdline",
    "sys/module/ttm/parameters/pages_limit", "etc/modprobe.d/halotune-gtt.conf",
]
PROFILES = ["llm-max", "llm-efficient", "quiet", "bench-stable", "stock"]


def _reject_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def _main(argv):
    from halotune.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_garbage_kernel_file_through_status_and_the_engine(scratch, monkeypatch, no_daemon):
    from halotune.machine import programs as _programs
    from halotune.sim.tree import lay_out
    from tuning.conftest import fast_run

    monkeypatch.setattr(_programs.Programs, "run", fast_run)
    root = os.path.join(scratch, "root")
    lay_out(root)
    state = os.path.join(scratch, "state")
    originals = {}
    for rel in FILES:
        p = os.path.join(root, rel)
        originals[rel] = open(p, "rb").read() if os.path.exists(p) else None
    t = Tally()

    @fuzz_settings(ci=250, full=1000)
    @given(rel=st.sampled_from(FILES), how=st.sampled_from(["mutate", "tokens", "binary", "empty",
                                                             "nul-padded"]),
           data=st.data(), profile=st.sampled_from(PROFILES))
    def run(rel, how, data, profile):
        orig = originals[rel] or b"0: 600Mhz *\n"
        if how == "mutate":
            b = bytearray(orig)
            for pos, byte in data.draw(st.lists(st.tuples(st.integers(0, 4095),
                                                          st.integers(0, 255)), max_size=6)):
                if b:
                    b[pos % len(b)] = byte
            cut = data.draw(st.integers(0, len(b)))
            content = bytes(b[:cut]) + data.draw(st.binary(max_size=8))
        elif how == "tokens":
            content = data.draw(text).encode("utf-8", "surrogatepass")
        elif how == "binary":
            content = data.draw(st.binary(max_size=512))
        elif how == "empty":
            content = b""
        else:
            content = orig + b"\x00" * (4096 - len(orig))
        path = os.path.join(root, rel)
        try:
            with open(path, "wb") as f:
                f.write(content)
            rc, out, err = _main(["status", "--json", "--root", root])
            assert rc in (0, 3), err
            doc = json.loads(out, parse_constant=_reject_constant)
            assert_contract_keys(doc)
            rc, out, err = _main(["apply", profile, "--dry-run", "--root", root,
                                  "--state-dir", state])
            assert rc in (0, 2, 3), err
            if rc:
                assert err.startswith("halotune: "), err
            t.hit(f"{rel.rsplit('/', 1)[-1]} dry-run exit {rc}")
        finally:
            if originals[rel] is None:
                os.unlink(path)
            else:
                with open(path, "wb") as f:
                    f.write(originals[rel])

    run()
    figures = t.figures()
    figures.pop("outcomes", None)
    exits: dict[str, int] = {}
    for k, v in t.kinds.items():
        e = k.rsplit(" ", 1)[-1]
        exits[f"exit {e}"] = exits.get(f"exit {e}", 0) + v
    record("fuzz: garbage kernel file -> status --json + apply --dry-run", **figures,
           files=len(FILES), dry_run_exits=exits)


def test_unicode_digits_in_kernel_files_do_not_crash(tmp_path, no_daemon):
    from conftest import copy_reference

    problems = []
    for rel, content, argv in (
            ("proc/meminfo", "MemTotal: \u00b2 kB\nMemAvailable: 5 kB\n", ["status", "--json"]),
            ("etc/modprobe.d/halotune-gtt.conf", "options ttm pages_limit=\u00b2\n",
             ["status", "--json"]),
            ("etc/group", "render:x:\u00b2:alice\nvideo:x:44:\n",
             ["doctor", "--json", "--user", "alice"])):
        root = copy_reference(str(tmp_path / rel.replace("/", "_")))
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
            f.write(content)
        if rel == "etc/group":
            with open(os.path.join(root, "etc/passwd"), "w", encoding="utf-8") as f:
                f.write("alice:x:1000:1000::/home/alice:/bin/sh\n")
        try:
            rc, out, err = _main([*argv, "--root", root])
            json.loads(out)
        except Exception as e:  # noqa: BLE001 - the failure being shown
            problems.append(f"{rel}: {argv[0]} raised {e!r}")
    assert not problems, problems
