"""`halotune validate` on the simulated machine, probe backend "simulated" (labelled so)."""

import json

import pytest

from halotune.machine.rootfs import RootFS
from halotune.tuning.loader import ProfileStore
from halotune.validation.appliers import EngineApplier
from halotune.validation.measure import make_prober
from halotune.validation.settle import SettleConfig, settle
from halotune.validation.validate import ValidationError, run_validation, select

from .conftest import PROBE_ARGS, differences, machine_state, write_profile

TOP_KEYS = ["schema", "time", "backend", "channel", "rounds", "order", "profiles", "best",
            "restored", "aborted", "model", "fingerprint", "duration_s", "ok", "summary",
            "warnings"]
PROFILE_KEYS = ["name", "description", "source", "requested", "verdict", "error", "tg_tps",
                "pp_tps", "depth_tps", "depth_test", "tg_test", "pp_test", "tg_cv_percent",
                "avg_power_w", "tg_avg_power_w", "joules_per_token", "tg_efficiency", "tests",
                "expectations", "runs", "history"]
EXPECTATION_KEYS = ["key", "expected", "relative_to", "measured", "reference", "verdict",
                    "message", "source"]
RUN_KEYS = ["index", "round", "apply", "settle", "probe", "rollback", "error"]
TEST_KEYS = ["name", "n_prompt", "n_gen", "n_depth", "tokens_per_s", "stddev", "cv_percent",
             "samples", "joules_per_token", "avg_power_w"]


def test_validate_all_prints_the_table_and_rolls_back(run_cli, sim_root):
    before = machine_state(sim_root)
    rc, out, err = run_cli("validate", "--all", "--root", sim_root, *PROBE_ARGS)
    assert rc == 0, err
    assert differences(before, machine_state(sim_root)) == []
    names = sorted(ProfileStore().names())
    lines = out.splitlines()
    assert lines[0] == (f"validate: {len(names)} profile(s) x 2 round(s), backend simulated, "
                        "through the engine")
    assert lines[1] == "order: " + " ".join(names * 2)       # A B A B
    head = lines[3]
    for col in ("profile", "tg16 t/s", "pp64 t/s", "tg16 @ d256 t/s", "W", "J/token",
                "roofline", "verdict"):
        assert col in head
    rows = {line.split()[0]: line for line in lines[5:5 + len(names)]}
    assert sorted(rows) == names
    assert "50.0*" in rows["quiet"] and "no expectations" in rows["llm-max"]
    assert rows["llm-efficient"].endswith("pass")
    assert "* best in its column" in out
    assert "PASS    min_tg_ratio: tg " in out and "x llm-max's" in out
    assert "PASS    max_avg_power_w: average power 85.0 W; at most 90.0 W wanted" in out
    assert "machine rolled back to its original values" in out
    assert "recorded in history: " in out
    progress = [line for line in err.splitlines() if "rolled back" in line]
    assert [line.split(", ")[1].split(":")[0] for line in progress] == names * 2


