"""The adaptive, bounded measurement loop shared by every backend.

For each test (pp, tg, tg at depth): warm up, then repeat in rounds (one repetition per round
in-process; `-r R` per llama-bench process) until the 95 % CI half-width of the mean is within
the target, the test's share of the time budget would be overrun by another round, or the
maximum number of repetitions is reached, and say which (`stopped_because`). Each test's share
is the budget left divided by the tests left, so time a quick test does not use flows on.

Power is integrated over each repetition's timed window only (not load, warm-up or the depth
prefix): energy = sum of P_i x t_i with t_i = tokens / (tokens/s)_i, joules per token = energy /
tokens. Simulated power is never combined with real throughput (nor the other way round).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from halotune.probe.backends.base import Backend, Rep, TestCase

STOP_CI, STOP_BUDGET, STOP_MAX = "ci_target", "time_budget", "max_reps"
# Every test gets at least this many repetitions (a CI needs two; three make it mean something)
# unless the whole probe has run past HARD_LIMIT x the budget.
MIN_REPS = 3
MAX_REPS = 30
HARD_LIMIT = 2.0
SHORT_WINDOW_S = 5.0


@dataclass
class Plan:
    tests: list[TestCase]
    budget_s: float = 30.0
    ci_target_percent: float = 2.0
    min_reps: int = MIN_REPS
    max_reps: int = MAX_REPS
    warmup: bool = True

    @property
    def n_ctx(self) -> int:
        return max(t.n_prompt + t.n_gen + t.n_depth for t in self.tests)


@dataclass
class TestResult:
    test: TestCase
    reps: list[Rep]
    stopped_because: str
    wall_s: float
    summary: object = None                  # stats.Summary
    power: dict = field(default_factory=dict)
    telemetry: dict | None = None

    @property
    def samples(self) -> list[float]:
        return [r.tokens_per_s for r in self.reps]

    def to_dict(self) -> dict:
        """The halotune.probe/1 test object (keys of the contract first, extras after)."""
        s = self.summary
        return {
            "name": self.test.name,
            "n_prompt": self.test.n_prompt,
            "n_gen": self.test.n_gen,
            "n_depth": self.test.n_depth,
            "tokens_per_s": _r(s.mean, 3),
            "stddev": _r(s.stddev, 3),
            "cv_percent": _r(s.cv_percent, 2),
            "samples": [_r(x, 3) for x in self.samples],
            "joules_per_token": _sig(self.power.get("joules_per_token")),
            "avg_power_w": _r(self.power.get("avg_power_w"), 2),
            "median": _r(s.median, 3),
            "ci95_rel_percent": _r(s.ci95_rel_percent, 2),
            "reps": s.n,
            "stopped_because": self.stopped_because,
            "timed_s": _r(sum(_rep_seconds(self.test, r) for r in self.reps), 3),
            "wall_s": _r(self.wall_s, 3),
            "power_source": self.power.get("power_source"),
            "power_null_reason": self.power.get("power_null_reason"),
            "short_window": self.power.get("short_window"),
            "telemetry": self.telemetry,
        }


@dataclass
class RunResult:
    tests: list[TestResult]
    duration_s: float
    stopped_because: str
    load_s: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def test(self, kind: str, depth: bool = False) -> TestResult | None:
        for t in self.tests:
            if t.test.kind == kind and bool(t.test.n_depth) == depth:
                return t
        return None


def _r(v, digits: int):
    return None if v is None else round(float(v), digits)


def _sig(v, digits: int = 6):
    """Rounded to significant digits (joules per token span 1e-5 to 10)."""
    return None if v is None else float(f"{float(v):.{digits}g}")


def _rep_seconds(test: TestCase, rep: Rep) -> float:
    """The timed duration a repetition's rate implies (exactly its window in-process)."""
    return test.tokens / rep.tokens_per_s if rep.tokens_per_s > 0 else 0.0


def overall_stop(reasons: list[str]) -> str:
    if STOP_BUDGET in reasons:
        return STOP_BUDGET
    if STOP_MAX in reasons:
        return STOP_MAX
    return STOP_CI


