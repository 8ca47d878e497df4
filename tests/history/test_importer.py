"""`halotune history import`: real llama-bench output in, anything else refused by name."""

from __future__ import annotations

import json
import os

import pytest

from halotune.history.db import HistoryDB
from halotune.history.importer import ImportRefused, import_file

from .helpers import FIXTURE_JSON, FIXTURE_JSONL, FIXTURE_MD, cli


def test_import_jsonl_and_json(db_path):
    a = import_file(FIXTURE_JSONL, db_path=db_path)
    b = import_file(FIXTURE_JSON, label="json run", db_path=db_path)
    with HistoryDB(db_path, readonly=True) as db:
        ra, rb = db.get_run(a.id), db.get_run(b.id)
    assert ra["kind"] == "import" and ra["backend"] == "CPU"
    assert ra["label"] == "llama-bench-0c1e570-cpu.jsonl" and rb["label"] == "json run"
    assert ra["model"]["name"] == "S-q4_0.gguf" and ra["model"]["size_bytes"] == 87658496
    assert ra["model"]["n_params"] == 155730944
    assert [(t["name"], t["tokens_per_s"]) for t in ra["tests"]] == [
        ("pp64", 533.05661), ("tg16", 150.8699)]
    assert [(t["name"], t["tokens_per_s"]) for t in rb["tests"]] == [
        ("pp64", 656.158474), ("tg16", 160.629682)]
    tg = rb["tests"][1]
    assert tg["samples"] == [153.148, 168.111] and tg["stddev"] == 10.580498
    assert tg["cv_percent"] == pytest.approx(10.580498 / 160.629682 * 100, abs=1e-3)
    assert tg["load_mode"] == "auto" and tg["n_threads"] == 2
    # the fingerprint says only what the file says, never this machine's state
    fp = ra["fingerprint"]
    assert fp["llama_cpp"] == {"build": "0c1e570 (1)", "backend": "CPU"}
    assert fp["cpu_model"] == "AMD EPYC"
    assert fp["kernel_release"] is None and fp["tdp"]["stapm_w"] is None
    assert ra["measured_at"] == "2026-11-25T14:37:13.000000Z"      # the first test_time


def test_import_older_format_with_use_mmap(tmp_path, db_path):
    """Builds before load_mode wrote use_mmap (and no lazy_mode): both are imported."""
    lines = []
    with open(FIXTURE_JSONL) as f:
        for line in f:
            rec = json.loads(line)
            del rec["load_mode"], rec["lazy_mode"]
            rec["use_mmap"] = True
            rec["unknown_future_key"] = {"x": 1}
            lines.append(json.dumps(rec))
    old = tmp_path / "old.jsonl"
    old.write_text("ggml_vulkan: Found 1 Vulkan devices:\n" + "\n".join(lines) + "\n")
    rec = import_file(str(old), db_path=db_path)
    with HistoryDB(db_path, readonly=True) as db:
        tests = db.get_run(rec.id)["tests"]
    assert [t["load_mode"] for t in tests] == ["mmap", "mmap"]


@pytest.mark.parametrize("content, found", [
    (json.dumps({"schema": "halotune.status/1", "gpus": []}), "'halotune.status/1' document"),
    (json.dumps([{"name": "x", "value": 1}]), "lacks n_prompt"),
    ("", "an empty file"),
])
def test_other_json_is_refused_naming_the_file(tmp_path, db_path, content, found):
    bad = tmp_path / "other.json"
    bad.write_text(content)
    with pytest.raises(ImportRefused) as e:
        import_file(str(bad), db_path=db_path)
    assert str(bad) in str(e.value) and found in str(e.value)
    assert "only llama-bench -o json / -o jsonl output can be imported" in str(e.value)


def test_markdown_output_is_refused_with_the_fix(db_path):
    with pytest.raises(ImportRefused, match="markdown output.*-o jsonl"):
        import_file(FIXTURE_MD, db_path=db_path)


def test_import_command(tmp_path, db_path):
    bad = tmp_path / "status.json"
    bad.write_text(json.dumps({"schema": "halotune.status/1"}))
    r = cli("history", "import", "--db", db_path, FIXTURE_JSONL, str(bad), str(tmp_path / "nope"))
    assert r.rc == 2, r
    assert f"{FIXTURE_JSONL}: stored as run 1 in {db_path}" in r.out
    assert str(bad) in r.err and "halotune.status/1" in r.err
    assert f"{tmp_path / 'nope'}: No such file or directory" in r.err
    assert "Traceback" not in r.err
    r = cli("history", "import", "--db", db_path, "--json", "--label", "x", FIXTURE_JSON)
    assert r.rc == 0, r
    doc = r.json()
    assert doc["schema"] == "halotune.history/1" and doc["imported"][0]["id"] == 2
    r = cli("history", "--db", db_path, "--json")
    assert [run["label"] for run in r.json()["runs"]] == ["llama-bench-0c1e570-cpu.jsonl", "x"]


def test_import_without_db_goes_to_the_state_database_of_the_root(hist_env, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    r = cli("history", "import", "--root", root, FIXTURE_JSONL)
    assert r.rc == 0, r
    assert os.path.exists(root / ".halotune-state" / "history.db")
