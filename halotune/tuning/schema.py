"""The shape of one profile file, checked by pydantic (extra="forbid", strict types).

This module checks ONE file on its own: key names, types, choices and the ranges that do not
depend on other keys. Choices and ranges are the tunables' own (gpu_level.LEVELS,
cpu_epp.ALL_EPP, thp.CHOICES, each sysctl tunable's range): defined once, there. The rules that
involve several keys or the inheritance chain (the TDP ceiling set by power.max_w, fast >= slow
>= stapm, sclk_* needing the "manual" level, ...) need the merged profile: the loader asks the
tunables (Tunable.check_profile_values).

pydantic is imported here at module level; halotune.tuning.loader imports this module only
inside the functions that validate a file, so listing profile names stays pydantic-free and the
`status` path never pays for it.

`validate_file(data)` returns the file's settings as a flat dict ("power.stapm_w": 120.0, ...,
only the keys the file sets) or raises SchemaError(key, value, message) for the first problem in
document order; the loader adds the file name.
"""

from __future__ import annotations

import re
from typing import Literal, Optional, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from halotune.tuning import limits
from halotune.tuning.loader import format_key
from halotune.tuning.tunables import cpu_epp, gpu_level, sysctl, thp

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"

# Choices the kernel accepts, as the tunables that write them define them.
PERFORMANCE_LEVELS = tuple(gpu_level.LEVELS)
EPP_CHOICES = tuple(cpu_epp.ALL_EPP)
THP_ENABLED = thp.CHOICES["enabled"]
THP_DEFRAG = thp.CHOICES["defrag"]
# Each sysctl key's (lo, hi), from its tunable.
SYSCTL_RANGES = {t.key: t.valid for t in sysctl.TUNABLES}

_ONE_LINE = r"^[^\r\n]*\S[^\r\n]*$"
_WORD = r"^[a-z0-9][a-z0-9_+-]*$"
_POWER_PROFILE = r"^[A-Za-z0-9][A-Za-z0-9_]*$"
_GFX = r"^gfx[0-9a-f]{3,4}$"
_DEVICE = r"^0x[0-9a-fA-F]{4}$"

# Message for a value that does not match a field's pattern, by pattern.
PATTERN_MESSAGES = {
    NAME_PATTERN: "must be a profile name (lowercase letters, digits, '.', '_', '-'; starting "
                  "with a letter or digit)",
    _ONE_LINE: "must be one non-empty line",
    _WORD: "must be one lowercase word (a-z, 0-9, '_', '+', '-')",
    _POWER_PROFILE: "must be one word (letters, digits, '_'), e.g. \"COMPUTE\"",
    _GFX: "expected a list of gfx targets like \"gfx1151\"",
    _DEVICE: "expected a list of PCI device ids like \"0x1586\"",
}

# Units named after the expected type, by key path.
UNITS = {"power.stapm_w": "watts", "power.fast_w": "watts", "power.slow_w": "watts",
         "power.max_w": "watts", "gpu.sclk_min_mhz": "MHz", "gpu.sclk_max_mhz": "MHz",
         "memory.gtt_gib": "GiB", "validate.max_avg_power_w": "watts",
         "validate.min_tg_tps": "tokens/s", "validate.min_pp_tps": "tokens/s",
         "validate.max_tg_cv_percent": "percent", "validate.min_tg_ratio": "a ratio, e.g. 0.95",
         "validate.max_power_ratio": "a ratio, e.g. 0.8"}

# Expected-type phrases for wrong types, by pydantic error type.
TYPE_MESSAGES = {
    "float_type": "expected a number",
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "model_type": "expected a table",
    "dict_type": "expected a table",
}


class SchemaError(Exception):
    """One problem in one file: key path ("power.stapm_w"), the bad value (None: the key is
    missing) and what is allowed."""

    def __init__(self, key: str, value: object, message: str):
        super().__init__(f"{key} = {value!r}: {message}")
        self.key = key
        self.value = value
        self.message = message


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)


def _watts():
    # The range depends on power.max_w anywhere in the chain: checked on the merged profile.
    return Field(None, allow_inf_nan=False)


class Requires(_Section):
    gfx_target: Optional[list[str]] = Field(None, min_length=1)
    device_id: Optional[list[str]] = Field(None, min_length=1)


class Power(_Section):
    stapm_w: Optional[float] = _watts()
    fast_w: Optional[float] = _watts()
    slow_w: Optional[float] = _watts()
    max_w: Optional[float] = Field(None, allow_inf_nan=False, ge=limits.TDP_MAX_W,
                                   le=limits.TDP_HARD_CEILING_W)
    max_w_source: Optional[str] = Field(None, pattern=_ONE_LINE)
    platform_profile: Optional[str] = Field(None, pattern=_WORD)


