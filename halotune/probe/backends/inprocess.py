"""In-process backend: llama.cpp through llama-cpp-python's low-level ctypes API.

The loop is llama-bench's (tools/llama-bench/llama-bench.cpp, test_prompt / test_gen):
- pp: BOS then random token ids, in chunks of n_batch, one llama_decode per chunk, one
  llama_synchronize at the end; tokens/s = n_prompt / elapsed;
- tg: BOS, then one single-token llama_decode + llama_synchronize per generated token, the next
  id random (logits never read); tokens/s = n_gen / elapsed;
- warm-up (untimed): one full pp of n_prompt and one tg token;
- every repetition starts from an empty KV cache (llama_memory_clear); a depth point first
  fills n_depth tokens untimed. The prefix is computed once and kept: each repetition drops
  the cells past it (llama_memory_seq_rm), which leaves the same cache llama-bench restores.
The optional dependency is imported lazily: `import llama_cpp` raises ImportError when the
extra is missing and FileNotFoundError/OSError when libllama is not found.
"""

from __future__ import annotations

import ctypes
import random
import time

from halotune.probe.backends.base import (Backend, BackendError, BackendInfo, BackendUnavailable,
                                          Rep, TestCase)

N_BATCH = 2048
N_UBATCH = 512
SEED = 1234


def import_llama():
    """The low-level module, or BackendUnavailable saying why."""
    try:
        import llama_cpp
        import llama_cpp.llama_cpp as L
    except ImportError as e:
        raise BackendUnavailable(
            f"llama-cpp-python is not installed ({e}); install the probe extra: "
            "pip install 'halotune[probe]' (builds llama.cpp: ~10 min on 2 cores)") from None
    except (FileNotFoundError, OSError) as e:
        raise BackendUnavailable(f"llama-cpp-python is installed but libllama could not be "
                                 f"loaded: {e}") from None
    return llama_cpp, L


_LOG_CALLBACK = None


