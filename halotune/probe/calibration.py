"""Calibrate the probe once per machine, then freeze the test so comparisons stay identical.

The first probe on a machine (per backend, threads and model) measures one pp64 and one tg8,
then picks the largest n_prompt in PROMPTS and n_gen in GENS that fit TARGET_REPS repetitions
(plus the warm-up) into their share of the budget, and the deepest depth point whose untimed
prefix costs at most DEPTH_PREFIX_SHARE of that share. The choice is written to the user's
state directory ($XDG_STATE_HOME/halotune/probe-calibration.json) and reused verbatim by every
later probe until --recalibrate: a before/after comparison must run the identical test. A
measured peak bandwidth (roofline.py) is frozen with it, for the same reason.

The "ci" preset is not calibrated: it is the fixed smoke test pp64 / tg16 / depth 256.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from halotune.probe.backends.base import TestCase

SCHEMA = "halotune.probe-calibration/1"
PROMPTS = (512, 256, 128, 64)
GENS = (128, 64, 32, 16)
DEPTHS = (4096, 2048, 1024, 512, 256, 128)
TARGET_REPS = 6
DEPTH_PREFIX_SHARE = 0.35
CALIBRATION_TESTS = (TestCase(n_prompt=64), TestCase(n_gen=8))
CI_SPEC = {"n_prompt": 64, "n_gen": 16, "n_depth": 256}


@dataclass
class FrozenSpec:
    n_prompt: int
    n_gen: int
    n_depth: int
    max_reps: int
    preset: str | None
    quant: str | None
    budget_s: float
    threads: int | None
    backend: str
    model: str                      # model identity (preset spec identity or file sha256)
    calibrated: dict = field(default_factory=dict)   # {"pp_tps", "tg_tps"} measured
    created: str | None = None
    source: str = "calibrated"      # "calibrated" | "fixed" (ci) | "frozen" (loaded)
    # A measured peak bandwidth (machines without a known one), frozen with the test.
    peak_bytes_per_s: int | None = None
    peak_source: str | None = None

    def tests(self) -> list[TestCase]:
        out = [TestCase(n_prompt=self.n_prompt), TestCase(n_gen=self.n_gen)]
        if self.n_depth:
            out.append(TestCase(n_gen=self.n_gen, n_depth=self.n_depth))
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def state_path() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return os.path.join(base, "halotune", "probe-calibration.json")


def machine_key(snapshot, backend: str, threads: int | None, root: str, cores: int) -> str:
    """What makes a calibration valid: the machine (GPU, CPU count, RAM), the backend and its
    threads; not the llama.cpp build (a new build must run the same test to be compared)."""
    g = snapshot.primary_gpu if snapshot is not None else None
    parts = [backend, str(threads), str(cores),
             str(snapshot.cpu.logical_cpus if snapshot else None),
             str(snapshot.memory.system_total_bytes if snapshot else None),
             # str(): device_id is None when the kernel gave none
             str(g.device_id) if g else "nogpu", (g.gfx_target or "") if g else ""]
    if os.path.abspath(root) != "/":
        parts.append(os.path.realpath(root))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {"schema": SCHEMA, "specs": {}, "defaults": {}}
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        return {"schema": SCHEMA, "specs": {}, "defaults": {}}
    doc.setdefault("specs", {})
    doc.setdefault("defaults", {})
    return doc


def load_spec(path: str, mkey: str, model_id: str) -> FrozenSpec | None:
    entry = _load(path)["specs"].get(f"{mkey}/{model_id}")
    if not isinstance(entry, dict):
        return None
    try:
        spec = FrozenSpec(**{k: entry[k] for k in FrozenSpec.__dataclass_fields__ if k in entry})
    except TypeError:
        return None
    spec.source = "frozen"
    return spec


def default_preset(path: str, mkey: str) -> dict | None:
    """{"preset", "quant"} frozen for this machine, or None."""
    d = _load(path)["defaults"].get(mkey)
    return d if isinstance(d, dict) else None


def save_spec(path: str, mkey: str, spec: FrozenSpec) -> None:
    """Persist atomically (temp file + rename); a failure to write is the caller's warning."""
    doc = _load(path)
    entry = spec.to_dict()
    entry["source"] = "calibrated"
    doc["specs"][f"{mkey}/{spec.model}"] = entry
    if spec.preset:
        doc["defaults"][mkey] = {"preset": spec.preset, "quant": spec.quant}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def choose(pp_tps: float, tg_tps: float, budget_s: float, context_length: int | None,
           with_depth: bool = True, max_reps: int = 30) -> dict:
    """n_prompt, n_gen, n_depth and max_reps that fit the budget at the measured rates."""
    share = budget_s / (3 if with_depth else 2)
    per_rep = share / (TARGET_REPS + 1)
    n_prompt = next((n for n in PROMPTS if n / max(pp_tps, 1e-9) <= per_rep), PROMPTS[-1])
    n_gen = next((n for n in GENS if n / max(tg_tps, 1e-9) <= per_rep), GENS[-1])
    n_depth = 0
    if with_depth:
        ctx = context_length or 4096
        fits = [d for d in DEPTHS if d + n_gen <= ctx]
        n_depth = next((d for d in fits if d / max(pp_tps, 1e-9) <= DEPTH_PREFIX_SHARE * share),
                       fits[-1] if fits else 0)
    return {"n_prompt": n_prompt, "n_gen": n_gen, "n_depth": n_depth, "max_reps": max_reps}


def measure_rates(backend, model_path: str, n_ctx: int) -> tuple[dict, float]:
    """One warm pp64 and one warm tg8: the rates the choice is made from; and the load time."""
    load_s = backend.load(model_path, n_ctx)
    pp = backend.measure(CALIBRATION_TESTS[0], 1, warmup=True)
    tg = backend.measure(CALIBRATION_TESTS[1], 1, warmup=True)
    return ({"pp_tps": round(pp[-1].tokens_per_s, 3), "tg_tps": round(tg[-1].tokens_per_s, 3)},
            load_s)


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