class Gpu(_Section):
    performance_level: Optional[Literal[PERFORMANCE_LEVELS]] = None
    sclk_min_mhz: Optional[int] = Field(None, gt=0)
    sclk_max_mhz: Optional[int] = Field(None, gt=0)
    power_profile: Optional[str] = Field(None, pattern=_POWER_PROFILE)
    power_profile_required: Optional[bool] = None


class Cpu(_Section):
    governor: Optional[str] = Field(None, pattern=_WORD)
    epp: Optional[Literal[EPP_CHOICES]] = None
    boost: Optional[bool] = None


class Memory(_Section):
    gtt_gib: Optional[float] = Field(None, allow_inf_nan=False, gt=0)


def _sysctl(name: str):
    lo, hi = SYSCTL_RANGES[f"sysctl.{name}"]
    return Field(None, alias=name, ge=lo, le=hi)


class Sysctl(_Section):
    vm_swappiness: Optional[int] = _sysctl("vm.swappiness")
    vm_compaction_proactiveness: Optional[int] = _sysctl("vm.compaction_proactiveness")
    kernel_numa_balancing: Optional[int] = _sysctl("kernel.numa_balancing")


class Thp(_Section):
    enabled: Optional[Literal[THP_ENABLED]] = None
    defrag: Optional[Literal[THP_DEFRAG]] = None


class Validate(_Section):
    # Expectations `halotune validate` checks with measurements (halotune/validation/
    # expectations.py). Read from the profile's own file only: a child does not inherit its
    # parent's claims (llm-efficient must not be held to llm-max's numbers).
    min_tg_ratio: Optional[float] = Field(None, allow_inf_nan=False, ge=0, le=2)
    max_power_ratio: Optional[float] = Field(None, allow_inf_nan=False, ge=0, le=2)
    relative_to: Optional[str] = Field(None, pattern=NAME_PATTERN)
    max_avg_power_w: Optional[float] = Field(None, allow_inf_nan=False, gt=0)
    min_tg_tps: Optional[float] = Field(None, allow_inf_nan=False, gt=0)
    min_pp_tps: Optional[float] = Field(None, allow_inf_nan=False, gt=0)
    max_tg_cv_percent: Optional[float] = Field(None, allow_inf_nan=False, gt=0)


class ProfileFile(_Section):
    description: str = Field(pattern=_ONE_LINE)
    inherits: Optional[str] = Field(None, pattern=NAME_PATTERN)
    restore_baseline: Optional[bool] = None
    requires: Optional[Requires] = None
    power: Optional[Power] = None
    gpu: Optional[Gpu] = None
    cpu: Optional[Cpu] = None
    memory: Optional[Memory] = None
    sysctl: Optional[Sysctl] = None
    thp: Optional[Thp] = None
    validate_: Optional[Validate] = Field(None, alias="validate")


SECTIONS = {"requires": Requires, "power": Power, "gpu": Gpu, "cpu": Cpu, "memory": Memory,
            "sysctl": Sysctl, "thp": Thp, "validate": Validate}
# Expectation keys that compare with another profile (validate.relative_to names it).
RELATIVE_EXPECTATIONS = ("min_tg_ratio", "max_power_ratio")
TOP_LEVEL = ("description", "inherits", "restore_baseline")

# Keys the engine acts on, in the order a profile lists them. Everything else is meta.
TUNABLE_KEYS = (
    "power.stapm_w", "power.fast_w", "power.slow_w", "power.platform_profile",
    "gpu.performance_level", "gpu.sclk_min_mhz", "gpu.sclk_max_mhz", "gpu.power_profile",
    "cpu.governor", "cpu.epp", "cpu.boost",
    "memory.gtt_gib",
    "sysctl.vm.swappiness", "sysctl.vm.compaction_proactiveness", "sysctl.kernel.numa_balancing",
    "thp.enabled", "thp.defrag",
)
META_KEYS = ("power.max_w", "power.max_w_source", "gpu.power_profile_required",
             "requires.gfx_target", "requires.device_id")


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _field(model: type[BaseModel], key: str):
    for name, f in model.model_fields.items():
        if (f.alias or name) == key:
            return f
    return None


def _range_of(field) -> tuple[object, object, object]:
    lo = hi = gt = None
    for m in field.metadata:
        lo = getattr(m, "ge", lo)
        hi = getattr(m, "le", hi)
        gt = getattr(m, "gt", gt)
    return lo, hi, gt


