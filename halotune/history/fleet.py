"""A fleet's results in one database: `halotune history export` and its import.

Export writes every stored run as one JSON line (schema EXPORT_SCHEMA) with everything the
database keeps: the run's uuid, times, kind, model, tests, fingerprint, result, telemetry and
the machine it was measured on ({"name", "machine_id"}: this host for runs measured here, the
original machine for runs that were themselves imported). Lines are sorted and carry no export
time, so exporting an unchanged database twice gives the same bytes.

Import stores each line as a run with its original uuid: a run already stored (the same export
imported twice, or a machine's own runs coming back) is skipped. The machine goes into the
run's origin, so `history compare` names both machines and the regression alarm never takes
another machine's results as this one's baseline.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass, field

from halotune.history.db import KINDS, HistoryDB, HistoryError, machine_of

EXPORT_SCHEMA = "halotune.history-export/1"
MAX_FILE_BYTES = 256 << 20
_UUID = re.compile(r"^[0-9a-f]{32}$")
_RUN_KEYS = ("uuid", "measured_at", "kind", "label", "profile", "backend", "model", "fingerprint",
             "result", "telemetry", "forecast", "tests")


class ExportFormatError(ValueError):
    """A line of an export file that cannot be imported; the message names file, line, field."""


def this_machine(root: str = "/", name: str | None = None) -> dict:
    """{"name", "machine_id"} of the machine under `root`: /etc/hostname (else
    /proc/sys/kernel/hostname, else the running host's name for the real root) and
    /etc/machine-id (machine-id(5)); `name` overrides the host name (an inventory name)."""
    from halotune.machine.rootfs import RootFS

    fs = RootFS(root)
    host = name or fs.read_text("etc/hostname") or fs.read_text("proc/sys/kernel/hostname")
    if not host and os.path.abspath(root) == "/":
        host = socket.gethostname()
    machine_id = fs.read_text("etc/machine-id")
    return {"name": (host or "unknown").strip(),
            "machine_id": machine_id if machine_id and re.fullmatch(r"[0-9a-f]{32}", machine_id)
            else None}


def _line(run: dict, here: dict) -> dict:
    origin = run.get("origin") or {}
    machine = origin.get("machine") if machine_of(origin) else here
    line = {"schema": EXPORT_SCHEMA, "machine": machine, "recorded_at": run["created_at"],
            "origin": origin}
    line.update({k: run.get(k) for k in _RUN_KEYS})
    return line


def export_lines(view, root: str = "/", machine_name: str | None = None,
                 kind: str | None = None) -> list[str]:
    """The export of every run the HistoryView `view` holds, one JSON text per run."""
    here = this_machine(root, machine_name)
    runs = [view.get_run(r["ref"]) for r in view.list_runs(max(view.count(), 1), kind)]
    lines = [_line(r, here) for r in runs]
    lines.sort(key=lambda x: (x["measured_at"] or "", x["uuid"]))
    return [json.dumps(x, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)
            for x in lines]


def write_export(lines: list[str], path: str) -> None:
    """Atomically (a temporary file renamed over `path`), mode 0640: results and kernel
    command lines are not for everyone."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_export(text: str) -> bool:
    """Whether `text` (a file's contents) is a halotune history export: its first non-empty
    line is a JSON object with our schema."""
    for raw in text.splitlines():
        if raw.strip():
            try:
                first = json.loads(raw)
            except ValueError:
                return False
            return isinstance(first, dict) and first.get("schema") == EXPORT_SCHEMA
    return False


def file_is_export(path: str) -> bool:
    """is_export() of a file's first non-empty line (False when it cannot be read: the
    llama-bench importer then names the problem)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for raw in f:
                if raw.strip():
                    return is_export(raw)
    except OSError:
        pass
    return False


def _check(path: str, number: int, doc) -> dict:
    where = f"{path}, line {number}"
    if not isinstance(doc, dict):
        raise ExportFormatError(f"{where}: a JSON object expected, found {type(doc).__name__}")
    if doc.get("schema") != EXPORT_SCHEMA:
        raise ExportFormatError(f"{where}: field 'schema' is {doc.get('schema')!r}, expected "
                                f"{EXPORT_SCHEMA!r}")
    if not isinstance(doc.get("uuid"), str) or not _UUID.match(doc["uuid"]):
        raise ExportFormatError(f"{where}: field 'uuid' is {doc.get('uuid')!r}, expected 32 "
                                "lower-case hex digits")
    if doc.get("kind") not in KINDS:
        raise ExportFormatError(f"{where}: field 'kind' is {doc.get('kind')!r}, expected one "
                                f"of {', '.join(KINDS)}")
    if not isinstance(doc.get("fingerprint"), dict):
        raise ExportFormatError(f"{where}: field 'fingerprint' is missing or not an object")
    tests = doc.get("tests")
    if not isinstance(tests, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str)
                                              and t["name"] for t in tests):
        raise ExportFormatError(f"{where}: field 'tests' must be a list of objects with a "
                                "'name'")
    machine = doc.get("machine")
    if not isinstance(machine, dict) or not isinstance(machine.get("name"), str) \
            or not machine["name"]:
        raise ExportFormatError(f"{where}: field 'machine' is {machine!r}, expected an object "
                                "with a 'name'")
    return doc


def read_export(path: str) -> list[dict]:
    """Every run of an export file, checked; raises ExportFormatError naming file and line."""
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise ExportFormatError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB")
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ExportFormatError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ExportFormatError(f"{path}: not UTF-8 text ({e.reason})") from None
    runs = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise ExportFormatError(f"{path}, line {number}: not JSON ({e})") from None
        runs.append(_check(path, number, doc))
    return runs


@dataclass
class Merged:
    db: str
    added: list[int] = field(default_factory=list)
    skipped: int = 0           # runs the database held already (same uuid)
    machines: list[str] = field(default_factory=list)


def _fields(run: dict, source: str) -> dict:
    origin = {"via": "fleet-import", "machine": run["machine"], "source_file": source,
              "recorded_at": run.get("recorded_at"), "exported_origin": run.get("origin")}
    return dict(kind=run["kind"], tests=run["tests"], fingerprint=run["fingerprint"],
                result=run.get("result"), telemetry=run.get("telemetry"),
                profile=run.get("profile"), backend=run.get("backend"), model=run.get("model"),
                forecast=run.get("forecast"), label=run.get("label"),
                measured_at=run.get("measured_at"), origin=origin, run_uuid=run["uuid"])


def target_db(root: str = "/", db_path: str | None = None) -> tuple[str, int, str | None]:
    """(path, mode, group) of the database an import writes: --db, else the state database
    when we may write it, else the user's."""
    from halotune.history.record import (STATE_GROUP, STATE_MODE, USER_MODE, may_write,
                                         state_db_path, user_db_path)

    if db_path:
        return db_path, USER_MODE, None
    state = state_db_path(root)
    if may_write(state):
        return state, STATE_MODE, STATE_GROUP
    return user_db_path(), USER_MODE, None


def import_export(path: str, root: str = "/", db_path: str | None = None) -> Merged:
    """Merge one export file into the database target_db() picks. Idempotent."""
    runs = read_export(path)
    dest, mode, group = target_db(root, db_path)
    source = os.path.abspath(path)
    with HistoryDB(dest, mode=mode, group=group) as db:
        merged = Merged(db.path)
        for run in runs:
            run_id = db.add_run(**_fields(run, source), if_new=True)
            if run_id is None:
                merged.skipped += 1
            else:
                merged.added.append(run_id)
                if run["machine"]["name"] not in merged.machines:
                    merged.machines.append(run["machine"]["name"])
    return merged


__all__ = ["EXPORT_SCHEMA", "ExportFormatError", "HistoryError", "Merged", "export_lines", "file_is_export",
           "import_export", "is_export", "read_export", "this_machine", "write_export"]
