"""Parse llama-bench `-o json` and `-o jsonl` output into BenchRecords.

Lenient by design, because the output drifts across llama.cpp builds (see the probe notes,
section 4.2): only n_prompt, n_gen, avg_ts and stddev_ts are required; every other key is
optional, unknown keys are kept in `raw`; `load_mode` replaces the older `use_mmap` /
`use_direct_io`; Vulkan builds print banners on stdout before the JSON; a crashed `-o json`
run leaves the array without its closing bracket. Anything else is refused with a message
that says what was expected and what was found. A record with a value no build prints (a
NaN, infinite or negative rate; a test size outside 0..2^63-1) is refused like one that lacks a
required key: the whole output, not only that record. Other optional values that cannot be
used (a wrong type, an integer beyond 64 bits) read as absent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

REQUIRED = ("n_prompt", "n_gen", "avg_ts", "stddev_ts")
# Counts are stored as SQLite INTEGERs by `history import`: 64-bit signed.
INT64_MAX = 2**63 - 1
EXPECTED = "-o json or -o jsonl records with " + ", ".join(REQUIRED)
# Backend flags of builds that predate the "backends" string.
_OLD_BACKEND_FLAGS = (("cuda", "CUDA"), ("vulkan", "Vulkan"), ("kompute", "Kompute"),
                      ("metal", "Metal"), ("sycl", "SYCL"), ("rpc", "RPC"),
                      ("gpu_blas", "GPU BLAS"), ("blas", "BLAS"))


class NotLlamaBenchOutput(ValueError):
    """The text is not llama-bench JSON/JSONL output; the message names the source and why."""


@dataclass
class BenchRecord:
    name: str
    n_prompt: int
    n_gen: int
    n_depth: int
    avg_ts: float
    stddev_ts: float
    samples_ts: list[float]
    model_filename: str | None
    model_type: str | None
    model_size: int | None
    model_n_params: int | None
    build_commit: str | None
    build_number: int | None
    backends: str | None
    gpu_info: str | None
    cpu_info: str | None
    n_threads: int | None
    n_gpu_layers: int | None
    flash_attn: int | None
    load_mode: str | None      # load_mode, or "mmap"/"none"/"dio" from older use_mmap/use_direct_io
    test_time: str | None
    raw: dict = field(repr=False)


@dataclass
class ParseResult:
    records: list[BenchRecord]
    ignored_lines: int         # non-JSON lines (banners, log lines)
    truncated: bool            # the output ends inside a record (a crashed or killed run)


def test_name(n_prompt: int, n_gen: int, n_depth: int = 0) -> str:
    """The test name exactly as llama-bench prints it: pp512, tg128, pp512+tg128, tg128 @ d4096."""
    if n_prompt > 0 and n_gen == 0:
        name = f"pp{n_prompt}"
    elif n_gen > 0 and n_prompt == 0:
        name = f"tg{n_gen}"
    else:
        name = f"pp{n_prompt}+tg{n_gen}"
    return f"{name} @ d{n_depth}" if n_depth > 0 else name


test_name.__test__ = False  # not a pytest test, despite the name


def parse_llamabench(text: str, source: str = "<output>") -> list[BenchRecord]:
    """Records of llama-bench -o json / -o jsonl output; raises NotLlamaBenchOutput otherwise."""
    return parse_llamabench_report(text, source).records


def parse_llamabench_report(text: str, source: str = "<output>") -> ParseResult:
    """parse_llamabench() plus what was skipped: banner lines and a truncated last record."""
    try:
        values, ignored, truncated = _json_values(text)
    except NotLlamaBenchOutput as e:
        raise NotLlamaBenchOutput(f"{source}: not llama-bench output: {e}") from None
    objects: list[dict] = []
    for value in values:
        if isinstance(value, list):
            objects.extend(value)
        else:
            objects.append(value)
    if not objects:
        raise NotLlamaBenchOutput(f"{source}: not llama-bench output: expected {EXPECTED}; "
                                  f"found {_describe_text(text, truncated)}")
    records = []
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise NotLlamaBenchOutput(
                f"{source}: not llama-bench output: expected {EXPECTED}; "
                f"record {index + 1} is {_json_type(obj)}")
        missing = [k for k in REQUIRED if k not in obj]
        if missing:
            raise NotLlamaBenchOutput(
                f"{source}: not llama-bench output: expected {EXPECTED}; "
                f"record {index + 1} lacks {', '.join(missing)} ({_describe_object(obj)})")
        records.append(_record(obj, index, source))
    return ParseResult(records=records, ignored_lines=ignored, truncated=truncated)


# -- finding the JSON in the text ----------------------------------------------------------

def _json_values(text: str) -> tuple[list, int, bool]:
    """JSON objects and arrays that start a line, plus the count of other lines and whether
    the text ends in an unfinished value. An unfinished array keeps its complete objects."""
    decoder = json.JSONDecoder()
    values: list = []
    ignored = 0
    truncated = False
    pos, end = 0, len(text)
    while pos < end:
        line_end = text.find("\n", pos)
        line_end = end if line_end < 0 else line_end
        stripped = text[pos:line_end].strip()
        start = pos + (len(text[pos:line_end]) - len(text[pos:line_end].lstrip()))
        if not stripped:
            pos = line_end + 1
            continue
        if stripped[0] not in "[{":
            ignored += 1
            pos = line_end + 1
            continue
        try:
            value, stop = decoder.raw_decode(text, start)
        except ValueError as e:
            if not isinstance(e, json.JSONDecodeError):
                # not JSON llama-bench writes: an integer over Python's 4300-digit limit
                raise NotLlamaBenchOutput(f"line {text.count(chr(10), 0, start) + 1}: {e}") from None
            if stripped[0] == "[" and stripped[1:].lstrip()[:1] in ("", "{"):
                items, complete = _salvage_array(text, start + 1, decoder)
                values.append(items)
                truncated = truncated or not complete
                break
            # A log line in brackets, a broken object line inside the text, or the last line
            # of a killed jsonl run (truncated).
            if stripped[0] == "[" or text[line_end:].strip():
                ignored += 1
            else:
                truncated = True
            pos = line_end + 1
            continue
        values.append(value)
        pos = stop
        # the rest of that line belongs to nothing (jsonl lines end here)
        nl = text.find("\n", pos)
        pos = end if nl < 0 else nl + 1
    return values, ignored, truncated


def _salvage_array(text: str, pos: int, decoder: json.JSONDecoder) -> tuple[list, bool]:
    """Complete elements of an array whose closing bracket never came (a crashed -o json run)."""
    items: list = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            return items, False
        if text[pos] == "]":
            return items, True
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return items, False
        items.append(value)


def _describe_text(text: str, truncated: bool) -> str:
    body = text.strip()
    if not body:
        return "an empty file"
    if truncated:
        return "only a truncated JSON record (the run was killed before its first test finished?)"
    lines = body.splitlines()
    if lines[0].lstrip().startswith("| model") or any(ln.startswith("build: ") for ln in lines):
        return "llama-bench markdown output (-o md); run it with -o jsonl"
    if lines[0].startswith("build_commit,"):
        return "llama-bench CSV output (-o csv); run it with -o jsonl"
    try:
        value = json.loads(body)
    except ValueError:
        return f"no JSON object (first line: {lines[0][:60]!r})"
    return _json_type(value)


def _describe_object(obj: dict) -> str:
    schema = obj.get("schema")
    if isinstance(schema, str):
        return f"it is a {schema!r} document"
    keys = ", ".join(list(obj)[:6]) + (", ..." if len(obj) > 6 else "")
    return f"keys: {keys}" if obj else "an empty object"


def _json_type(value) -> str:
    if isinstance(value, dict):
        return f"a JSON object ({_describe_object(value)})"
    if isinstance(value, list):
        return "an empty JSON array" if not value else "a JSON array"
    return f"a JSON {type(value).__name__} ({value!r:.40})"


# -- one record -----------------------------------------------------------------------------

def _record(obj: dict, index: int, source: str) -> BenchRecord:
    def refuse(key: str, value, why: str) -> NotLlamaBenchOutput:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."     # a 400-digit integer, say
        return NotLlamaBenchOutput(f"{source}: record {index + 1}: field {key} = {shown} {why}")

    def need(key: str, kind):
        value = obj[key]
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            raise refuse(key, value, "is not a number")
        return value

    def count(key: str, n: int) -> int:
        if not 0 <= n <= INT64_MAX:
            raise refuse(key, obj[key], f"is out of range (0 to {INT64_MAX})")
        return n

    def rate(key: str, value) -> float:
        # Python's json reads NaN and Infinity; no build prints them or a negative rate.
        x = _float(value)
        if not (math.isfinite(x) and x >= 0):
            raise refuse(key, value, "is not a finite rate >= 0")
        return x

    n_prompt = count("n_prompt", need("n_prompt", int))
    n_gen = count("n_gen", need("n_gen", int))
    avg_ts = rate("avg_ts", need("avg_ts", (int, float)))
    stddev_ts = rate("stddev_ts", need("stddev_ts", (int, float)))
    # Optional, but part of the test's name: a depth that is a whole number must be a count.
    depth = _whole(obj.get("n_depth"))
    n_depth = 0 if depth is None else count("n_depth", depth)
    samples_ts = obj.get("samples_ts")
    if isinstance(samples_ts, list) and all(_is_number(x) for x in samples_ts):
        samples = [rate(f"samples_ts[{i}]", x) for i, x in enumerate(samples_ts)]
    else:
        samples = _samples_from_ns(obj.get("samples_ns"), n_prompt + n_gen)
    return BenchRecord(
        name=test_name(n_prompt, n_gen, n_depth), n_prompt=n_prompt, n_gen=n_gen,
        n_depth=n_depth, avg_ts=avg_ts, stddev_ts=stddev_ts, samples_ts=samples,
        model_filename=_str(obj.get("model_filename")), model_type=_str(obj.get("model_type")),
        model_size=_int(obj.get("model_size")), model_n_params=_int(obj.get("model_n_params")),
        build_commit=_str(obj.get("build_commit")), build_number=_int(obj.get("build_number")),
        backends=_backends(obj), gpu_info=_str(obj.get("gpu_info")),
        cpu_info=_str(obj.get("cpu_info")), n_threads=_int(obj.get("n_threads")),
        n_gpu_layers=_int(obj.get("n_gpu_layers")), flash_attn=_flash_attn(obj.get("flash_attn")),
        load_mode=_load_mode(obj), test_time=_str(obj.get("test_time")), raw=obj)


def _whole(value) -> int | None:
    """A JSON number that is a whole number (512 or 512.0), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None     # not NaN or inf either
    return value


