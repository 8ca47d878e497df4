"""A profile's [validate] table and the verdicts: pass or fail, with the measured numbers.

Expectations are read from the profile's own file only, never inherited: llm-efficient
inherits llm-max's tunables, not llm-max's claims. Keys (checked by halotune.tuning.schema):

    min_tg_ratio       tg >= ratio x tg of `relative_to`
    max_power_ratio    average power <= ratio x that of `relative_to`
    relative_to        the profile the ratios compare with (measured in the same run)
    max_avg_power_w    average power over the probe's timed work (all tests), watts
    min_tg_tps         tg tokens/s (the probe's tg test; depends on the model)
    min_pp_tps         pp tokens/s
    max_tg_cv_percent  coefficient of variation of every tg repetition of every round

A figure that was not measured (no power reading on this machine, a failed run) gives the
verdict "unknown" with the reason, never a pass.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"

# key: (metric, direction, unit, what)
_CHECKS = {
    "min_tg_ratio": ("tg_tps", ">=", "", "tg"),
    "max_power_ratio": ("avg_power_w", "<=", "", "average power"),
    "max_avg_power_w": ("avg_power_w", "<=", " W", "average power"),
    "min_tg_tps": ("tg_tps", ">=", " t/s", "tg"),
    "min_pp_tps": ("pp_tps", ">=", " t/s", "pp"),
    "max_tg_cv_percent": ("tg_cv_percent", "<=", " %", "tg CV"),
}
ORDER = tuple(_CHECKS)


@dataclass(frozen=True)
class Expectation:
    key: str
    expected: float
    relative_to: str | None
    source: str            # the profile file that states it

    def to_dict(self) -> dict:
        return {"key": self.key, "expected": self.expected, "relative_to": self.relative_to,
                "source": self.source}


def read_table(profile) -> dict:
    """The `validate.*` settings of the profile's own file (a ResolvedProfile), checked by the
    schema; {} when it has none."""
    from halotune.tuning import schema
    from halotune.tuning.loader import ProfileError

    try:
        with open(profile.path, "rb") as f:
            data = tomllib.load(f)
        flat = schema.validate_file(data)
    except OSError as e:
        raise ProfileError(profile.display_path, message=f"cannot read: {e.strerror or e}") \
            from None
    except (ValueError, schema.SchemaError) as e:       # changed since it was loaded
        raise ProfileError(profile.display_path, message=str(e)) from None
    return {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith("validate.")}


def expectations_of(profile) -> list[Expectation]:
    if getattr(profile, "restore_baseline", False) or str(profile.path).startswith("<"):
        return []
    table = read_table(profile)
    rel = table.get("relative_to")
    return [Expectation(k, float(table[k]), rel if k in ("min_tg_ratio", "max_power_ratio")
                        else None, profile.display_path)
            for k in ORDER if k in table]


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit in (" t/s",):
        return (f"{v:,.0f}" if v >= 1000 else f"{v:.1f}") + unit
    if unit == " W":
        return f"{v:.1f} W"
    if unit == " %":
        return f"{v:.2f} %"
    return f"{v:.3f}"


def evaluate(exp: Expectation, name: str, measured: dict[str, dict | None]) -> dict:
    """One verdict. `measured` maps profile names to their metrics (measure.metrics) or None
    when the profile could not be measured."""
    metric, op, unit, what = _CHECKS[exp.key]
    mine = measured.get(name) or {}
    value = mine.get(metric)
    out = {"key": exp.key, "expected": exp.expected, "relative_to": exp.relative_to,
           "measured": None, "reference": None, "verdict": UNKNOWN, "message": "",
           "source": exp.source}
    want = "at least" if op == ">=" else "at most"
    if value is None:
        why = mine.get("power_null_reason") if metric == "avg_power_w" else None
        out["message"] = f"{what} was not measured" + (f" ({why})" if why else
                                                      " (no successful run)" if not mine else "")
        return out
    if exp.relative_to is not None:
        ref = (measured.get(exp.relative_to) or {}).get(metric)
        out["reference"] = {"profile": exp.relative_to, "value": ref}
        if ref is None or ref <= 0:
            out["message"] = f"{what} of {exp.relative_to} was not measured"
            return out
        ratio = value / ref
        out["measured"] = round(ratio, 4)
        ok = ratio >= exp.expected if op == ">=" else ratio <= exp.expected
        out["verdict"] = PASS if ok else FAIL
        out["message"] = (f"{what} {_fmt(value, unit or _unit(metric))} is {ratio:.3f} x "
                          f"{exp.relative_to}'s {_fmt(ref, unit or _unit(metric))}; "
                          f"{want} {exp.expected:g} x wanted")
        return out
    out["measured"] = round(value, 4)
    ok = value >= exp.expected if op == ">=" else value <= exp.expected
    out["verdict"] = PASS if ok else FAIL
    out["message"] = f"{what} {_fmt(value, unit)}; {want} {_fmt(exp.expected, unit)} wanted"
    return out


def _unit(metric: str) -> str:
    return " W" if metric.endswith("_w") else " t/s"


def overall(verdicts: list[dict]) -> str:
    if not verdicts:
        return "no_expectations"
    kinds = {v["verdict"] for v in verdicts}
    return FAIL if FAIL in kinds else UNKNOWN if UNKNOWN in kinds else PASS
