"""Helpers shared by the history and bench tests.

- `cli(*args)`: the halotune command line in-process (stdout/stderr captured), with `history`
  and `bench` wired as main.py wires them (through main.main once the verbs are in its parser).
- `STANDIN`: the stand-in llama-bench (tests/fixtures/bench-standin/llama-bench), real output.
- `FIXTURE_JSON`, `FIXTURE_JSONL`: real llama-bench 0c1e570 output (-p 64 -n 16, CPU).
- `make_tests(pp, tg)`: probe/1 test dicts; `fingerprint(**changes)`: a fingerprint of the
  reference tree with dotted-key changes applied.
"""

from __future__ import annotations

import contextlib
import io
import os

from tuning.conftest import CliResult

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(TESTS, "fixtures")
REFERENCE = os.path.join(FIXTURES, "strix-halo")
STANDIN = os.path.join(FIXTURES, "bench-standin", "llama-bench")
FIXTURE_JSON = os.path.join(FIXTURES, "llama-bench", "llama-bench-0c1e570-cpu.json")
FIXTURE_JSONL = os.path.join(FIXTURES, "llama-bench", "llama-bench-0c1e570-cpu.jsonl")
FIXTURE_MD = os.path.join(FIXTURES, "llama-bench", "llama-bench-0c1e570-cpu.md")


def cli(*args) -> CliResult:
    """Run `halotune ARGS...` in-process through the real command line."""
    from halotune.cli import main as m

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = m.main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 64
    return CliResult(rc, out.getvalue(), err.getvalue())


def make_tests(pp: float | None = 533.05661, tg: float | None = 150.8699,
             model: str = "S-q4_0.gguf") -> list[dict]:
    out = []
    if pp is not None:
        out.append({"name": "pp64", "model_name": model, "n_prompt": 64, "n_gen": 0,
                    "n_depth": 0, "tokens_per_s": pp, "stddev": 3.7, "cv_percent": 0.69,
                    "samples": [pp - 2.6, pp + 2.6], "joules_per_token": None,
                    "avg_power_w": None})
    if tg is not None:
        out.append({"name": "tg16", "model_name": model, "n_prompt": 0, "n_gen": 16,
                    "n_depth": 0, "tokens_per_s": tg, "stddev": 1.87, "cv_percent": 1.24,
                    "samples": [tg + 1.3, tg - 1.3], "joules_per_token": round(98.4 / tg, 4),
                    "avg_power_w": 98.4})
    return out


_REF_FP: dict | None = None


def fingerprint(**changes) -> dict:
    """The reference tree's fingerprint; changes by dotted key: fingerprint(**{"tdp.stapm_w": 85})."""
    global _REF_FP
    import copy

    if _REF_FP is None:
        from halotune.machine.rootfs import RootFS
        from halotune.telemetry.fingerprint import collect_fingerprint

        _REF_FP = collect_fingerprint(RootFS(REFERENCE))
    fp = copy.deepcopy(_REF_FP)
    for dotted, value in changes.items():
        node = fp
        *path, last = dotted.split(".")
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value
    return fp


MODEL = {"name": "S-q4_0.gguf", "filename": "models/S-q4_0.gguf", "type": "llama ?B Q4_0",
         "size_bytes": 87658496, "n_params": 155730944, "sha256": None}
