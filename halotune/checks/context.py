"""What every preflight check gets: the observation window, the thresholds, the profile asked
for (and the engine's read-only verification), the model."""

from __future__ import annotations

from dataclasses import dataclass, field

from halotune.checks.window import Observation
from halotune.machine.rootfs import RootFS


@dataclass
class Context:
    fs: RootFS
    obs: Observation
    th: dict
    profile_name: str | None = None         # --profile NAME
    profile_error: str | None = None        # it could not be loaded
    verify: object | None = None            # tuning.engine.Outcome of Engine.verify()
    verify_error: str | None = None
    expected: dict = field(default_factory=dict)   # profile key -> value the machine must hold
    expected_from: str | None = None        # "profile llm-max" / "applied profile llm-max"
    allow: tuple[str, ...] = ()
    model: object | None = None             # probe.gguf_info.GgufInfo
    model_error: str | None = None
    n_ctx: int = 4096                       # context for the KV cache
