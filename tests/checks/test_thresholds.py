"""The thresholds file: every default documented, overrides validated with clear messages."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from halotune.checks.thresholds import ThresholdError, load_thresholds

from .conftest import write


def test_every_threshold_has_a_comment():
    text = resources.files("halotune.checks").joinpath("thresholds.toml").read_text("utf-8")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+ = ", line):
            above = lines[i - 1].strip()
            assert above.startswith("#") or lines[i - 1].rstrip().endswith((",", "[")) or \
                lines[i - 2].strip().startswith("#"), f"undocumented: {line}"


def test_defaults_load():
    th = load_thresholds()
    assert th["window"]["seconds"] <= 2.0
    assert th["forecast"]["default_efficiency"] == [0.55, 0.80]
    assert "llama-server" in th["processes"]["servers"]


def test_override_changes_only_given_values(tmp_path):
    th = load_thresholds(write(str(tmp_path), "t.toml", "[cpu]\nbusy_warn_percent = 5\n"))
    assert th["cpu"]["busy_warn_percent"] == 5 and th["cpu"]["busy_fail_percent"] == 50.0


@pytest.mark.parametrize("text,message", [
    ("[gpuu]\nx = 1\n", "[gpuu]: unknown section"),
    ("[gpu]\nbusy = 1\n", "gpu.busy: unknown threshold"),
    ("[gpu]\nbusy_fail_percent = 'high'\n", "gpu.busy_fail_percent = 'high': must be a number"),
    ("[gpu]\nbusy_fail_percent = -1\n", "must not be negative"),
    ("[window]\nsample_hz = 0\n", "window.sample_hz = 0: must be above 0"),
    ("[gpu\n", "not valid TOML"),
])
def test_bad_overrides_name_file_key_and_value(tmp_path, text, message):
    path = write(str(tmp_path), "t.toml", text)
    with pytest.raises(ThresholdError) as e:
        load_thresholds(path)
    assert str(e.value).startswith(path) and message in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ThresholdError, match="cannot read"):
        load_thresholds(str(tmp_path / "absent.toml"))
