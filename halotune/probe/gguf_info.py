"""What a GGUF model file holds: tensor types and sizes, parameters, architecture metadata.

Reads only the header and tensor table (tensor data is never touched), sums split sets
("x-00001-of-00003.gguf"), and derives the two figures the probe, the forecast and history
share: the KV cache size and the bytes streamed per generated token. gguf (for its type tables)
is imported inside functions: this module is light to import.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass, field

_SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_MAGIC = b"GGUF"


class GgufError(Exception):
    """A GGUF file is missing, not a GGUF file, truncated or inconsistent; names the file."""


@dataclass
class TensorInfo:
    name: str
    ggml_type: str          # "Q4_0", "F32", ...
    n_elements: int
    n_bytes: int


@dataclass
class GgufInfo:
    paths: list[str]
    name: str | None
    architecture: str | None
    file_type: str | None            # "Q4_0", "Q8_0", "F16", ... or None
    size_bytes: int                  # all tensor bytes, all split parts
    n_params: int
    tensors: list[TensorInfo]
    n_layer: int | None
    n_embd: int | None
    n_head: int | None
    n_head_kv: int | None
    context_length: int | None
    expert_count: int | None
    expert_used_count: int | None
    # Per-head K/V widths when the model states them (attention.key_length/value_length);
    # None means n_embd / n_head, the llama default.
    key_length: int | None = None
    value_length: int | None = None
    metadata: dict = field(default_factory=dict, repr=False)   # scalar header fields only


def split_parts(path: str) -> list[str]:
    """All files of a split set, in order; [path] for a single file. Raises GgufError naming a
    missing part."""
    base = os.path.basename(path)
    m = _SPLIT_RE.match(base)
    if not m:
        return [path]
    count = int(m.group("count"))
    if count < 1 or int(m.group("no")) < 1 or int(m.group("no")) > count:
        raise GgufError(f"{path}: split name says part {m.group('no')} of {m.group('count')}")
    folder = os.path.dirname(path)
    parts = [os.path.join(folder, f"{m.group('stem')}-{i:05d}-of-{count:05d}.gguf")
             for i in range(1, count + 1)]
    missing = [p for p in parts if not os.path.exists(p)]
    if missing:
        raise GgufError(f"{missing[0]}: part of the split set {path} is missing "
                        f"({len(missing)} of {count} parts missing)")
    return parts


def read_gguf(path: str) -> GgufInfo:
    """Header of a GGUF file (or of all parts of its split set). Raises GgufError."""
    parts = split_parts(path)
    files = [_open(p) for p in parts]
    meta = files[0][0]   # the first part holds all metadata
    declared = meta.get("split.count")
    if isinstance(declared, int) and declared != len(parts) and (len(parts) > 1 or declared > 1):
        raise GgufError(f"{parts[0]}: split.count is {declared} but the file name says "
                        f"{len(parts)} part(s); a split set must keep its "
                        "-0000N-of-0000M.gguf names")
    tensors = [TensorInfo(*t) for _, part_tensors in files for t in part_tensors]

    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else None

    def arch_int(key: str) -> int | None:
        return _as_int(meta.get(f"{arch}.{key}")) if arch else None

    return GgufInfo(
        paths=parts, name=_as_str(meta.get("general.name")), architecture=arch,
        file_type=_file_type_name(meta.get("general.file_type")),
        size_bytes=sum(t.n_bytes for t in tensors),
        n_params=sum(t.n_elements for t in tensors), tensors=tensors,
        n_layer=arch_int("block_count"), n_embd=arch_int("embedding_length"),
        n_head=arch_int("attention.head_count"), n_head_kv=arch_int("attention.head_count_kv"),
        context_length=arch_int("context_length"), expert_count=arch_int("expert_count"),
        expert_used_count=arch_int("expert_used_count"),
        key_length=arch_int("attention.key_length"),
        value_length=arch_int("attention.value_length"),
        metadata=meta)


def kv_cache_bytes(info: GgufInfo, n_ctx: int, bytes_per_elem: float = 2.0) -> int | None:
    """K and V cache of all layers for n_ctx tokens (f16 = 2 bytes per element); None when the
    header lacks the layer count, width or head count."""
    if not (info.n_layer and info.n_embd and info.n_head):
        return None
    if n_ctx <= 0:
        return 0
    head_dim = info.n_embd // info.n_head
    k = info.key_length or head_dim
    v = info.value_length or head_dim
    n_kv = info.n_head_kv or info.n_head          # llama.cpp: head_count_kv defaults to head_count
    return int(round(info.n_layer * n_ctx * n_kv * (k + v) * bytes_per_elem))


def bytes_per_token(info: GgufInfo, depth: int = 0) -> int:
    """Bytes read from memory per generated token: the weights a tg step streams plus the KV
    cache at `depth`. token_embd is a row gather, not streamed, unless it doubles as the output
    matrix (no separate output.weight); MoE streams only expert_used_count/expert_count of the
    expert tensors. THE helper shared by probe, forecast and history."""
    tied = not any(t.name == "output.weight" for t in info.tensors)
    moe = (info.expert_used_count / info.expert_count
           if info.expert_count and info.expert_used_count else None)
    total = 0.0
    for t in info.tensors:
        if t.name == "token_embd.weight" and not tied:
            continue
        if moe is not None and "_exps" in t.name:
            total += t.n_bytes * moe
        else:
            total += t.n_bytes
    if depth > 0:
        total += kv_cache_bytes(info, depth) or 0
    return int(round(total))


# -- reading --------------------------------------------------------------------------------
# A small parser of the GGUF header (spec: ggml docs/gguf.md) instead of gguf.GGUFReader, which
# builds numpy views of every vocabulary string: 0.9 s for a 32k vocabulary, several seconds
# for 150k tokens plus merges. Here string arrays are skipped by length; the result is checked
# against GGUFReader in the tests. gguf supplies the type tables.

_STRING, _ARRAY = 8, 9
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?",
            10: "Q", 11: "q", 12: "d"}
_KEEP_ARRAY = 1024          # numeric arrays up to this length are kept (per-layer head counts)


class _Truncated(Exception):
    pass


class _Cursor:
    def __init__(self, buf, order: str):
        self.buf, self.pos, self.order = buf, 0, order

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise _Truncated(self.pos)
        self.pos += n

    def take(self, n: int) -> bytes:
        start = self.pos
        self.skip(n)
        return self.buf[start:self.pos]

    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise _Truncated(self.pos)
        value = struct.unpack_from(self.order + fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def string(self) -> str:
        return self.take(self.unpack("Q")).decode("utf-8", "replace")

    def value(self, vtype: int):
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype, count = self.unpack("I"), self.unpack("Q")
            if itype in _SCALARS:
                size = struct.calcsize(_SCALARS[itype])
                if count <= _KEEP_ARRAY:
                    return [self.unpack(_SCALARS[itype]) for _ in range(count)]
                self.skip(size * count)
                return None
            if itype == _STRING:
                for _ in range(count):
                    self.skip(self.unpack("Q"))
                return None
            if itype == _ARRAY:
                for _ in range(count):
                    self.value(_ARRAY)
                return None
            raise ValueError(f"unknown array element type {itype}")
        raise ValueError(f"unknown value type {vtype}")


def _open(path: str):
    """(metadata, tensors) of one GGUF file; tensors as (name, ggml_type, n_elements, n_bytes)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(4)
            if head != _MAGIC:
                found = "an empty file" if not head else f"magic {head!r}"
                raise GgufError(f"{path}: not a GGUF file (found {found}, expected {_MAGIC!r})")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _parse(path, mm, size)
    except FileNotFoundError:
        raise GgufError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GgufError(f"{path}: is a directory, not a GGUF file") from None
    except OSError as e:
        raise GgufError(f"{path}: cannot read: {e.strerror or e}") from None


