"""Fuzzing, campaign 2 of issue #8: llama-bench JSON ingestion (halotune/probe/
llamabench_output.parse_llamabench), and `halotune history import` behind it.

Targets:
- the recorded llama-bench outputs of tests/fixtures/llama-bench (json, jsonl, old, crashed,
  killed, with banners) damaged at random: characters inserted, deleted, replaced, lines cut;
- generated records: the required keys with values of every JSON type (NaN and Infinity as
  Python's json reads them, huge integers, strings, nested values), the optional keys likewise,
  as an array, jsonl, with Vulkan-style banner lines and truncation;
- end to end, `history import FILE --db DB` of the generated files.
Contract: a list of BenchRecord, or NotLlamaBenchOutput naming the source; never another
exception. Figure: inputs tried per target, crashes (0).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .conftest import Tally, fuzz_settings, record

lb = pytest.importorskip("halotune.probe.llamabench_output")

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures", "llama-bench")
SAMPLES = {}
if os.path.isdir(FIXTURES):
    for _name in sorted(os.listdir(FIXTURES)):
        if _name.endswith((".json", ".jsonl", ".md", ".txt")):
            with open(os.path.join(FIXTURES, _name), encoding="utf-8", errors="replace") as _f:
                SAMPLES[_name] = _f.read()
if not SAMPLES:
    SAMPLES["minimal.jsonl"] = '{"n_prompt":512,"n_gen":0,"avg_ts":100.0,"stddev_ts":1.0}\n'

OPTIONAL = ["n_depth", "samples_ts", "samples_ns", "model_filename", "model_type", "model_size",
            "model_n_params", "build_commit", "build_number", "backends", "gpu_info",
            "cpu_info", "n_threads", "n_gpu_layers", "flash_attn", "load_mode", "use_mmap",
            "use_direct_io", "test_time", "cuda", "vulkan", "schema"]
REQUIRED = ["n_prompt", "n_gen", "avg_ts", "stddev_ts"]

scalar = st.one_of(st.integers(-2**70, 2**70), st.floats(), st.booleans(), st.none(),
                   st.text(max_size=10), st.sampled_from([0, 512, 128, 4096, 1e308, -1]))
value = st.recursive(scalar, lambda c: st.lists(c, max_size=3)
                     | st.dictionaries(st.text(max_size=5), c, max_size=2), max_leaves=4)
plausible = {"n_prompt": st.sampled_from([0, 512, 1024]), "n_gen": st.sampled_from([0, 128]),
             "avg_ts": st.floats(0, 5000), "stddev_ts": st.floats(0, 100)}


@st.composite
def record_obj(draw):
    obj = {}
    for k in REQUIRED:
        if draw(st.integers(0, 9)) == 0:
            continue                                  # a required key missing
        obj[k] = draw(value if draw(st.integers(0, 3)) == 0 else plausible[k])
    for k in draw(st.lists(st.sampled_from(OPTIONAL), max_size=5, unique=True)):
        obj[k] = draw(value)
    return obj


@st.composite
def document(draw):
    recs = draw(st.lists(record_obj(), min_size=0, max_size=3))
    form = draw(st.sampled_from(["array", "jsonl", "banner+jsonl", "array-truncated",
                                 "jsonl-killed"]))
    if form == "array":
        text = json.dumps(recs, indent=2)
    elif form == "array-truncated":
        text = json.dumps(recs, indent=2)
        text = text[:draw(st.integers(0, len(text)))]
    else:
        text = "\n".join(json.dumps(r) for r in recs) + "\n"
        if form == "banner+jsonl":
            text = ("ggml_vulkan: Found 1 Vulkan devices:\n[0] Radeon 8060S | uma: 1\n"
                    + text)
        elif form == "jsonl-killed":
            text = text[:draw(st.integers(0, len(text)))]
    return text


def check(text: str) -> str:
    try:
        recs = lb.parse_llamabench(text, source="fuzz.jsonl")
    except lb.NotLlamaBenchOutput as e:
        assert str(e).startswith("fuzz.jsonl"), str(e)
        return "refused"
    assert isinstance(recs, list) and recs
    for r in recs:
        assert isinstance(r, lb.BenchRecord)
        assert isinstance(r.n_prompt, int) and isinstance(r.n_gen, int)
        assert isinstance(r.avg_ts, float) and isinstance(r.stddev_ts, float)
        assert isinstance(r.name, str) and r.name
        assert all(isinstance(x, float) for x in r.samples_ts)
    return "parsed"


def test_recorded_outputs_damaged():
    t = Tally()
    junk = ["", "{", "}", "[", "]", ",", '"', ":", "\n", "NaN", "1e999", "\x00", "\ufffd", "null",
            '"avg_ts":', "-", "9" * 30]

    @fuzz_settings()
    @given(name=st.sampled_from(sorted(SAMPLES)), data=st.data())
    def run(name, data):
        text = SAMPLES[name]
        for _ in range(data.draw(st.integers(1, 5), label="edits")):
            at = data.draw(st.integers(0, len(text)), label="at")
            cut = data.draw(st.integers(0, 12), label="cut")
            ins = data.draw(st.one_of(st.sampled_from(junk), st.text(max_size=4)), label="ins")
            text = text[:at] + ins + text[at + cut:]
        t.hit(check(text))

    run()
    record("fuzz: llama-bench recorded outputs damaged", **t.figures(), samples=len(SAMPLES))


def test_generated_records():
    t = Tally()

    @fuzz_settings(ci=1000, full=5000)
    @given(text=document())
    def run(text):
        t.hit(check(text))

    run()
    record("fuzz: llama-bench generated records", **t.figures())


def _history_import(text: str, tmp: str) -> tuple[int, str]:
    from halotune.cli.main import main

    path = os.path.join(tmp, "bench.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["history", "import", path, "--db", os.path.join(tmp, "h.db")])
    return rc, err.getvalue()


def _sane(r) -> bool:
    nums = [r.avg_ts, r.stddev_ts, *r.samples_ts]
    ints = [r.n_prompt, r.n_gen, r.n_depth, r.model_size, r.model_n_params, r.build_number,
            r.n_threads, r.n_gpu_layers]
    return (all(math.isfinite(x) and x >= 0 for x in nums)
            and all(x is None or -2**63 <= x < 2**63 for x in ints)
            and r.n_prompt >= 0 and r.n_gen >= 0)


def test_history_import_of_generated_files(tmp_path, no_daemon):
    pytest.importorskip("halotune.history.importer")
    t = Tally()

    @fuzz_settings(ci=200, full=1000)
    @given(text=document())
    def run(text):
        try:
            recs = lb.parse_llamabench(text, source="x")
        except lb.NotLlamaBenchOutput:
            recs = None
        # What is parsed is a measurement: finite, non-negative, 64-bit integers.
        assert not recs or all(_sane(r) for r in recs), recs
        rc, err = _history_import(text, str(tmp_path))
        assert rc in (0, 2, 64), err
        t.hit(f"exit {rc}")

    run()
    record("fuzz: history import of generated llama-bench files", **t.figures())


INSANE = {
    "avg_ts NaN": '{"n_prompt":512,"n_gen":0,"avg_ts":NaN,"stddev_ts":1.0}\n',
    "avg_ts Infinity": '{"n_prompt":512,"n_gen":0,"avg_ts":Infinity,"stddev_ts":1.0}\n',
    "avg_ts negative": '{"n_prompt":512,"n_gen":0,"avg_ts":-5,"stddev_ts":1.0}\n',
    "samples NaN": '{"n_prompt":512,"n_gen":0,"avg_ts":1,"stddev_ts":1,"samples_ts":[NaN]}\n',
    "n_prompt 10^23": '{"n_prompt":99999999999999999999999,"n_gen":0,"avg_ts":1,'
                      '"stddev_ts":1}\n',
    "n_depth 1e300": '{"n_prompt":512,"n_gen":0,"n_depth":1e300,"avg_ts":1,"stddev_ts":1}\n',
}


@pytest.mark.parametrize("case", sorted(INSANE))
def test_insane_llamabench_values_are_refused(case, tmp_path, no_daemon):
    try:
        recs = lb.parse_llamabench(INSANE[case], source="x")
    except lb.NotLlamaBenchOutput:
        recs = []
    assert all(_sane(r) for r in recs), f"{case}: accepted as {recs[0]}"
    if importlib.util.find_spec("halotune.history.importer"):
        rc, err = _history_import(INSANE[case], str(tmp_path))     # no traceback
        assert rc in (0, 2, 64), err
