"""Tuning profiles: find them, parse them, resolve inheritance, check them.

Where profiles come from, lowest precedence first; a later directory overrides an earlier one BY
NAME (the whole file is replaced, keys are not merged across directories):

1. Shipped: the TOML files in the repository's top-level profiles/ directory. An installed
   halotune carries them as package data of `halotune.profiles` (read with importlib.resources;
   this also covers `pip install -e .`). Running from a source tree that is not installed, they
   are read from <repo>/profiles next to the halotune package. Shown in messages as
   "profiles/<name>.toml" whatever the real location.
2. Admin: /etc/halotune/profiles/*.toml (ROOT/etc/halotune/profiles under `--root ROOT`, as the
   simulated machine's /etc is ROOT/etc). `profiles_dir` (the CLI's --profiles-dir, and tests)
   REPLACES this admin directory only; the shipped profiles stay available underneath it, so a
   test directory can override llm-max while llm-efficient still inherits from it. Shown with
   the full path.

Who may define profiles (trust.py's rule, that of sudo's sudoers and polkit's rules): a file in
the admin directory is read only when root alone can change it: the file (what its symlinks
lead to) owned by root and not group/world-writable, every directory above it and above each
link owned by root and not group/world-writable (sticky ones, like /tmp, excepted). Otherwise it
is refused with what to run. The same holds for --profiles-dir files when halotune runs as root;
run as another user, such files are read, but power.max_w above 120 W (limits.TDP_MAX_W) is
accepted only from a file that root alone can change (shipped, or root-owned as above), never
from one a user controls.

A profile is resolved through its `inherits` chain (child first). Keys are overridden one by one:
a child that sets power.stapm_w keeps every other key of its parent. Single-file rules (key
names, types, choices, fixed ranges) are checked by halotune.tuning.schema (pydantic, imported
only when a file is validated; its choices and ranges come from the tunables); rules that involve
several keys are asked to the tunables that own them (Tunable.check_profile_values) on the
merged profile, and the error names the file that set the offending value.

Every ProfileError reads `<file>: <key> = <value>: <what is allowed>`, for example
`profiles/llm-max.toml: power.stapm_w = 150: must be between 45 and 120`.

Import cost: this module imports only the standard library and halotune.tuning.limits. It is
imported by the tuning commands only, never on the `status` path.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Callable

from halotune.tuning import limits

DEFAULT_ADMIN_DIR = "/etc/halotune/profiles"
SHIPPED_DISPLAY_DIR = "profiles"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")

_REQUIRES = ("gfx_target", "device_id")
_NOT_MERGED = ("description", "inherits", "restore_baseline")


# --- messages --------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
# Sysctl names ("vm.swappiness") are shown unquoted, as in "sysctl.vm.swappiness".
_DOTTED_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\Z")
_MAX_VALUE_CHARS = 120


def format_key(*parts: str) -> str:
    """A key path for messages and ProfileError.key: the parts joined with "." (power.stapm_w,
    sysctl.vm.swappiness). A part that is not a bare key is quoted as JSON, so a key read from a
    file never puts control characters (ESC sequences, CR) on the terminal."""
    return ".".join(p if _DOTTED_BARE_KEY.match(p) else json.dumps(p) for p in parts)


def format_value(v: object) -> str:
    """A value as TOML writes it, for messages: 150, 85.5, "performance", true, ["gfx1151"].
    Integral floats lose their ".0"; very long values are cut with "..."."""
    text = _fmt(v)
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS - 3] + "..."


def _fmt(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        # readable non-ASCII, but DEL and C1 controls (\x9b starts a terminal sequence) escaped
        if any("\x7f" <= c <= "\x9f" for c in v):
            return json.dumps(v)
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        if not v:
            return "{}"
        items = (f"{k if _BARE_KEY.match(str(k)) else json.dumps(str(k))} = {_fmt(x)}"
                 for k, x in v.items())
        return "{ " + ", ".join(items) + " }"
    if hasattr(v, "isoformat"):           # TOML dates and times
        return v.isoformat()
    return str(v)


class ProfileError(Exception):
    """A profile that cannot be used. `file` is the display path (None when no file is
    involved, e.g. an unknown profile name), `key` the dotted key path as format_key shows it
    or None, `value` the bad value (None when the key is missing or no single value is at
    fault), `message` what is allowed. `profile` is the name that was being loaded, when
    known."""

    def __init__(self, file: str | None, key: str | None = None, value: object = None,
                 message: str = "", *, profile: str | None = None,
                 line: int | None = None, column: int | None = None):
        self.file = file
        self.key = key
        self.value = value
        self.message = message
        self.profile = profile
        self.line = line
        self.column = column
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message
        if self.key is not None:
            head = self.key if self.value is None else f"{self.key} = {format_value(self.value)}"
            text = f"{head}: {text}"
        return f"{self.file}: {text}" if self.file else text


# --- the resolved profile --------------------------------------------------------------------

@dataclass
class ResolvedProfile:
    """A profile with its inheritance chain merged. `values` holds only tunable keys the chain
    sets (what the engine applies); meta settings are attributes. `sources` maps every key the
    chain sets (tunables, power.max_w, power.max_w_source, gpu.power_profile_required,
    requires.*) to the display path of the file that set it."""

    name: str
    path: str
    display_path: str
    chain: list[str]
    description: str
    values: dict[str, object] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    requires: dict[str, list[str]] = field(default_factory=dict)
    restore_baseline: bool = False
    max_w: float | None = None
    max_w_source: str | None = None
    power_profile_required: bool = False

    def is_required(self, key: str) -> bool:
        """Whether the profile marks tunable `key` required: a machine that cannot take it is
        an error, not a skipped row."""
        attr = REQUIRED_FLAGS.get(key)
        return bool(attr and getattr(self, attr))


# Tunable key -> the ResolvedProfile attribute holding its "required" flag.
REQUIRED_FLAGS = {"gpu.power_profile": "power_profile_required"}


def check_requirements(profile: ResolvedProfile, gfx_targets: list[str],
                       device_ids: list[str]) -> str | None:
    """Why `profile` must not be applied on this machine, or None when its [requires] are met.

    gfx_targets / device_ids describe the machine's GPUs as the caller wants them shown, e.g.
    "gfx1100 (AMD Navi 31)" and "0x744c"; only the first word of each is compared (device ids
    case-insensitively, "1586" and "0x1586" alike). A requirement is met when any GPU matches
    any listed value."""
    have = {"gfx_target": gfx_targets, "device_id": device_ids}
    for key in _REQUIRES:
        wanted = profile.requires.get(key)
        if not wanted:
            continue
        shown = [h.strip() for h in have[key] if h and h.strip()]
        tokens = {_norm_requirement(key, h.split()[0]) for h in shown}
        if tokens & {_norm_requirement(key, w) for w in wanted}:
            continue
        src = profile.sources.get(f"requires.{key}", profile.display_path)
        what = "gfx target" if key == "gfx_target" else "PCI device id"
        machine = ", ".join(shown) if shown else f"no GPU with a known {what}"
        return f"{src}: requires.{key} = {format_value(wanted)}: this machine has {machine}"
    return None


def _norm_requirement(key: str, value: str) -> str:
    value = value.strip().lower()
    if key == "device_id":
        value = value.split(":")[-1]
        if not value.startswith("0x"):
            value = "0x" + value
    return value


# --- where the files are ---------------------------------------------------------------------

def shipped_profiles_dir():
    """The directory of the shipped profiles: the `halotune.profiles` package data when
    importable (installed wheel, editable install, or a source tree whose halotune/profiles link
    is present), else <repo>/profiles next to the halotune package. None if neither exists.
    Returns a pathlib.Path or an importlib.resources Traversable."""
    try:
        from importlib.resources import files

        d = files("halotune.profiles")
        if d.is_dir():
            return d
    except (ImportError, TypeError, OSError):
        pass
    import halotune
    from pathlib import Path

    repo = Path(os.path.abspath(halotune.__file__)).parent.parent
    d = repo / SHIPPED_DISPLAY_DIR
    return d if d.is_dir() else None


@dataclass
class _Entry:
    name: str
    path: str
    display: str
    read: Callable[[], bytes]
    untrusted: str | None = None     # why someone other than root could change the file
    refused: bool = False            # untrusted where that is not allowed: never read


class ProfileStore:
    """The profiles this machine knows. `profiles_dir` (--profiles-dir, tests) replaces the
    admin directory (/etc/halotune/profiles) only: shipped profiles remain available underneath
    and are overridden by name. `shipped_dir` points the shipped profiles elsewhere (tests use it
    to load a modified copy that is still shown as "profiles/<name>.toml")."""

    def __init__(self, profiles_dir: str | None = None, admin_dir: str | None = None,
                 shipped_dir: str | os.PathLike | None = None, root: str = "/"):
        if admin_dir is None:
            admin_dir = os.path.join(os.path.abspath(root or "/"), DEFAULT_ADMIN_DIR.lstrip("/"))
        self.admin_dir = os.path.abspath(profiles_dir if profiles_dir is not None else admin_dir)
        # System configuration must be root's alone; so must anything root itself reads.
        self._enforce_ownership = profiles_dir is None or os.geteuid() == 0
        self._shipped = shipped_dir

    # -- discovery --
    def _scan(self) -> tuple[dict[str, _Entry], list[ProfileError]]:
        entries: dict[str, _Entry] = {}
        warnings: list[ProfileError] = []
        shipped = self._shipped if self._shipped is not None else shipped_profiles_dir()
        if shipped is not None:
            from pathlib import Path

            base = shipped if hasattr(shipped, "iterdir") else Path(shipped)
            try:
                items = sorted(base.iterdir(), key=lambda t: t.name)
            except OSError:
                items = []
            for t in items:
                if t.name.endswith(".toml") and t.is_file():
                    self._add(entries, warnings, t.name, str(t),
                              f"{SHIPPED_DISPLAY_DIR}/{t.name}", t.read_bytes)
        try:
            names = sorted(os.listdir(self.admin_dir))
        except FileNotFoundError:
            names = []
        except OSError as e:
            warnings.append(ProfileError(self.admin_dir, message="cannot read the profiles "
                                         f"directory: {e.strerror or e}"))
            names = []
        from halotune.tuning import trust

        for fname in names:
            path = os.path.join(self.admin_dir, fname)
            if fname.endswith(".toml") and os.path.isfile(path):
                entry = self._add(entries, warnings, fname, path, path, _reader(path))
                if entry is not None:
                    entry.untrusted = trust.ownership_problem(path)
                    entry.refused = entry.untrusted is not None and self._enforce_ownership
                    if entry.refused:
                        warnings.append(_refusal(entry))
        return entries, warnings

    @staticmethod
    def _add(entries, warnings, fname, path, display, read) -> _Entry | None:
        name = fname[:-len(".toml")]
        if not NAME_RE.match(name):
            warnings.append(ProfileError(display, message=f"{json.dumps(name)} is not a valid "
                                         "profile name (lowercase letters, digits, '.', '_', '-'; "
                                         "starting with a letter or digit): skipped"))
            return None
        entries[name] = _Entry(name, path, display, read)
        return entries[name]

    # -- public API --
    def names(self) -> list[str]:
        """Every profile name, sorted (shipped and admin; admin wins on a clash)."""
        return sorted(self._scan()[0])

    def path_of(self, name: str) -> str:
        """The file that defines `name` (after admin overrides)."""
        entries, _ = self._scan()
        if name not in entries:
            raise _unknown(name, entries)
        return entries[name].path

    def load(self, name: str) -> ResolvedProfile:
        """Resolve and check one profile; raises ProfileError."""
        entries, _ = self._scan()
        return self._resolve(name, entries, {})

    def load_all(self) -> tuple[list[ResolvedProfile], list[ProfileError]]:
        """Every profile that resolves, and one error per profile that does not (plus
        skipped files and unreadable directories). A broken profile hides no other one."""
        entries, errors = self._scan()
        cache: dict[str, dict] = {}
        profiles = []
        for name in sorted(entries):
            try:
                profiles.append(self._resolve(name, entries, cache))
            except ProfileError as e:
                if not entries[name].refused:      # already listed by _scan
                    errors.append(e)
        return profiles, errors

    def diff(self, a: str, b: str) -> list[tuple[str, object, object]]:
        """(key, value in a, value in b) for every tunable key either profile sets, in profile
        order; None where a profile does not set the key. Equal values are included: callers
        filter with `va != vb`."""
        from halotune.tuning.schema import TUNABLE_KEYS

        pa, pb = self.load(a), self.load(b)
        keys = [k for k in TUNABLE_KEYS if k in pa.values or k in pb.values]
        keys += sorted(k for k in set(pa.values) | set(pb.values) if k not in TUNABLE_KEYS)
        return [(k, pa.values.get(k), pb.values.get(k)) for k in keys]

    # -- resolution --
    def _resolve(self, name: str, entries: dict[str, _Entry], cache: dict) -> ResolvedProfile:
        try:
            return self._resolve_inner(name, entries, cache)
        except ProfileError as e:
            e.profile = name
            raise

    def _resolve_inner(self, name, entries, cache) -> ResolvedProfile:
        if name not in entries:
            raise _unknown(name, entries)
        chain: list[tuple[_Entry, dict]] = []
        names: list[str] = []
        cur = name
        while True:
            entry = entries[cur]
            flat = _parse(entry, cache)
            if chain and flat.get("restore_baseline"):
                child = chain[-1][0]
                raise ProfileError(child.display, "inherits", cur,
                                   f"cannot inherit from a profile with restore_baseline = true "
                                   f"(applying {json.dumps(cur)} rolls back to the machine's "
                                   "original values; it has no values to inherit)")
            chain.append((entry, flat))
            names.append(cur)
            parent = flat.get("inherits")
            if parent is None:
                break
            if parent in names:
                k = names.index(parent)
                first, first_flat = chain[k]
                raise ProfileError(first.display, "inherits", first_flat["inherits"],
                                   "inheritance cycle " + " -> ".join(names + [parent]))
            if parent not in entries:
                known = ", ".join(sorted(entries)) or "none"
                raise ProfileError(entry.display, "inherits", parent,
                                   f"no such profile (known: {known})")
            cur = parent

        merged: dict[str, object] = {}
        sources: dict[str, str] = {}
        for entry, flat in reversed(chain):
            for k, v in flat.items():
                if k not in _NOT_MERGED:
                    merged[k] = v
                    sources[k] = entry.display
        depth = {entry.display: i for i, (entry, _) in enumerate(chain)}
        _check_merged(merged, sources, depth)

        from halotune.tuning.schema import META_KEYS, TUNABLE_KEYS

        leaf, leaf_flat = chain[0]
        values = {k: merged[k] for k in TUNABLE_KEYS if k in merged}
        order = [k for k in TUNABLE_KEYS + META_KEYS if k in sources]
        return ResolvedProfile(
            name=name, path=leaf.path, display_path=leaf.display, chain=names,
            description=leaf_flat["description"], values=values,
            sources={k: sources[k] for k in order},
            requires={k: list(merged[f"requires.{k}"]) for k in _REQUIRES
                      if f"requires.{k}" in merged},
            restore_baseline=bool(leaf_flat.get("restore_baseline", False)),
            max_w=merged.get("power.max_w"), max_w_source=merged.get("power.max_w_source"),
            power_profile_required=bool(merged.get("gpu.power_profile_required", False)))


def _refusal(entry: _Entry) -> ProfileError:
    return ProfileError(entry.display, message=f"refused: {entry.untrusted}")


def _check_trusted(entry: _Entry, flat: dict) -> None:
    """Ownership rules of the file itself (see the module docstring)."""
    if entry.refused:
        raise _refusal(entry)
    max_w = flat.get("power.max_w")
    if entry.untrusted and isinstance(max_w, (int, float)) and max_w > limits.TDP_MAX_W:
        raise ProfileError(entry.display, "power.max_w", max_w, (
            f"a TDP ceiling above {format_value(limits.TDP_MAX_W)} W is accepted only from "
            "system configuration that root alone can change (the shipped profiles or "
            f"{DEFAULT_ADMIN_DIR}), and {entry.untrusted}"))


def _reader(path: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(path, "rb") as f:
            return f.read()
    return read


def _unknown(name: str, entries: dict) -> ProfileError:
    known = ", ".join(sorted(entries)) or "none"
    return ProfileError(None, message=f"no profile named {json.dumps(name)} (known: {known})",
                        profile=name)


_TOML_POS = re.compile(r"^(?P<reason>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$", re.S)


def _parse(entry: _Entry, cache: dict) -> dict:
    """One file: read, parse, validate. Returns its flat settings (see schema.validate_file)."""
    if entry.path in cache:
        return cache[entry.path]
    if entry.refused:
        raise _refusal(entry)
    try:
        raw = entry.read()
    except OSError as e:
        raise ProfileError(entry.display, message=f"cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProfileError(entry.display, message=f"not UTF-8 text (bad byte at offset "
                                                  f"{e.start})") from None
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ProfileError(entry.display, message="invalid TOML: nested too deeply") from None
    except ValueError as e:          # tomllib.TOMLDecodeError
        msg = str(e)
        m = _TOML_POS.match(msg)
        if m:
            line, col, reason = int(m["line"]), int(m["col"]), m["reason"]
        elif msg.endswith(" (at end of document)"):
            reason = msg[:-len(" (at end of document)")]
            line = text.count("\n") + 1
            col = len(text.rsplit("\n", 1)[-1]) + 1
        else:
            raise ProfileError(entry.display, message=f"invalid TOML: {msg}") from None
        raise ProfileError(entry.display, message=f"line {line}, column {col}: invalid TOML: "
                                                  f"{reason}", line=line, column=col) from None

    from halotune.tuning import schema

    try:
        flat = schema.validate_file(data)
    except schema.SchemaError as e:
        raise ProfileError(entry.display, e.key, e.value, e.message) from None
    if flat.get("restore_baseline"):
        for k, v in flat.items():
            if k not in ("description", "restore_baseline"):
                raise ProfileError(entry.display, k, v, "not allowed with restore_baseline = "
                                   "true (applying this profile rolls back to the machine's "
                                   "original values; it sets nothing else)")
    _check_trusted(entry, flat)
    cache[entry.path] = flat
    return flat


def _check_merged(m: dict, sources: dict, depth: dict) -> None:
    """Rules that involve several keys, on the merged profile, asked to the tunables that own
    them (check_profile_values: no machine is read). The error names the file that set the
    offending value (_FileBlame)."""
    fv = format_value

    def err(key: str, message: str) -> ProfileError:
        return ProfileError(sources[key], key, m[key], message)

    if "power.max_w" in m and "power.max_w_source" not in m:
        raise err("power.max_w", f"needs power.max_w_source (say where a limit above "
                                 f"{fv(limits.TDP_MAX_W)} W comes from)")
    # Every other rule lives once, in its tunable; the first problem in write order wins.
    from halotune.tuning.tunables import all_tunables

    rules = _FileBlame(sources, depth)
    for t in sorted(all_tunables(), key=lambda t: (t.apply_rank, t.name)):
        problems = t.check_profile_values(m, rules)
        if problems:
            raise err(problems[0].key, problems[0].message)


class _FileBlame:
    """Of two conflicting keys, the one set nearer the requested profile (the child) is
    blamed; on a tie, the first named. `where` names the other key's file when it differs."""

    def __init__(self, sources: dict, depth: dict):
        self.sources, self.depth = sources, depth

    def pick(self, a: str, b: str) -> str:
        return a if self.depth[self.sources[a]] <= self.depth[self.sources[b]] else b

    def where(self, other: str, blamed: str) -> str:
        src = self.sources[other]
        return "" if src == self.sources[blamed] else f", set in {src}"
