"""`halotune bench -- CMD...`: run a user's benchmark with preflight, telemetry and history."""

from halotune.bench.runner import BENCH_SCHEMA, BenchOptions, run_bench

__all__ = ["BENCH_SCHEMA", "BenchOptions", "run_bench"]