def _num(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _choices_of(field) -> tuple[str, ...]:
    for arg in get_args(field.annotation):
        if get_origin(arg) is Literal:
            return tuple(get_args(arg))
    return ()


def _message(err: dict, model: type[BaseModel] | None, key: str | None) -> str:
    kind = err["type"]
    field = _field(model, key) if model is not None and key is not None else None
    if kind == "extra_forbidden":
        text = f"unknown key (known: {', '.join(_keys_of(model))})" if model else "unknown key"
        if model is Sysctl and isinstance(err.get("input"), dict):
            text += '; sysctl names need quotes: "vm.swappiness" = 10'
        return text
    if kind == "missing":
        return "missing (every profile needs a one-line description)" \
            if key == "description" else "missing"
    if kind == "literal_error" and field is not None:
        return "must be one of " + ", ".join(_choices_of(field))
    if kind in ("greater_than_equal", "less_than_equal", "greater_than") and field is not None:
        lo, hi, gt = _range_of(field)
        if lo is not None and hi is not None:
            return f"must be between {_num(lo)} and {_num(hi)}"
        if gt is not None:
            return f"must be greater than {_num(gt)}"
    if kind == "string_pattern_mismatch":
        return PATTERN_MESSAGES.get(err.get("ctx", {}).get("pattern"), err["msg"])
    if kind == "finite_number":
        return "must be a finite number"
    if kind == "too_short":
        return "must not be empty"
    if kind == "list_type":
        return "expected a list of strings"
    if kind in TYPE_MESSAGES:
        if key in ("gfx_target", "device_id") and model is Requires and field is not None:
            return "expected a list of strings"
        if model is ProfileFile and key in SECTIONS:
            return f"expected a table ([{key}])"
        unit = UNITS.get(f"{_section_name(model)}.{key}")
        return TYPE_MESSAGES[kind] + (f" ({unit})" if unit else "")
    return err["msg"]


def _section_name(model) -> str:
    return next((name for name, m in SECTIONS.items() if m is model), "")


def _locate(data: dict, loc: tuple) -> tuple[str, object, type[BaseModel] | None, str | None, bool]:
    """(key path, value, model owning the key, key within it, value present) for an error loc.
    List indexes are folded into the list: the message shows the whole list."""
    parts = [p for p in loc if isinstance(p, str)]
    model: type[BaseModel] | None = ProfileFile
    cur: object = data
    present = True
    owner, key = ProfileFile, None
    for i, p in enumerate(parts):
        owner, key = model, p
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            present = False
            cur = None
        model = SECTIONS.get(p) if i == 0 and model is ProfileFile else None
    return format_key(*parts), cur, owner, key, present


def _order(data: dict, loc: tuple) -> tuple:
    """Document position of an error's key, so the first problem reported is the first one a
    reader meets in the file."""
    pos = []
    cur: object = data
    for p in loc:
        if isinstance(cur, dict) and p in cur:
            pos.append(list(cur).index(p))
            cur = cur[p]
        elif isinstance(cur, list) and isinstance(p, int) and 0 <= p < len(cur):
            pos.append(p)
            cur = cur[p]
        else:
            pos.append(10**9)
            break
    return tuple(pos)


def validate_file(data: dict) -> dict[str, object]:
    """Check one parsed TOML document. Returns the flat settings it contains (tunables and meta
    keys, plus "description", "inherits" and "restore_baseline"), only those it sets."""
    try:
        model = ProfileFile.model_validate(data)
    except ValidationError as e:
        errors = sorted(e.errors(include_url=False), key=lambda err: _order(data, err["loc"]))
        err = errors[0]
        key, value, owner, leaf, present = _locate(data, err["loc"])
        raise SchemaError(key, value if present else None, _message(err, owner, leaf)) from None
    dumped = model.model_dump(by_alias=True, exclude_unset=True)
    flat: dict[str, object] = {}
    for k in TOP_LEVEL:
        if k in dumped:
            flat[k] = dumped[k]
    for section in SECTIONS:
        for k, v in (dumped.get(section) or {}).items():
            if section == "requires" and k == "device_id":
                v = [d.lower() for d in v]
            flat[f"{section}.{k}"] = v
    # Per-item patterns for the requirement lists (pydantic's per-item pattern errors would point
    # at one element; the message shows the whole list).
    for k, pattern in (("requires.gfx_target", _GFX), ("requires.device_id", _DEVICE)):
        if k in flat and not all(re.match(pattern, s) for s in flat[k]):
            raise SchemaError(k, data["requires"][k.split(".", 1)[1]], PATTERN_MESSAGES[pattern])
    _check_validate(flat)
    return flat


def _check_validate(flat: dict) -> None:
    """A ratio needs the profile it is relative to, and relative_to needs a ratio."""
    relative = [k for k in RELATIVE_EXPECTATIONS if f"validate.{k}" in flat]
    if relative and "validate.relative_to" not in flat:
        raise SchemaError(f"validate.{relative[0]}", flat[f"validate.{relative[0]}"],
                          'needs validate.relative_to (the profile it compares with, e.g. '
                          'relative_to = "llm-max")')
    if "validate.relative_to" in flat and not relative:
        raise SchemaError("validate.relative_to", flat["validate.relative_to"],
                          "needs a ratio to check: validate." + " or validate.".join(
                              RELATIVE_EXPECTATIONS))
