"""The history database: every probe, validation, bench, sweep and imported result, with the
fingerprint and telemetry it was measured under.

SQLite (standard library) in WAL mode with a busy timeout, so several writers (the daemon, a
bench, an import) and any number of readers work at once; every write is one IMMEDIATE
transaction. The schema is versioned from the first release: PRAGMA user_version holds the
number of MIGRATIONS applied, each migration runs once, in order, inside the transaction that
bumps the version. PRAGMA application_id marks the file as halotune's, so another program's
database is never "migrated". Fingerprint, result, telemetry, model and forecast are stored
as JSON text; the numbers history queries on (per-test throughput, energy) are columns.

Readers open the file read-only (mode=ro). A reader that cannot create the WAL index beside
a database it may only read (the state database in /var/lib/halotune, read by a member of
group halotune while no writer has it open) falls back to immutable=1: writers checkpoint
after each commit, so the main file holds every committed run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import uuid as _uuid
from urllib.parse import quote

from halotune.machine.parse import is_uint

APPLICATION_ID = 0x48414C54          # "HALT": halotune's history
BUSY_TIMEOUT_MS = 15000
KINDS = ("probe", "validate", "bench", "import", "sweep")

# Ordered: MIGRATIONS[i] takes the schema from version i to i + 1. Never edit a released one;
# append. Each is a list of statements run in one transaction with the version bump.
MIGRATIONS: list[list[str]] = [
    [  # 1: runs and their tests
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            uuid TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,          -- RFC 3339 UTC, when it was recorded
            measured_at TEXT NOT NULL,         -- when it was measured (imports: llama-bench test_time)
            kind TEXT NOT NULL,
            label TEXT,
            profile TEXT,
            backend TEXT,
            model_name TEXT,
            model_sha256 TEXT,
            model_json TEXT,
            fingerprint_json TEXT NOT NULL,
            result_json TEXT,
            telemetry_json TEXT,
            forecast_json TEXT,
            origin_json TEXT
        )""",
        """CREATE TABLE tests (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            name TEXT NOT NULL,
            model_name TEXT,
            n_prompt INTEGER,
            n_gen INTEGER,
            n_depth INTEGER,
            tokens_per_s REAL,
            stddev REAL,
            cv_percent REAL,
            joules_per_token REAL,
            avg_power_w REAL,
            samples_json TEXT,
            extra_json TEXT,
            PRIMARY KEY (run_id, seq)
        )""",
        "CREATE INDEX tests_by_name ON tests(name, model_name)",
        "CREATE INDEX runs_by_time ON runs(measured_at)",
        f"PRAGMA application_id = {APPLICATION_ID}",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

TEST_COLUMNS = ("name", "model_name", "n_prompt", "n_gen", "n_depth", "tokens_per_s", "stddev",
                "cv_percent", "joules_per_token", "avg_power_w")


def machine_of(origin: dict | None) -> str | None:
    """The machine a run was measured on when it came from another machine's history export
    (origin {"via": "fleet-import", "machine": {"name": ...}}); None for runs measured here."""
    machine = (origin or {}).get("machine") if isinstance(origin, dict) else None
    name = machine.get("name") if isinstance(machine, dict) else None
    return name if isinstance(name, str) and name else None


class HistoryError(Exception):
    """The database cannot be used; the message names the file and says what to do."""


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def normalize_time(text: str | None) -> str | None:
    """An RFC 3339 time as now_rfc3339 writes it (UTC, microseconds), so stored times sort as
    strings; None for text that is not a time."""
    if not isinstance(text, str) or not text:
        return None
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def _dumps(obj) -> str | None:
    return None if obj is None else json.dumps(obj, sort_keys=True, separators=(",", ":"),
                                               allow_nan=False, default=str)


def _loads(text):
    return None if text is None else json.loads(text)


