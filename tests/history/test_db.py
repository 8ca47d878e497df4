"""The history database: schema and migrations, runs and tests, references, modes, damage."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from halotune.history import db as dbmod
from halotune.history.db import SCHEMA_VERSION, HistoryDB, HistoryError

from .helpers import MODEL, fingerprint, make_tests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def add(db, **kw):
    kw.setdefault("fingerprint", fingerprint())
    kw.setdefault("model", MODEL)
    kw.setdefault("backend", "CPU")
    return db.add_run(kw.pop("kind", "bench"), kw.pop("tests", make_tests()), **kw)


def test_new_database_schema_version_wal_and_mode(db_path):
    with HistoryDB(db_path) as db:
        assert db.version == SCHEMA_VERSION
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == dbmod.APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_state_mode_0640(db_path):
    HistoryDB(db_path, mode=0o640, group="halotune").close()
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o640


def test_add_get_and_list(db_path):
    with HistoryDB(db_path) as db:
        first = add(db, label="before", profile="llm-max",
                    telemetry={"avg_socket_power_w": 98.43, "max_temp_c": 64.8},
                    result={"returncode": 0})
        second = add(db, kind="import", tests=make_tests(pp=None, tg=120.7))
        run = db.get_run(first)
        assert run["kind"] == "bench" and run["label"] == "before" and run["profile"] == "llm-max"
        assert run["fingerprint"]["kernel_release"] == "6.17.0-5-generic"
        assert run["result"] == {"returncode": 0}
        assert run["model"]["name"] == "S-q4_0.gguf"
        names = [t["name"] for t in run["tests"]]
        assert names == ["pp64", "tg16"]
        tg = run["tests"][1]
        assert tg["tokens_per_s"] == pytest.approx(150.8699)
        assert tg["samples"] == pytest.approx([152.1699, 149.5699])
        assert tg["joules_per_token"] == pytest.approx(98.4 / 150.8699, abs=1e-4)
        runs = db.list_runs()
        assert [r["id"] for r in runs] == [first, second]          # oldest first
        assert runs[0]["telemetry"] == {"avg_socket_power_w": 98.43, "max_temp_c": 64.8}
        assert "fingerprint" not in runs[0]
        assert [r["id"] for r in db.list_runs(kind="import")] == [second]
        assert [r["id"] for r in db.list_runs(limit=1)] == [second]
        assert db.count() == 2


def test_extra_test_keys_round_trip(db_path):
    t = make_tests()[0] | {"power_window_s": 1.25, "n_threads": 2}
    with HistoryDB(db_path) as db:
        rid = add(db, tests=[t])
        assert db.get_run(rid)["tests"][0]["power_window_s"] == 1.25
        assert db.get_run(rid)["tests"][0]["n_threads"] == 2


def test_references(db_path):
    with HistoryDB(db_path) as db:
        with pytest.raises(HistoryError, match="holds 0 run"):
            db.get_run("@latest")
        a, b = add(db), add(db)
        assert db.get_run("@latest")["id"] == b
        assert db.get_run("@previous")["id"] == a
        assert db.get_run(str(a))["id"] == a
        with pytest.raises(HistoryError, match="no run 99 in"):
            db.get_run(99)
        with pytest.raises(HistoryError, match="use a run id, @latest or @previous"):
            db.get_run("@first")


def test_bad_kind_and_nameless_test_are_refused(db_path):
    with HistoryDB(db_path) as db:
        with pytest.raises(ValueError, match="kind 'other'"):
            db.add_run("other", [], fingerprint={})
        with pytest.raises(ValueError, match="needs a name"):
            db.add_run("bench", [{"tokens_per_s": 1.0}], fingerprint={})
        assert db.count() == 0           # nothing half-written


def test_measured_at_is_normalised_for_ordering(db_path):
    with HistoryDB(db_path) as db:
        rid = add(db, measured_at="2026-11-25T14:37:13Z")
        assert db.get_run(rid)["measured_at"] == "2026-11-25T14:37:13.000000Z"


def test_readonly_never_creates_or_writes(db_path):
    with pytest.raises(HistoryError, match="no history database at"):
        HistoryDB(db_path, readonly=True)
    assert not os.path.exists(db_path)
    with HistoryDB(db_path) as db:
        add(db)
    with HistoryDB(db_path, readonly=True) as ro:
        assert ro.count() == 1
        with pytest.raises(HistoryError, match="read-only"):
            add(ro)


def test_readonly_falls_back_to_immutable_when_the_wal_index_cannot_be_made(db_path, monkeypatch):
    """A group member reading /var/lib/halotune/history.db while no writer has it open cannot
    create the -shm file: the reader then reads the main file (writers checkpoint)."""
    with HistoryDB(db_path) as db:
        add(db)
        add(db)
    real = sqlite3.connect
    uris = []

    def connect(database, *a, **kw):
        uris.append(database)
        if "immutable=1" not in database:
            raise sqlite3.OperationalError("unable to open database file")
        return real(database, *a, **kw)
    monkeypatch.setattr(dbmod.sqlite3, "connect", connect)
    with HistoryDB(db_path, readonly=True) as ro:
        assert ro.count() == 2
    assert "immutable=1" in uris[-1]


def test_corrupted_file_names_the_file(db_path):
    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    with open(db_path, "wb") as f:
        f.write(b"this is not an sqlite database at all, just some bytes\n" * 100)
    for readonly in (False, True):
        with pytest.raises(HistoryError) as e:
            HistoryDB(db_path, readonly=readonly)
        assert db_path in str(e.value) and "move it aside" in str(e.value)


def test_truncated_database_is_refused_cleanly(db_path):
    with HistoryDB(db_path) as db:
        for _ in range(30):
            add(db)
    size = os.path.getsize(db_path)
    with open(db_path, "r+b") as f:
        f.seek(4096)
        f.write(b"\xff" * (size - 4096))   # page 1 (header, schema) intact, the tables garbage
    for p in (db_path + "-wal", db_path + "-shm"):
        if os.path.exists(p):
            os.remove(p)
    with pytest.raises(HistoryError) as e:
        with HistoryDB(db_path, readonly=True) as ro:
            ro.list_runs()
            ro.get_run(1)
    assert db_path in str(e.value)


def test_other_programs_database_is_refused(db_path):
    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE moz_places (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(HistoryError, match="another program.*moz_places"):
        HistoryDB(db_path)
    conn = sqlite3.connect(db_path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["moz_places"]


def test_newer_schema_is_refused(db_path):
    HistoryDB(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(HistoryError, match="newer halotune"):
        HistoryDB(db_path)


def test_migrations_apply_in_order_and_keep_data(db_path, monkeypatch):
    with HistoryDB(db_path) as db:
        rid = add(db, label="kept")
    # The next release appends a migration; an existing database is upgraded on open.
    monkeypatch.setattr(dbmod, "MIGRATIONS", dbmod.MIGRATIONS + [[
        "ALTER TABLE runs ADD COLUMN host TEXT",
        "UPDATE runs SET host = 'strix'",
    ]])
    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with HistoryDB(db_path) as db:
        assert db.version == SCHEMA_VERSION + 1
        assert db.get_run(rid)["label"] == "kept"
        assert db.conn.execute("SELECT host FROM runs").fetchone()[0] == "strix"
    with HistoryDB(db_path) as db:            # applied once
        assert db.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


WRITER = textwrap.dedent("""
    import sys, time
    from halotune.history.db import HistoryDB
    path, name, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    while time.time() < start:
        time.sleep(0.001)
    for i in range(n):
        with HistoryDB(path, mode=0o640) as db:
            db.add_run("bench", [{"name": "tg16", "tokens_per_s": 100.0 + i}],
                       fingerprint={"writer": name}, label=f"{name}-{i}")
        time.sleep(0.01)                   # spread the writes so both writers overlap
    print("done")
""")


def test_two_processes_writing_at_once(db_path):
    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    n = 40
    start = time.time() + 3.0                # both interpreters started, even on a busy machine
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, db_path, name, str(n), str(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for name in ("a", "b")]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and out.strip() == "done", err
    with HistoryDB(db_path, readonly=True) as db:
        runs = db.list_runs(limit=1000)
    assert len(runs) == 2 * n
    labels = {r["label"] for r in runs}
    assert labels == {f"{w}-{i}" for w in "ab" for i in range(n)}
    assert len({r["id"] for r in runs}) == 2 * n
    # both writers' runs interleave: they really ran at the same time
    order = [r["label"][0] for r in runs]
    assert order.index("b") < n and order.index("a") < n


def test_last_tg_efficiency(db_path):
    with HistoryDB(db_path) as db:
        assert db.last_tg_efficiency() is None
        add(db, kind="probe", result={"roofline": {"tg_efficiency": 0.61}})
        add(db, kind="probe", result={"roofline": {"tg_efficiency": None}})
        add(db, kind="bench")
        assert db.last_tg_efficiency() == pytest.approx(0.61)
