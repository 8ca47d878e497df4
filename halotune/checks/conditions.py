"""The condition vocabulary of doctor.toml: each key of an entry's `when`/`unless` table names
one function here, its value is the argument.

A condition answers True (holds), False (does not) or None (cannot tell on this machine: no
package manager, no group file, ...), with a short text saying what it saw. Adding a kind of
condition is adding one function with @condition(name, argument type).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from halotune.checks.facts import Facts

GIB = 1 << 30


@dataclass
class Verdict:
    holds: bool | None
    detail: str


@dataclass
class Condition:
    name: str
    arg: str            # "str", "strs" (a string or a list of strings), "number", "table", "tables"
    fn: Callable[[Facts, object], Verdict]
    keys: tuple[str, ...] = ()      # for "table": the keys it takes


CONDITIONS: dict[str, Condition] = {}


def condition(name: str, arg: str, keys: tuple[str, ...] = ()):
    def register(fn):
        CONDITIONS[name] = Condition(name, arg, fn, keys)
        return fn
    return register


def _list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    """"6.17.0-5-generic" -> (6, 17, 0); "6.18.4-200.fc43.x86_64" -> (6, 18, 4)."""
    m = re.match(r"^(\d+(?:\.\d+)*)", text or "")
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def evaluate(facts: Facts, name: str, arg) -> Verdict:
    return CONDITIONS[name].fn(facts, arg)


# --- GPU and kernel ---------------------------------------------------------------------------

@condition("gfx_target", "strs")
def gfx_target(facts, arg) -> Verdict:
    g = facts.snapshot.primary_gpu
    if g is None:
        return Verdict(False, "no AMD GPU")
    if g.gfx_target is None:
        return Verdict(None, f"GPU {g.device_id or g.name}: gfx target unknown")
    return Verdict(g.gfx_target in _list(arg), f"GPU {g.gfx_target}")


@condition("kernel_older_than", "str")
def kernel_older_than(facts, arg) -> Verdict:
    release = facts.snapshot.kernel_release
    have, want = version_tuple(release), version_tuple(arg)
    if have is None or want is None:
        return Verdict(None, f"kernel release {release!r} not understood")
    n = max(len(have), len(want))
    have, want = have + (0,) * (n - len(have)), want + (0,) * (n - len(want))
    older = have < want
    return Verdict(older, f"kernel {release}" + (f" (older than {arg})" if older else ""))


@condition("kfd_properties_present", "strs")
def kfd_properties_present(facts, arg) -> Verdict:
    nodes = facts.kfd_nodes
    names = _list(arg)
    if not nodes:
        return Verdict(None, "no KFD GPU node (amdgpu's KFD not loaded)")
    missing = sorted({n for node in nodes for n in names if n not in node})
    if missing:
        return Verdict(False, f"KFD topology lacks {', '.join(missing)}")
    return Verdict(True, f"KFD topology has {', '.join(names)}")


@condition("cmdline_has", "strs")
def cmdline_has(facts, arg) -> Verdict:
    if not facts.cmdline_readable:
        return Verdict(None, "kernel command line not readable")
    found = []
    for word in _list(arg):
        key, sep, value = word.partition("=")
        key = key.replace("-", "_")
        if key in facts.cmdline and (not sep or facts.cmdline[key] == value):
            have = facts.cmdline[key]
            found.append(f"{key}={have}" if have else key)
    if found:
        return Verdict(True, f"kernel command line has {', '.join(found)}")
    return Verdict(False, f"kernel command line has none of {', '.join(_list(arg))}")


@condition("module_param_configured", "strs")
def module_param_configured(facts, arg) -> Verdict:
    from halotune.machine.modprobe import configured

    found = []
    for name in _list(arg):
        module, _, param = name.partition(".")
        found += [f"{o.module}.{o.param}={o.value} ({o.where})"
                  for o in configured(facts.fs, module, param)]
    if found:
        return Verdict(True, "; ".join(found))
    return Verdict(False, f"{', '.join(_list(arg))} not set (command line, modprobe.d)")


@condition("module_param_not", "table", ("param", "value"))
def module_param_not(facts, arg) -> Verdict:
    module, _, param = str(arg["param"]).partition(".")
    rel = f"sys/module/{module}/parameters/{param}"
    value = facts.fs.read_text(rel)
    if value is None:
        why = facts.fs.last_errors.get(rel, "ENOENT")
        if why in ("EACCES", "EPERM"):
            return Verdict(None, f"/{rel} is readable by root only")
        return Verdict(False, f"{module}.{param} not present (module not loaded)")
    return Verdict(value != str(arg["value"]), f"{module}.{param} is {value}")


@condition("module_loaded", "strs")
def module_loaded(facts, arg) -> Verdict:
    found = [m for m in _list(arg) if facts.fs.isdir(f"sys/module/{m}")]
    if found:
        return Verdict(True, f"module {', '.join(found)} loaded")
    return Verdict(False, f"module {', '.join(_list(arg))} not loaded")


# --- packages, processes, files ---------------------------------------------------------------

@condition("package_installed", "strs")
def package_installed(facts, arg) -> Verdict:
    if not facts.package_manager:
        return Verdict(None, "no package manager (dpkg-query, rpm, pacman) to ask")
    found = [f"{n} {facts.package(n)}" for n in _list(arg) if facts.package(n)]
    if found:
        return Verdict(True, f"package {', '.join(found)} installed")
    return Verdict(False, f"{', '.join(_list(arg))} not installed")


@condition("package_version_matches", "table", ("names", "regex"))
def package_version_matches(facts, arg) -> Verdict:
    if not facts.package_manager:
        return Verdict(None, "no package manager (dpkg-query, rpm, pacman) to ask")
    names = _list(arg["names"])
    for n in names:
        version = facts.package(n)
        if version:
            hit = re.search(str(arg["regex"]), version) is not None
            return Verdict(hit, f"package {n} {version}")
    return Verdict(False, f"none of {', '.join(names)} installed")


@condition("process_running", "strs")
def process_running(facts, arg) -> Verdict:
    found = sorted((p for p in facts.processes.values() if any(p.matches(a) for a in _list(arg))),
                   key=lambda p: p.pid)
    if found:
        return Verdict(True, "running: " + ", ".join(p.describe() for p in found))
    return Verdict(False, f"none of {', '.join(_list(arg))} running")


@condition("path_exists", "strs")
def path_exists(facts, arg) -> Verdict:
    found = [m for pattern in _list(arg) for m in facts.fs.glob(pattern)]
    if found:
        return Verdict(True, "found " + ", ".join("/" + f for f in found[:3])
                       + (f" (+{len(found) - 3})" if len(found) > 3 else ""))
    return Verdict(False, "none of " + ", ".join("/" + p for p in _list(arg)))


@condition("file_contains", "table", ("paths", "text"))
def file_contains(facts, arg) -> Verdict:
    found = []
    for pattern in _list(arg["paths"]):
        for rel in facts.fs.glob(pattern):
            raw = facts.fs.read_bytes(rel, 1 << 16)
            if raw is not None and str(arg["text"]).encode() in raw:
                found.append("/" + rel)
    if found:
        return Verdict(True, f"{arg['text']} in {', '.join(found)}")
    return Verdict(False, f"{arg['text']} in none of {', '.join(_list(arg['paths']))}")


@condition("env_set", "strs")
def env_set(facts, arg) -> Verdict:
    found = [f"{n}={facts.environment[n][0]} ({facts.environment[n][1]})"
             for n in _list(arg) if n in facts.environment]
    if found:
        return Verdict(True, "; ".join(found))
    return Verdict(False, f"{', '.join(_list(arg))} not set")


# --- users and devices ------------------------------------------------------------------------

@condition("group_missing", "strs")
def group_missing(facts, arg) -> Verdict:
    user = facts.user
    if user is None:
        return Verdict(None, facts.no_user_reason)
    existing = facts.group_names
    if existing is None:
        return Verdict(None, "no group database under the root")
    wanted = [g for g in _list(arg) if g in existing]
    missing = [g for g in wanted if g not in user.groups]
    if missing:
        return Verdict(True, f"user {user.name} is not in {', '.join(missing)}")
    return Verdict(False, f"user {user.name} is in {', '.join(wanted) or 'the groups'}")


@condition("device_inaccessible", "str")
def device_inaccessible(facts, arg) -> Verdict:
    from halotune.machine.groups import device_access

    rel = str(arg).lstrip("/")
    if not facts.fs.isdir(rel.rsplit("/", 1)[0] if "/" in rel else "."):
        return Verdict(None, f"no /{rel.rsplit('/', 1)[0]} under the root")
    user = facts.user
    if user is None:
        return Verdict(None, facts.no_user_reason)
    acc = device_access(facts.fs, rel, user)
    if acc is None:
        return Verdict(False, f"/{rel} does not exist")
    who = f"mode {acc.mode}, group {acc.group or acc.group_gid}"
    if acc.read_write:
        return Verdict(False, f"/{rel} ({who}) is usable by {user.name}")
    return Verdict(True, f"/{rel} ({who}) cannot be opened read-write by {user.name}")


# --- memory -----------------------------------------------------------------------------------

@condition("ram_at_least_gib", "number")
def ram_at_least_gib(facts, arg) -> Verdict:
    total = facts.snapshot.memory.system_total_bytes
    if total is None:
        return Verdict(None, "MemTotal not readable")
    # MemTotal excludes the carve-out and firmware reservations: 128 GB reads ~125 GiB.
    return Verdict(total >= float(arg) * GIB, f"{total / GIB:.0f} GiB RAM")


@condition("gtt_at_most_ram_fraction", "number")
def gtt_at_most_ram_fraction(facts, arg) -> Verdict:
    g = facts.snapshot.primary_gpu
    total = facts.snapshot.memory.system_total_bytes
    if g is None or g.gtt_total_bytes is None or not total:
        return Verdict(None, "GTT size not readable")
    share = g.gtt_total_bytes / total
    return Verdict(share <= float(arg), f"GTT {g.gtt_total_bytes / GIB:.1f} GiB = {share:.0%} "
                                        f"of {total / GIB:.0f} GiB RAM")


# --- composition ------------------------------------------------------------------------------

@condition("any_of", "tables")
def any_of(facts, arg) -> Verdict:
    verdicts = [evaluate(facts, name, value) for table in arg for name, value in table.items()]
    hits = [v.detail for v in verdicts if v.holds]
    if hits:
        return Verdict(True, "; ".join(hits))
    unknown = [v.detail for v in verdicts if v.holds is None]
    if unknown:
        return Verdict(None, "; ".join(unknown))
    return Verdict(False, "; ".join(v.detail for v in verdicts))
