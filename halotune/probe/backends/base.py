"""The one interface every probe backend implements (in-process, llama-bench, simulated).

A backend loads a model once, then measures test cases (n_prompt, n_gen, n_depth) the way
llama-bench does and returns one Rep per timed repetition: its tokens/s and, when known, the
monotonic window it ran in, so the runner can integrate power over timed work only.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class BackendUnavailable(Exception):
    """This backend cannot run here; the message says why and what would make it work."""


class BackendError(Exception):
    """The backend failed while measuring; the message says what happened."""


@dataclass(frozen=True)
class TestCase:
    __test__ = False          # not a pytest class, whatever its name

    n_prompt: int = 0
    n_gen: int = 0
    n_depth: int = 0

    @property
    def name(self) -> str:
        from halotune.probe.llamabench_output import test_name

        return test_name(self.n_prompt, self.n_gen, self.n_depth)

    @property
    def tokens(self) -> int:
        """Tokens counted per repetition (llama-bench: n_prompt + n_gen; the depth is untimed)."""
        return self.n_prompt + self.n_gen

    @property
    def kind(self) -> str:
        if self.n_prompt and not self.n_gen:
            return "pp"
        if self.n_gen and not self.n_prompt:
            return "tg"
        return "pg"


@dataclass
class Rep:
    tokens_per_s: float
    t0: float | None = None       # time.monotonic() at the start of the timed window
    t1: float | None = None       # ... and at its end
    # Power the backend itself models for this repetition (the simulated backend); None:
    # the runner integrates the machine's telemetry over the window instead.
    power_w: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.t0 is None or self.t1 is None else self.t1 - self.t0


@dataclass
class BackendInfo:
    name: str                                   # "inprocess" | "llama-bench" | "simulated"
    build: str | None = None                    # llama.cpp commit / version
    device: str | None = None                   # "CPU", "Vulkan", ...
    cpu_backend: bool | None = None             # True when the model runs on the CPU
    threads: int | None = None
    threads_reason: str | None = None
    path: str | None = None                     # the library or binary
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "build": self.build, "device": self.device,
                "cpu_backend": self.cpu_backend, "threads": self.threads,
                "threads_reason": self.threads_reason, "path": self.path, **self.extra}


class Backend:
    """Life cycle: load(model, n_ctx) -> measure(...) any number of times -> close()."""

    name = "base"
    # Repetitions one measure() call should run: 1 lets the runner stop after any rep;
    # llama-bench does its repetitions itself and is run in rounds.
    round_reps = 1
    # True when every measure() call loads and warms up again (a llama-bench process), so the
    # first round predicts the next ones like any other.
    warmup_every_round = False
    # True when the power read during the run belongs to this throughput (simulated machine
    # with simulated throughput, or a real machine with real throughput).
    simulated = False
    # False when the backend cannot place a test at a context depth (an old llama-bench).
    supports_depth = True

    def info(self) -> BackendInfo:
        return BackendInfo(self.name)

    def load(self, model_path: str, n_ctx: int) -> float:
        """Load the model for contexts up to n_ctx tokens; returns the load time in s."""
        raise NotImplementedError

    def measure(self, test: TestCase, reps: int, warmup: bool) -> list[Rep]:
        """Run `reps` timed repetitions of `test` (after an untimed warm-up when asked)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
