"""A GGUF model as preflight and the forecast need it: weight bytes, KV-cache bytes for a
context, bytes read per generated token. The GGUF reading is halotune.probe.gguf_info's (header
only, split parts `-0000K-of-0000N.gguf` summed, MoE aware); this module only adapts its errors
and describes the model for the reports."""

from __future__ import annotations

import os


class ModelError(Exception):
    """The model file cannot be read; the message names the file and what is wrong."""


def read_model(path: str):
    """probe.gguf_info.GgufInfo of the model (all split parts). Raises ModelError."""
    from halotune.probe import gguf_info

    if not os.path.isfile(path):
        raise ModelError(f"{path}: no such model file")
    try:
        return gguf_info.read_gguf(path)
    except gguf_info.GgufError as e:
        raise ModelError(str(e)) from None
    except OSError as e:
        raise ModelError(f"{path}: {e.strerror or e}") from None


def kv_bytes(info, n_ctx: int, bytes_per_elem: float) -> int | None:
    from halotune.probe import gguf_info

    return gguf_info.kv_cache_bytes(info, n_ctx, bytes_per_elem)


def bytes_per_token(info, depth: int = 0) -> int:
    from halotune.probe import gguf_info

    return int(gguf_info.bytes_per_token(info, depth))


def is_moe(info) -> bool:
    return bool(info.expert_count) and bool(info.expert_used_count)


def describe(info) -> dict:
    return {"paths": list(info.paths), "name": info.name, "architecture": info.architecture,
            "file_type": info.file_type, "size_bytes": int(info.size_bytes),
            "n_params": info.n_params, "moe": is_moe(info),
            "expert_count": info.expert_count, "expert_used_count": info.expert_used_count}