def run_probe(backend: Backend, model_path: str, plan: Plan, *, watch=None, progress=None,
              clock=time.monotonic) -> RunResult:
    """Load the model, then measure every test of the plan within its budget.

    progress(event) is called with {"phase", "test", "index", "count", "reps", "elapsed_s",
    "budget_s", "ci95_rel_percent"} after the load and every round."""
    from halotune.probe.stats import summarize

    start = clock()
    load_s = backend.load(model_path, plan.n_ctx)
    t_after_load = clock()
    results: list[TestResult] = []
    warnings: list[str] = []

    def report(phase: str, test: TestCase | None, index: int, reps: int, ci):
        if progress is not None:
            progress({"phase": phase, "test": test.name if test else None, "index": index,
                      "count": len(plan.tests), "reps": reps,
                      "elapsed_s": clock() - t_after_load, "budget_s": plan.budget_s,
                      "ci95_rel_percent": ci})

    report("loaded", None, 0, 0, None)
    for i, test in enumerate(plan.tests):
        t_start = clock()
        remaining = plan.budget_s - (t_start - t_after_load)
        share = max(remaining, 0.0) / (len(plan.tests) - i)
        deadline = t_start + share
        reps: list[Rep] = []
        warm = plan.warmup
        stop = None
        summary = None
        slowest_round = first_round = 0.0
        while stop is None:
            r0 = clock()
            want = min(backend.round_reps, plan.max_reps - len(reps))
            reps += backend.measure(test, want, warmup=warm)
            # The slowest round so far predicts the next one (rounds vary a lot on noisy
            # hosts); the first one carries the warm-up (and a depth prefix), so it only
            # counts until there is another.
            if warm and not backend.warmup_every_round:
                first_round = clock() - r0
            else:
                slowest_round = max(slowest_round, clock() - r0)
            warm = False
            summary = summarize([r.tokens_per_s for r in reps])
            n = len(reps)
            now = clock()
            if n >= plan.min_reps and summary.ci95_rel_percent is not None and \
                    summary.ci95_rel_percent <= plan.ci_target_percent:
                stop = STOP_CI
            elif n >= plan.max_reps:
                stop = STOP_MAX
            elif n >= plan.min_reps and now + (slowest_round or first_round) > deadline:
                stop = STOP_BUDGET
            elif now - t_after_load > HARD_LIMIT * plan.budget_s:
                stop = STOP_BUDGET
                warnings.append(f"{test.name}: stopped after {n} repetition"
                                f"{'s' if n != 1 else ''}, the probe ran past "
                                f"{HARD_LIMIT:g}x its {plan.budget_s:g} s budget")
            report("round", test, i, n, summary.ci95_rel_percent)
        tr = TestResult(test, reps, stop, clock() - t_start, summary)
        tr.power = _power(test, reps, watch, backend)
        if watch is not None:
            windows = [(r.t0, r.t1) for r in reps if r.t0 is not None and r.t1 is not None]
            if windows:
                tr.telemetry = watch.summary(windows[0][0], windows[-1][1])
                tr.telemetry["short_window"] = tr.power["short_window"]
        results.append(tr)
    duration = clock() - start
    return RunResult(results, duration, overall_stop([t.stopped_because for t in results]),
                     load_s=load_s, warnings=warnings)


