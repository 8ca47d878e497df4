"""Fuzzing, campaign 2 of issue #8: the gpu_metrics decoder (halotune/machine/gpu_metrics.py).

The decoder reads a binary table the kernel hands over; its contract is "never raises", an
unknown version or a short blob yielding the header and a warning. Targets:
- random blobs of any length (0-400 bytes);
- blobs with a known version's header (every version of LAYOUTS), any structure_size, any
  length from empty to past the layout, random body;
- valid blobs of every version (encoded from random field values) mutated: bytes flipped,
  inserted, deleted, truncated, extended; with random SMU firmware / MP1 versions;
- every version x every length 0..size+8 x fill patterns, deterministically;
- end to end: `halotune status --json` on the reference tree whose gpu_metrics is a random or
  mutated blob (valid strict JSON, the contract's keys present, exit 0).
Invariants besides "no exception": a GpuMetrics comes back; every float is finite; a decoded
table has a known version; a blob shorter than its layout says so in `warnings`.
Figure: inputs tried per target, crashes (0).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import random
import shutil
import struct

from hypothesis import given
from hypothesis import strategies as st

from halotune.machine import gpu_metrics
from status_contract import assert_contract_keys

from .conftest import Tally, fuzz_settings, record

VERSIONS = sorted(gpu_metrics.LAYOUTS)
SIZES = {v: gpu_metrics.layout_size(*v) for v in VERSIONS}
MAX_SIZE = max(SIZES.values())


def check(m, blob: bytes) -> None:
    assert isinstance(m, gpu_metrics.GpuMetrics)
    for f in dataclasses.fields(m):
        v = getattr(m, f.name)
        values = v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) \
            and f.name != "raw" else [v]
        for x in values:
            if isinstance(x, float):
                assert math.isfinite(x), f"{f.name} = {x}"
    if m.decoded:
        assert (m.format_revision, m.content_revision) in gpu_metrics.LAYOUTS
        size_ = SIZES[(m.format_revision, m.content_revision)]
        if len(blob) < size_ or (m.structure_size or 0) < size_:
            assert m.warnings, "a short table must say so"
    elif len(blob) >= 4:
        assert m.warnings, "an undecoded table must say why"
    m.version  # noqa: B018 - the property must not raise either


def decode_checked(blob: bytes, smc=None, mp1=None):
    m = gpu_metrics.decode(blob, smc, mp1)
    check(m, blob)
    return m


def header(frev: int, crev: int, structure_size: int) -> bytes:
    return struct.pack("<HBB", structure_size & 0xFFFF, frev, crev)


_smc = st.one_of(st.none(), st.integers(0, 0xFFFFFFFF), st.sampled_from([0x5D4600, 0x5D4601,
                                                                         0x40000F, 0x373200]))
_mp1 = st.one_of(st.none(), st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 9)),
                 st.sampled_from([(12, 0, 0), (12, 0, 1), (14, 0, 0), (13, 0, 5)]))


def test_random_blobs():
    t = Tally()

    @fuzz_settings(full=40_000)
    @given(blob=st.binary(max_size=400), smc=_smc, mp1=_mp1)
    def run(blob, smc, mp1):
        t.hit()
        decode_checked(blob, smc, mp1)

    run()
    record("fuzz: gpu_metrics random blobs", **t.figures())


def test_known_headers_any_length_and_size():
    t = Tally()

    @fuzz_settings(full=30_000)
    @given(version=st.sampled_from(VERSIONS), data=st.data(), smc=_smc, mp1=_mp1)
    def run(version, data, smc, mp1):
        size_ = SIZES[version]
        n = data.draw(st.integers(0, size_ + 32), label="length")
        ssize = data.draw(st.one_of(st.just(size_), st.integers(0, 0xFFFF)), label="structure_size")
        body = data.draw(st.binary(min_size=max(0, n - 4), max_size=max(0, n - 4)), label="body")
        blob = (header(*version, ssize) + body)[:n]
        t.hit(f"v{version[0]}.{version[1]}")
        decode_checked(blob, smc, mp1)

    run()
    record("fuzz: gpu_metrics known headers", **t.figures())


def _random_fields(version, rnd: random.Random) -> dict:
    c = gpu_metrics._COMPILED[version]
    out = {}
    for name, code, count, _off in c.fields:
        if name in ("structure_size", "format_revision", "content_revision"):
            continue
        top = (1 << (8 * struct.calcsize(code))) - 1
        pick = lambda: rnd.choice([None, 0, 1, top, top - 1, rnd.randrange(top + 1)])  # noqa: E731
        out[name] = pick() if count == 1 else [pick() for _ in range(count)]
    return out


def test_mutated_valid_blobs_of_every_version():
    t = Tally()
    mutation = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate",
                                          "extend", "ones", "zeros"]),
                         st.integers(0, MAX_SIZE + 16), st.integers(0, 255))

    @fuzz_settings(full=30_000)
    @given(version=st.sampled_from(VERSIONS), seed=st.integers(0, 2**32 - 1),
           mutations=st.lists(mutation, max_size=6), smc=_smc, mp1=_mp1)
    def run(version, seed, mutations, smc, mp1):
        blob = bytearray(gpu_metrics.encode(_random_fields(version, random.Random(seed)),
                                            *version))
        for op, pos, byte in mutations:
            pos = pos % (len(blob) + 1)
            if op == "flip" and pos < len(blob):
                blob[pos] ^= 1 << (byte % 8)
            elif op == "set" and pos < len(blob):
                blob[pos] = byte
            elif op == "insert":
                blob[pos:pos] = bytes([byte])
            elif op == "delete":
                del blob[pos:pos + 1 + byte % 8]
            elif op == "truncate":
                del blob[pos:]
            elif op == "extend":
                blob += bytes([byte]) * (1 + byte % 64)
            elif op == "ones":
                blob[pos:pos + 8] = b"\xff" * len(blob[pos:pos + 8])
            elif op == "zeros":
                blob[pos:pos + 8] = b"\x00" * len(blob[pos:pos + 8])
        t.hit(f"v{version[0]}.{version[1]}")
        decode_checked(bytes(blob), smc, mp1)

    run()
    record("fuzz: gpu_metrics mutated valid blobs", **t.figures())


def test_every_version_and_length():
    """Deterministic: each known version, each length from 0 to past its layout, each fill."""
    n = 0
    rnd = random.Random(7)
    fills = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x01"]
    for version in VERSIONS:
        size_ = SIZES[version]
        for length in range(0, size_ + 9):
            for ssize in (size_, 0, 4, length, 0xFFFF):
                for fill in fills + [None]:
                    body = (bytes(rnd.randrange(256) for _ in range(size_ + 8)) if fill is None
                            else fill * (size_ + 8))
                    blob = (header(*version, ssize) + body)[:length]
                    decode_checked(blob)
                    n += 1
    record("fuzz: gpu_metrics every version x length", inputs=n, crashes=0,
           versions=len(VERSIONS))


# --- end to end: the status document ----------------------------------------------------------

def _reject_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def test_status_json_with_a_random_gpu_metrics(tmp_path, no_daemon):
    from conftest import REF_DEV, copy_reference
    from halotune.cli.main import main

    root = copy_reference(str(tmp_path / "ref"))
    path = os.path.join(root, REF_DEV, "gpu_metrics")
    with open(path, "rb") as f:
        good = f.read()
    t = Tally()

    @fuzz_settings(ci=300, full=1000)
    @given(kind=st.sampled_from(["random", "known header", "mutated reference"]),
           version=st.sampled_from(VERSIONS), data=st.data())
    def run(kind, version, data):
        if kind == "random":
            blob = data.draw(st.binary(max_size=MAX_SIZE + 16), label="blob")
        elif kind == "known header":
            body = data.draw(st.binary(max_size=MAX_SIZE + 16), label="body")
            blob = header(*version, SIZES[version]) + body
        else:
            blob = bytearray(good)
            for pos, byte in data.draw(st.lists(st.tuples(st.integers(0, len(good) - 1),
                                                          st.integers(0, 255)), max_size=12),
                                       label="bytes"):
                blob[pos] = byte
            cut = data.draw(st.integers(0, len(good)), label="cut")
            blob = bytes(blob[:cut])
        with open(path, "wb") as f:
            f.write(blob)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["status", "--json", "--root", root])
        assert rc == 0, err.getvalue()
        doc = json.loads(out.getvalue(), parse_constant=_reject_constant)
        assert_contract_keys(doc)
        assert len(doc["gpus"]) == 1
        t.hit(kind)

    try:
        run()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    record("fuzz: status --json with a random gpu_metrics", **t.figures())

