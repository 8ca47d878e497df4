"""The probe's own model: a synthetic llama-architecture GGUF with random weights.

No download: a few seconds of numpy write a model that every GGUF-era llama.cpp loads (the
recipe is in the probe notes, section 2): llama metadata, an SPM vocabulary (<unk>, <s>, </s>,
256 byte tokens, fillers), F32 norms of 1.0 and weight matrices in a real quantisation type
(Q4_0, Q8_0 or F16) packed block by block from the raw output of numpy's PCG64 bit generator.
Raw bit-generator output is stable across numpy releases (Generator methods are not), so one
seed and spec give a byte-identical file anywhere; GENERATOR_VERSION is bumped whenever the
packing, tensor order or metadata changes, and is part of the model's identity and file name.

Files are cached under default_cache_dir() with a sidecar JSON (spec, identity, sha256, size,
n_params). ensure_model() verifies the sha256 before every use and regenerates a missing,
damaged or foreign file. Writing is streamed one tensor at a time (peak RAM ~ one tensor), into
a temporary file that is fsynced before the rename: a benchmark that starts while the kernel is
still writing back a fresh GGUF measures the writeback, not the machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from halotune.machine import durable

log = logging.getLogger("halotune.probe")

GENERATOR_VERSION = 1
WEIGHT_TYPES = ("Q4_0", "Q8_0", "F16")
SIDECAR_SCHEMA = "halotune.model/1"
_QK = 32                      # weights per Q4_0 / Q8_0 block
_BLOCK_BYTES = {"Q4_0": 18, "Q8_0": 34, "F16": 64}   # bytes per 32 weights
_FILE_TYPE = {"Q4_0": 2, "Q8_0": 7, "F16": 1}        # gguf LlamaFileType.MOSTLY_*
_CHUNK_BLOCKS = 1 << 20       # quantised blocks packed per step: temporaries ~32 MB
_CHUNK_F16 = 1 << 22          # F16 weights converted per step: temporaries ~24 MB
_HASH_CHUNK = 8 << 20

# progress(phase, done_bytes, total_bytes); phase "generate" or "verify"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ModelSpec:
    preset: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    n_vocab: int = 32000
    weight_type: str = "Q4_0"
    seed: int = 0
    n_ctx_train: int = 4096

    def __post_init__(self):
        object.__setattr__(self, "weight_type", str(self.weight_type).upper())
        problems = []
        for key in ("n_layer", "n_embd", "n_ff", "n_head", "n_head_kv", "n_vocab", "n_ctx_train"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{key} = {value!r} must be a positive integer")
        if problems:
            raise ValueError(f"model spec {self.preset!r}: " + "; ".join(problems))
        if self.weight_type not in WEIGHT_TYPES:
            problems.append(f"weight_type = {self.weight_type!r} must be one of "
                            f"{', '.join(WEIGHT_TYPES)}")
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            problems.append(f"seed = {self.seed!r} must be an integer from 0 to 2**63 - 1")
        if self.n_embd % self.n_head:
            problems.append(f"n_embd = {self.n_embd} must be a multiple of n_head = {self.n_head}")
        if self.n_head % self.n_head_kv:
            problems.append(f"n_head = {self.n_head} must be a multiple of "
                            f"n_head_kv = {self.n_head_kv}")
        for key in ("n_embd", "n_ff"):   # quantised rows are whole 32-weight blocks
            if getattr(self, key) % _QK:
                problems.append(f"{key} = {getattr(self, key)} must be a multiple of {_QK}")
        if self.n_vocab < 3 + 256 + 1:
            problems.append(f"n_vocab = {self.n_vocab} must be at least 260 "
                            "(specials and byte tokens)")
        if not self.preset or not all(c.isalnum() or c in "-_" for c in self.preset):
            problems.append(f"preset = {self.preset!r} must be letters, digits, '-' or '_'")
        if problems:
            raise ValueError(f"model spec {self.preset!r}: " + "; ".join(problems))

    def identity(self) -> str:
        """Hex hash of every field and GENERATOR_VERSION: equal identities, identical files."""
        canon = json.dumps({"generator_version": GENERATOR_VERSION, **dataclasses.asdict(self)},
                           sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        return f"halotune-{self.preset}-{self.weight_type.lower()}-s{self.seed}"

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.identity()}.gguf"

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def tensor_plan(self) -> list[tuple[str, tuple[int, ...], str]]:
        """(name, ggml ne = (row length, rows), type) of every tensor in file order."""
        e, f, v, hd = self.n_embd, self.n_ff, self.n_vocab, self.head_dim
        w = self.weight_type
        plan = [("token_embd.weight", (e, v), w), ("output_norm.weight", (e,), "F32"),
                ("output.weight", (e, v), w)]
        for i in range(self.n_layer):
            b = f"blk.{i}."
            plan += [(b + "attn_norm.weight", (e,), "F32"),
                     (b + "attn_q.weight", (e, self.n_head * hd), w),
                     (b + "attn_k.weight", (e, self.n_head_kv * hd), w),
                     (b + "attn_v.weight", (e, self.n_head_kv * hd), w),
                     (b + "attn_output.weight", (self.n_head * hd, e), w),
                     (b + "ffn_norm.weight", (e,), "F32"),
                     (b + "ffn_gate.weight", (e, f), w),
                     (b + "ffn_up.weight", (e, f), w),
                     (b + "ffn_down.weight", (f, e), w)]
        return plan

    @property
    def n_params(self) -> int:
        return sum(_prod(ne) for _, ne, _ in self.tensor_plan())

    @property
    def tensor_bytes(self) -> int:
        return sum(_nbytes(ne, t) for _, ne, t in self.tensor_plan())


# Sizes from the probe notes (section 2.2, vocab 32000): Q4_0 ci ~2 MiB, xs 24 MiB, s 84 MiB,
# m 458 MiB, l 1.6 GiB. "cpu" and "apu" are the defaults: weights >= 8x the largest cache and
# 5-30 ms per generated token on a 2-core CPU and on a Strix Halo GPU respectively.
PRESETS: dict[str, ModelSpec] = {
    "ci": ModelSpec("ci", n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=4096),
    "xs": ModelSpec("xs", n_layer=4, n_embd=512, n_ff=1408, n_head=8, n_head_kv=4),
    "s": ModelSpec("s", n_layer=8, n_embd=1024, n_ff=2816, n_head=16, n_head_kv=4),
    "m": ModelSpec("m", n_layer=16, n_embd=2048, n_ff=5632, n_head=32, n_head_kv=8),
    "l": ModelSpec("l", n_layer=28, n_embd=3072, n_ff=8192, n_head=24, n_head_kv=8),
    "cpu": ModelSpec("cpu", n_layer=16, n_embd=2048, n_ff=5632, n_head=32, n_head_kv=8),
    "apu": ModelSpec("apu", n_layer=28, n_embd=3072, n_ff=8192, n_head=24, n_head_kv=8),
}


@dataclass
class ModelFile:
    path: str
    spec: ModelSpec
    sha256: str
    size_bytes: int           # file size
    n_params: int
    generated: bool           # True when this call wrote the file


def default_cache_dir() -> Path:
    """$HALOTUNE_CACHE_DIR/models, else $XDG_CACHE_HOME/halotune/models, else
    ~/.cache/halotune/models (XDG base directory spec: a relative XDG_CACHE_HOME is ignored)."""
    override = os.environ.get("HALOTUNE_CACHE_DIR")
    if override:
        return Path(override) / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "halotune" / "models"


def ensure_model(spec: ModelSpec, cache_dir=None, progress: Progress | None = None) -> ModelFile:
    """The cached model file of `spec`, verified by sha256; generated (or regenerated when
    missing, damaged or not matching its sidecar) under a lock, so concurrent callers write it
    once. progress(phase, done_bytes, total_bytes) is called while generating and verifying."""
    import fcntl

    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    durable.ensure_dir(str(directory), 0o755)
    path = directory / spec.file_name
    with open(str(path) + ".lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)   # flock(2): released when the file closes
        found = _verified(path, spec, progress)
        if found is not None:
            return found
        durable.remove_temps(str(path))           # left by a crashed generation
        sha, size = write_model(spec, path, progress)
        sidecar = {"schema": SIDECAR_SCHEMA, "file": path.name, "identity": spec.identity(),
                   "generator_version": GENERATOR_VERSION, "spec": dataclasses.asdict(spec),
                   "name": spec.name, "sha256": sha, "size_bytes": size, "n_params": spec.n_params}
        durable.write_json(_sidecar_path(path), sidecar, 0o644)
        return ModelFile(path=str(path), spec=spec, sha256=sha, size_bytes=size,
                         n_params=spec.n_params, generated=True)


def write_model(spec: ModelSpec, path, progress: Progress | None = None) -> tuple[str, int]:
    """Write the GGUF of `spec` to `path` atomically (temp file, fsync, rename, fsync dir);
    returns (sha256, size). Deterministic: the same spec always gives the same bytes."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")
    try:
        _write_gguf(spec, tmp, progress)
        sha, size = _sha256(tmp, None)
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return sha, size


