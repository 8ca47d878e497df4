"""The preflight thresholds: thresholds.toml in the package, optionally overridden by a file.

An override file holds only the values it changes, in the same sections; an unknown section or
key, or a value of the wrong type, is an error naming the file, the key and the value.
"""

from __future__ import annotations

import copy
import tomllib
from importlib import resources


class ThresholdError(Exception):
    pass


_DEFAULTS: dict | None = None


def defaults() -> dict:
    global _DEFAULTS
    if _DEFAULTS is None:
        text = resources.files("halotune.checks").joinpath("thresholds.toml").read_text("utf-8")
        _DEFAULTS = tomllib.loads(text)
    return copy.deepcopy(_DEFAULTS)


def _kind(v) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    return type(v).__name__


def load_thresholds(path: str | None = None) -> dict:
    base = defaults()
    if path is None:
        return base
    try:
        with open(path, "rb") as f:
            user = tomllib.load(f)
    except OSError as e:
        raise ThresholdError(f"{path}: cannot read the thresholds file ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ThresholdError(f"{path}: not valid TOML ({e})") from None
    for section, values in user.items():
        if section not in base or not isinstance(values, dict):
            raise ThresholdError(f"{path}: [{section}]: unknown section (known: "
                                 f"{', '.join(sorted(base))})")
        for key, value in values.items():
            if key not in base[section]:
                raise ThresholdError(f"{path}: {section}.{key}: unknown threshold (known in "
                                     f"[{section}]: {', '.join(sorted(base[section]))})")
            want = _kind(base[section][key])
            if _kind(value) != want:
                raise ThresholdError(f"{path}: {section}.{key} = {value!r}: must be {want}")
            if want == "a number" and value < 0:
                raise ThresholdError(f"{path}: {section}.{key} = {value!r}: must not be negative")
            base[section][key] = value
    if base["window"]["sample_hz"] <= 0:
        raise ThresholdError(f"{path}: window.sample_hz = {base['window']['sample_hz']!r}: "
                             "must be above 0")
    return base
