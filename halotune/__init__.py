"""halotune: telemetry, tuning and LLM validation for AMD Strix Halo machines."""

__version__ = "0.1.0"