def _power(test: TestCase, reps: list[Rep], watch, backend: Backend) -> dict:
    """Average power and joules per token over the timed windows of one test."""
    timed = sum(_rep_seconds(test, r) for r in reps)
    out = {"avg_power_w": None, "joules_per_token": None, "energy_j": None,
           "power_source": None, "power_null_reason": None,
           "short_window": timed < SHORT_WINDOW_S}
    modelled = [r.power_w for r in reps]
    if all(p is not None for p in modelled) and reps:
        # Modelled, not filtered by an SMU: no smearing to flag.
        out["short_window"] = False
        powers, source = modelled, "simulated" if backend.simulated else "backend"
    else:
        if watch is None:
            out["power_null_reason"] = "no telemetry was sampled during the run"
            return out
        source, reason = watch.power_source()
        if source is None:
            out["power_null_reason"] = reason
            return out
        if (source == "simulated") != bool(backend.simulated):
            out["power_null_reason"] = (
                "the machine's power is simulated but the throughput is real: not combined"
                if source == "simulated" else
                "the throughput is simulated but the power is the real machine's: not combined")
            return out
        powers = [watch.average_power(r.t0, r.t1) if r.t0 is not None else None for r in reps]
        if any(p is None for p in powers):
            out["power_null_reason"] = "no power reading covers every timed repetition"
            return out
    energy = sum(p * _rep_seconds(test, r) for p, r in zip(powers, reps))
    tokens = test.tokens * len(reps)
    out.update(power_source=source, energy_j=energy,
               avg_power_w=energy / timed if timed > 0 else None,
               joules_per_token=energy / tokens if tokens else None)
    return out


# --- the whole probe: machine, backend, model, frozen spec, run, roofline, document -------------

