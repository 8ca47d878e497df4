"""The synthetic GGUF: deterministic bytes, verified cache, sane weights, loads in llama.cpp."""

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

from halotune.probe import gguf_model
from halotune.probe.gguf_model import (
    GENERATOR_VERSION,
    PRESETS,
    ModelFile,
    ModelSpec,
    default_cache_dir,
    ensure_model,
)

CI = PRESETS["ci"]
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures",
                        "llama-bench")


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def ci_model(tmp_path_factory) -> ModelFile:
    return ensure_model(CI, tmp_path_factory.mktemp("models"))


# -- the spec ---------------------------------------------------------------------------------

def test_preset_s_matches_the_real_llama_bench_record_of_the_same_model():
    # The fixture is llama-bench's report of the notes' S Q4_0 model (same recipe, vocab 32000):
    # its model_size (all tensor bytes) and model_n_params must be what the spec predicts.
    rec = json.loads(open(os.path.join(FIXTURES, "llama-bench-0c1e570-cpu.jsonl")).readline())
    assert PRESETS["s"].tensor_bytes == rec["model_size"] == 87658496
    assert PRESETS["s"].n_params == rec["model_n_params"] == 155730944


def test_default_presets_have_the_sizes_the_issue_asks_for():
    gib = 1 << 30
    assert PRESETS["cpu"].weight_type == PRESETS["apu"].weight_type == "Q4_0"
    assert 0.42 * gib < PRESETS["cpu"].tensor_bytes < 0.48 * gib        # ~0.45 GiB
    assert 1.5 * gib < PRESETS["apu"].tensor_bytes < 1.7 * gib          # ~1.6 GiB
    assert PRESETS["m"].n_params == 852559872                           # notes: 852.6 M
    assert round(PRESETS["l"].n_params / 1e6) == 3015                   # notes: 3015 M
    assert CI.tensor_bytes < 4 << 20
    for name, spec in PRESETS.items():
        assert spec.preset == name


def test_name_and_identity():
    assert PRESETS["cpu"].name == "halotune-cpu-q4_0-s0"
    ident = CI.identity()
    assert re.fullmatch(r"[0-9a-f]{16}", ident), ident
    assert ModelSpec("ci", 2, 256, 512, 4, 2, n_vocab=4096).identity() == ident
    others = {dataclasses.replace(CI, seed=1).identity(), dataclasses.replace(CI, weight_type="F16").identity(),
              dataclasses.replace(CI, n_ctx_train=2048).identity()}
    assert ident not in others and len(others) == 3
    assert CI.file_name == f"halotune-ci-q4_0-s0-{ident}.gguf"


def test_generator_version_is_part_of_the_identity(monkeypatch):
    before = CI.identity()
    monkeypatch.setattr(gguf_model, "GENERATOR_VERSION", GENERATOR_VERSION + 1)
    assert CI.identity() != before


@pytest.mark.parametrize("changes, message", [
    ({"weight_type": "Q5_K"}, "weight_type = 'Q5_K' must be one of Q4_0, Q8_0, F16"),
    ({"n_embd": 250}, "n_embd = 250 must be a multiple of 32"),
    ({"n_head": 3}, "n_embd = 256 must be a multiple of n_head = 3"),
    ({"n_head_kv": 3}, "n_head = 4 must be a multiple of n_head_kv = 3"),
    ({"n_layer": 0}, "n_layer = 0 must be a positive integer"),
    ({"n_vocab": 100}, "n_vocab = 100 must be at least 260"),
    ({"seed": -1}, "seed = -1 must be an integer"),
    ({"preset": "a/b"}, "preset = 'a/b'"),
])
def test_invalid_specs_are_refused_naming_the_field(changes, message):
    with pytest.raises(ValueError) as e:
        dataclasses.replace(CI, **changes)
    assert message in str(e.value)


def test_weight_type_is_normalised():
    assert dataclasses.replace(CI, weight_type="q8_0").weight_type == "Q8_0"


# -- the cache --------------------------------------------------------------------------------

def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("HALOTUNE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "halotune" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")     # the XDG spec says: ignore it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "halotune" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "halotune" / "models"
    monkeypatch.setenv("HALOTUNE_CACHE_DIR", str(tmp_path / "override"))
    assert default_cache_dir() == tmp_path / "override" / "models"


