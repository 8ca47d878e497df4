"""The tuning commands as a user meets them: exit codes, --json, the profiles views, refusals
that leave the machine byte-identical, confirm-or-revert, the one-writer lock, recover, the
state directory, an unavailable RyzenAdj, and the root check on a real "/"."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import threading
import time

import pytest

from halotune.machine.rootfs import RootFS
from halotune.tuning.journal import StateDir

from .conftest import (assert_same_tree, drop_ttm_from_cmdline, read_file, read_journal,
                       run_killed, tdp_state, tree_snapshot, write_profile, writes)


@pytest.fixture
def common(sim_root, state_dir):
    return ["--root", sim_root, "--state-dir", state_dir]


# --- exit codes ----------------------------------------------------------------------------------

def test_exit_0_and_the_tables(sim_root, common, run_cli, fast_ryzenadj):
    r = run_cli("apply", "llm-max", *common)
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert lines[0] == "halotune apply: llm-max"
    assert lines[1].split() == ["KEY", "BEFORE", "TARGET", "NOW"]
    row = next(line for line in lines if line.strip().startswith("sysctl.vm.swappiness"))
    assert row.split() == ["sysctl.vm.swappiness", "60", "10", "10", "ok"]
    assert lines[-1] == "llm-max applied: 4 value(s) changed, all verified"
    r = run_cli("rollback", *common)
    assert r.rc == 0, r
    row = next(line for line in r.out.splitlines() if "sysctl.vm.swappiness" in line)
    assert row.split() == ["sysctl.vm.swappiness", "10", "60", "60", "restored"]
    assert r.out.splitlines()[-1] == "original values restored and verified"


def test_exit_2_on_drift_listed_by_verify(sim_root, common, run_cli, fast_ryzenadj):
    assert run_cli("apply", "llm-max", *common).rc == 0
    fs = RootFS(sim_root)
    fs.write_text("proc/sys/vm/swappiness", "35")          # another tool
    with contextlib.redirect_stdout(io.StringIO()):         # and another one, via RyzenAdj
        from halotune.sim import ryzenadj
        assert ryzenadj.main(["--fast-limit=100000"], sim_root) == 0
    n = len(writes(sim_root))
    r = run_cli("verify", *common)
    assert r.rc == 2, r
    drift = {line.split()[0] for line in r.out.splitlines() if "DRIFT" in line}
    assert drift == {"sysctl.vm.swappiness", "power.fast_w"}, r.out
    assert "2 value(s) drifted" in r.out and "sysctl.vm.swappiness" in r.out.splitlines()[-1]
    assert len(writes(sim_root)) == n, "verify wrote"
    j = run_cli("verify", "--json", *common)
    assert j.rc == 2
    rows = {row["key"]: row for row in j.json()["rows"]}
    assert rows["sysctl.vm.swappiness"]["status"] == "drift"
    assert rows["sysctl.vm.swappiness"]["after"] == "35"
    assert rows["power.fast_w"]["after"] == "100 W"
    # a rollback restores the originals whatever the drift
    assert run_cli("rollback", *common).rc == 0
    assert read_file(sim_root, "proc/sys/vm/swappiness") == "60\n"


def test_exit_3_without_an_amd_gpu(empty_root, tmp_path, run_cli):
    state = str(tmp_path / "st")
    for extra in ([], ["--dry-run"]):
        r = run_cli("apply", "llm-max", "--root", empty_root, "--state-dir", state, *extra)
        assert r.rc == 3, r
        assert "profiles/llm-max.toml: requires.gfx_target" in r.err
        assert "gfx1151" in r.err
    assert os.listdir(empty_root) == [] and not os.path.exists(state)


@pytest.mark.parametrize("args", [["apply"], ["apply", "llm-max", "--confirm", "soon"],
                                  ["rollback", "--bogus"], ["verify", "extra"], [],
                                  ["recover", "--resume=yes"], ["profiles", "nope"]],
                         ids=lambda a: " ".join(a) or "(none)")
def test_exit_64_on_usage_errors(args, run_cli):
    r = run_cli(*args)
    assert r.rc == 64, r


# --- refusals leave the machine byte-identical ---------------------------------------------------

REFUSED = {
    "turbo": ('description = "t"\n[power]\nplatform_profile = "turbo"\n',
              ': power.platform_profile = "turbo": must be one of low-power, balanced, '
              "performance (sys/firmware/acpi/platform_profile_choices)"),
    "gov-epp": ('description = "t"\n[cpu]\ngovernor = "performance"\nepp = "power"\n',
                ': cpu.epp = "power": the performance governor accepts only "performance" '
                '(cpu.governor = "performance")'),
    "schedutil": ('description = "t"\n[cpu]\ngovernor = "schedutil"\n',
                  ': cpu.governor = "schedutil": must be one of performance, powersave'),
    "sclk": ('description = "t"\n[gpu]\nperformance_level = "manual"\nsclk_max_mhz = 3100\n',
             ": gpu.sclk_max_mhz = 3100: must be between 600 and 2900 (OD_RANGE of "
             "pp_od_clk_voltage)"),
    "sclk-auto": ('description = "t"\n[gpu]\nsclk_max_mhz = 2000\n',
                  ': gpu.sclk_max_mhz = 2000: needs gpu.performance_level = "manual" (it is '
                  "not set)"),
    "tdp": ('description = "t"\n[power]\nstapm_w = 150\n',
            ": power.stapm_w = 150: must be between 45 and 120"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_profile_names_file_key_value_and_leaves_no_trace(
        name, sim_root, common, profiles_dir, run_cli):
    text, message = REFUSED[name]
    path = write_profile(profiles_dir, name, text)
    before = tree_snapshot(sim_root)
    r = run_cli("apply", name, *common, "--profiles-dir", profiles_dir)
    assert r.rc == 2, r
    assert f"halotune: {path}{message}" in r.err, r.err
    if name in ("turbo", "schedutil", "sclk"):      # refused by the engine, against the machine
        assert r.err.splitlines()[-1] == "halotune: nothing was changed"
    assert writes(sim_root) == []
    assert_same_tree(before, sim_root, f"refused {name}")


def test_gtt_over_90_percent_refused_then_forced(sim_root, state_dir, common, profiles_dir,
                                                 run_cli, fast_ryzenadj):
    drop_ttm_from_cmdline(sim_root)
    path = write_profile(profiles_dir, "huge", 'description = "t"\n[memory]\ngtt_gib = 118\n')
    before = tree_snapshot(sim_root)
    r = run_cli("apply", "huge", *common, "--profiles-dir", profiles_dir)
    assert r.rc == 2, r
    assert (f"halotune: {path}: memory.gtt_gib = 118: is more than 90% of MemTotal (125.6 GiB): "
            "the OS would be starved; use --force to override") in r.err
    assert_same_tree(before, sim_root, "gtt refused")
    r = run_cli("apply", "huge", *common, "--profiles-dir", profiles_dir, "--force")
    assert r.rc == 0, r
    assert "pages_limit=30932992" in read_file(sim_root, "etc/modprobe.d/halotune-gtt.conf")


def test_gtt_with_ttm_on_the_cmdline_gives_the_exact_cmdline(sim_root, common, profiles_dir,
                                                             run_cli):
    path = write_profile(profiles_dir, "gtt", 'description = "t"\n[memory]\ngtt_gib = 110\n')
    before = tree_snapshot(sim_root)
    r = run_cli("apply", "gtt", *common, "--profiles-dir", profiles_dir)
    assert r.rc == 2, r
    assert r.err.splitlines()[0] == (
        f"halotune: {path}: memory.gtt_gib = 110: the kernel command line sets "
        "ttm.pages_limit=28835840, which overrides modprobe.d: change it there instead to "
        "`ttm.pages_limit=28835840 ttm.page_pool_size=28835840` (e.g. in "
        "GRUB_CMDLINE_LINUX_DEFAULT of /etc/default/grub, then update-grub); halotune does not "
        "edit the bootloader")
    assert_same_tree(before, sim_root, "gtt with ttm on the cmdline")


def test_power_profile_required_via_the_cli(sim_root, common, profiles_dir, run_cli):
    write_profile(profiles_dir, "pp", 'description = "t"\n[gpu]\npower_profile = "COMPUTE"\n'
                  "power_profile_required = true\n")
    r = run_cli("apply", "pp", *common, "--profiles-dir", profiles_dir)
    assert r.rc == 2, r
    assert "not supported on this GPU" in r.err and "(marked required)" in r.err
    assert writes(sim_root) == []


# --- --json --------------------------------------------------------------------------------------

def test_json_outputs_parse(sim_root, common, run_cli, fast_ryzenadj):
    dry = run_cli("apply", "quiet", "--dry-run", "--json", *common)
    assert dry.rc == 0, dry
    d = dry.json()
    assert d["schema"] == "halotune.outcome/1" and d["action"] == "apply (dry run)"
    assert {r["key"]: r["status"] for r in d["rows"]}["power.platform_profile"] == "change"
    ap = run_cli("apply", "quiet", "--json", *common).json()
    assert ap["ok"] is True and ap["profile"] == "quiet"
    assert all(set(r) >= {"key", "before", "target", "after", "status", "boot_time", "note"}
               for r in ap["rows"])
    assert {r["status"] for r in ap["rows"]} <= {"ok", "skipped"}
    vf = run_cli("verify", "--json", *common).json()
    assert vf["ok"] is True and vf["action"] == "verify"
    rb = run_cli("rollback", "--dry-run", "--json", *common).json()
    assert rb["action"] == "rollback (dry run)"
    rb = run_cli("rollback", "--json", *common).json()
    assert rb["ok"] and {r["status"] for r in rb["rows"]} <= {"restored", "same"}
    rc = run_cli("recover", "--json", *common).json()
    assert rc["summary"] == "nothing to recover: no unfinished transaction"
    cf = run_cli("confirm", "--json", *common).json()
    assert cf["summary"] == "nothing waits for confirmation"


def test_profiles_list_show_diff(run_cli):
    r = run_cli("profiles", "list")
    assert r.rc == 0, r
    names = [line.split()[0] for line in r.out.splitlines()]
    assert names == ["bench-stable", "llm-efficient", "llm-max", "quiet", "stock"]
    r = run_cli("profiles", "show", "llm-efficient")
    assert r.rc == 0
    assert "  file: profiles/llm-efficient.toml  (inherits llm-max)" in r.out
    assert '  cpu.governor = "powersave"' in r.out
    assert "  thp.enabled = \"always\"   (from profiles/llm-max.toml)" in r.out
    r = run_cli("profiles", "diff", "llm-max", "quiet")
    assert r.rc == 0
    lines = r.out.splitlines()
    assert lines[0].split() == ["KEY", "llm-max", "->", "quiet"]
    assert any(line.split() == ["gpu.sclk_max_mhz", "-", "->", "2000"] for line in lines)
    assert any(line.split() == ["power.stapm_w", "120", "->", "50"] for line in lines)
    assert not any(line.startswith("cpu.boost  ") and "true  ->  true" in line for line in lines)
    r = run_cli("profiles", "show", "nope")
    assert r.rc == 2 and 'no profile named "nope"' in r.err


def test_profiles_json_before_the_subcommand(run_cli):
    d = run_cli("profiles", "--json", "list").json()
    assert [p["name"] for p in d["profiles"]][:3] == ["bench-stable", "llm-efficient", "llm-max"]
    assert d["errors"] == []
    s = run_cli("profiles", "--json", "show", "stock").json()
    assert s["restore_baseline"] is True and s["values"] == {}
    diff = run_cli("profiles", "--json", "diff", "llm-max", "llm-efficient").json()
    assert {"key": "power.stapm_w", "llm-max": 120, "llm-efficient": 85} in diff


def test_profiles_json_after_the_subcommand(run_cli):
    r = run_cli("profiles", "list", "--json")
    assert r.rc == 0, r
    assert r.json()["profiles"]


# --- confirm-or-revert ---------------------------------------------------------------------------

def _reverters(state_dir: str) -> list[int]:
    """pids of `_revert-unconfirmed` processes working on this state dir (ours)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"_revert-unconfirmed" in argv and state_dir.encode() in argv:
            out.append(int(pid))
    return out


