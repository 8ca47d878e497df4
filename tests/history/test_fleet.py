"""`halotune history export` / `history import` of an export: a fleet's results in one database.

The runs are made by halotune's own record path (history.record.record, and the llama-bench
importer with the real fixture), exported through the CLI and merged into a collector database.
"""

from __future__ import annotations

import json
import os

import pytest

from halotune.history.db import HistoryDB
from halotune.history.fleet import EXPORT_SCHEMA, this_machine
from halotune.history.importer import import_file
from halotune.history.record import record

from .helpers import FIXTURE_JSONL, MODEL, cli, fingerprint, make_tests


def _machine_db(tmp, name, stapm, tgs, llama_bench):
    """A machine's history database written by halotune's record path: one bench per tg value
    under STAPM `stapm`, then (llama_bench) an imported llama-bench file."""
    path = str(tmp / name / "history.db")
    for tg in tgs:
        record("bench", make_tests(tg=tg), fingerprint=fingerprint(**{"tdp.stapm_w": stapm}),
               telemetry={"avg_socket_power_w": 98.4}, backend="CPU", model=MODEL,
               profile="llm-max", label=f"{name} tg {tg}", db_path=path)
    if llama_bench:
        import_file(FIXTURE_JSONL, db_path=path)
    return path


def _export(db, out, machine):
    r = cli("history", "export", "--db", db, "--out", out, "--machine", machine)
    assert r.rc == 0, r
    with open(out) as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def fleet(hist_env):
    tmp = hist_env
    a = _machine_db(tmp, "a", 120, [150.0, 151.0], llama_bench=True)
    b = _machine_db(tmp, "b", 85, [120.0], llama_bench=False)
    return tmp, a, b


def test_export_is_every_run_with_fingerprint_and_machine(fleet):
    tmp, a, _ = fleet
    lines = _export(a, str(tmp / "a.jsonl"), "box-a")
    with HistoryDB(a, readonly=True) as db:
        stored = [db.get_run(i) for i in range(1, db.count() + 1)]
    assert len(lines) == 3
    assert {x["schema"] for x in lines} == {EXPORT_SCHEMA}
    assert {x["machine"]["name"] for x in lines} == {"box-a"}
    by_uuid = {x["uuid"]: x for x in lines}
    for run in stored:
        line = by_uuid[run["uuid"]]
        assert line["fingerprint"] == run["fingerprint"]
        assert line["tests"] == run["tests"] and line["kind"] == run["kind"]
        assert line["measured_at"] == run["measured_at"] and line["label"] == run["label"]
    assert by_uuid[stored[0]["uuid"]]["fingerprint"]["tdp"]["stapm_w"] == 120
    # sorted by measurement time; an unchanged database exports the same bytes
    assert [x["measured_at"] for x in lines] == sorted(x["measured_at"] for x in lines)
    first = open(tmp / "a.jsonl", "rb").read()
    _export(a, str(tmp / "a2.jsonl"), "box-a")
    assert open(tmp / "a2.jsonl", "rb").read() == first
    assert oct(os.stat(tmp / "a.jsonl").st_mode & 0o777) == "0o640"
    # without --out: the same lines on standard output
    r = cli("history", "export", "--db", a, "--machine", "box-a")
    assert r.rc == 0 and r.out.encode() == first


def test_import_merges_once_and_keeps_each_machine(fleet):
    tmp, a, b = fleet
    _export(a, str(tmp / "a.jsonl"), "box-a")
    _export(b, str(tmp / "b.jsonl"), "box-b")
    central = str(tmp / "central" / "history.db")
    r = cli("history", "import", str(tmp / "a.jsonl"), str(tmp / "b.jsonl"), "--db", central,
            "--json")
    assert r.rc == 0, r
    doc = r.json()
    assert [(d["format"], len(d["added"]), d["skipped"], d["machines"]) for d in doc["imported"]] \
        == [("halotune-export", 3, 0, ["box-a"]), ("halotune-export", 1, 0, ["box-b"])]
    # the same exports again: nothing added
    r = cli("history", "import", str(tmp / "a.jsonl"), str(tmp / "b.jsonl"), "--db", central)
    assert r.rc == 0, r
    assert "0 run(s) added, 3 already stored" in r.out and "0 run(s) added, 1 already stored" in r.out
    with HistoryDB(central, readonly=True) as db:
        assert db.count() == 4
        runs = [db.get_run(i) for i in range(1, 5)]
    with HistoryDB(a, readonly=True) as db:
        originals = {db.get_run(i)["uuid"]: db.get_run(i) for i in range(1, 4)}
    for run in runs:
        assert run["origin"]["via"] == "fleet-import"
        if run["uuid"] in originals:
            assert run["origin"]["machine"]["name"] == "box-a"
            assert run["tests"] == originals[run["uuid"]]["tests"]
            assert run["fingerprint"] == originals[run["uuid"]]["fingerprint"]
    # a machine's own runs coming back add nothing
    r = cli("history", "import", str(tmp / "a.jsonl"), "--db", a, "--json")
    assert r.json()["imported"][0]["added"] == [] and r.json()["imported"][0]["skipped"] == 3


def test_re_export_keeps_the_origin_machine(fleet):
    tmp, a, b = fleet
    central = str(tmp / "central.db")
    _export(a, str(tmp / "a.jsonl"), "box-a")
    assert cli("history", "import", str(tmp / "a.jsonl"), "--db", central).rc == 0
    lines = _export(central, str(tmp / "c.jsonl"), "collector")
    assert {x["machine"]["name"] for x in lines} == {"box-a"}
    other = str(tmp / "other.db")
    assert cli("history", "import", str(tmp / "c.jsonl"), "--db", other).rc == 0
    with HistoryDB(other, readonly=True) as db:
        assert {db.get_run(i)["origin"]["machine"]["name"] for i in (1, 2, 3)} == {"box-a"}


