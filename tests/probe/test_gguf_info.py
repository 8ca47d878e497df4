"""GGUF headers: round trip of generated models, cross-check with gguf.GGUFReader, tied and
separate output, MoE, split sets, and damaged files."""

import dataclasses
import os
import shutil

import gguf
import numpy as np
import pytest

from halotune.probe.gguf_info import (
    GgufError,
    bytes_per_token,
    kv_cache_bytes,
    read_gguf,
    split_parts,
)
from halotune.probe.gguf_model import PRESETS, ensure_model

CI = PRESETS["ci"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {t: ensure_model(dataclasses.replace(CI, weight_type=t), d) for t in ("Q4_0", "Q8_0", "F16")}


def write_gguf(path, tensors: dict, meta: dict, arch: str = "llama", split_max_tensors: int = 0):
    """A small GGUF written with gguf-py: tensors are numpy arrays (shape = reversed ne)."""
    w = gguf.GGUFWriter(str(path), arch, split_max_tensors=split_max_tensors)
    for key, value in meta.items():
        if isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, list):
            w.add_array(key, value)
        else:
            w.add_uint32(key, value)
    for name, array in tensors.items():
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def dense_tensors(n_embd=64, n_vocab=300, n_ff=128, output=True):
    t = {"token_embd.weight": np.zeros((n_vocab, n_embd), np.float16),
         "output_norm.weight": np.ones(n_embd, np.float32),
         "blk.0.attn_q.weight": np.zeros((n_embd, n_embd), np.float16),
         "blk.0.ffn_up.weight": np.zeros((n_ff, n_embd), np.float16)}
    if output:
        t["output.weight"] = np.zeros((n_vocab, n_embd), np.float16)
    return t


LLAMA_META = {"llama.block_count": 1, "llama.embedding_length": 64, "llama.attention.head_count": 4,
              "llama.context_length": 2048}


# -- generated models ---------------------------------------------------------------------------

@pytest.mark.parametrize("weight_type", ["Q4_0", "Q8_0", "F16"])
def test_round_trip_of_a_generated_model(models, weight_type):
    spec = dataclasses.replace(CI, weight_type=weight_type)
    info = read_gguf(models[weight_type].path)
    assert info.paths == [models[weight_type].path]
    assert (info.name, info.architecture, info.file_type) == (spec.name, "llama", weight_type)
    assert (info.n_layer, info.n_embd, info.n_head, info.n_head_kv, info.context_length) == (
        spec.n_layer, spec.n_embd, spec.n_head, spec.n_head_kv, spec.n_ctx_train)
    assert info.expert_count is None and info.expert_used_count is None
    assert info.n_params == spec.n_params
    assert info.size_bytes == spec.tensor_bytes
    assert len(info.tensors) == 3 + 9 * spec.n_layer
    types = {t.name: t.ggml_type for t in info.tensors}
    assert types["blk.1.ffn_gate.weight"] == weight_type and types["output_norm.weight"] == "F32"
    assert info.metadata["halotune.identity"] == spec.identity()