def model_metadata(spec: ModelSpec) -> dict:
    """GGUF header key/values of `spec` except the vocabulary."""
    return {
        "general.name": spec.name,
        "general.file_type": _FILE_TYPE[spec.weight_type],
        "general.quantization_version": 2,
        "llama.context_length": spec.n_ctx_train,
        "llama.embedding_length": spec.n_embd,
        "llama.block_count": spec.n_layer,
        "llama.feed_forward_length": spec.n_ff,
        "llama.attention.head_count": spec.n_head,
        "llama.attention.head_count_kv": spec.n_head_kv,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "llama.rope.dimension_count": spec.head_dim,
        "llama.rope.freq_base": 10000.0,
        "halotune.generator_version": GENERATOR_VERSION,
        "halotune.identity": spec.identity(),
        "halotune.seed": spec.seed,
    }


# -- verification ---------------------------------------------------------------------------

def _sidecar_path(path: Path) -> str:
    return str(path.with_suffix(".json"))


def _verified(path: Path, spec: ModelSpec, progress: Progress | None) -> ModelFile | None:
    try:
        with open(_sidecar_path(path), encoding="utf-8") as f:
            side = json.load(f)
    except FileNotFoundError:
        if path.exists():
            log.warning("%s: no sidecar %s; regenerating the model", path, _sidecar_path(path))
        return None
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable sidecar (%s); regenerating the model", _sidecar_path(path), e)
        return None
    expected = {"identity": spec.identity(), "generator_version": GENERATOR_VERSION,
                "spec": dataclasses.asdict(spec)}
    if not isinstance(side, dict) or any(side.get(k) != v for k, v in expected.items()):
        log.warning("%s: sidecar describes another model; regenerating", _sidecar_path(path))
        return None
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size != side.get("size_bytes"):
        log.warning("%s: size %d, sidecar says %s; regenerating", path, size,
                    side.get("size_bytes"))
        return None
    sha, _ = _sha256(path, progress)
    if sha != side.get("sha256"):
        log.warning("%s: sha256 %s does not match the sidecar's %s; regenerating",
                    path, sha, side.get("sha256"))
        return None
    return ModelFile(path=str(path), spec=spec, sha256=sha, size_bytes=size,
                     n_params=spec.n_params, generated=False)


