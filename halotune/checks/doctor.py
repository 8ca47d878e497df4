"""`halotune doctor`: known Strix Halo problems, as data (doctor.toml), checked on this machine.

Each entry of doctor.toml: id, severity (info | warn | fault), title, `when` (conditions that
must all hold), optional `unless` (conditions any of which clears it), why, fix, source. The
conditions are the small vocabulary of checks/conditions.py. An entry is "found", "ok" (a
`when` condition does not hold, or an `unless` one does) or "unknown" (a `when` condition cannot
be told on this machine; never counted as a problem).
"""

from __future__ import annotations

import tomllib
from importlib import resources

from halotune.checks.conditions import CONDITIONS, evaluate
from halotune.checks.facts import Facts

SCHEMA = "halotune.doctor/1"
SEVERITIES = ("info", "warn", "fault")
FIELDS = ("id", "severity", "title", "when", "unless", "why", "fix", "source")
REQUIRED = ("id", "severity", "title", "when", "why", "fix", "source")


class DoctorDataError(Exception):
    """doctor.toml (or a file given instead) is malformed; names the file, entry and key."""


def _check_arg(where: str, name: str, value) -> None:
    cond = CONDITIONS.get(name)
    if cond is None:
        raise DoctorDataError(f"{where}: unknown condition {name!r} (known: "
                              f"{', '.join(sorted(CONDITIONS))})")
    ok = {
        "str": isinstance(value, str),
        "strs": isinstance(value, str) or (isinstance(value, list) and value
                                           and all(isinstance(v, str) for v in value)),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "table": isinstance(value, dict) and set(value) == set(cond.keys),
        "tables": isinstance(value, list) and value and all(isinstance(v, dict) for v in value),
    }[cond.arg]
    if not ok:
        want = {"str": "a string", "strs": "a string or a list of strings", "number": "a number",
                "table": "a table with keys " + ", ".join(cond.keys),
                "tables": "a list of condition tables"}[cond.arg]
        raise DoctorDataError(f"{where}: {name} = {value!r}: must be {want}")
    if cond.arg == "tables":
        for i, table in enumerate(value):
            for sub, subvalue in table.items():
                _check_arg(f"{where}.{name}[{i}]", sub, subvalue)


def load_entries(path: str | None = None) -> list[dict]:
    """The entries of the shipped doctor.toml (or of `path`), validated."""
    if path is None:
        text = resources.files("halotune.checks").joinpath("doctor.toml").read_text("utf-8")
        where = "halotune/checks/doctor.toml"
    else:
        where = path
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise DoctorDataError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DoctorDataError(f"{where}: not valid TOML ({e})") from None
    entries = data.get("check")
    if not isinstance(entries, list) or not entries:
        raise DoctorDataError(f"{where}: no [[check]] entries")
    seen = set()
    for i, e in enumerate(entries):
        eid = e.get("id", f"#{i + 1}")
        here = f"{where}: check {eid}"
        for key in REQUIRED:
            if key not in e:
                raise DoctorDataError(f"{here}: {key} is missing")
        for key in e:
            if key not in FIELDS:
                raise DoctorDataError(f"{here}: unknown key {key!r} (known: {', '.join(FIELDS)})")
        if eid in seen:
            raise DoctorDataError(f"{here}: id used twice")
        seen.add(eid)
        if e["severity"] not in SEVERITIES:
            raise DoctorDataError(f"{here}: severity = {e['severity']!r}: must be one of "
                                  f"{', '.join(SEVERITIES)}")
        for section in ("when", "unless"):
            table = e.get(section, {})
            if not isinstance(table, dict) or (section == "when" and not table):
                raise DoctorDataError(f"{here}: {section} must be a table of conditions")
            for name, value in table.items():
                _check_arg(f"{here}.{section}", name, value)
    return entries


def check_entry(facts: Facts, entry: dict) -> dict:
    seen, unknown = [], []
    status = "found"
    for name, arg in entry["when"].items():
        v = evaluate(facts, name, arg)
        if v.holds is False:
            status, seen = "ok", [v.detail]
            break
        (unknown if v.holds is None else seen).append(v.detail)
    if status == "found" and unknown:
        status, seen = "unknown", unknown
    if status == "found":
        for name, arg in entry.get("unless", {}).items():
            v = evaluate(facts, name, arg)
            if v.holds:
                status, seen = "ok", seen + [f"but {v.detail}"]
                break
            seen.append(v.detail)
    return {"id": entry["id"], "severity": entry["severity"], "title": entry["title"],
            "status": status, "what": "; ".join(seen), "why": entry["why"], "fix": entry["fix"],
            "source": entry["source"]}


def run_doctor(fs, *, programs=None, environ=None, user: str | None = None,
               proc_root: str | None = None, package_version=None, entries_path: str | None = None,
               facts: Facts | None = None) -> dict:
    """The "halotune.doctor/1" report of the machine under fs.root."""
    entries = load_entries(entries_path)
    facts = facts or Facts(fs, programs, environ=environ, user=user, proc_root=proc_root,
                           package_version=package_version)
    results = [check_entry(facts, e) for e in entries]
    found = {r["severity"] for r in results if r["status"] == "found"}
    status = next((s for s in ("fault", "warn", "info") if s in found), "ok")
    return {"schema": SCHEMA, "root": fs.root, "time": facts.snapshot.time,
            "kernel_release": facts.snapshot.kernel_release, "status": status,
            "counts": {s: sum(r["status"] == s for r in results)
                       for s in ("found", "ok", "unknown")},
            "entries": results}
