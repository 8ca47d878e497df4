"""`halotune status` end to end: the golden JSON of the reference tree (in-process, through
`python -m halotune`, the console script when installed, --root and HALOTUNE_ROOT), the exit
codes of the contract, and --help/--version of every command.

Regenerate the golden file after an intended change of the output with
    HALOTUNE_UPDATE_GOLDEN=1 python3 -m pytest tests/cli/test_status_cli.py
and review its diff like code.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import build_trees as bt
from status_contract import RFC3339_UTC, assert_contract_keys
import halotune
from halotune.cli import exitcodes
from halotune.cli.main import main

GOLDEN = os.path.join(bt.FIXTURES, "golden", "status-reference.json")


def normalise(doc: dict, root: str) -> dict:
    """Replace what changes from run to run or machine to machine, after checking its shape."""
    doc = json.loads(json.dumps(doc))
    assert RFC3339_UTC.match(doc["time"]), doc["time"]
    assert doc["root"] == os.path.abspath(root)
    assert doc["halotune_version"] == halotune.__version__
    doc["time"] = "<time>"
    doc["root"] = "<root>"
    doc["halotune_version"] = "<version>"
    hint = doc["power"]["limits_hint"]
    if hint is not None:
        doc["power"]["limits_hint"] = hint.replace(os.path.abspath(root), "<root>")
    return doc


def assert_matches_golden(doc: dict, root: str):
    got = json.dumps(normalise(doc, root), indent=2, sort_keys=False) + "\n"
    if os.environ.get("HALOTUNE_UPDATE_GOLDEN"):
        os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
        with open(GOLDEN, "w") as f:
            f.write(got)
    with open(GOLDEN) as f:
        want = f.read()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                            "golden/status-reference.json", "halotune status --json"))
        pytest.fail("status --json differs from the golden file "
                    "(HALOTUNE_UPDATE_GOLDEN=1 to accept):\n" + diff, pytrace=False)


def run_main(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:          # argparse --help/--version/usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(args, env, cmd=None, cwd=None):
    cmd = cmd or [sys.executable, "-m", "halotune"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=60, stdin=subprocess.DEVNULL)


# --- golden ----------------------------------------------------------------------------------

def test_status_json_matches_golden_in_process(reference_root, capsys):
    code, out, err = run_main(["status", "--json", "--root", reference_root], capsys)
    assert code == exitcodes.OK == 0, err
    doc = json.loads(out)
    # The contract values, explicitly (the golden file holds them too).
    assert_contract_keys(doc)
    assert doc["schema"] == "halotune.status/1" and RFC3339_UTC.match(doc["time"])
    (g,) = doc["gpus"]
    assert (g["socket_power_w"], g["gfx_power_w"]) == (98.43, 71.25)
    assert (g["sclk_mhz"], g["mclk_mhz"], g["edge_temp_c"]) == (2743, 1000, 62.37)
    assert (g["vram_total_bytes"], g["gtt_total_bytes"]) == (536870912, 118111600640)
    assert g["dram_read_bytes_per_s"] == 48213000000
    assert (g["gpu_metrics_version"], g["device_id"], g["gfx_target"]) == ("3.0", "0x1586", "gfx1151")
    assert doc["memory"]["ttm_pages_limit"] == 28835840
    assert doc["memory"]["gpu_usable_bytes"] == 118648471552
    assert_matches_golden(doc, reference_root)


def test_golden_holds_the_contract_values():
    with open(GOLDEN) as f:
        doc = json.load(f)
    (g,) = doc["gpus"]
    assert doc["schema"] == "halotune.status/1"
    assert (g["socket_power_w"], g["gfx_power_w"]) == (98.43, 71.25)
    assert (g["sclk_mhz"], g["mclk_mhz"], g["edge_temp_c"]) == (2743, 1000, 62.37)
    assert (g["vram_total_bytes"], g["gtt_total_bytes"]) == (536870912, 118111600640)
    assert g["dram_read_bytes_per_s"] == 48213000000
    assert (g["gpu_metrics_version"], g["device_id"], g["gfx_target"]) == ("3.0", "0x1586", "gfx1151")
    assert doc["memory"]["ttm_pages_limit"] == 28835840
    assert doc["memory"]["gpu_usable_bytes"] == 118648471552
    assert "<root>/usr/local/bin/ryzenadj" in doc["power"]["limits_hint"]


def test_status_json_subprocess_with_root_option(reference_root, subprocess_env, tmp_path):
    p = run_cli(["status", "--json", "--root", reference_root], subprocess_env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert_matches_golden(json.loads(p.stdout), reference_root)


def test_status_json_subprocess_with_environment_root(reference_root, subprocess_env, tmp_path):
    env = dict(subprocess_env, HALOTUNE_ROOT=reference_root)
    p = run_cli(["status", "--json"], env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert_matches_golden(json.loads(p.stdout), reference_root)


def test_root_option_wins_over_environment(reference_root, empty_root, subprocess_env, tmp_path):
    env = dict(subprocess_env, HALOTUNE_ROOT=empty_root)
    p = run_cli(["status", "--json", "--root", reference_root], env, cwd=tmp_path)
    assert p.returncode == 0 and json.loads(p.stdout)["root"] == reference_root


def test_status_json_through_the_console_script(reference_root, subprocess_env, tmp_path):
    # The script pip installed beside this interpreter (.venv/bin/halotune), else one on PATH.
    beside = os.path.join(os.path.dirname(sys.executable), "halotune")
    exe = beside if os.access(beside, os.X_OK) else shutil.which("halotune")
    if exe is None:
        pytest.skip("the halotune console script is not installed (run ./bootstrap.sh test)")
    p = run_cli(["status", "--json", "--root", reference_root], subprocess_env, cmd=[exe], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert_matches_golden(json.loads(p.stdout), reference_root)
    env = dict(subprocess_env, HALOTUNE_ROOT=reference_root)
    p = run_cli(["status", "--json"], env, cmd=[exe], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert_matches_golden(json.loads(p.stdout), reference_root)


# --- other trees and exit codes --------------------------------------------------------------

@pytest.mark.parametrize("tree", ["navi31_root", "phoenix_root"])
def test_status_json_other_trees_exit_0(tree, request, capsys):
    root = request.getfixturevalue(tree)
    code, out, err = run_main(["status", "--json", "--root", root], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert_contract_keys(doc)
    (g,) = doc["gpus"]
    assert g["card"] == "card0"
    # v1.x / v2.x have no DRAM counters: JSON null, present, not absent.
    assert g["dram_read_bytes_per_s"] is None and g["dram_write_bytes_per_s"] is None
    assert g["dram_counters_saturated"] is False
    assert doc["npu"] == {"activity_percent": None, "power_w": None, "read_bytes_per_s": None,
                          "write_bytes_per_s": None}
    assert doc["power"]["stapm_limit_w"] is None and doc["memory"]["gtt_pending_bytes"] is None
    assert '"dram_read_bytes_per_s": null' in out


def test_empty_root_json_exits_3_with_no_gpus(empty_root, subprocess_env, tmp_path):
    p = run_cli(["status", "--json", "--root", empty_root], subprocess_env, cwd=tmp_path)
    assert p.returncode == exitcodes.NO_AMD_GPU == 3
    doc = json.loads(p.stdout)
    assert doc["gpus"] == [] and doc["schema"] == "halotune.status/1"


def test_empty_root_once_exits_3_and_names_the_searched_root(empty_root, capsys):
    code, out, err = run_main(["status", "--once", "--root", empty_root], capsys)
    assert code == 3
    assert out == ""
    assert f"{empty_root}/sys/class/drm" in err
    assert "no AMD GPU found" in err


def test_once_renders_the_reference(reference_root, capsys):
    code, out, err = run_main(["status", "--once", "--root", reference_root], capsys)
    assert code == 0, err
    assert "card1 0000:c3:00.0" in out and "[0x1586 gfx1151] APU" in out
    assert "power socket 98.43 W   gfx 71.25 W" in out
    assert "DRAM read 48.2 GB/s" in out
    assert f"[root {reference_root}]" in out


def test_piped_status_without_once_prints_one_frame(reference_root, subprocess_env, tmp_path):
    p = run_cli(["status", "--root", reference_root], subprocess_env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("GPU card1") == 1 and "\x1b[2J" not in p.stdout


@pytest.mark.parametrize("argv", [
    ["status", "--bogus"],
    ["--log-level", "loud", "status"],
    ["status", "--interval", "fast"],
    ["frobnicate"],
    [],                                   # no command: help on stderr/stdout, usage status
])
def test_usage_errors_exit_64(argv, capsys):
    code, out, err = run_main(argv, capsys)
    assert code == exitcodes.USAGE == 64
    assert "usage: halotune" in (out + err)


def test_usage_error_exit_64_in_a_subprocess(subprocess_env, tmp_path):
    p = run_cli(["status", "--no-such-option"], subprocess_env, cwd=tmp_path)
    assert p.returncode == 64
    assert "unrecognized arguments: --no-such-option" in p.stderr


@pytest.mark.parametrize("argv", [
    ["--help"], ["status", "--help"], ["sim", "--help"], ["snapshot", "--help"],
])
def test_help_of_every_command_exits_0(argv, capsys):
    code, out, err = run_main(argv, capsys)
    assert code == 0
    assert out.startswith("usage: halotune") and err == ""


def test_every_command_has_help(capsys):
    code, out, _ = run_main(["--help"], capsys)
    commands = set(re.findall(r"^    (\w+)\s", out, re.M))
    assert {"status", "sim", "snapshot"} <= commands
    for command in commands:
        code, sub_out, err = run_main([command, "--help"], capsys)
        assert code == 0 and sub_out.startswith(f"usage: halotune {command}"), command


def test_version_exits_0(subprocess_env, tmp_path, capsys):
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0 and out.strip() == f"halotune {halotune.__version__}"
    p = run_cli(["--version"], subprocess_env, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == f"halotune {halotune.__version__}"