def _parse(path: str, buf, size: int):
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    version = struct.unpack_from("<I", buf, 4)[0] if size >= 8 else 0
    order = "<"
    if version and version & 0xFFFF == 0:     # written on a big-endian machine
        order, version = ">", struct.unpack_from(">I", buf, 4)[0]
    if version not in (2, 3):
        raise GgufError(f"{path}: GGUF version {version} is not supported (expected 2 or 3)")
    cur = _Cursor(buf, order)
    cur.pos = 8
    meta: dict = {}
    tensors: list[tuple[str, str, int, int]] = []
    try:
        n_tensors, n_kv = cur.unpack("Q"), cur.unpack("Q")
        if n_tensors > size or n_kv > size:
            raise ValueError(f"{n_tensors} tensors and {n_kv} key/values "
                             f"cannot fit in {size} bytes")
        for _ in range(n_kv):
            key = cur.string()
            value = cur.value(cur.unpack("I"))
            if value is not None:
                meta[key] = value
        infos = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.unpack("I")
            if n_dims > 4:
                raise ValueError(f"tensor {name} has {n_dims} dimensions (at most 4)")
            dims = [cur.unpack("Q") for _ in range(n_dims)]
            infos.append((name, dims, cur.unpack("I"), cur.unpack("Q")))
    except _Truncated as e:
        raise GgufError(f"{path}: truncated GGUF header (it ends at byte {size}, "
                        f"inside the field at byte {e.args[0]})") from None
    except (ValueError, struct.error) as e:
        raise GgufError(f"{path}: corrupt GGUF header: {e}") from None

    align = meta.get("general.alignment", 32)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise GgufError(f"{path}: general.alignment = {align!r} is not a power of two")
    data_start = -(-cur.pos // align) * align
    for name, dims, raw_type, offset in infos:
        try:
            gtype = GGMLQuantizationType(raw_type)
            block, type_size = GGML_QUANT_SIZES[gtype]
        except (ValueError, KeyError):
            raise GgufError(f"{path}: tensor {name} has ggml type {raw_type}, unknown to the "
                            "installed gguf package (a newer quantisation?)") from None
        n_elements = 1
        for d in dims:
            n_elements *= d
        n_bytes = n_elements * type_size // block
        end = data_start + offset + n_bytes
        if end > size:
            raise GgufError(f"{path}: truncated: tensor {name} ends at byte {end} "
                            f"but the file has {size} bytes")
        tensors.append((name, gtype.name, n_elements, n_bytes))
    return meta, tensors


def _as_int(value) -> int | None:
    if isinstance(value, list):              # per-layer values: the largest bounds the cost
        ints = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
        return max(ints) if ints else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _as_str(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _file_type_name(value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    from gguf import LlamaFileType

    try:
        name = LlamaFileType(value).name
    except ValueError:
        return None
    if name == "GUESSED":
        return None
    for prefix in ("MOSTLY_", "ALL_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name
