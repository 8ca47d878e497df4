"""The kernel's number parsers, so the simulator accepts exactly the text the kernel accepts.

Each raises ValueError where the kernel function returns -EINVAL (or -ERANGE).
"""

from __future__ import annotations

import re

_BASE0 = re.compile(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")


def _base0(digits: str) -> int:
    # lib/kstrtox.c _parse_integer_fixup_radix: 0x -> 16, leading 0 -> 8, else 10.
    if not _BASE0.match(digits):
        raise ValueError(digits)
    if digits[:2].lower() == "0x":
        return int(digits, 16)
    if digits.startswith("0") and len(digits) > 1:
        return int(digits, 8)
    return int(digits, 10)


def _strip_newline(text: str) -> str:
    # kstrto*() accept exactly one trailing newline and nothing else around the number.
    return text[:-1] if text.endswith("\n") else text


def _kstrtoull(s: str, base: int, bits: int) -> int:
    """lib/kstrtox.c _kstrtoull: digits only (no sign, no spaces), base 0 or 10."""
    if base == 0:
        value = _base0(s)
    elif base == 10 and re.fullmatch(r"[0-9]+", s):
        value = int(s)
    else:
        raise ValueError(s)
    if value >= 1 << bits:
        raise ValueError(s)
    return value


def kstrtoul(text: str, base: int = 0, bits: int = 64) -> int:
    """kstrtoul/kstrtouint: an optional '+', no '-'; the value must fit in `bits`."""
    s = _strip_newline(text)
    return _kstrtoull(s[1:] if s.startswith("+") else s, base, bits)


def kstrtol(text: str, base: int = 0, bits: int = 64) -> int:
    """kstrtol/kstrtoint: an optional '+' or '-'; the value must fit the signed range."""
    s = _strip_newline(text)
    if s.startswith("-"):
        value = -_kstrtoull(s[1:], base, bits)
    else:
        value = _kstrtoull(s[1:] if s.startswith("+") else s, base, bits)
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise ValueError(text)
    return value


def sscanf_ul(text: str) -> int:
    """sscanf(buf, "%lu") (lib/vsprintf.c): skips leading white space, needs a digit (no sign),
    reads decimal digits and ignores the rest."""
    m = re.match(r"\s*([0-9]+)", text)
    if not m:
        raise ValueError(text)
    return int(m.group(1))


def proc_int(text: str) -> int:
    """proc_dointvec: one decimal int, optional '-', surrounding white space allowed."""
    m = re.fullmatch(r"\s*(-?[0-9]+)\s*", text)
    if not m:
        raise ValueError(text)
    value = int(m.group(1))
    if not -(1 << 31) <= value < 1 << 31:
        raise ValueError(text)
    return value


def sysfs_streq(text: str, word: str) -> bool:
    """sysfs_streq: equal, ignoring one trailing newline on either side."""
    return _strip_newline(text) == _strip_newline(word)
