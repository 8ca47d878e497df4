"""[validate] tables: schema refusals naming file and key, and verdicts with numbers."""

import pytest

from halotune.tuning.loader import ProfileError, ProfileStore
from halotune.validation.expectations import Expectation, evaluate, expectations_of, overall
from halotune.validation.validate import select

from .conftest import write_profile


def exp(key, value, rel=None):
    return Expectation(key, value, rel, "x.toml")


MEASURED = {"a": {"tg_tps": 95.0, "pp_tps": 800.0, "avg_power_w": 70.0, "tg_cv_percent": 1.5},
            "ref": {"tg_tps": 100.0, "pp_tps": 900.0, "avg_power_w": 100.0}}


@pytest.mark.parametrize("e, verdict, measured, words", [
    (exp("min_tg_ratio", 0.95, "ref"), "pass", 0.95, ["95.0 t/s is 0.950 x ref's 100.0 t/s",
                                                       "at least 0.95 x wanted"]),
    (exp("min_tg_ratio", 0.96, "ref"), "fail", 0.95, ["0.950 x ref's", "at least 0.96"]),
    (exp("max_power_ratio", 0.7, "ref"), "pass", 0.7, ["70.0 W is 0.700 x ref's 100.0 W"]),
    (exp("max_power_ratio", 0.6, "ref"), "fail", 0.7, ["at most 0.6 x wanted"]),
    (exp("max_avg_power_w", 69.5), "fail", 70.0, ["average power 70.0 W; at most 69.5 W"]),
    (exp("max_avg_power_w", 90), "pass", 70.0, ["at most 90.0 W wanted"]),
    (exp("min_tg_tps", 96), "fail", 95.0, ["tg 95.0 t/s; at least 96.0 t/s wanted"]),
    (exp("min_pp_tps", 700), "pass", 800.0, ["pp 800.0 t/s"]),
    (exp("max_tg_cv_percent", 1.0), "fail", 1.5, ["tg CV 1.50 %; at most 1.00 % wanted"]),
])
def test_verdicts_carry_the_numbers(e, verdict, measured, words):
    v = evaluate(e, "a", MEASURED)
    assert v["verdict"] == verdict, v
    assert v["measured"] == pytest.approx(measured)
    for w in words:
        assert w in v["message"], v["message"]
    if e.relative_to:
        assert v["reference"] == {"profile": "ref", "value": MEASURED["ref"][
            "avg_power_w" if "power" in e.key else "tg_tps"]}


def test_unmeasured_is_unknown_never_pass():
    m = {"a": {"tg_tps": 95.0, "avg_power_w": None, "power_null_reason": "no AMD GPU"},
         "ref": None}
    v = evaluate(exp("max_avg_power_w", 90), "a", m)
    assert v["verdict"] == "unknown" and "no AMD GPU" in v["message"]
    v = evaluate(exp("min_tg_ratio", 0.9, "ref"), "a", m)
    assert v["verdict"] == "unknown" and "ref was not measured" in v["message"]
    v = evaluate(exp("min_tg_tps", 1), "b", m)
    assert v["verdict"] == "unknown" and "no successful run" in v["message"]
    assert overall([]) == "no_expectations"
    assert overall([{"verdict": "pass"}, {"verdict": "unknown"}]) == "unknown"
    assert overall([{"verdict": "fail"}, {"verdict": "unknown"}]) == "fail"


def test_shipped_expectations_and_no_inheritance(tmp_path):
    d = str(tmp_path / "p")
    write_profile(d, "child", 'description = "a child"\ninherits = "llm-efficient"\n')
    store = ProfileStore(d)
    e = {x.key: x for x in expectations_of(store.load("llm-efficient"))}
    assert e["min_tg_ratio"].expected == 0.95 and e["min_tg_ratio"].relative_to == "llm-max"
    assert e["max_avg_power_w"].relative_to is None
    assert e["min_tg_ratio"].source == "profiles/llm-efficient.toml"
    assert expectations_of(store.load("child")) == []       # claims are not inherited
    assert expectations_of(store.load("stock")) == []
    profiles, requested, exps = select(store, ["llm-efficient"], False)
    assert [p.name for p in profiles] == ["llm-efficient", "llm-max"]   # reference added
    assert requested == ["llm-efficient"]


@pytest.mark.parametrize("table, message", [
    ("[validate]\nmin_tg_ratio = 0.9\nrelative_too = \"llm-max\"\n",
     "validate.relative_too = \"llm-max\": unknown key (known: min_tg_ratio, max_power_ratio, "
     "relative_to, max_avg_power_w, min_tg_tps, min_pp_tps, max_tg_cv_percent)"),
    ("[validate]\nmin_tg_ratio = 2.5\nrelative_to = \"llm-max\"\n",
     "validate.min_tg_ratio = 2.5: must be between 0 and 2"),
    ("[validate]\nmin_tg_ratio = 0.9\n",
     "validate.min_tg_ratio = 0.9: needs validate.relative_to"),
    ("[validate]\nmax_avg_power_w = -3\n", "validate.max_avg_power_w = -3: must be greater than 0"),
    ("[validate]\nmin_tg_tps = \"fast\"\n",
     "validate.min_tg_tps = \"fast\": expected a number (tokens/s)"),
])
def test_schema_refusals_name_file_and_key(tmp_path, table, message):
    d = str(tmp_path / "p")
    write_profile(d, "bad", 'description = "x"\ninherits = "llm-max"\n' + table)
    with pytest.raises(ProfileError) as ei:
        ProfileStore(d).load("bad")
    assert str(ei.value).startswith(f"{d}/bad.toml: {message}"), str(ei.value)


@pytest.mark.parametrize("rel, message", [
    ("nope", 'validate.relative_to = "nope": no such profile (known: '),
    ("self", 'validate.relative_to = "self": must name another profile'),
])
def test_relative_to_must_name_another_profile(tmp_path, rel, message):
    d = str(tmp_path / "p")
    write_profile(d, "self", 'description = "x"\ninherits = "llm-max"\n[validate]\n'
                             f'min_tg_ratio = 0.9\nrelative_to = "{rel}"\n')
    with pytest.raises(ProfileError) as ei:
        select(ProfileStore(d), ["self"], False)
    assert str(ei.value).startswith(f"{d}/self.toml: {message}"), str(ei.value)
