"""The read-only view `halotune history` shows: the state database and the user's, merged.

Run references: the state database's runs by their id ("12"), the user database's with a
"u" ("u3"), so a reference never changes meaning when the other database appears. With one
explicit database (--db FILE) plain ids. "@latest" and "@previous" are by recording time
across both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from halotune.history.db import HistoryDB, HistoryError
from halotune.machine.parse import is_uint


@dataclass
class Source:
    prefix: str
    role: str                    # "state", "user" or "file"
    path: str
    db: HistoryDB | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {"role": self.role, "path": self.path, "prefix": self.prefix,
                "exists": os.path.exists(self.path),
                "runs": self.db.count() if self.db else None, "error": self.error}


class HistoryView:
    def __init__(self, sources: list[Source]):
        self.sources = sources

    @classmethod
    def open(cls, root: str = "/", db_path: str | None = None) -> "HistoryView":
        from halotune.history.record import state_db_path, user_db_path

        if db_path:
            wanted = [Source("", "file", os.path.abspath(db_path))]
        else:
            wanted = [Source("", "state", state_db_path(root)), Source("u", "user", user_db_path())]
        for s in wanted:
            if not os.path.exists(s.path):
                if s.role == "file":
                    s.error = f"no history database at {s.path}"
                continue
            try:
                s.db = HistoryDB(s.path, readonly=True)
            except HistoryError as e:
                s.error = str(e)
        return cls(wanted)

    def close(self) -> None:
        for s in self.sources:
            if s.db is not None:
                s.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def errors(self) -> list[str]:
        return [s.error for s in self.sources if s.error]

    def _open(self) -> list[Source]:
        return [s for s in self.sources if s.db is not None]

    @staticmethod
    def _tag(run: dict, s: Source) -> dict:
        run["ref"] = f"{s.prefix}{run['id']}"
        run["source"] = s.role
        return run

    # --- the HistoryDB reading interface, merged ---------------------------------------------------
    def list_runs(self, limit: int = 50, kind: str | None = None) -> list[dict]:
        runs = [self._tag(r, s) for s in self._open() for r in s.db.list_runs(limit, kind)]
        runs.sort(key=lambda r: (r["created_at"], r["ref"]))
        return runs[-limit:] if limit > 0 else []

    def count(self) -> int:
        return sum(s.db.count() for s in self._open())

    def _split(self, ref) -> tuple[Source, str]:
        text = str(ref).strip()
        if text in ("@latest", "@previous"):
            runs = self.list_runs(limit=2)
            index = -1 if text == "@latest" else -2
            if len(runs) < -index:
                raise HistoryError(f"{text}: the history holds {len(runs)} run(s) "
                                   f"({self._where()})")
            text = runs[index]["ref"]
        for s in sorted(self.sources, key=lambda s: -len(s.prefix)):
            if text.lower().startswith(s.prefix) and is_uint(text[len(s.prefix):]):
                if s.db is None:
                    raise HistoryError(f"no run {text}: " + (s.error or f"no database at {s.path}"))
                return s, text[len(s.prefix):]
        raise HistoryError(f"run reference {text!r}: use a run id (12, or u3 for the user "
                           "database), @latest or @previous")

    def _where(self) -> str:
        return ", ".join(s.path for s in self.sources)

    def get_run(self, ref) -> dict:
        s, local = self._split(ref)
        return self._tag(s.db.get_run(local), s)

    def resolve_ref(self, ref) -> str:
        s, local = self._split(ref)
        return f"{s.prefix}{s.db.resolve(local)}"

    def find_tests(self, name: str, model_name: str | None) -> list[dict]:
        rows = []
        for s in self._open():
            for r in s.db.find_tests(name, model_name):
                r["ref"] = f"{s.prefix}{r['run_id']}"
                rows.append(r)
        rows.sort(key=lambda r: (r["measured_at"], r["ref"]))
        return rows

    def fingerprint_of(self, ref) -> dict:
        s, local = self._split(ref)
        return s.db.fingerprint_of(int(local))