class ProbeFailed(Exception):
    """The probe could not run or finish; `exit_code` says how (cli.exitcodes)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class ProbeOptions:
    root: str = "/"
    backend: str = "auto"
    model: str | None = None               # a user's .gguf instead of a generated preset
    preset: str | None = None
    quant: str | None = None
    budget_s: float = 30.0
    ci_target_percent: float = 2.0
    n_depth: int | None = None
    n_prompt: int | None = None
    n_gen: int | None = None
    threads: int | None = None
    recalibrate: bool = False
    price_kwh: float = 0.30
    max_reps: int = MAX_REPS
    llama_bench: str | None = None         # configured llama-bench path
    calibration_path: str | None = None    # default: calibration.state_path()
    cache_dir: str | None = None           # generated models
    measure_bandwidth: bool = True
    backend_obj: Backend | None = None     # an already built backend (tests, validate)


def probe(opts: ProbeOptions, progress=None) -> dict:
    """Run the probe and return the halotune.probe/1 document; ProbeFailed on failure."""
    from halotune.machine.programs import ProgramError, Programs
    from halotune.machine.rootfs import RootFS
    from halotune.probe import calibration as cal
    from halotune.probe.backends import BackendError, BackendUnavailable, make_backend
    from halotune.probe.gguf_info import GgufError
    from halotune.telemetry.sampler import Sampler

    t_begin = time.monotonic()
    fs = RootFS(opts.root)
    programs = Programs(fs, {"llama-bench": opts.llama_bench} if opts.llama_bench else None)
    sampler = Sampler(fs, programs=programs)
    try:
        snapshot = sampler.sample()
    finally:
        sampler.close()
    warnings: list[str] = []
    try:
        backend = opts.backend_obj or make_backend(opts.backend, fs, programs, opts.threads)
    except BackendUnavailable as e:
        raise ProbeFailed(str(e)) from None
    except ValueError as e:
        raise ProbeFailed(str(e), 64) from None
    info = backend.info()
    try:
        model = _resolve_model(opts, backend, snapshot, fs, progress, warnings)
        cores = _cores_cached()
        mkey = cal.machine_key(snapshot, backend.name, info.threads, opts.root, cores)
        cal_path = opts.calibration_path or cal.state_path()
        spec = _spec(opts, backend, model, mkey, cal_path, warnings, progress)
        tests = spec.tests()
        if not backend.supports_depth and any(t.n_depth for t in tests):
            tests = [t for t in tests if not t.n_depth]
            warnings.append(f"{info.path}: this llama-bench has no -d/--n-depth; the depth "
                            "point was skipped")
        plan = Plan(tests, budget_s=opts.budget_s,
                    ci_target_percent=opts.ci_target_percent, max_reps=spec.max_reps)
        from halotune.probe.watch import TelemetryWatch

        with TelemetryWatch(fs, hz=4.0, programs=programs,
                            simulated=fs.is_simulated) as watch:
            result = run_probe(backend, model["path"], plan, watch=watch, progress=progress)
        info = backend.info()
    except (GgufError, BackendError, ProgramError) as e:
        raise ProbeFailed(str(e)) from None
    except OSError as e:
        raise ProbeFailed(f"{e.filename or 'probe'}: {e.strerror or e}") from None
    finally:
        backend.close()
    warnings += result.warnings
    if watch.errors:
        warnings.append(f"telemetry: {len(watch.errors)} reading(s) failed, first: "
                        f"{watch.errors[0]}")
    if any(t.power.get("short_window") and t.power.get("joules_per_token") is not None
           for t in result.tests):
        warnings.append("some tests ran less than 5 s of timed work: the SMU filters power "
                        "with a 1 s time constant, so their watts are smeared")
    if progress is not None:
        progress({"phase": "roofline"})
    had_peak = spec.peak_bytes_per_s
    roofline = _roofline(result, model, snapshot, watch, opts, backend, fs, spec)
    if spec.peak_bytes_per_s and not had_peak and spec.source in ("calibrated", "frozen"):
        try:
            cal.save_spec(cal_path, mkey, spec)
        except OSError as e:
            warnings.append(f"{cal_path}: could not save the measured peak ({e.strerror})")
    fingerprint = _fingerprint(fs, snapshot, programs, info, warnings)
    tg = result.test("tg")
    jpt = tg.power.get("joules_per_token") if tg else None
    cost = {"price_per_kwh": opts.price_kwh, "test": tg.test.name if tg else None,
            "value": cost_value(jpt, opts.price_kwh),
            "reason": None if jpt is not None else
            (tg.power.get("power_null_reason") if tg else "no tg test")}
    source, reason = watch.power_source()
    from halotune.probe.document import build_document

    return build_document(
        backend=backend.name,
        model={k: v for k, v in model.items() if k not in ("info", "load_s")},
        tests=[t.to_dict() for t in result.tests], roofline=roofline,
        duration_s=time.monotonic() - t_begin, stopped_because=result.stopped_because,
        fingerprint=fingerprint,
        extra={"backend_info": info.to_dict(),
               "spec": spec.to_dict() | {"run_budget_s": opts.budget_s,
                                         "ci_target_percent": opts.ci_target_percent,
                                         "calibration_file": cal_path},
               "load_s": round(result.load_s or model.get("load_s", 0.0), 3),
               "measure_s": round(result.duration_s, 3),
               "cost_per_million_tokens": cost,
               "telemetry": {"hz": watch.hz, "samples": len(watch.readings),
                             "priority_lowered": watch.priority_lowered,
                             "power_source": source, "power_null_reason": reason},
               "warnings": warnings})


def cost_value(joules_per_token, price_kwh):
    from halotune.probe.document import cost_per_million_tokens

    return cost_per_million_tokens(joules_per_token, price_kwh)


def default_preset_for(backend: Backend, snapshot) -> str:
    """cpu (~0.45 GiB Q4_0) for CPU backends and the simulated machine, apu (~1.6 GiB) where the
    model runs on a GPU: either way tg stays bandwidth-bound at 5-30 ms per token."""
    if backend.simulated:
        return "cpu"
    info = backend.info()
    if info.cpu_backend is not None:
        return "cpu" if info.cpu_backend else "apu"
    g = snapshot.primary_gpu
    return "apu" if g is not None and g.is_apu else "cpu"


def _resolve_model(opts: ProbeOptions, backend, snapshot, fs, progress, warnings) -> dict:
    """{path, name, type, size_bytes, n_params, sha256, preset, generated, info}."""
    from halotune.probe import calibration as cal
    from halotune.probe.gguf_info import read_gguf

    if opts.model:
        info = read_gguf(opts.model)
        return {"path": opts.model, "name": info.name or os.path.basename(opts.model),
                "type": info.file_type, "size_bytes": info.size_bytes,
                "n_params": info.n_params, "sha256": file_sha256(info.paths),
                "architecture": info.architecture, "preset": None, "generated": False,
                "info": info}
    import dataclasses

    from halotune.probe.gguf_model import PRESETS, ensure_model

    preset, quant = opts.preset, opts.quant
    if preset is None:
        cores = _cores_cached()
        mkey = cal.machine_key(snapshot, backend.name, backend.info().threads, opts.root, cores)
        frozen = cal.default_preset(opts.calibration_path or cal.state_path(), mkey)
        if frozen and not opts.recalibrate and frozen.get("preset") in PRESETS:
            preset = frozen["preset"]
            quant = quant or frozen.get("quant")
        else:
            preset = default_preset_for(backend, snapshot)
    if preset not in PRESETS:
        raise ProbeFailed(f"--preset {preset}: unknown preset (choose from "
                          f"{', '.join(sorted(PRESETS))})", 64)
    spec = PRESETS[preset]
    if quant:
        spec = dataclasses.replace(spec, weight_type=quant.upper())
    if progress is not None:
        progress({"phase": "model", "preset": preset})
    mf = ensure_model(spec, cache_dir=opts.cache_dir,
                      progress=(lambda ph, done, total: progress(
                          {"phase": ph, "done": done, "total": total}))
                      if progress is not None else None)
    info = read_gguf(mf.path)
    return {"path": mf.path, "name": spec.name, "type": info.file_type or spec.weight_type,
            "size_bytes": info.size_bytes, "n_params": mf.n_params, "sha256": mf.sha256,
            "architecture": info.architecture, "preset": preset, "quant": spec.weight_type,
            "identity": spec.identity(), "generated": mf.generated, "info": info}


_CORES: list[int] = []


def _cores_cached() -> int:
    from halotune.probe.backends import physical_cores

    if not _CORES:
        _CORES.append(physical_cores())
    return _CORES[0]


def file_sha256(paths: list[str]) -> str:
    """sha256 over the model's file(s), cached by (path, size, mtime) in the user's cache:
    hashing tens of GB on every probe would cost more than the probe."""
    import hashlib
    import json

    cache_file = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                              os.path.join(os.path.expanduser("~"), ".cache"),
                              "halotune", "sha256.json")
    key = "|".join(f"{os.path.realpath(p)}:{os.stat(p).st_size}:{os.stat(p).st_mtime_ns}"
                   for p in paths)
    try:
        with open(cache_file, encoding="utf-8") as f:
            cache = json.load(f)
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache, dict) and isinstance(cache.get(key), str):
        return cache[key]
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
    digest = h.hexdigest()
    try:
        cache = cache if isinstance(cache, dict) else {}
        cache[key] = digest
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        tmp = f"{cache_file}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(cache, f)
        os.replace(tmp, cache_file)
    except OSError:
        pass
    return digest


def _spec(opts: ProbeOptions, backend, model: dict, mkey: str, cal_path: str, warnings,
          progress):
    """The frozen test for this machine and model: loaded, fixed (ci), or calibrated now."""
    from halotune.probe import calibration as cal

    model_id = model.get("identity") or model["sha256"]
    info = backend.info()
    if model.get("preset") == "ci":
        spec = cal.FrozenSpec(**cal.CI_SPEC, max_reps=opts.max_reps, preset="ci",
                              quant=model.get("quant"), budget_s=opts.budget_s,
                              threads=info.threads, backend=backend.name, model=model_id,
                              source="fixed")
    else:
        spec = None if opts.recalibrate else cal.load_spec(cal_path, mkey, model_id)
        if spec is None:
            if progress is not None:
                progress({"phase": "calibrate"})
            ctx = model["info"].context_length or 4096
            rates, load_s = cal.measure_rates(backend, model["path"],
                                              min(ctx, max(cal.DEPTHS) + 256))
            model["load_s"] = round(load_s, 3)
            chosen = cal.choose(rates["pp_tps"], rates["tg_tps"], opts.budget_s, ctx,
                                max_reps=opts.max_reps)
            spec = cal.FrozenSpec(**chosen, preset=model.get("preset"),
                                  quant=model.get("quant"), budget_s=opts.budget_s,
                                  threads=info.threads, backend=backend.name, model=model_id,
                                  calibrated=rates, created=cal.now_rfc3339())
            try:
                cal.save_spec(cal_path, mkey, spec)
            except OSError as e:
                warnings.append(f"{cal_path}: could not save the calibration ({e.strerror}); "
                                "the next probe calibrates again")
    overrides = {k: v for k, v in (("n_prompt", opts.n_prompt), ("n_gen", opts.n_gen),
                                   ("n_depth", opts.n_depth)) if v is not None}
    if overrides:
        import dataclasses

        spec = dataclasses.replace(spec, **overrides, source=spec.source + "+overrides")
    return spec


def _roofline(result: RunResult, model: dict, snapshot, watch, opts, backend, fs,
              spec) -> dict:
    from halotune.probe.gguf_info import bytes_per_token
    from halotune.probe.roofline import peak_bandwidth, tg_efficiency

    mclk = max((r.mclk_mhz for r in watch.readings if r.mclk_mhz is not None), default=None)
    if backend.simulated and getattr(backend, "last_point", None):
        peak, source = backend.last_point["peak_bytes_per_s"], backend.last_point["peak_source"]
    else:
        # The machine's limit: a stream on every physical core, whatever the probe's threads.
        # Real throughput under a simulated root is compared with this host, not the tree.
        if fs.is_simulated:
            snapshot, mclk = None, None
        # A measured peak is frozen with the calibration: re-measuring a noisy stream every
        # run would move the efficiency of identical throughput (15-30 GB/s here).
        frozen = (spec.peak_bytes_per_s, spec.peak_source) if spec.peak_bytes_per_s else None
        peak, source = peak_bandwidth(snapshot, measure=opts.measure_bandwidth and not frozen,
                                      threads=_cores_cached(), mclk_mhz=mclk)
        if frozen and source == "not measured":
            peak, source = frozen[0], f"{frozen[1]}; frozen {spec.created or ''}".rstrip()
        elif peak and source.startswith("measured"):
            spec.peak_bytes_per_s, spec.peak_source = peak, source
    out = {"peak_bytes_per_s": peak, "source": source, "tg_efficiency": None,
           "bytes_per_token": None, "tg_bytes_per_s": None,
           "tg_depth_efficiency": None, "pp_efficiency": None,
           "pp_efficiency_reason": "no sourced peak FLOP/s figure for this device"}
    tg = result.test("tg")
    if tg is not None:
        # The KV cache read grows from 0 to n_gen during the test: count its middle.
        bpt = bytes_per_token(model["info"], tg.test.n_gen // 2)
        out["bytes_per_token"] = bpt
        out["tg_bytes_per_s"] = int(tg.summary.mean * bpt)
        out["tg_efficiency"] = tg_efficiency(tg.summary.mean, bpt, peak)
    td = result.test("tg", depth=True)
    if td is not None:
        bpt_d = bytes_per_token(model["info"], td.test.n_depth + td.test.n_gen // 2)
        out["bytes_per_token_at_depth"] = bpt_d
        out["tg_depth_efficiency"] = tg_efficiency(td.summary.mean, bpt_d, peak)
    return out


def _fingerprint(fs, snapshot, programs, info, warnings) -> dict:
    extra = {"llama_cpp": {"build": info.build, "backend": info.device}}
    try:
        from halotune.telemetry.fingerprint import collect_fingerprint
    except ImportError:
        warnings.append("fingerprint: halotune.telemetry.fingerprint is not available; a "
                        "minimal fingerprint is recorded")
        return {"schema": "halotune.fingerprint/1", "kernel_release": snapshot.kernel_release,
                **extra}
    try:
        return collect_fingerprint(fs, snapshot=snapshot, programs=programs, extra=extra)
    except Exception as e:  # noqa: BLE001 - a fingerprint failure must not lose the probe
        warnings.append(f"fingerprint: {e}")
        return {"schema": "halotune.fingerprint/1", "kernel_release": snapshot.kernel_release,
                "error": str(e), **extra}
