"""Fuzzing, campaign 2 of issue #8: tuning profiles (TOML) through the loader and the engine.

Every failure must be a clean ProfileError naming the file and, for a bad value, the key; never
another exception. Targets (the shipped profiles, loaded from an admin directory so inheritance
and cross-key rules run):
- one key of a shipped profile set to a value of the wrong TOML type, a path traversal or shell
  string, a non-finite or huge number, a date, an empty or nested table: the error must name
  exactly that key (`e.key`), and the message must carry it;
- the TOML text damaged at random (characters inserted, deleted, replaced; NUL, CR, Unicode,
  brackets and quotes): a ProfileError with a line and column, or one naming a key;
- plausible mutations (tests/tuning/test_profiles_fuzz.py's `mutate`) that often still resolve,
  then `halotune apply NAME --dry-run` on the simulated Strix Halo: the engine's planning and
  the hardware checks answer with exit 0/2/3 and a message, never a traceback.
Figure: inputs tried per target, crashes (0).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from halotune.tuning.loader import ProfileError, ProfileStore, ResolvedProfile
from tuning.test_profiles_fuzz import DOCS, NAMES, SHIPPED, mutate, toml_key, toml_value

from .conftest import Tally, fuzz_settings, record


class Raw(str):
    """A TOML value fragment written as it is."""


def value_text(v) -> str:
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {value_text(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(value_text(x) for x in v) + "]"
    return toml_value(v)


def dump(doc: dict) -> str:
    lines = [f"{toml_key(k)} = {value_text(v)}" for k, v in doc.items()
             if not isinstance(v, dict) or isinstance(v, Raw)]
    for k, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_key(k)}]")
            lines += [f"{toml_key(kk)} = {value_text(vv)}" for kk, vv in table.items()]
    return "\n".join(lines) + "\n"


# Key -> TOML type the schema wants.
TYPES = {
    "description": "str", "inherits": "str", "restore_baseline": "bool",
    "requires.gfx_target": "list", "requires.device_id": "list",
    "power.stapm_w": "float", "power.fast_w": "float", "power.slow_w": "float",
    "power.max_w": "float", "power.max_w_source": "str", "power.platform_profile": "str",
    "gpu.performance_level": "str", "gpu.sclk_min_mhz": "int", "gpu.sclk_max_mhz": "int",
    "gpu.power_profile": "str", "gpu.power_profile_required": "bool",
    "cpu.governor": "str", "cpu.epp": "str", "cpu.boost": "bool", "memory.gtt_gib": "float",
    "sysctl.vm.swappiness": "int", "sysctl.vm.compaction_proactiveness": "int",
    "sysctl.kernel.numa_balancing": "int", "thp.enabled": "str", "thp.defrag": "str",
}
FREE_TEXT = {"description", "power.max_w_source"}     # any one line is fine there

# (fragment, TOML type, "hostile": must be refused wherever a word or a number is wanted)
WEIRD = [
    ('"../../etc/passwd"', "str"), ('"/etc/passwd"', "str"), ('"..\\\\..\\\\boot.ini"', "str"),
    ('"$(reboot)"', "str"), ('"85;rm -rf /"', "str"), ('"`id`"', "str"), ('"a\\u0000b"', "str"),
    ('"performance\\n"', "str"), ('""', "str"), ('" "', "str"), ('"ünï"', "str"),
    ('"' + "x" * 5000 + '"', "str"), ('"--stapm-limit=1"', "str"), ('"120"', "str"),
    ("nan", "float"), ("+inf", "float"), ("-inf", "float"), ("1e309", "float"), ("-0.0", "float"),
    ("1e-320", "float"), ("120.0000000001", "float"), ("44.999", "float"),
    ("99999999999999999999999999", "int"), ("-9223372036854775808", "int"), ("0", "int"),
    ("-1", "int"), ("0x7fffffffffffffff", "int"), ("120", "int"),
    ("1979-05-27T07:32:00Z", "date"), ("1979-05-27", "date"), ("07:32:00", "date"),
    ("true", "bool"), ("false", "bool"),
    ("[]", "list"), ('["gfx1151", 1]', "list"), ("[[1]]", "list"), ('["../../x"]', "list"),
    ("{}", "table"), ("{a = 1}", "table"), ('{stapm_w = 85}', "table"),
]
HOSTILE_STR = {'"../../etc/passwd"', '"/etc/passwd"', '"..\\\\..\\\\boot.ini"', '"$(reboot)"',
               '"85;rm -rf /"', '"`id`"', '"a\\u0000b"', '"performance\\n"', '""', '" "',
               '"--stapm-limit=1"'}


def wrong_type(key: str, ftype: str) -> bool:
    want = TYPES[key]
    if want == ftype:
        return False
    return not (want == "float" and ftype == "int")


def _clean_error(e: ProfileError, path: str, starts: tuple) -> None:
    text = str(e)
    assert text.startswith(starts), text
    assert e.file, text
    if e.key is not None:
        assert e.key in text, text
    else:                     # no key: syntax, encoding or an unreadable file, located
        assert e.line is not None or "not UTF-8" in text or "invalid TOML" in text \
            or "cannot read" in text, text


@pytest.fixture
def admin(tmp_path):
    d = tmp_path / "admin"
    d.mkdir()
    return str(d)


def _load(admin: str, name: str, text: str | bytes):
    for f in os.listdir(admin):
        os.unlink(os.path.join(admin, f))
    path = os.path.join(admin, f"{name}.toml")
    with open(path, "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    starts = tuple([f"{path}: "] + [f"profiles/{n}.toml: " for n in NAMES])
    return path, starts


def _set(doc: dict, key: str, value) -> dict:
    doc = json.loads(json.dumps(doc))
    if key.count(".") == 0:
        doc[key] = value
    else:
        section, _, k = key.partition(".")
        if not isinstance(doc.get(section), dict):
            doc[section] = {}
        doc[section][k] = value
    return doc


def test_one_key_set_to_a_hostile_or_wrongly_typed_value(admin):
    t = Tally()

    @fuzz_settings()
    @given(name=st.sampled_from(NAMES), key=st.sampled_from(sorted(TYPES)),
           weird=st.sampled_from(WEIRD))
    def run(name, key, weird):
        fragment, ftype = weird
        if DOCS[name].get("restore_baseline") and key not in ("description",
                                                              "restore_baseline"):
            name = "llm-max"
        doc = _set(DOCS[name], key, Raw(fragment))
        path, starts = _load(admin, name, dump(doc))
        try:
            p = ProfileStore(admin, shipped_dir=SHIPPED).load(name)
        except ProfileError as e:
            _clean_error(e, path, starts)
            must_name = wrong_type(key, ftype) or (
                fragment in HOSTILE_STR and key not in FREE_TEXT and TYPES[key] == "str")
            if must_name:
                assert e.key == key, f"{key} = {fragment}: the error names {e.key!r}: {e}"
            t.hit("refused, names the key" if e.key == key else "refused (another rule)")
            return
        assert isinstance(p, ResolvedProfile)
        assert not wrong_type(key, ftype), f"{key} = {fragment} was accepted"
        if fragment in HOSTILE_STR and TYPES[key] == "str":
            assert key in FREE_TEXT, f"{key} = {fragment} was accepted"
        t.hit("resolved")

    run()
    record("fuzz: profile key with a hostile or wrongly typed value", **t.figures())


_JUNK = ["", "=", "[", "]", "[[", '"', "'", "\n", "{", "}", ",", "#", "\x00", "\r", "\\", ".",
         "é", "\ufeff", "\t", "true", "1", '"""', "'''", "[power]", "x = ", "\udcff"]