def test_validate_json_contract(run_cli, sim_root):
    before = machine_state(sim_root)
    rc, out, err = run_cli("validate", "quiet", "llm-efficient", "--root", sim_root, "--json",
                           *PROBE_ARGS)
    assert rc == 0, err
    assert err == ""                                       # no progress with --json
    assert differences(before, machine_state(sim_root)) == []
    doc = json.loads(out)
    assert list(doc) == TOP_KEYS
    assert doc["schema"] == "halotune.validate/1"
    assert doc["backend"] == "simulated" and doc["channel"] == "engine"
    assert [p["name"] for p in doc["profiles"]] == ["quiet", "llm-efficient", "llm-max"]
    assert [p["requested"] for p in doc["profiles"]] == [True, True, False]
    assert [s["profile"] for s in doc["order"]] == ["quiet", "llm-efficient", "llm-max"] * 2
    assert [s["round"] for s in doc["order"]] == [1, 1, 1, 2, 2, 2]
    for p in doc["profiles"]:
        assert list(p) == PROFILE_KEYS
        assert [list(t)[:len(TEST_KEYS)] for t in p["tests"]] == [TEST_KEYS] * 3
        assert all(t["rounds"] == 2 for t in p["tests"])
        assert all(list(r) == RUN_KEYS for r in p["runs"])
        assert all(list(e) == EXPECTATION_KEYS for e in p["expectations"])
        assert p["history"]["run_id"] is not None
        assert len(p["runs"]) == 2 and all(r["rollback"]["ok"] for r in p["runs"])
        assert all(r["settle"]["settled"] for r in p["runs"])
    by = {p["name"]: p for p in doc["profiles"]}
    ratio = next(e for e in by["llm-efficient"]["expectations"] if e["key"] == "min_tg_ratio")
    assert ratio["reference"]["profile"] == "llm-max" and 0.95 <= ratio["measured"] <= 1.01
    assert ratio["verdict"] == "pass"
    assert by["quiet"]["avg_power_w"] < by["llm-efficient"]["avg_power_w"] \
        < by["llm-max"]["avg_power_w"]
    assert doc["best"]["avg_power_w"] == ["quiet"] and doc["best"]["tg_tps"] == ["llm-max"]
    assert doc["restored"] == {"action": "rolled_back", "profile": None, "ok": True,
                               "summary": "the machine has its original values"}
    assert doc["aborted"] is None and doc["ok"] is True
    assert doc["summary"] == ("2 round(s): quiet pass, llm-efficient pass, llm-max no "
                              "expectations; machine rolled back to its original values")
    assert doc["fingerprint"]["schema"] == "halotune.fingerprint/1"


def test_failing_expectations_exit_2_with_numbers(run_cli, sim_root, tmp_path):
    d = str(tmp_path / "profiles")
    write_profile(d, "greedy", 'description = "claims too much"\ninherits = "llm-efficient"\n'
                               '[validate]\nmin_tg_ratio = 1.5\nrelative_to = "llm-max"\n'
                               'max_avg_power_w = 10\n')
    before = machine_state(sim_root)
    rc, out, err = run_cli("validate", "greedy", "--root", sim_root, "--profiles-dir", d,
                           "--rounds", "1", "--no-record", *PROBE_ARGS)
    assert rc == 2, err
    assert differences(before, machine_state(sim_root)) == []
    assert "greedy: fail" in out
    assert "FAIL    min_tg_ratio: tg " in out and "x llm-max's" in out and \
        "at least 1.5 x wanted" in out
    assert "FAIL    max_avg_power_w: average power 85.0 W; at most 10.0 W wanted" in out
    assert "greedy" in out and "llm-max (ref)" in out
    assert "[1/2] round 1, greedy: apply, settle, probe" in err


def _setup(sim_root, engine, names, profiles_dir=None):
    store = ProfileStore(profiles_dir)
    profiles, requested, exps = select(store, names, False)
    fs = RootFS(sim_root)
    cfg = SettleConfig.for_machine(fs, 0.5)
    return store, profiles, requested, exps, (lambda: settle(fs, cfg))


class Boom(RuntimeError):
    pass


def test_probe_that_raises_mid_run_still_rolls_back(venv, sim_root, engine):
    from halotune.probe.runner import ProbeOptions

    store, profiles, requested, exps, settler = _setup(sim_root, engine, ["quiet"])
    before = machine_state(sim_root)
    real = make_prober(ProbeOptions(root=sim_root, backend="simulated", preset="ci",
                                    budget_s=5))
    calls = []

    def probe(name):
        calls.append(name)
        if len(calls) == 2:            # the second run, with its profile applied, crashes
            assert engine.verify().profile == name
            raise Boom("the probe crashed")
        return real(name)

    with pytest.raises(Boom):
        run_validation(profiles, requested, exps, applier=EngineApplier(engine), probe=probe,
                       settle=settler, rounds=2, store=store)
    assert calls == ["quiet", "llm-max"]
    assert differences(before, machine_state(sim_root)) == []
    journal = engine.state.load(sim_root)
    assert journal.active is None and journal.txn is None and not journal.baseline


