"""The regression alarm: a result well below the median of earlier comparable ones is flagged,
naming what changed in the fingerprint."""

from __future__ import annotations

import pytest

from halotune.history.db import HistoryDB
from halotune.history.regression import check_regression

from .helpers import MODEL, cli, fingerprint, make_tests

BASELINE_TG = [150.9, 149.2, 152.3, 151.0, 148.8]


def baseline(db, values=BASELINE_TG, **kw):
    ids = []
    for i, tg in enumerate(values):
        ids.append(db.add_run(kw.get("kind", "bench"), make_tests(pp=533.0 + i, tg=tg),
                              fingerprint=fingerprint(), model=MODEL,
                              backend=kw.get("backend", "CPU")))
    return ids


def test_injected_regression_with_new_kernel_is_flagged_naming_kernel_release(db_path):
    with HistoryDB(db_path) as db:
        ids = baseline(db)
        median = 150.9
        slow = db.add_run("bench", make_tests(pp=533.0, tg=median * 0.8), model=MODEL,
                          backend="CPU", fingerprint=fingerprint(kernel_release="6.18.4-1-generic"))
        alarms = check_regression(db, slow)
    assert len(alarms) == 1                                  # pp64 held, tg16 dropped
    a = alarms[0]
    assert a["test"] == "tg16" and a["run"] == str(slow)
    assert a["baseline_median"] == pytest.approx(median)
    assert a["drop_percent"] == pytest.approx(20.0, abs=0.01)
    assert a["baseline_runs"] == [str(i) for i in ids]
    assert a["median_runs"] == [str(ids[0])]                 # 150.9 is the median of five
    assert [c["key"] for c in a["changed"]] == ["kernel_release"]
    assert a["changed"][0] == {"key": "kernel_release", "before": "6.17.0-5-generic",
                               "after": "6.18.4-1-generic"}
    assert "kernel_release 6.17.0-5-generic -> 6.18.4-1-generic" in a["message"]
    assert "20.0 % below the median 150.90" in a["message"]


def test_within_threshold_is_not_flagged(db_path):
    with HistoryDB(db_path) as db:
        baseline(db)
        ok = db.add_run("bench", make_tests(pp=533.0, tg=150.9 * 0.97), model=MODEL,
                        backend="CPU", fingerprint=fingerprint())
        assert check_regression(db, ok) == []
        assert check_regression(db, ok, threshold_percent=2.0)[0]["test"] == "tg16"


def test_only_comparable_results_count(db_path):
    with HistoryDB(db_path) as db:
        baseline(db, backend="Vulkan")               # another backend
        baseline(db, kind="sweep")                   # a sweep varies the TDP on purpose
        other_model = dict(MODEL, name="other.gguf")
        db.add_run("bench", make_tests(pp=533.0, tg=150.0, model="other.gguf"),
                   fingerprint=fingerprint(), model=other_model, backend="CPU")
        first_cpu = db.add_run("bench", make_tests(pp=533.0, tg=100.0), model=MODEL,
                               backend="CPU", fingerprint=fingerprint())
        assert check_regression(db, first_cpu) == []       # nothing comparable before it


def test_a_run_is_only_compared_with_earlier_measurements(db_path):
    with HistoryDB(db_path) as db:
        # imported later, measured earlier: a faster old result does not judge a newer run
        newer = db.add_run("bench", make_tests(pp=None, tg=120.0), model=MODEL, backend="CPU",
                           fingerprint=fingerprint(), measured_at="2026-11-25T12:00:00Z")
        db.add_run("import", make_tests(pp=None, tg=150.0), model=MODEL, backend="CPU",
                   fingerprint=fingerprint(), measured_at="2026-11-01T12:00:00Z")
        assert check_regression(db, newer)[0]["baseline_runs"] == ["2"]
        assert check_regression(db, 2) == []


def test_no_fingerprint_change_is_said(db_path):
    with HistoryDB(db_path) as db:
        baseline(db)
        slow = db.add_run("bench", make_tests(pp=None, tg=100.0), model=MODEL, backend="CPU",
                          fingerprint=fingerprint())
        (a,) = check_regression(db, slow)
    assert a["changed"] == [] and a["message"].endswith("no fingerprint field changed")


def test_history_check_command(db_path):
    with HistoryDB(db_path) as db:
        baseline(db)
        db.add_run("bench", make_tests(pp=533.0, tg=120.7), model=MODEL, backend="CPU",
                   fingerprint=fingerprint(kernel_release="6.18.4-1-generic"))
    r = cli("history", "--db", db_path, "check")
    assert r.rc == 2, r
    assert "REGRESSION tg16" in r.out and "kernel_release" in r.out
    r = cli("history", "check", "--db", db_path, "--json", "1")
    assert r.rc == 0, r
    doc = r.json()
    assert doc["schema"] == "halotune.history/1" and doc["flagged"] is False
    r = cli("history", "check", "--db", db_path, "--json", "--threshold", "25")
    assert r.rc == 0 and r.json()["alarms"] == []
    r = cli("history", "check", "--db", db_path, "--threshold", "150")
    assert r.rc == 64 and "between 0 and 100" in r.err


def test_validations_compare_only_under_the_same_profile(db_path):
    """quiet is meant to be slower than llm-max: no alarm across profiles, one within."""
    with HistoryDB(db_path) as db:
        for tg in BASELINE_TG:
            db.add_run("validate", make_tests(pp=533.0, tg=tg), fingerprint=fingerprint(),
                       model=MODEL, backend="CPU", profile="llm-max")
        quiet = db.add_run("validate", make_tests(pp=533.0, tg=120.0), fingerprint=fingerprint(),
                           model=MODEL, backend="CPU", profile="quiet")
        assert check_regression(db, quiet) == []
        slow = db.add_run("validate", make_tests(pp=533.0, tg=120.0), fingerprint=fingerprint(),
                          model=MODEL, backend="CPU", profile="llm-max")
        assert [a["test"] for a in check_regression(db, slow)] == ["tg16"]