def _wait_until(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def test_confirm_or_revert(tmp_path, run_cli):
    """Two machines at once: on A nobody confirms and the detached reverter restores the
    originals; on B `halotune confirm` comes in time and the profile stays."""
    from halotune.sim.tree import lay_out

    roots = {}
    for m in ("a", "b"):
        root, state = str(tmp_path / m / "root"), str(tmp_path / m / "state")
        lay_out(root)
        roots[m] = (root, state, tree_snapshot(root))
    for m in ("a", "b"):
        root, state, _ = roots[m]
        r = run_cli("apply", "llm-max", "--root", root, "--state-dir", state, "--confirm", "1.5")
        assert r.rc == 0, r
        assert "run `halotune confirm` within 1.5 s" in r.out
    root_b, state_b, _ = roots["b"]
    applied_b = tree_snapshot(root_b)
    v = run_cli("verify", "--root", root_b, "--state-dir", state_b)
    assert "waiting for `halotune confirm`" in v.out, v
    c = run_cli("confirm", "--root", root_b, "--state-dir", state_b)
    assert c.rc == 0 and "llm-max confirmed: it stays applied" in c.out, c
    pids = _reverters(roots["a"][1])
    assert pids, "no detached reverter process for machine A"
    for pid in pids:       # its own session: the terminal's SIGHUP does not reach it
        with contextlib.suppress(ProcessLookupError):
            assert os.getsid(pid) == pid != os.getsid(0)
    root_a, state_a, original_a = roots["a"]
    assert _wait_until(lambda: tree_snapshot(root_a) == original_a, 6.0), \
        "the unconfirmed apply was not reverted within 6 s"
    assert _wait_until(lambda: not _reverters(state_a) and not _reverters(state_b), 6.0)
    j = read_journal(state_a)
    assert j["active"] is None and j["txn"] is None and j["baseline"] == {}, j
    v = run_cli("verify", "--root", root_a, "--state-dir", state_a)
    assert "no profile applied" in v.out
    # B kept its profile
    assert_same_tree(applied_b, root_b, "confirmed apply")
    v = run_cli("verify", "--root", root_b, "--state-dir", state_b)
    assert v.rc == 0 and "waiting" not in v.out, v
    assert run_cli("rollback", "--root", root_b, "--state-dir", state_b).rc == 0
    assert_same_tree(roots["b"][2], root_b, "rollback after confirm")


def test_apply_stock_with_confirm(sim_root, state_dir, common, run_cli, fast_ryzenadj):
    """`stock` is a rollback: it succeeds, restores the originals, and leaves nothing waiting
    for a confirmation (no deadline, no reverter)."""
    original = tree_snapshot(sim_root)
    assert run_cli("apply", "llm-max", *common).rc == 0
    r = run_cli("apply", "stock", *common, "--confirm", "5")
    assert r.rc == 0, r
    assert_same_tree(original, sim_root, "stock with --confirm")
    j = read_journal(state_dir)
    assert j["active"] is None and j["txn"] is None and j["baseline"] == {}, j
    assert _reverters(state_dir) == []


# --- one writer at a time ------------------------------------------------------------------------

def test_second_writer_is_refused_or_waits(sim_root, state_dir, common, run_cli, fast_ryzenadj):
    before = tree_snapshot(sim_root)
    holder = StateDir(state_dir)
    holder.lock()
    try:
        for args in (["apply", "llm-max"], ["rollback"], ["recover"], ["confirm"]):
            r = run_cli(*args, *common)
            assert r.rc == 2, r
            assert (f"another halotune (pid {os.getpid()}) is changing this machine "
                    f"(lock {state_dir}/lock); try again when it is done, or pass --wait "
                    "SECONDS") in r.err, r.err
        assert writes(sim_root) == []
        assert_same_tree(before, sim_root, "refused while locked")
        assert run_cli("verify", *common).rc == 0          # read-only: no lock needed
        assert run_cli("apply", "llm-max", "--dry-run", *common).rc == 0
        threading.Timer(0.4, holder.unlock).start()
        t0 = time.monotonic()
        r = run_cli("apply", "llm-max", *common, "--wait", "5")
        assert r.rc == 0, r
        assert 0.3 < time.monotonic() - t0 < 5
    finally:
        holder.unlock()


# --- recover -------------------------------------------------------------------------------------

def test_recover_and_resume_after_a_kill(sim_root, state_dir, common, run_cli, fast_ryzenadj):
    original = tree_snapshot(sim_root)
    r = run_cli("recover", *common)
    assert r.rc == 0 and "nothing to recover" in r.out
    assert run_cli("apply", "bench-stable", *common).rc == 0
    applied = tree_snapshot(sim_root)
    assert run_cli("rollback", *common).rc == 0
    argv = ["apply", "bench-stable", *common]
    assert os.WIFSIGNALED(run_killed(argv, 20))
    r = run_cli("recover", *common)
    assert r.rc == 0 and "the interrupted apply of bench-stable was undone" in r.out, r
    assert_same_tree(original, sim_root, "recover")
    assert os.WIFSIGNALED(run_killed(argv, 20))
    r = run_cli("recover", "--resume", *common)
    assert r.rc == 0 and "the interrupted apply of bench-stable was completed" in r.out, r
    assert_same_tree(applied, sim_root, "recover --resume")
    assert run_cli("verify", *common).rc == 0
    assert run_cli("rollback", *common).rc == 0
    assert_same_tree(original, sim_root, "rollback after resume")
    # the next apply also undoes an unfinished transaction first, and says so
    assert os.WIFSIGNALED(run_killed(argv, 20))
    r = run_cli("apply", "llm-max", *common)
    assert r.rc == 0, r
    assert "an unfinished apply of 'bench-stable'" in r.out and "restored" in r.out
    assert run_cli("rollback", *common).rc == 0
    assert_same_tree(original, sim_root, "apply after a kill, then rollback")


# --- state directory -----------------------------------------------------------------------------

def test_default_state_dir_is_beside_the_tree(sim_root, run_cli, fast_ryzenadj, monkeypatch,
                                              tmp_path):
    assert run_cli("apply", "llm-max", "--root", sim_root).rc == 0
    assert read_journal(os.path.join(sim_root, ".halotune-state"))["active"]["profile"] == \
        "llm-max"
    assert run_cli("rollback", "--root", sim_root).rc == 0
    env_state = str(tmp_path / "env-state")
    monkeypatch.setenv("HALOTUNE_STATE_DIR", env_state)
    assert run_cli("apply", "quiet", "--root", sim_root).rc == 0
    assert read_journal(env_state)["active"]["profile"] == "quiet"
    assert run_cli("rollback", "--root", sim_root).rc == 0
    assert os.stat(env_state).st_mode & 0o777 == 0o750


def test_journal_of_another_root_is_refused(sim_root, state_dir, run_cli, fast_ryzenadj,
                                            tmp_path):
    from halotune.sim.tree import lay_out

    other = str(tmp_path / "other")
    lay_out(other)
    assert run_cli("apply", "llm-max", "--root", sim_root, "--state-dir", state_dir).rc == 0
    r = run_cli("apply", "llm-max", "--root", other, "--state-dir", state_dir)
    assert r.rc == 2 and "belongs to root" in r.err and "--state-dir" in r.err, r
    assert writes(other) == []


# --- RyzenAdj unavailable ------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["removed", "broken"])
def test_unavailable_tdp_is_skipped_and_the_rest_applies(sim_root, common, run_cli, how):
    tool = os.path.join(sim_root, "usr/local/bin/ryzenadj")
    saved = tool + ".saved"
    shutil.move(tool, saved)
    if how == "broken":
        with open(tool, "w") as f:
            f.write("#!/bin/sh\necho 'Unable to init ryzenadj'\nexit 255\n")
        os.chmod(tool, 0o755)
    before = tree_snapshot(sim_root, tdp=False)
    tdp_before = tdp_state(sim_root)
    r = run_cli("apply", "quiet", *common)
    assert r.rc == 0, r
    rows = {line.split()[0]: line for line in r.out.splitlines()[2:] if line.startswith("  ")}
    for key in ("power.stapm_w", "power.fast_w", "power.slow_w"):
        assert "skipped" in rows[key], r.out
    reason = ("ryzenadj not found" if how == "removed" else
              "ryzenadj -i failed (Unable to init ryzenadj)")
    assert reason in rows["power.stapm_w"], r.out
    assert ("note: TDP limits unavailable (" in r.out and
            "the platform profile alone sets the power level" in r.out), r.out
    assert rows["power.platform_profile"].split()[-1] == "ok"
    assert rows["cpu.epp"].split()[-1] == "ok"
    assert "quiet applied" in r.out
    assert run_cli("verify", *common).rc == 0
    r = run_cli("rollback", *common)
    assert r.rc == 0, r
    assert tree_snapshot(sim_root, tdp=False) == before
    os.replace(saved, tool)
    assert tdp_state(sim_root) == tdp_before     # the platform profile put pmf's limits back


# --- root "/" needs root -------------------------------------------------------------------------

def _as_nobody(argv: list[str]) -> tuple[int, str]:
    """main(argv) in a forked child running as nobody (modules imported before the fork: the
    interpreter under /root is not readable by nobody)."""
    import pwd

    import halotune.cli.exitcodes  # noqa: F401
    import halotune.cli.main as cli_main
    import halotune.cli.tuning  # noqa: F401
    import halotune.tuning.engine  # noqa: F401
    import halotune.tuning.loader  # noqa: F401
    import halotune.views.plan  # noqa: F401
    with contextlib.suppress(ImportError):
        import halotune.daemon.client  # noqa: F401

    nobody = pwd.getpwnam("nobody")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                try:
                    code = cli_main.main(argv)
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 70
            os.write(w, out.getvalue().encode())
        except BaseException as e:
            os.write(w, repr(e).encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        text = f.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
@pytest.mark.parametrize("verb", [["apply", "llm-max"], ["rollback"], ["recover"], ["confirm"]])
def test_non_root_on_slash_is_refused_before_touching_anything(verb, halotune_env):
    existed = os.path.exists("/var/lib/halotune")
    code, text = _as_nobody([*verb, "--root", "/"])
    assert code == 4, text
    name = verb[0]
    assert f"halotune {name} changes kernel settings and needs root: sudo halotune {name}" \
        in text, text
    assert os.path.exists("/var/lib/halotune") == existed


# --- more refusals that must be messages, not tracebacks ----------------------------------------

@pytest.mark.parametrize("verb", [["apply", "llm-max"], ["rollback"], ["verify"]])
def test_unusable_state_dir_is_a_message(verb, sim_root, tmp_path, run_cli):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    state = str(blocker / "state")
    try:
        r = run_cli(*verb, "--root", sim_root, "--state-dir", state)
    except Exception as e:          # noqa: BLE001 - what the user gets is a traceback
        pytest.fail(f"{verb}: traceback {e!r}")
    assert r.rc == 2 and state in r.err, r
    assert writes(sim_root) == []


def test_confirm_safety_net_is_armed_even_with_drift(sim_root, state_dir, run_cli, monkeypatch,
                                                     fast_ryzenadj):
    write_text = RootFS.write_text

    def racing_tool(self, rel, value):
        write_text(self, rel, value)
        if rel == "proc/sys/vm/swappiness" and value == "10":
            write_text(self, rel, "35")            # another tool, right after halotune

    monkeypatch.setattr(RootFS, "write_text", racing_tool)
    before = tree_snapshot(sim_root)
    r = run_cli("apply", "llm-max", "--root", sim_root, "--state-dir", state_dir,
                "--confirm", "1")
    assert r.rc == 2 and "do not hold" in r.out, r
    monkeypatch.setattr(RootFS, "write_text", write_text)
    j = read_journal(state_dir)
    assert j["active"]["profile"] == "llm-max"
    assert j["active"]["confirm_deadline"] is not None, "no revert armed"
    assert _wait_until(lambda: tree_snapshot(sim_root) == before, 6.0)