def test_ensure_model_writes_the_file_and_its_sidecar(ci_model):
    assert ci_model.generated is True
    assert os.path.basename(ci_model.path) == CI.file_name
    assert ci_model.sha256 == sha256(ci_model.path)
    assert ci_model.size_bytes == os.path.getsize(ci_model.path)
    assert ci_model.n_params == CI.n_params
    with open(ci_model.path[:-len(".gguf")] + ".json") as f:
        side = json.load(f)
    assert side["sha256"] == ci_model.sha256 and side["size_bytes"] == ci_model.size_bytes
    assert side["identity"] == CI.identity() and side["generator_version"] == GENERATOR_VERSION
    assert side["spec"] == dataclasses.asdict(CI) and side["n_params"] == CI.n_params
    leftovers = [n for n in os.listdir(os.path.dirname(ci_model.path)) if ".tmp-" in n]
    assert leftovers == []


def test_cached_model_is_verified_not_regenerated(ci_model):
    calls = []
    again = ensure_model(CI, os.path.dirname(ci_model.path), progress=lambda *a: calls.append(a))
    assert again.generated is False and again.sha256 == ci_model.sha256
    assert calls and {c[0] for c in calls} == {"verify"} and calls[-1][1] == calls[-1][2]


@pytest.mark.parametrize("weight_type", ["Q4_0", "Q8_0", "F16"])
def test_same_spec_gives_byte_identical_files(tmp_path, weight_type):
    spec = dataclasses.replace(CI, weight_type=weight_type)
    a = ensure_model(spec, tmp_path / "a")
    b = ensure_model(spec, tmp_path / "b")
    with open(a.path, "rb") as fa, open(b.path, "rb") as fb:
        assert fa.read() == fb.read()
    other = ensure_model(dataclasses.replace(spec, seed=7), tmp_path / "a")
    assert other.sha256 != a.sha256 and other.size_bytes == a.size_bytes


def test_progress_reports_generation_up_to_the_total(tmp_path):
    calls = []
    ensure_model(CI, tmp_path, progress=lambda *a: calls.append(a))
    gen = [c for c in calls if c[0] == "generate"]
    assert len(gen) == len(CI.tensor_plan())
    assert gen[-1][1] == gen[-1][2] == CI.tensor_bytes
    assert [c[1] for c in gen] == sorted(c[1] for c in gen)


