"""llama-bench -o json / -o jsonl parsing on real output and on the drift seen across builds."""

import json
import os

import pytest

from halotune.probe.llamabench_output import (
    NotLlamaBenchOutput,
    parse_llamabench,
    parse_llamabench_report,
    test_name,
)

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures",
                        "llama-bench")


def fixture(name: str) -> str:
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("n_prompt, n_gen, n_depth, name", [
    (512, 0, 0, "pp512"), (0, 128, 0, "tg128"), (512, 128, 0, "pp512+tg128"),
    (0, 128, 4096, "tg128 @ d4096"), (512, 0, 4096, "pp512 @ d4096"), (0, 0, 0, "pp0+tg0"),
])
def test_test_names_are_spelled_as_llama_bench_prints_them(n_prompt, n_gen, n_depth, name):
    assert test_name(n_prompt, n_gen, n_depth) == name


def test_real_jsonl():
    recs = parse_llamabench(fixture("llama-bench-0c1e570-cpu.jsonl"), "cpu.jsonl")
    assert [r.name for r in recs] == ["pp64", "tg16"]
    pp, tg = recs
    assert (pp.n_prompt, pp.n_gen, pp.n_depth) == (64, 0, 0)
    assert pp.avg_ts == 533.05661 and pp.stddev_ts == 3.698829
    assert pp.samples_ts == [530.441, 535.672]
    assert tg.avg_ts == 150.8699 and tg.samples_ts == [152.189, 149.551]
    assert pp.model_filename == "models/S-q4_0.gguf" and pp.model_type == "llama ?B Q4_0"
    assert (pp.model_size, pp.model_n_params) == (87658496, 155730944)
    assert (pp.build_commit, pp.build_number) == ("0c1e570", 1)
    assert (pp.backends, pp.gpu_info, pp.cpu_info) == ("CPU", "", "AMD EPYC")
    assert (pp.n_threads, pp.n_gpu_layers, pp.flash_attn, pp.load_mode) == (2, -1, -1, "auto")
    assert pp.test_time == "2026-11-25T14:37:13Z"
    assert pp.raw["lazy_mode"] == "auto" and pp.raw["samples_ns"] == [120654291, 119476080]


def test_real_json_array_gives_the_same_fields_as_jsonl():
    recs = parse_llamabench(fixture("llama-bench-0c1e570-cpu.json"))
    assert [r.name for r in recs] == ["pp64", "tg16"]
    assert recs[0].avg_ts == 656.158474 and recs[1].samples_ts == [153.148, 168.111]
    jsonl = parse_llamabench(fixture("llama-bench-0c1e570-cpu.jsonl"))
    assert set(recs[0].raw) == set(jsonl[0].raw)
    report = parse_llamabench_report(fixture("llama-bench-0c1e570-cpu.json"))
    assert report.truncated is False and report.ignored_lines == 0


def test_older_build_with_use_mmap_a_bool_flash_attn_and_a_vulkan_banner():
    report = parse_llamabench_report(fixture("llama-bench-b5163-vulkan-old.json"), "old.json")
    assert report.ignored_lines == 2 and not report.truncated
    pp, tg = report.records
    assert [pp.name, tg.name] == ["pp512", "tg128"]
    assert pp.n_depth == 0 and "n_depth" not in pp.raw
    assert pp.load_mode == "none" and "load_mode" not in pp.raw   # use_mmap: false
    assert pp.flash_attn == 1                                    # "flash_attn": true
    assert (pp.backends, pp.build_number, pp.n_gpu_layers) == ("Vulkan", 5163, 99)
    assert len(tg.samples_ts) == 5 and tg.avg_ts == pytest.approx(sum(tg.samples_ts) / 5, abs=1e-3)


def test_use_mmap_and_use_direct_io_map_onto_load_mode():
    report = parse_llamabench_report(fixture("llama-bench-b7100-vulkan-dio.jsonl"))
    assert report.ignored_lines == 2
    assert [r.name for r in report.records] == ["pp512", "tg128", "tg128 @ d4096"]
    assert report.records[2].n_depth == 4096
    assert {r.load_mode for r in report.records} == {"none"}
    line = json.loads(fixture("llama-bench-b7100-vulkan-dio.jsonl").splitlines()[2])
    for mmap, dio, mode in ((True, False, "mmap"), (False, True, "dio"), (True, True, "dio")):
        line.update(use_mmap=mmap, use_direct_io=dio)
        assert parse_llamabench(json.dumps(line))[0].load_mode == mode
    del line["use_mmap"], line["use_direct_io"]
    assert parse_llamabench(json.dumps(line))[0].load_mode is None


