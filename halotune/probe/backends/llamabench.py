"""External backend: the user's own `llama-bench` (what a Strix Halo owner runs: Vulkan/ROCm).

llama-bench does its repetitions itself, so the runner calls it in rounds (`-r R`) and
accumulates the per-repetition `samples_ts`. Each round is one process: load, warm-up (its
own), then the timed repetitions, and one jsonl line per finished test. The timed window of a
round is placed at the end of its line: it ends when the line arrives and lasted the sum of
`samples_ns` (repetitions run back to back), so power is integrated over timed work only.
With `-o json` (old builds) the whole output arrives at exit; the window ends at exit then.
"""

from __future__ import annotations

import os

from halotune.probe.backends.base import (Backend, BackendError, BackendInfo, BackendUnavailable,
                                          Rep, TestCase)

# Per round: the load, the warm-up and the repetitions; generous, since a first load of a big
# model from a cold page cache can take a minute.
ROUND_TIMEOUT_S = 600.0


class LlamaBenchBackend(Backend):
    name = "llama-bench"
    warmup_every_round = True

    def __init__(self, programs, threads: int | None = None, threads_reason: str | None = None,
                 n_gpu_layers: int | None = 99, flash_attn: bool | None = None,
                 mmap: bool | None = None, round_reps: int = 3,
                 timeout_s: float = ROUND_TIMEOUT_S):
        from halotune.machine.llamabench import LlamaBench, LlamaBenchError
        from halotune.machine.programs import ProgramError, ProgramNotFound

        self.lb = LlamaBench(programs)
        try:
            self.features = self.lb.features()
        except LlamaBenchError as e:
            raise BackendUnavailable(str(e)) from None
        except ProgramNotFound as e:
            raise BackendUnavailable(f"{e}; build llama.cpp's llama-bench, or name it with "
                                     "--llama-bench PATH") from None
        except ProgramError as e:
            raise BackendUnavailable(str(e)) from None
        if self.features.output is None:
            raise BackendUnavailable(
                f"{self.features.path} prints neither -o jsonl nor -o json (formats: "
                f"{', '.join(self.features.output_formats) or 'none found in --help'})")
        self.supports_depth = self.features.depth
        self.threads = threads
        self.threads_reason = threads_reason
        self.n_gpu_layers = n_gpu_layers
        self.flash_attn = flash_attn
        self.mmap = mmap
        self.round_reps = max(1, round_reps)
        self.timeout_s = timeout_s
        self.model_path: str | None = None
        self.last_records: list = []
        self.runs: list = []        # every Run, for diagnostics
        self._build: str | None = None
        self._device: str | None = None
        self.cpu_hint: bool | None = None      # from --list-devices, before the first run

    def info(self) -> BackendInfo:
        cpu = self.cpu_hint if self._device is None else self._device == "CPU"
        return BackendInfo("llama-bench", build=self._build, device=self._device,
                           cpu_backend=cpu, threads=self.threads,
                           threads_reason=self.threads_reason, path=self.features.path,
                           extra={"output_format": self.features.output,
                                  "argv": self.runs[-1].argv if self.runs else None})

    def load(self, model_path: str, n_ctx: int) -> float:
        if not os.path.isfile(model_path):
            raise BackendError(f"{model_path}: no such model file")
        self.model_path = model_path
        return 0.0        # every round loads the model itself

    def measure(self, test: TestCase, reps: int, warmup: bool) -> list[Rep]:
        from halotune.machine.llamabench import LlamaBenchError
        from halotune.probe.llamabench_output import NotLlamaBenchOutput, parse_llamabench

        if self.model_path is None:
            raise BackendError("measure() before load()")
        try:
            args = self.lb.bench_args(self.model_path, test.n_prompt, test.n_gen, test.n_depth,
                                      reps, threads=self.threads, n_gpu_layers=self.n_gpu_layers,
                                      flash_attn=self.flash_attn, mmap=self.mmap)
            run = self.lb.run(args, timeout=self.timeout_s)
        except LlamaBenchError as e:
            raise BackendError(str(e)) from None
        self.runs.append(run)
        if not run.ok:
            raise BackendError(f"{run.argv[0]} failed (exit {run.returncode}): "
                               f"{run.stderr_tail() or '(no output on stderr)'}")
        try:
            records = parse_llamabench(run.stdout, source=f"{run.argv[0]} -o "
                                                          f"{self.features.output}")
        except NotLlamaBenchOutput as e:
            raise BackendError(f"{run.argv[0]} printed something that is not llama-bench "
                               f"output: {e}") from None
        mine = [r for r in records if (r.n_prompt, r.n_gen, r.n_depth or 0)
                == (test.n_prompt, test.n_gen, test.n_depth)]
        if not mine:
            got = ", ".join(r.name for r in records) or "no tests"
            raise BackendError(f"{run.argv[0]} reported {got}, not {test.name}")
        rec = mine[-1]
        self.last_records = records
        self._build = rec.build_commit if rec.build_number is None else \
            f"{rec.build_commit} ({rec.build_number})"
        self._device = rec.backends or self._device
        if rec.n_threads is not None:
            self.threads = rec.n_threads
        samples = list(rec.samples_ts) or [rec.avg_ts]
        return _place(samples, _line_time(run, records.index(rec), self.features.output),
                      rec.raw.get("samples_ns"))


def _line_time(run, index: int, fmt: str) -> float:
    """When the index-th record's line arrived (jsonl); the end of the process for json."""
    if fmt == "jsonl":
        seen = -1
        for line in run.lines:
            if line.text.lstrip().startswith("{") and '"avg_ts"' in line.text:
                seen += 1
                if seen == index:
                    return line.t
    return run.ended


def _place(samples_ts: list[float], end: float, samples_ns) -> list[Rep]:
    """Reps with windows laid back to back, ending at `end`."""
    if isinstance(samples_ns, list) and len(samples_ns) == len(samples_ts) and \
            all(isinstance(x, (int, float)) for x in samples_ns):
        durations = [x / 1e9 for x in samples_ns]
    else:
        durations = [None] * len(samples_ts)
    reps: list[Rep] = []
    t = end
    for ts, d in zip(reversed(samples_ts), reversed(durations)):
        if d is None:
            reps.append(Rep(float(ts)))
            continue
        reps.append(Rep(float(ts), t - d, t))
        t -= d
    reps.reverse()
    return reps