def test_failed_probe_is_reported_and_the_rest_goes_on(venv, sim_root, engine):
    from halotune.probe.backends.base import BackendError
    from halotune.probe.backends.simulated import SimulatedBackend
    from halotune.probe.runner import ProbeOptions

    class Flaky(SimulatedBackend):
        """Fails in the middle of its first measurement series."""
        n = 0

        def measure(self, test, reps, warmup):
            Flaky.n += 1
            if Flaky.n == 3:
                raise BackendError("llama.cpp stopped: out of memory (simulated)")
            return super().measure(test, reps, warmup)

    store, profiles, requested, exps, settler = _setup(sim_root, engine, ["llm-efficient"])
    before = machine_state(sim_root)
    flaky = make_prober(ProbeOptions(root=sim_root, backend="simulated", preset="ci",
                                     budget_s=5, backend_obj=Flaky(RootFS(sim_root))))
    doc, docs = run_validation(profiles, requested, exps, applier=EngineApplier(engine),
                               probe=flaky, settle=settler, rounds=2, store=store)
    assert differences(before, machine_state(sim_root)) == []
    eff = doc["profiles"][0]
    assert eff["runs"][0]["error"] == "probe: llama.cpp stopped: out of memory (simulated)"
    assert eff["runs"][0]["rollback"]["ok"] and eff["runs"][1]["error"] is None
    assert eff["verdict"] == "pass"          # measured in round 2
    assert eff["error"].startswith("probe: ") and doc["ok"] is False
    assert len(docs["llm-efficient"]) == 1 and len(docs["llm-max"]) == 2


def test_profile_active_before_is_applied_again(venv, sim_root, engine):
    from halotune.probe.runner import ProbeOptions

    store, profiles, requested, exps, settler = _setup(sim_root, engine, ["llm-max"])
    assert engine.apply(store.load("quiet")).ok
    with_quiet = machine_state(sim_root)
    doc, _ = run_validation(profiles, requested, exps, applier=EngineApplier(engine),
                            probe=make_prober(ProbeOptions(root=sim_root, backend="simulated",
                                                           preset="ci", budget_s=5)),
                            settle=settler, rounds=1, store=store)
    assert doc["restored"]["action"] == "reapplied" and doc["restored"]["profile"] == "quiet"
    assert engine.verify().profile == "quiet"
    assert differences(with_quiet, machine_state(sim_root)) == []
    assert engine.rollback().ok


def test_pending_confirm_refused_before_any_change(venv, sim_root, engine):
    store, profiles, requested, exps, settler = _setup(sim_root, engine, ["llm-max"])
    engine.apply(store.load("quiet"), confirm_s=600)
    state = machine_state(sim_root)
    with pytest.raises(ValidationError, match="quiet waits for `halotune confirm`"):
        run_validation(profiles, requested, exps, applier=EngineApplier(engine),
                       probe=lambda n: pytest.fail("probed"), settle=settler, store=store)
    assert differences(state, machine_state(sim_root)) == []
    engine.rollback()


def test_usage_and_profile_errors(run_cli, sim_root):
    rc, _, err = run_cli("validate", "--root", sim_root)
    assert rc == 64 and "name at least one profile" in err
    rc, _, err = run_cli("validate", "llm-max", "--all", "--root", sim_root)
    assert rc == 64
    rc, _, err = run_cli("validate", "nope", "--root", sim_root, *PROBE_ARGS)
    assert rc == 2 and 'no profile named "nope"' in err
    rc, _, err = run_cli("validate", "llm-max", "--root", sim_root, "--rounds", "0")
    assert rc == 64 and "--rounds" in err


def test_profile_for_other_hardware_refused_before_any_change(run_cli, sim_root, tmp_path):
    d = str(tmp_path / "profiles")
    write_profile(d, "navi", 'description = "for a Navi 31"\n[requires]\n'
                             'gfx_target = ["gfx1100"]\n[power]\nstapm_w = 60\n')
    before = machine_state(sim_root)
    rc, out, err = run_cli("validate", "llm-max", "navi", "--root", sim_root, "--profiles-dir", d,
                           *PROBE_ARGS)
    assert rc == 2 and out == ""
    assert f'{d}/navi.toml: requires.gfx_target = ["gfx1100"]: this machine has gfx1151' in err
    assert "nothing was changed" in err and "apply, settle, probe" not in err
    assert differences(before, machine_state(sim_root)) == []