def test_unknown_keys_are_kept_and_ignored():
    recs = parse_llamabench(fixture("llama-bench-extra-keys.jsonl"))
    assert [r.name for r in recs] == ["pp64", "tg16"]
    assert recs[0].raw["power"] == {"avg_w": 61.5, "source": "hwmon"}
    assert recs[0].avg_ts == 533.05661


def test_only_the_required_keys():
    a, b, c = parse_llamabench(fixture("llama-bench-missing-keys.jsonl"))
    assert (a.name, a.avg_ts, a.stddev_ts, a.n_depth, a.samples_ts) == ("pp512", 1210.5, 12.25, 0, [])
    for key in ("model_filename", "model_type", "model_size", "model_n_params", "build_commit",
                "build_number", "backends", "gpu_info", "cpu_info", "n_threads", "n_gpu_layers",
                "flash_attn", "load_mode", "test_time"):
        assert getattr(a, key) is None, key
    # samples_ts recomputed from samples_ns with llama-bench's formula
    assert b.samples_ts == pytest.approx([1e9 * 128 / 2.8e9, 1e9 * 128 / 2.86e9, 1e9 * 128 / 2.84e9])
    assert c.name == "pp512+tg128" and c.samples_ts == [207.0, 213.0]
    assert c.n_threads is None and c.model_filename is None   # wrong types read as absent


def test_crashed_json_run_keeps_its_complete_records():
    report = parse_llamabench_report(fixture("llama-bench-crashed.json"))
    assert report.truncated is True
    assert [r.name for r in report.records] == ["pp64"]
    assert report.records[0].avg_ts == 656.158474


def test_killed_jsonl_run_keeps_its_complete_lines():
    report = parse_llamabench_report(fixture("llama-bench-killed.jsonl"))
    assert report.truncated is True
    assert [r.name for r in report.records] == ["pp64"]


def test_crlf_line_ends_and_log_lines_in_brackets():
    text = "[INFO] loading model\r\n" + fixture("llama-bench-0c1e570-cpu.jsonl").replace("\n", "\r\n")
    report = parse_llamabench_report(text)
    assert [r.name for r in report.records] == ["pp64", "tg16"]
    assert report.ignored_lines == 1 and not report.truncated


STATUS_DOC = {"schema": "halotune.status/1", "halotune_version": "0.1.0", "time": "2026-01-01T00:00:00Z",
              "gpus": [], "cpu": {}, "memory": {}}


@pytest.mark.parametrize("text, fragments", [
    ("", ["empty file"]),
    ("  \n\n", ["empty file"]),
    (json.dumps(STATUS_DOC, indent=1), ["'halotune.status/1'", "lacks n_prompt, n_gen, avg_ts, stddev_ts"]),
    (json.dumps({"foo": 1}), ["record 1 lacks n_prompt, n_gen, avg_ts, stddev_ts", "keys: foo"]),
    ("[]", ["empty JSON array"]),
    ("[1, 2]", ["record 1 is a JSON int"]),
    ('"pp512"', ["a JSON str"]),
    ("not json at all\nsecond line", ["no JSON object", "not json at all"]),
    ('{"n_prompt": 512, "n_gen": 0, "avg_ts": 1.0', ["truncated JSON record"]),
    (json.dumps({"n_prompt": "512", "n_gen": 0, "avg_ts": 1.0, "stddev_ts": 0.1}),
     ["field n_prompt = '512' is not a number"]),
    (json.dumps({"n_prompt": 512, "n_gen": 0, "avg_ts": True, "stddev_ts": 0.1}),
     ["field avg_ts = True"]),
])
def test_other_input_is_refused_with_a_clear_message(text, fragments):
    with pytest.raises(NotLlamaBenchOutput) as e:
        parse_llamabench(text, "results/run1.json")
    message = str(e.value)
    assert message.startswith("results/run1.json: ")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("name, hint", [("llama-bench-0c1e570-cpu.md", "markdown output (-o md)"),
                                        ("llama-bench-0c1e570-help.txt", "no JSON object")])
def test_markdown_and_help_text_are_refused(name, hint):
    with pytest.raises(NotLlamaBenchOutput, match=r"expected .*n_prompt") as e:
        parse_llamabench(fixture(name), name)
    assert hint in str(e.value) and name in str(e.value)


def test_not_llama_bench_output_is_a_value_error():
    assert issubclass(NotLlamaBenchOutput, ValueError)


def test_an_integer_beyond_pythons_digit_limit_is_a_clean_refusal():
    with pytest.raises(NotLlamaBenchOutput, match=r"huge\.jsonl: not llama-bench output: line 1"):
        parse_llamabench('{"n_prompt": ' + "9" * 5000 + "}\n", "huge.jsonl")