def test_toml_text_damaged_at_random(admin):
    t = Tally()

    @fuzz_settings()
    @given(name=st.sampled_from(NAMES), data=st.data())
    def run(name, data):
        with open(os.path.join(SHIPPED, f"{name}.toml"), encoding="utf-8") as f:
            text = f.read()
        for _ in range(data.draw(st.integers(1, 4), label="edits")):
            at = data.draw(st.integers(0, len(text)), label="at")
            cut = data.draw(st.integers(0, 4), label="cut")
            junk = data.draw(st.one_of(st.sampled_from(_JUNK), st.text(max_size=3)), label="junk")
            text = text[:at] + junk + text[at + cut:]
        raw = text.encode("utf-8", "surrogatepass")
        if data.draw(st.booleans(), label="binary"):
            at = data.draw(st.integers(0, len(raw)), label="byte at")
            raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=4)) + raw[at:]
        path, starts = _load(admin, name, raw)
        try:
            ProfileStore(admin, shipped_dir=SHIPPED).load(name)
            t.hit("resolved")
        except ProfileError as e:
            _clean_error(e, path, starts)
            t.hit("syntax (line, column)" if e.line else "names a key" if e.key
                  else "not UTF-8" if "not UTF-8" in str(e) else "other")

    run()
    record("fuzz: profile TOML text damaged", **t.figures())


def test_plausible_mutations_through_the_engine(admin, scratch, monkeypatch, no_daemon):
    from halotune.cli.main import main
    from halotune.machine import programs as _programs
    from halotune.sim.tree import lay_out
    from tuning.conftest import fast_run

    monkeypatch.setattr(_programs.Programs, "run", fast_run)
    root = os.path.join(scratch, "root")
    lay_out(root)
    state = os.path.join(scratch, "state")
    t = Tally()

    @fuzz_settings(ci=200, full=1000)
    @given(name=st.sampled_from(NAMES), data=st.data())
    def run(name, data):
        doc = mutate(data, DOCS[name])
        _load(admin, name, dump(doc))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["apply", name, "--dry-run", "--root", root, "--state-dir", state,
                       "--profiles-dir", admin])
        assert rc in (0, 2, 3), err.getvalue()
        stage = "engine" if "nothing was changed" in err.getvalue() or rc == 0 else "loader"
        if rc:
            lines = [ln for ln in err.getvalue().split("\n") if ln.strip()]
            assert lines and all(ln.startswith("halotune: ") for ln in lines), err.getvalue()
            assert not re.search(r"Traceback|Error:", err.getvalue()), err.getvalue()
        t.hit(f"{stage}: exit {rc}")

    run()
    record("fuzz: mutated profiles -> apply --dry-run (engine)", **t.figures())


def test_error_messages_carry_no_control_characters(admin):
    path, _ = _load(admin, "t", 'description = "t"\n[memory]\n"\\u001b[2Jevil\\r" = 0\n')
    with pytest.raises(ProfileError) as e:
        ProfileStore(admin, shipped_dir=SHIPPED).load("t")
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", str(e.value)), repr(str(e.value))
