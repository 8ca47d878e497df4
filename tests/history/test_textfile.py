"""`halotune history check --textfile FILE`: the regression alarm as metrics for node_exporter's
textfile collector, which contrib/prometheus/halotune.rules.yml alerts on."""

from __future__ import annotations

import os
import shutil
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from halotune.history.record import record

from .helpers import MODEL, cli, fingerprint, make_tests


def _samples(path):
    with open(path) as f:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(f.read()) for s in fam.samples}


def test_textfile_counts_flagged_tests(db_path, tmp_path):
    for tg in (150.0, 151.0, 100.0):
        record("bench", make_tests(tg=tg), fingerprint=fingerprint(), backend="CPU", model=MODEL,
               db_path=db_path)
    out = str(tmp_path / "halotune.prom")
    r = cli("history", "check", "--db", db_path, "--textfile", out)
    assert r.rc == 2, r
    samples = _samples(out)
    assert samples[("halotune_history_regressions", ())] == 1
    drop = samples[("halotune_history_regression_drop_percent",
                    (("model", "S-q4_0.gguf"), ("run", "3"), ("test", "tg16")))]
    assert round(drop, 2) == round((150.5 - 100.0) / 150.5 * 100, 2)
    assert samples[("halotune_history_check_timestamp_seconds", ())] > 1.7e9
    assert oct(os.stat(out).st_mode & 0o777) == "0o644"
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
    promtool = shutil.which("promtool")
    if promtool:      # the exposition lint, where promtool is installed
        lint = subprocess.run([promtool, "check", "metrics"], input=open(out).read(),
                              capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr

    # the run before the slow one: nothing flagged, and the file says 0
    r = cli("history", "check", "2", "--db", db_path, "--textfile", out)
    assert r.rc == 0, r
    samples = _samples(out)
    assert samples[("halotune_history_regressions", ())] == 0
    assert not [k for k in samples if k[0] == "halotune_history_regression_drop_percent"]


def test_unwritable_textfile_is_named(db_path, tmp_path):
    record("bench", make_tests(), fingerprint=fingerprint(), backend="CPU", model=MODEL,
           db_path=db_path)
    target = str(tmp_path / "missing-dir" / "halotune.prom")
    r = cli("history", "check", "--db", db_path, "--textfile", target)
    assert r.rc == 2 and f"cannot write {target}" in r.err and "Traceback" not in r.err