def corrupt_flip(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def corrupt_truncate(path):
    os.truncate(path, os.path.getsize(path) - 1000)


def corrupt_sidecar_missing(path):
    os.unlink(path[:-len(".gguf")] + ".json")


def corrupt_sidecar_foreign(path):
    side_path = path[:-len(".gguf")] + ".json"
    with open(side_path) as f:
        side = json.load(f)
    side["spec"]["seed"] = 99
    with open(side_path, "w") as f:
        json.dump(side, f)


def corrupt_sidecar_garbage(path):
    with open(path[:-len(".gguf")] + ".json", "w") as f:
        f.write("{not json")


def corrupt_model_missing(path):
    os.unlink(path)


@pytest.mark.parametrize("damage", [corrupt_flip, corrupt_truncate, corrupt_sidecar_missing,
                                    corrupt_sidecar_foreign, corrupt_sidecar_garbage,
                                    corrupt_model_missing])
def test_damaged_cache_is_regenerated(tmp_path, damage):
    first = ensure_model(CI, tmp_path)
    damage(first.path)
    again = ensure_model(CI, tmp_path)
    assert again.generated is True
    assert again.sha256 == first.sha256 == sha256(again.path)
    assert ensure_model(CI, tmp_path).generated is False


def test_concurrent_callers_generate_once(tmp_path):
    code = ("import sys; from halotune.probe.gguf_model import PRESETS, ensure_model; "
            "m = ensure_model(PRESETS['ci'], sys.argv[1]); print(m.generated, m.sha256)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = sorted(p.communicate(timeout=60)[0].split() for p in procs)
    assert [o[0] for o in outs] == ["False", "True"]       # the second waited and verified
    assert outs[0][1] == outs[1][1] == sha256(tmp_path / CI.file_name)


def test_stale_temp_files_of_a_crashed_generation_are_removed(tmp_path):
    stale = tmp_path / f".{CI.file_name}.tmp-0123456789ab"
    stale.write_bytes(b"half a model")
    ensure_model(CI, tmp_path)
    assert not stale.exists()


# -- the content ------------------------------------------------------------------------------

def test_weights_have_sane_magnitudes(tmp_path):
    import gguf
    import numpy as np

    for weight_type, spread in (("Q4_0", 1.44), ("Q8_0", 1.45), ("F16", 1.0)):
        path = ensure_model(dataclasses.replace(CI, weight_type=weight_type), tmp_path).path
        reader = gguf.GGUFReader(path)
        tensors = {t.name: t for t in reader.tensors}
        assert np.all(np.asarray(tensors["blk.0.attn_norm.weight"].data) == 1.0)
        for name, fan_in in (("blk.1.ffn_down.weight", CI.n_ff), ("blk.0.attn_q.weight", CI.n_embd)):
            t = tensors[name]
            assert t.tensor_type.name == weight_type
            w = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float64)
            assert np.all(np.isfinite(w))
            # ~ spread / sqrt(fan_in): uniform 4-bit nibbles (std 4.61 * d, d = 2.5 std/8), int8
            # (73.9 * d, d = 2.5 std/127), or F16 uniform with std exactly 1/sqrt(fan_in)
            assert w.std() * fan_in ** 0.5 == pytest.approx(spread, rel=0.03)
            assert len(np.unique(w[:4096])) > 10     # random, not constant


def test_vocab_and_metadata(ci_model):
    import gguf

    reader = gguf.GGUFReader(ci_model.path)
    field = reader.fields
    tokens = field["tokenizer.ggml.tokens"].contents()
    assert len(tokens) == CI.n_vocab == len(set(tokens))
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and tokens[3] == "<0x00>" and tokens[258] == "<0xFF>"
    assert tokens[13] == "<0x0A>"                      # llama.cpp's LF token
    assert field["tokenizer.ggml.model"].contents() == "llama"
    types = field["tokenizer.ggml.token_type"].contents()
    assert types[:4] == [2, 3, 3, 6] and types[258] == 6 and types[259] == 1
    assert field["llama.attention.layer_norm_rms_epsilon"].contents() == pytest.approx(1e-5)
    assert field["llama.rope.dimension_count"].contents() == CI.head_dim
    assert field["general.file_type"].contents() == 2
    assert field["general.quantization_version"].contents() == 2
    assert field["halotune.identity"].contents() == CI.identity()


def test_importing_the_probe_modules_stays_light():
    code = ("import sys, halotune.probe.gguf_model, halotune.probe.gguf_info, "
            "halotune.probe.stats, halotune.probe.llamabench_output\n"
            "heavy = [m for m in ('numpy', 'gguf', 'llama_cpp', 'pydantic') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_loads_in_llama_cpp(tmp_path):
    """The recipe loads in real llama.cpp (llama-cpp-python's low-level API), all weight types."""
    try:
        import llama_cpp.llama_cpp as L
    except (ImportError, OSError) as e:    # OSError/FileNotFoundError: libllama missing
        pytest.skip(f"llama-cpp-python not usable: {e}")
    import ctypes

    # no llama_log_set here: the callback is process-wide and must outlive every later test
    L.llama_backend_init()
    for weight_type in ("Q4_0", "Q8_0", "F16"):
        spec = dataclasses.replace(CI, weight_type=weight_type)
        model_file = ensure_model(spec, tmp_path)
        params = L.llama_model_default_params()
        params.n_gpu_layers = 0
        model = L.llama_model_load_from_file(model_file.path.encode(), params)
        assert model, f"llama.cpp could not load {model_file.path}"
        try:
            assert L.llama_vocab_n_tokens(L.llama_model_get_vocab(model)) == CI.n_vocab
            assert L.llama_model_n_layer(model) == CI.n_layer
            assert L.llama_model_n_embd(model) == CI.n_embd
            assert L.llama_model_n_params(model) == CI.n_params
            assert L.llama_model_size(model) == spec.tensor_bytes
            desc = ctypes.create_string_buffer(128)
            L.llama_model_desc(model, desc, len(desc))
            assert desc.value.decode().endswith(weight_type)     # "llama ?B Q4_0"
        finally:
            L.llama_model_free(model)
