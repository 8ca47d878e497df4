"""Checks of the machine before and around benchmarks: `halotune preflight` (is this machine in
a state where a measurement means something), `halotune doctor` (known Strix Halo problems,
as data in doctor.toml) and the token-generation forecast for a GGUF model."""