def create_file(path: str, mode: int, group: str | None = None) -> None:
    """Create an empty database file with exactly `mode` (and `group` when it exists and we
    may give it), before SQLite opens it: SQLite creates its -wal and -shm files with the
    database's mode and owner."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, mode)
        if group:
            import grp

            try:
                os.fchown(fd, -1, grp.getgrnam(group).gr_gid)
            except (KeyError, PermissionError):
                pass     # no such group, or not root: the file stays the creator's
    finally:
        os.close(fd)


def _chgrp(path: str, group: str) -> None:
    import grp

    try:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    except (KeyError, PermissionError):
        pass         # no such group, or not root


class HistoryDB:
    """One history database file. `readonly` never creates, migrates or writes."""

    def __init__(self, path: str, readonly: bool = False, mode: int = 0o600,
                 group: str | None = None):
        self.path = os.path.abspath(path)
        self.readonly = readonly
        self.version = 0
        try:
            if readonly:
                self._open_readonly()
            else:
                self._open_writable(mode, group)
        except sqlite3.DatabaseError as e:
            self._fail(e)

    # --- opening ---------------------------------------------------------------------------------
    def _fail(self, e: Exception):
        text = str(e)
        if isinstance(e, sqlite3.OperationalError) and ("unable to open" in text
                                                        or "readonly" in text):
            raise HistoryError(f"cannot open the history database {self.path}: {text} "
                               "(check the file's permissions)") from None
        raise HistoryError(
            f"{self.path} is not a usable halotune history database ({text}); move it aside "
            f"(mv {self.path} {self.path}.bad) and halotune starts a new one") from None

    def _open_readonly(self) -> None:
        if not os.path.exists(self.path):
            raise HistoryError(f"no history database at {self.path}")
        uri = "file:" + quote(self.path)
        try:
            self.conn = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None,
                                        timeout=BUSY_TIMEOUT_MS / 1000)
            self._check()
        except sqlite3.OperationalError as e:
            if "unable to open" not in str(e) and "readonly" not in str(e):
                raise
            # No writer holds it open and we may not create its -shm: read the main file.
            self.conn = sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True,
                                        isolation_level=None)
            self._check()

    def _open_writable(self, mode: int, group: str | None) -> None:
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            from halotune.machine import durable

            # As the journal's StateDir makes it: group-readable for a group-readable database
            # (the state DB, 0640 root:halotune), private for a user's own.
            durable.ensure_dir(directory, mode=0o750 if mode & 0o040 else 0o700)
            if group and mode & 0o040:
                _chgrp(directory, group)
        create_file(self.path, mode, group)
        self.conn = sqlite3.connect(self.path, isolation_level=None,
                                    timeout=BUSY_TIMEOUT_MS / 1000)
        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Opening (the switch to WAL, migrations) is serialised between processes with a
        # flock on the directory: SQLite answers "database is locked" at once, without
        # waiting, when two connections change the journal mode of a new database together.
        # Not on the database file itself: closing any descriptor of that file would drop
        # SQLite's own POSIX locks of this process (and another process could then
        # checkpoint the WAL away under it).
        import fcntl

        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._check()
            if self.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")    # durable at each WAL checkpoint
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        finally:
            os.close(fd)                 # releases the flock

    def _check(self) -> None:
        """Refuse files that are not halotune history databases (or are from a newer one)."""
        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # One read transaction: another process creating the database concurrently must be
        # seen before or after its migration, never halfway (tables but no version yet).
        in_txn = self.conn.in_transaction
        if not in_txn:
            self.conn.execute("BEGIN")
        try:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        finally:
            if not in_txn:
                self.conn.execute("COMMIT")
        if version == 0 and tables:
            raise HistoryError(f"{self.path} is an SQLite database of another program (tables "
                               f"{', '.join(sorted(tables))}), not a halotune history database")
        if version > 0 and app_id != APPLICATION_ID:
            raise HistoryError(f"{self.path} is an SQLite database of another program "
                               f"(application_id {app_id:#x}), not a halotune history database")
        if version > SCHEMA_VERSION:
            raise HistoryError(f"{self.path} was written by a newer halotune (schema {version}; "
                               f"this one knows up to {SCHEMA_VERSION}): upgrade halotune")
        self.version = version

    def _migrate(self) -> None:
        if self.version == SCHEMA_VERSION:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock: read again.
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number]:
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number + 1}")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.version = SCHEMA_VERSION

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _query(self, sql: str, params=()) -> list[sqlite3.Row]:
        if self.version == 0:         # a read-only view of a database never written
            return []
        try:
            self.conn.row_factory = sqlite3.Row
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as e:
            self._fail(e)

    # --- writing ---------------------------------------------------------------------------------
    def add_run(self, kind: str, tests: list[dict], *, fingerprint: dict, result: dict | None = None,
                telemetry: dict | None = None, profile: str | None = None,
                backend: str | None = None, model: dict | None = None,
                forecast: dict | None = None, label: str | None = None,
                measured_at: str | None = None, origin: dict | None = None,
                run_uuid: str | None = None, if_new: bool = False) -> int | None:
        """Store one run and its tests; returns the run id. With `if_new`, a run whose
        `run_uuid` is stored already is left alone and None is returned (fleet imports)."""
        if self.readonly:
            raise HistoryError(f"{self.path} is open read-only")
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: must be one of {', '.join(KINDS)}")
        model = model or None
        model_name = (model or {}).get("name")
        created = now_rfc3339()
        rows = []
        for seq, t in enumerate(tests or []):
            t = dict(t)
            samples = t.pop("samples", None)
            cols = [t.pop(k, None) for k in TEST_COLUMNS]
            if cols[1] is None:
                cols[1] = model_name
            if not cols[0]:
                raise ValueError(f"test {seq}: a test needs a name")
            rows.append((seq, *cols, _dumps(samples), _dumps(t) if t else None))
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if if_new and run_uuid and self.conn.execute(
                        "SELECT 1 FROM runs WHERE uuid = ?", (run_uuid,)).fetchone():
                    self.conn.execute("ROLLBACK")
                    return None
                cur = self.conn.execute(
                    "INSERT INTO runs (uuid, created_at, measured_at, kind, label, profile, "
                    "backend, model_name, model_sha256, model_json, fingerprint_json, "
                    "result_json, telemetry_json, forecast_json, origin_json) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_uuid or _uuid.uuid4().hex, created, normalize_time(measured_at) or created, kind, label,
                     profile, backend, model_name, (model or {}).get("sha256"), _dumps(model),
                     _dumps(fingerprint or {}), _dumps(result), _dumps(telemetry),
                     _dumps(forecast), _dumps(origin)))
                run_id = cur.lastrowid
                self.conn.executemany(
                    f"INSERT INTO tests (run_id, seq, {', '.join(TEST_COLUMNS)}, samples_json, "
                    f"extra_json) VALUES (?, ?, {', '.join('?' * len(TEST_COLUMNS))}, ?, ?)",
                    [(run_id, *r) for r in rows])
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            # Keep the main file complete for read-only readers that cannot use the WAL.
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.DatabaseError as e:
            self._fail(e)
        return run_id

    # --- reading ---------------------------------------------------------------------------------
    def _tests_of(self, run_ids: list[int]) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = {i: [] for i in run_ids}
        if not run_ids:
            return out
        marks = ",".join("?" * len(run_ids))
        for r in self._query(f"SELECT * FROM tests WHERE run_id IN ({marks}) "
                             "ORDER BY run_id, seq", run_ids):
            t = {k: r[k] for k in TEST_COLUMNS}
            t["samples"] = _loads(r["samples_json"])
            t.update(_loads(r["extra_json"]) or {})
            out[r["run_id"]].append(t)
        return out

    def _run(self, r: sqlite3.Row, tests: list[dict], full: bool) -> dict:
        run = {"id": r["id"], "ref": str(r["id"]), "uuid": r["uuid"], "created_at": r["created_at"],
               "measured_at": r["measured_at"], "kind": r["kind"], "label": r["label"],
               "profile": r["profile"], "backend": r["backend"],
               "model": _loads(r["model_json"]), "tests": tests, "db": self.path}
        if full:
            run.update(fingerprint=_loads(r["fingerprint_json"]), result=_loads(r["result_json"]),
                       telemetry=_loads(r["telemetry_json"]), forecast=_loads(r["forecast_json"]),
                       origin=_loads(r["origin_json"]))
        else:
            tel = _loads(r["telemetry_json"]) or {}
            run["telemetry"] = {k: tel.get(k) for k in ("avg_socket_power_w", "max_temp_c")
                                if k in tel}
        return run

    def get_run(self, ref: str | int) -> dict:
        """One run with everything stored: int id (or its digits), "@latest", "@previous"."""
        run_id = self.resolve(ref)
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise HistoryError(f"no run {ref} in {self.path}")
        return self._run(rows[0], self._tests_of([run_id])[run_id], full=True)

    def resolve(self, ref: str | int) -> int:
        if isinstance(ref, int) or (isinstance(ref, str) and is_uint(ref)):
            return int(ref)
        if ref in ("@latest", "@previous"):
            rows = self._query("SELECT id FROM runs ORDER BY id DESC LIMIT 2")
            index = 0 if ref == "@latest" else 1
            if len(rows) <= index:
                raise HistoryError(f"{ref}: {self.path} holds {len(rows)} run(s)")
            return rows[index]["id"]
        raise HistoryError(f"run reference {ref!r}: use a run id, @latest or @previous")

    def list_runs(self, limit: int = 50, kind: str | None = None) -> list[dict]:
        """The last `limit` runs (optionally of one kind), oldest first, with their tests and
        a telemetry digest (fingerprint and result left out: get_run has them)."""
        where, params = ("WHERE kind = ?", [kind]) if kind else ("", [])
        rows = self._query(f"SELECT * FROM runs {where} ORDER BY id DESC LIMIT ?",
                           [*params, max(0, int(limit))])
        rows.reverse()
        tests = self._tests_of([r["id"] for r in rows])
        return [self._run(r, tests[r["id"]], full=False) for r in rows]

    def count(self) -> int:
        rows = self._query("SELECT COUNT(*) AS n FROM runs")
        return rows[0]["n"] if rows else 0

    def find_tests(self, name: str, model_name: str | None) -> list[dict]:
        """Every stored result of test `name` on model `model_name`, with what regression
        checks compare: run id, measured_at, backend, model sha256, tokens/s, kind, profile, and
        the machine a fleet import came from (None: measured here)."""
        rows = self._query(
            "SELECT t.run_id, t.tokens_per_s, r.measured_at, r.backend, r.model_sha256, r.kind, "
            "r.profile, r.origin_json "
            "FROM tests t JOIN runs r ON r.id = t.run_id WHERE t.name = ? AND "
            "t.model_name IS ? ORDER BY r.measured_at, r.id", (name, model_name))
        out = []
        for r in rows:
            row = dict(r)
            row["machine"] = machine_of(_loads(row.pop("origin_json")))
            out.append(row | {"db": self.path, "ref": str(r["run_id"])})
        return out

    def has_run(self, run_uuid: str) -> bool:
        return bool(self._query("SELECT 1 FROM runs WHERE uuid = ?", (run_uuid,)))

    def fingerprint_of(self, run_id: int) -> dict:
        rows = self._query("SELECT fingerprint_json FROM runs WHERE id = ?", (run_id,))
        return _loads(rows[0]["fingerprint_json"]) if rows else {}

    def last_tg_efficiency(self) -> float | None:
        """The roofline tg efficiency of the latest probe that measured one."""
        for r in self._query("SELECT result_json, origin_json FROM runs WHERE kind = 'probe' "
                             "ORDER BY id DESC LIMIT 50"):
            if machine_of(_loads(r["origin_json"])) is not None:
                continue             # another machine's probe (a fleet import)
            value = ((_loads(r["result_json"]) or {}).get("roofline") or {}).get("tg_efficiency")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return None
