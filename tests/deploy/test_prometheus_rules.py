"""contrib/prometheus/halotune.rules.yml: valid for promtool, its unit tests pass, and every
metric it alerts on is one halotune exports (a renamed metric would silently never fire)."""

from __future__ import annotations

import os
import re
import subprocess

from .conftest import REPO, require_tool

RULES = os.path.join(REPO, "contrib", "prometheus", "halotune.rules.yml")
RULE_TESTS = os.path.join(REPO, "contrib", "prometheus", "tests", "halotune.rules.test.yml")
ALERTS = {"HalotuneMetricsAbsent", "HalotuneTelemetryStale", "HalotuneThermalThrottlingSustained",
          "HalotunePowerLimitThrottlingSustained", "HalotuneProfileDrifted",
          "HalotuneRegressionFlagged"}


def _promtool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_promtool_check_rules():
    r = _promtool("check", "rules", RULES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in r.stdout


def test_promtool_unit_tests():
    r = _promtool("test", "rules", RULE_TESTS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_has_a_unit_test():
    with open(RULES) as f:
        names = set(re.findall(r"^\s*- alert: (\w+)", f.read(), re.M))
    with open(RULE_TESTS) as f:
        tested = set(re.findall(r"alertname: (\w+)", f.read()))
    assert names == ALERTS and tested == ALERTS


def test_rules_use_only_exported_metrics():
    from halotune.daemon.exporter import METRICS
    from halotune.history import textfile

    exported = {m.name for m in METRICS}
    exported |= set(re.findall(r"^# TYPE (\w+)", textfile.render("1", [], now=0.0), re.M))
    with open(RULES) as f:
        text = f.read()
    used = set(re.findall(r"\b(halotune_[a-z_]+)\b", "\n".join(
        line for line in text.splitlines() if line.strip().startswith("expr:"))))
    assert used and used <= exported, used - exported
