"""`halotune history`: the runs table, JSON, show, the merged state + user view, and clear
messages for damaged or missing databases."""

from __future__ import annotations

import os

import pytest

from halotune.history.db import HistoryDB
from halotune.history.record import state_db_path, user_db_path

from .helpers import MODEL, cli, fingerprint, make_tests


@pytest.fixture
def root(hist_env):
    r = hist_env / "root"
    r.mkdir()
    return str(r)


def put(path, n=1, **kw):
    with HistoryDB(path) as db:
        return [db.add_run(kw.get("kind", "bench"), make_tests(tg=150.0 - i), model=MODEL,
                           backend="CPU", fingerprint=fingerprint(),
                           telemetry={"avg_socket_power_w": 98.43}, label=kw.get("label"),
                           profile=kw.get("profile")) for i in range(n)]


def test_empty_history(root):
    r = cli("history", "--root", root)
    assert r.rc == 0 and r.out.startswith("no runs stored yet (looked in ")
    r = cli("history", "--root", root, "--json")
    doc = r.json()
    assert doc["schema"] == "halotune.history/1" and doc["runs"] == []
    assert [d["role"] for d in doc["databases"]] == ["state", "user"]


def test_list_table_and_json(root):
    put(state_db_path(root), 2, label="base", profile="llm-max")
    put(state_db_path(root), 1, kind="probe")
    r = cli("history", "--root", root)
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert lines[0].split() == ["REF", "WHEN", "(UTC)", "KIND", "MODEL", "BACKEND", "PROFILE",
                                "TESTS", "W", "LABEL"]
    assert lines[1].split()[0] == "1" and "llm-max" in lines[1] and "base" in lines[1]
    assert "pp64 533.1, tg16 150.0" in lines[1] and "98.4" in lines[1]
    assert lines[3].split()[0] == "3" and " probe " in lines[3]
    doc = cli("history", "--root", root, "--json", "--limit", "2").json()
    assert [r["ref"] for r in doc["runs"]] == ["2", "3"]
    assert doc["databases"][0]["runs"] == 3
    doc = cli("history", "--root", root, "--json", "--kind", "probe").json()
    assert [r["kind"] for r in doc["runs"]] == ["probe"]


def test_state_and_user_databases_are_merged(root):
    put(state_db_path(root), 1, label="state run")
    put(user_db_path(), 1, label="user run")
    doc = cli("history", "--root", root, "--json").json()
    assert [(r["ref"], r["source"], r["label"]) for r in doc["runs"]] == [
        ("1", "state", "state run"), ("u1", "user", "user run")]
    r = cli("history", "--root", root, "show", "u1")
    assert r.rc == 0 and "run u1 (bench)" in r.out and user_db_path() in r.out
    r = cli("history", "--root", root, "compare", "1", "u1")
    assert r.rc == 0 and "0 fields changed" in r.out
    assert cli("history", "--root", root, "show", "@latest", "--json").json()["run"]["ref"] == "u1"
    # reading never creates or changes anything
    stat_before = os.stat(state_db_path(root)).st_mtime_ns
    cli("history", "--root", root)
    assert os.stat(state_db_path(root)).st_mtime_ns == stat_before


def test_show(root):
    put(state_db_path(root), 1, label="one")
    r = cli("history", "--root", root, "show", "1")
    assert r.rc == 0, r
    assert "run 1 (bench)" in r.out and "label: one" in r.out
    assert "pp64" in r.out and "tg16" in r.out
    assert "kernel_release          6.17.0-5-generic" in r.out
    assert "tdp.stapm_w" in r.out
    doc = cli("history", "--root", root, "show", "1", "--json").json()
    assert doc["run"]["fingerprint"]["gpu"]["gfx_target"] == "gfx1151"
    r = cli("history", "--root", root, "show", "u4")
    assert r.rc == 2 and "no run u4" in r.err


def test_damaged_database_is_named_never_a_traceback(root):
    path = state_db_path(root)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"\x00garbage" * 512)
    put(user_db_path(), 1, label="still readable")
    r = cli("history", "--root", root)
    assert r.rc == 0, r
    assert path in r.err and "not a usable halotune history database" in r.err
    assert "still readable" in r.out and "Traceback" not in r.err
    r = cli("history", "--db", path)
    assert r.rc == 2 and path in r.err and "Traceback" not in r.err


def test_missing_explicit_database(hist_env):
    r = cli("history", "--db", str(hist_env / "none.db"))
    assert r.rc == 2 and "no history database at" in r.err


def test_usage_errors(root):
    assert cli("history", "--root", root, "--limit", "x").rc == 64
    assert cli("history", "--root", root, "--kind", "other").rc == 64
    r = cli("history", "--root", root, "show", "first")
    assert r.rc == 2 and "run reference 'first'" in r.err


def test_cli_modules_stay_light_and_constants_agree():
    """main.py builds every verb's parser: these modules must not import sqlite3 & co."""
    import subprocess
    import sys

    code = ("import sys; import halotune.cli.history, halotune.cli.bench; "
            "print(sorted(m for m in ('sqlite3', 'halotune.history', 'pydantic', "
            "'halotune.bench.runner') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    from halotune.cli import history as cli_history
    from halotune.history import HISTORY_SCHEMA
    from halotune.history.db import KINDS
    assert cli_history.HISTORY_SCHEMA == HISTORY_SCHEMA and cli_history.KINDS == KINDS