def test_compare_tells_machines_apart(fleet):
    tmp, a, b = fleet
    _export(a, str(tmp / "a.jsonl"), "box-a")
    _export(b, str(tmp / "b.jsonl"), "box-b")
    central = str(tmp / "central.db")
    assert cli("history", "import", str(tmp / "a.jsonl"), str(tmp / "b.jsonl"),
               "--db", central).rc == 0
    with HistoryDB(central, readonly=True) as db:
        refs = {db.get_run(i)["label"]: str(i) for i in range(1, 5)}
    ra, ra2, rb = refs["a tg 150.0"], refs["a tg 151.0"], refs["b tg 120.0"]
    doc = cli("history", "compare", ra, rb, "--db", central, "--json").json()["compare"]
    assert doc["same_machine"] is False
    assert (doc["a"]["machine"], doc["b"]["machine"]) == ("box-a", "box-b")
    assert {"key": "tdp.stapm_w", "a": 120, "b": 85} in doc["fingerprint_changes"]
    r = cli("history", "compare", ra, rb, "--db", central)
    assert r.rc == 0 and "* different machines: box-a and box-b" in r.out
    assert "machine box-a" in r.out.splitlines()[0]
    doc = cli("history", "compare", ra, ra2, "--db", central, "--json").json()["compare"]
    assert doc["same_machine"] is True


def test_regression_baseline_is_the_same_machine_only(fleet):
    """box-b's 120 t/s is 20 % below box-a's earlier results, but box-a is another machine: no
    alarm. A later slow run of box-a itself is flagged against box-a's results."""
    tmp, a, b = fleet
    _export(a, str(tmp / "a.jsonl"), "box-a")
    record("bench", make_tests(tg=100.0), fingerprint=fingerprint(**{"tdp.stapm_w": 60}),
           backend="CPU", model=MODEL, label="a slow", db_path=a)
    _export(a, str(tmp / "a.jsonl"), "box-a")
    _export(b, str(tmp / "b.jsonl"), "box-b")
    central = str(tmp / "central.db")
    # box-b first, so its run is not the latest when box-a's arrive
    assert cli("history", "import", str(tmp / "b.jsonl"), str(tmp / "a.jsonl"),
               "--db", central).rc == 0
    with HistoryDB(central, readonly=True) as db:
        refs = {db.get_run(i)["label"]: str(i) for i in range(1, db.count() + 1)}
    r = cli("history", "check", refs["b tg 120.0"], "--db", central, "--json")
    assert r.rc == 0 and r.json()["alarms"] == []
    r = cli("history", "check", refs["a slow"], "--db", central, "--json")
    assert r.rc == 2, r
    alarm = r.json()["alarms"][0]
    # box-a's 150.0, 150.8699 (its llama-bench import) and 151.0; box-b's 120.0 left out
    assert alarm["test"] == "tg16" and alarm["baseline_median"] == 150.8699
    assert "tdp.stapm_w" in {c["key"] for c in alarm["changed"]}


def test_damaged_export_names_file_line_and_field(fleet):
    tmp, a, _ = fleet
    lines = _export(a, str(tmp / "a.jsonl"), "box-a")
    lines[1]["kind"] = "benchmark"
    bad = tmp / "bad.jsonl"
    bad.write_text("".join(json.dumps(x) + "\n" for x in lines))
    central = str(tmp / "central.db")
    r = cli("history", "import", str(bad), "--db", central)
    assert r.rc == 2
    assert f"{bad}, line 2: field 'kind' is 'benchmark'" in r.err and "Traceback" not in r.err
    assert not os.path.exists(central)           # nothing half-imported
    lines[1]["kind"] = "bench"
    lines[2]["uuid"] = "../x"
    bad.write_text("".join(json.dumps(x) + "\n" for x in lines) + "{not json\n")
    r = cli("history", "import", str(bad), "--db", central)
    assert r.rc == 2 and f"{bad}, line 3: field 'uuid' is '../x'" in r.err


def test_llama_bench_files_still_import_beside_exports(fleet):
    tmp, a, _ = fleet
    central = str(tmp / "central.db")
    _export(a, str(tmp / "a.jsonl"), "box-a")
    r = cli("history", "import", FIXTURE_JSONL, str(tmp / "a.jsonl"), "--db", central, "--json")
    assert r.rc == 0, r
    assert [d["format"] for d in r.json()["imported"]] == ["llama-bench", "halotune-export"]


def test_this_machine_reads_the_root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("halo-01\n")
    (tmp_path / "etc" / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    assert this_machine(str(tmp_path)) == {"name": "halo-01",
                                           "machine_id": "0123456789abcdef0123456789abcdef"}
    assert this_machine(str(tmp_path), "rack3-node2")["name"] == "rack3-node2"


def test_forecast_ignores_other_machines_probes(db_path):
    """The roofline efficiency the forecast starts from is this machine's latest probe, never
    a probe merged in from another machine's export (even when it is newer)."""
    with HistoryDB(db_path) as db:
        db.add_run("probe", make_tests(), fingerprint=fingerprint(),
                   result={"roofline": {"tg_efficiency": 0.71}})
        db.add_run("probe", make_tests(), fingerprint=fingerprint(),
                   result={"roofline": {"tg_efficiency": 0.93}},
                   origin={"via": "fleet-import", "machine": {"name": "box-b"}},
                   run_uuid="0" * 32, if_new=True)
        assert db.last_tg_efficiency() == 0.71
        # the same uuid again is left alone
        assert db.add_run("probe", [], fingerprint={}, run_uuid="0" * 32, if_new=True) is None
        assert db.count() == 2