@pytest.mark.parametrize("weight_type", ["Q4_0", "F16"])
def test_agrees_with_gguf_reader_and_the_file_layout(models, weight_type):
    path = models[weight_type].path
    info = read_gguf(path)
    reader = gguf.GGUFReader(path)
    ours = [(t.name, t.ggml_type, t.n_elements, t.n_bytes) for t in info.tensors]
    theirs = [(t.name, t.tensor_type.name, int(t.n_elements), int(t.n_bytes)) for t in reader.tensors]
    assert ours == theirs
    # tensor bytes are exactly the data in the file: each tensor's bytes, padded to 32
    assert sum(int(t.data.nbytes) for t in reader.tensors) == info.size_bytes
    last = reader.tensors[-1]
    assert os.path.getsize(path) == -(-(last.data_offset + last.n_bytes) // 32) * 32


def test_kv_cache_and_bytes_per_token_of_a_generated_model(models):
    info = read_gguf(models["Q4_0"].path)
    head_dim = CI.n_embd // CI.n_head
    assert kv_cache_bytes(info, 1000) == 2 * CI.n_layer * 1000 * CI.n_head_kv * head_dim * 2
    assert kv_cache_bytes(info, 1000, bytes_per_elem=1.0625) == round(
        2 * CI.n_layer * 1000 * CI.n_head_kv * head_dim * 1.0625)   # q8_0 cache
    assert kv_cache_bytes(info, 0) == 0
    embd = next(t.n_bytes for t in info.tensors if t.name == "token_embd.weight")
    # separate output.weight: token_embd is a row gather, not streamed
    assert bytes_per_token(info) == info.size_bytes - embd
    assert bytes_per_token(info, depth=256) == info.size_bytes - embd + kv_cache_bytes(info, 256)


# -- crafted files ------------------------------------------------------------------------------

def test_tied_embeddings_are_streamed(tmp_path):
    tied = tmp_path / "tied.gguf"
    write_gguf(tied, dense_tensors(output=False), LLAMA_META)
    sep = tmp_path / "sep.gguf"
    write_gguf(sep, dense_tensors(output=True), LLAMA_META)
    ti, si = read_gguf(str(tied)), read_gguf(str(sep))
    embd = 300 * 64 * 2
    assert bytes_per_token(ti) == ti.size_bytes                 # token_embd is the output matrix
    assert bytes_per_token(si) == si.size_bytes - embd
    assert si.size_bytes - ti.size_bytes == embd
    assert ti.file_type is None and ti.name is None             # not in the header


def test_moe_streams_only_the_used_experts(tmp_path):
    n_embd, n_ff, n_exp = 64, 96, 8
    tensors = dense_tensors(n_embd=n_embd)
    del tensors["blk.0.ffn_up.weight"]
    tensors.update({
        "blk.0.ffn_gate_inp.weight": np.zeros((n_exp, n_embd), np.float32),
        "blk.0.ffn_gate_exps.weight": np.zeros((n_exp, n_ff, n_embd), np.float16),
        "blk.0.ffn_up_exps.weight": np.zeros((n_exp, n_ff, n_embd), np.float16),
        "blk.0.ffn_down_exps.weight": np.zeros((n_exp, n_embd, n_ff), np.float16),
        "blk.0.ffn_up_shexp.weight": np.zeros((n_ff, n_embd), np.float16),   # shared expert
    })
    meta = dict(LLAMA_META, **{"llama.expert_count": n_exp, "llama.expert_used_count": 2,
                               "general.name": "tiny-moe", "general.file_type": 1})
    path = tmp_path / "moe.gguf"
    write_gguf(path, tensors, meta)
    info = read_gguf(str(path))
    assert (info.expert_count, info.expert_used_count) == (8, 2)
    assert (info.name, info.file_type) == ("tiny-moe", "F16")
    expert_bytes = 3 * n_exp * n_ff * n_embd * 2
    dense = info.size_bytes - expert_bytes
    embd = 300 * n_embd * 2
    assert bytes_per_token(info) == dense - embd + expert_bytes * 2 // 8
    assert info.n_params == sum(a.size for a in tensors.values())


def test_per_layer_head_counts_and_explicit_key_length(tmp_path):
    meta = dict(LLAMA_META, **{"llama.attention.head_count_kv": [1, 2, 2, 1],
                               "llama.attention.key_length": 32, "llama.attention.value_length": 16})
    path = tmp_path / "m.gguf"
    write_gguf(path, dense_tensors(), meta)
    info = read_gguf(str(path))
    assert info.n_head_kv == 2 and info.key_length == 32 and info.value_length == 16
    assert kv_cache_bytes(info, 100) == 1 * 100 * 2 * (32 + 16) * 2


def test_kv_cache_unknown_without_the_shape(tmp_path):
    path = tmp_path / "noarch.gguf"
    write_gguf(path, dense_tensors(), {}, arch="someformat")
    info = read_gguf(str(path))
    assert info.architecture == "someformat" and info.n_layer is None
    assert kv_cache_bytes(info, 4096) is None
    assert bytes_per_token(info, depth=4096) == bytes_per_token(info)


def test_split_sets_are_summed(tmp_path):
    tensors = dense_tensors()
    write_gguf(tmp_path / "model.gguf", tensors, dict(LLAMA_META, **{"general.name": "split"}),
               split_max_tensors=3)
    parts = sorted(str(p) for p in tmp_path.iterdir())
    assert [os.path.basename(p) for p in parts] == ["model-00001-of-00002.gguf", "model-00002-of-00002.gguf"]
    assert split_parts(parts[1]) == parts
    info = read_gguf(parts[0])
    assert info.paths == parts and info.name == "split" and info.n_layer == 1
    assert sorted(t.name for t in info.tensors) == sorted(tensors)
    assert info.n_params == sum(a.size for a in tensors.values())
    assert info.size_bytes == sum(a.nbytes for a in tensors.values())
    os.unlink(parts[1])
    with pytest.raises(GgufError) as e:
        read_gguf(parts[0])
    assert str(e.value).startswith(parts[1]) and "missing" in str(e.value)


def test_a_renamed_split_part_is_refused(tmp_path):
    write_gguf(tmp_path / "model.gguf", dense_tensors(), LLAMA_META, split_max_tensors=3)
    lone = tmp_path / "lone.gguf"
    shutil.copy(tmp_path / "model-00001-of-00002.gguf", lone)
    with pytest.raises(GgufError, match="split.count is 2"):
        read_gguf(str(lone))


def test_single_files_are_their_own_split_set(tmp_path):
    assert split_parts(str(tmp_path / "a.gguf")) == [str(tmp_path / "a.gguf")]
    with pytest.raises(GgufError, match="part 00004 of 00003"):
        split_parts(str(tmp_path / "a-00004-of-00003.gguf"))


# -- damaged files ------------------------------------------------------------------------------

def copy_cut(src: str, dest, size: int) -> str:
    with open(src, "rb") as f:
        data = f.read(size)
    dest.write_bytes(data)
    return str(dest)


def test_errors_name_the_file(models, tmp_path):
    good = models["Q4_0"].path
    size = os.path.getsize(good)
    cases = [
        (str(tmp_path / "nope.gguf"), "no such file"),
        (str(tmp_path), "is a directory"),
        (copy_cut(good, tmp_path / "empty.gguf", 0), "not a GGUF file (found an empty file"),
        (copy_cut(good, tmp_path / "magic.gguf", 3), "not a GGUF file (found magic b'GGU'"),
        (copy_cut(good, tmp_path / "hdr.gguf", 6), "version 0 is not supported"),
        (copy_cut(good, tmp_path / "kv.gguf", 3000), "truncated GGUF header"),
        (copy_cut(good, tmp_path / "data.gguf", size - 100), "truncated: tensor "),
    ]
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    cases.append((str(garbage), "not a GGUF file (found magic b'PK\\x03\\x04'"))
    v1 = tmp_path / "v1.gguf"
    v1.write_bytes(b"GGUF" + (1).to_bytes(4, "little") + bytes(16))
    cases.append((str(v1), "GGUF version 1 is not supported"))
    huge = tmp_path / "huge.gguf"
    huge.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (2**40).to_bytes(8, "little") + bytes(8))
    cases.append((str(huge), "corrupt GGUF header"))
    for path, fragment in cases:
        with pytest.raises(GgufError) as e:
            read_gguf(path)
        assert str(e.value).startswith(path + ": "), str(e.value)
        assert fragment in str(e.value), str(e.value)


def test_bad_string_lengths_are_truncation_not_a_crash(models, tmp_path):
    data = bytearray(open(models["Q4_0"].path, "rb").read())
    data[24:32] = (2**62).to_bytes(8, "little")     # length of the first key
    bad = tmp_path / "badlen.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(GgufError, match="truncated GGUF header"):
        read_gguf(str(bad))