def _int(value) -> int | None:
    """Optional integer fields: a whole number that fits int64, else None (read as absent)."""
    n = _whole(value)
    return n if n is not None and -INT64_MAX - 1 <= n <= INT64_MAX else None


def _float(value) -> float:
    try:
        return float(value)
    except OverflowError:          # an integer beyond the float range
        return math.inf if value > 0 else -math.inf


def _str(value) -> str | None:
    return value if isinstance(value, str) else None


def _samples_from_ns(ns, n_tokens: int) -> list[float]:
    """Rates from samples_ns, or none when any time is unusable (not a finite number > 0)."""
    if not (isinstance(ns, list) and ns and all(_is_number(x) for x in ns)):
        return []
    times = [_float(x) for x in ns]
    if not all(math.isfinite(x) and x > 0 for x in times):
        return []
    rates = [1e9 * n_tokens / x for x in times]   # llama-bench's own formula
    return rates if all(math.isfinite(r) for r in rates) else []


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _flash_attn(value) -> int | None:
    if isinstance(value, bool):          # builds before -fa on|off|auto wrote true/false
        return int(value)
    if isinstance(value, str):
        return {"on": 1, "off": 0, "auto": -1}.get(value.lower())
    return _int(value)


def _load_mode(obj: dict) -> str | None:
    mode = obj.get("load_mode")
    if isinstance(mode, str):
        return mode
    if obj.get("use_direct_io") is True:
        return "dio"
    mmap = obj.get("use_mmap")
    if isinstance(mmap, bool):
        return "mmap" if mmap else "none"
    return None


def _backends(obj: dict) -> str | None:
    value = obj.get("backends")
    if isinstance(value, str):
        return value
    flags = [label for key, label in _OLD_BACKEND_FLAGS if obj.get(key) is True]
    if flags:
        return ",".join(flags)
    return None