def _silence(L):
    """Route llama.cpp's log output to a no-op (the loader prints hundreds of lines).

    The registration is process-wide and outlives any backend, so the ctypes callback is
    kept for the life of the process: freeing it would make llama.cpp's next log line call
    freed memory (a segfault in whoever loads a model later)."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = L.llama_log_callback(lambda level, text, user_data: None)
        L.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
    return _LOG_CALLBACK


class InProcessBackend(Backend):
    name = "inprocess"

    def __init__(self, threads: int | None = None, threads_reason: str | None = None,
                 n_gpu_layers: int = -1, seed: int = SEED):
        self.llama_cpp, self.L = import_llama()
        self._log_cb = _silence(self.L)
        self.threads = threads
        self.threads_reason = threads_reason
        self.n_gpu_layers = n_gpu_layers
        self.rng = random.Random(seed)
        self.model = None
        self.ctx = None
        self.n_vocab = 0
        self.bos = None
        self._depth_ready: int | None = None
        self._backend_initialised = False
        self._loaded: tuple[str, int] | None = None

    @property
    def gpu_offload(self) -> bool:
        try:
            return bool(self.L.llama_supports_gpu_offload())
        except AttributeError:
            return False

    def info(self) -> BackendInfo:
        L = self.L
        try:
            system = L.llama_print_system_info().decode("utf-8", "replace").strip()
        except Exception:  # noqa: BLE001 - informational only
            system = None
        return BackendInfo(
            "inprocess", build=f"llama-cpp-python {getattr(self.llama_cpp, '__version__', '?')}",
            device="GPU offload" if self.gpu_offload else "CPU",
            cpu_backend=not self.gpu_offload, threads=self.threads,
            threads_reason=self.threads_reason, path=getattr(self.llama_cpp, "__file__", None),
            extra={"system_info": system})

    # --- life cycle --------------------------------------------------------------------
    def load(self, model_path: str, n_ctx: int) -> float:
        L = self.L
        if self._loaded is not None and self._loaded[0] == model_path and \
                n_ctx <= self._loaded[1]:
            return 0.0                     # already loaded with a context at least this big
        self.close()
        t0 = time.monotonic()
        if not self._backend_initialised:
            L.llama_backend_init()
            self._backend_initialised = True
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = self.n_gpu_layers
        self.model = L.llama_model_load_from_file(model_path.encode(), mp)
        if not self.model:
            raise BackendError(f"{model_path}: llama.cpp could not load this model")
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = N_BATCH
        cp.n_ubatch = N_UBATCH
        if self.threads:
            cp.n_threads = cp.n_threads_batch = self.threads
        if hasattr(cp, "flash_attn_type"):
            cp.flash_attn_type = -1          # auto, llama-bench's default
        if hasattr(cp, "no_perf"):
            cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise BackendError(f"{model_path}: llama.cpp could not create a context of "
                               f"{n_ctx} tokens (out of memory?)")
        if not self.threads:
            self.threads = L.llama_n_threads(self.ctx)
        vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(vocab)
        if self.n_vocab <= 0:
            raise BackendError(f"{model_path}: the model has no vocabulary (n_vocab 0)")
        self.bos = L.llama_vocab_bos(vocab) if L.llama_vocab_get_add_bos(vocab) else None
        self._depth_ready = None
        self._loaded = (model_path, n_ctx)
        return time.monotonic() - t0

    def close(self) -> None:
        L = self.L
        if self.ctx:
            L.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            L.llama_model_free(self.model)
            self.model = None
        self._loaded = None

    # --- llama-bench's loop ------------------------------------------------------------
    def _memory(self):
        return self.L.llama_get_memory(self.ctx)

    def _clear(self) -> None:
        self.L.llama_memory_clear(self._memory(), False)
        self._depth_ready = None

    def _token(self) -> int:
        return self.rng.randrange(self.n_vocab)

    def _decode(self, ids: list[int]) -> None:
        L = self.L
        arr = (L.llama_token * len(ids))(*ids)
        rc = L.llama_decode(self.ctx, L.llama_batch_get_one(arr, len(ids)))
        if rc != 0:
            raise BackendError(f"llama_decode failed (code {rc}) on a batch of {len(ids)} tokens")

    def _prompt(self, n: int) -> None:
        first = True
        left = n
        while left > 0:
            k = min(left, N_BATCH)
            ids = [self._token() for _ in range(k)]
            if first and self.bos is not None:
                ids[0] = self.bos
            first = False
            self._decode(ids)
            left -= k
        self.L.llama_synchronize(self.ctx)

    def _gen(self, n: int) -> None:
        tok = self.bos if self.bos is not None else self._token()
        for _ in range(n):
            self._decode([tok])
            self.L.llama_synchronize(self.ctx)
            tok = self._token()

    def _start_rep(self, depth: int) -> None:
        if not depth:
            self._clear()
            return
        if self._depth_ready != depth:
            self._clear()
            self._prompt(depth)            # untimed prefix, as llama-bench
            self._depth_ready = depth
        else:
            # Drop what the last repetition added after the prefix.
            self.L.llama_memory_seq_rm(self._memory(), 0, depth, -1)

    def measure(self, test: TestCase, reps: int, warmup: bool) -> list[Rep]:
        if self.ctx is None:
            raise BackendError("measure() before load()")
        if warmup:
            self._clear()
            if test.n_prompt:
                self._prompt(test.n_prompt)
            if test.n_gen:
                self._gen(1)
        out = []
        for _ in range(reps):
            self._start_rep(test.n_depth)
            t0 = time.monotonic()
            ns0 = time.perf_counter_ns()
            if test.n_prompt:
                self._prompt(test.n_prompt)
            if test.n_gen:
                self._gen(test.n_gen)
            ns = time.perf_counter_ns() - ns0
            t1 = time.monotonic()
            out.append(Rep(1e9 * test.tokens / max(ns, 1), t0, t1))
        return out