def _sha256(path: Path, progress: Progress | None) -> tuple[str, int]:
    h = hashlib.sha256()
    done = 0
    total = os.path.getsize(path)
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress("verify", done, total)
    return h.hexdigest(), done


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)              # fsync(2) on the directory: the rename itself is durable
    except OSError:
        pass                      # some file systems cannot fsync a directory (EINVAL)
    finally:
        os.close(fd)


# -- generation -----------------------------------------------------------------------------

def _write_gguf(spec: ModelSpec, path: Path, progress: Progress | None) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in model_metadata(spec).items():
        if key == "halotune.seed":
            writer.add_uint64(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_uint32(key, value)
    _add_vocab(writer, spec, gguf)

    plan = spec.tensor_plan()
    for name, ne, ggml_type in plan:
        # byte shape (rows, bytes per row) with raw_dtype: gguf derives the element shape
        rows = ne[1] if len(ne) > 1 else 1
        shape = (rows, _nbytes(ne, ggml_type) // rows) if len(ne) > 1 else (_nbytes(ne, ggml_type),)
        writer.add_tensor_info(name, shape, np.dtype(np.uint8), _nbytes(ne, ggml_type),
                               raw_dtype=gguf.GGMLQuantizationType[ggml_type])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()

    bitgen = np.random.PCG64(spec.seed)
    total = spec.tensor_bytes
    done = 0
    for name, ne, ggml_type in plan:
        data = _tensor_bytes(np, bitgen, ne, ggml_type)
        writer.write_tensor_data(data)
        done += data.nbytes
        if progress:
            progress("generate", done, total)
    fout = writer.fout[0]
    fout.flush()
    os.fsync(fout.fileno())      # fsync(2): written back before anyone benchmarks with it
    writer.close()


def _add_vocab(writer, spec: ModelSpec, gguf) -> None:
    # SPM ("llama") vocab: loads on every GGUF-era llama.cpp; <0x0A> gives the LF token.
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    n_fill = spec.n_vocab - len(tokens)
    tokens += [f"\u2581t{i}" for i in range(n_fill)]
    types += [gguf.TokenType.NORMAL] * n_fill
    scores = [0.0] * 259 + [-float(i) for i in range(n_fill)]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types([int(t) for t in types])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)


def _tensor_bytes(np, bitgen, ne: tuple[int, ...], ggml_type: str):
    """One tensor's data as uint8 rows, from the next raw PCG64 outputs (little-endian bytes).
    Weights have std ~ 1/sqrt(row length) (the fan-in); norms are 1.0."""
    n = _prod(ne)
    if ggml_type == "F32":
        return np.ones(n, dtype="<f4").view(np.uint8)
    std = 1.0 / (ne[0] ** 0.5)
    rows = ne[1]
    out = np.empty(_nbytes(ne, ggml_type), dtype=np.uint8)
    if ggml_type == "F16":
        # int16 from raw bits: uniform, std 65536/sqrt(12); scaled to `std`, stored as f16
        scale = std * (12 ** 0.5) / 65536.0
        half = out.view("<f2")
        step = _CHUNK_F16
        for start in range(0, n, step):
            count = min(step, n - start)
            raw = _raw_bytes(np, bitgen, 2 * count).view("<i2")
            half[start:start + count] = raw.astype(np.float32) * scale
        return out.reshape(rows, -1)
    # Q4_0: d (f16) + 16 bytes of nibbles, w = d * (q - 8); Q8_0: d (f16) + 32 int8, w = d * q
    q_bytes = 16 if ggml_type == "Q4_0" else 32
    q_range = 8.0 if ggml_type == "Q4_0" else 127.0
    block = 2 + q_bytes
    d = np.array([2.5 * std / q_range], dtype="<f2").view(np.uint8)
    blocks = out.reshape(-1, block)
    blocks[:, :2] = d
    for start in range(0, blocks.shape[0], _CHUNK_BLOCKS):
        count = min(_CHUNK_BLOCKS, blocks.shape[0] - start)
        raw = _raw_bytes(np, bitgen, count * q_bytes)
        blocks[start:start + count, 2:] = raw.reshape(count, q_bytes)
    return out.reshape(rows, -1)


def _raw_bytes(np, bitgen, n: int):
    """The next n bytes of the bit generator's raw 64-bit outputs, little-endian."""
    raw = bitgen.random_raw((n + 7) // 8).astype("<u8", copy=False)
    return raw.view(np.uint8)[:n]


def _prod(ne) -> int:
    n = 1
    for x in ne:
        n *= x
    return n


def _nbytes(ne, ggml_type: str) -> int:
    n = _prod(ne)
    if ggml_type == "F32":
        return 4 * n
    return n // _QK * _BLOCK_BYTES[ggml_type]
