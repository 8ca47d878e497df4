"""`halotune history import FILE...`: llama-bench `-o json` / `-o jsonl` output into history.

One run per file (kind "import"). The machine the file was measured on is unknown, so its
fingerprint holds only what the output itself says (llama.cpp build and backend; CPU model);
everything else stays null, never this machine's values. Other JSON (a halotune document, any
other program's) is refused with the file's name and what was found.
"""

from __future__ import annotations

import os

from halotune.model.fingerprint import empty_fingerprint

MAX_FILE_BYTES = 64 << 20


class ImportRefused(ValueError):
    """A file that cannot be imported; the message names it."""


def build_label(commit, number) -> str | None:
    if not commit:
        return None
    return f"{commit} ({number})" if number is not None else str(commit)


def model_of(record) -> dict:
    """The model dict history keeps, from a BenchRecord (llama-bench knows no hash)."""
    filename = record.model_filename
    return {"name": os.path.basename(filename) if filename else record.model_type,
            "filename": filename, "type": record.model_type, "size_bytes": record.model_size,
            "n_params": record.model_n_params, "sha256": None}


def test_of(record) -> dict:
    """The probe/1 test dict of a BenchRecord (energy unknown here)."""
    cv = (record.stddev_ts / record.avg_ts * 100.0) if record.avg_ts else None
    return {"name": record.name, "model_name": model_of(record)["name"],
            "n_prompt": record.n_prompt, "n_gen": record.n_gen, "n_depth": record.n_depth,
            "tokens_per_s": record.avg_ts, "stddev": record.stddev_ts,
            "cv_percent": None if cv is None else round(cv, 3), "samples": record.samples_ts,
            "joules_per_token": None, "avg_power_w": None,
            "n_threads": record.n_threads, "n_gpu_layers": record.n_gpu_layers,
            "flash_attn": record.flash_attn, "load_mode": record.load_mode}


test_of.__test__ = False  # not a pytest test, despite the name


def run_fields(records) -> dict:
    """backend, model and llama.cpp identity shared by a list of BenchRecords (the first
    record's; a file measuring several models keeps each model on its tests)."""
    first = records[0]
    models = {model_of(r)["name"] for r in records}
    model = model_of(first) if len(models) == 1 else {"name": None, "several": sorted(
        m for m in models if m)}
    return {"backend": first.backends, "model": model,
            "llama_cpp": {"build": build_label(first.build_commit, first.build_number),
                          "backend": first.backends}}


def read_records(path: str):
    """(records, raw text) of one llama-bench output file; raises ImportRefused."""
    from halotune.probe.llamabench_output import NotLlamaBenchOutput, parse_llamabench

    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise ImportRefused(f"{path}: {size} bytes; llama-bench output is far smaller "
                                f"(limit {MAX_FILE_BYTES >> 20} MiB)")
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise ImportRefused(f"{path}: {e.strerror or e}") from None
    try:
        return parse_llamabench(text, source=path)
    except NotLlamaBenchOutput as e:
        raise ImportRefused(f"{e}; only llama-bench -o json / -o jsonl output can be "
                            "imported") from None


def import_file(path: str, label: str | None = None, **where):
    """Store one file as a run; returns the Recorded. `where` goes to history.record.record
    (root, socket, db_path)."""
    from halotune.history.record import record

    records = read_records(path)
    shared = run_fields(records)
    fingerprint = empty_fingerprint()
    fingerprint["llama_cpp"] = shared["llama_cpp"]
    fingerprint["cpu_model"] = records[0].cpu_info or None
    times = sorted(r.test_time for r in records if r.test_time)
    result = {"source_file": os.path.abspath(path), "format": "llama-bench",
              "gpu_info": records[0].gpu_info or None, "records": len(records)}
    return record("import", [test_of(r) for r in records], fingerprint=fingerprint,
                  result=result, backend=shared["backend"], model=shared["model"],
                  label=label or os.path.basename(path),
                  measured_at=times[0] if times else None, **where)
