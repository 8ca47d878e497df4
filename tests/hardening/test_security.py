"""Security, campaign 4 of issue #8.

- A mutating API call from a uid outside the admin group is refused (SO_PEERCRED) and logged;
  a uid outside the socket group cannot even connect.
- Modes and owners: the state directory, the journal (0600) and its lock, the history database
  (0640, group halotune), the API socket (0660, the configured group).
- An environment variable never chooses what root executes: programs planted under a fake root
  (owned by another uid, group-writable, in a group-writable directory) are refused, whether
  the root comes from --root or HALOTUNE_ROOT; PATH is not consulted for another root.
- No `shell=True`, os.system, os.popen, subprocess.getoutput or string-built command anywhere
  in the package (an AST scan, with a positive control).
- Traversal (`../../etc/passwd` and friends) in every profile field, every profile and API
  argument never reaches a path: refused, and (audit hook) no such file is ever opened; the
  write allowlist rejects every path that normalises elsewhere.
- RyzenAdj runs with a fixed argument vector of numeric values only, whatever an entry point
  is handed ("--stapm-limit=1;rm" style values at the loader, engine, API, tunable, wrapper).
- TDP outside 45-120 W (or the profile's documented max_w) is refused at every entry point.
- `systemd-analyze security` of systemd/halotune.service: the score and the protections left
  off, each checked against the reasons systemd/README.md gives.
"""

from __future__ import annotations

import ast
import contextlib
import grp
import io
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from halotune.machine.programs import ProgramRefused, Programs
from halotune.machine.rootfs import RootFS
from halotune.tuning import allowlist, limits

from .conftest import Tally, fuzz_settings, record

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(REPO, "halotune")
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")
TRAVERSALS = ["../../etc/passwd", "/etc/passwd", "..", "../", "llm-max/../../../etc/passwd",
              "..%2f..%2fetc%2fpasswd", "....//....//etc/passwd", "profiles/../../etc/passwd",
              "~root/.ssh/id_rsa", "\x00../etc/passwd", "llm-max\x00", "/proc/self/environ"]


def _ids(name: str):
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _gid(name: str):
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _main(argv: list[str]) -> tuple[int, str, str]:
    from halotune.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:                # argparse
            rc = e.code if isinstance(e.code, int) else 64
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def sim(scratch, monkeypatch, no_daemon):
    from halotune.machine import programs as _programs
    from halotune.sim.tree import lay_out
    from tuning.conftest import fast_run

    monkeypatch.setattr(_programs.Programs, "run", fast_run)
    root = os.path.join(scratch, "root")
    lay_out(root)
    return root


# --- 1. authorisation -----------------------------------------------------------------------------

def _in_child_as(uid: int, gid: int, fn) -> dict:
    from daemon.conftest import in_child_as

    return in_child_as(uid, gid, fn)


MUTATIONS = {"apply": {"profile": "llm-max"}, "rollback": {}, "confirm": {},
             "hold": {"owner": "intruder", "reason": "x"}, "release": {"hold_id": "abc"},
             "validate": {"profiles": ["llm-max"]}}


@ROOT_ONLY
def test_mutation_from_a_non_admin_uid_is_refused_and_logged(launcher):
    from daemon.conftest import machine_digest

    nobody, nogroup = _ids("nobody"), _gid("nogroup")
    if nobody is None or nogroup is None:
        pytest.skip("no nobody/nogroup on this system")
    sockdir = tempfile.mkdtemp(prefix="halotune-sec-")
    os.chmod(sockdir, 0o755)
    path = os.path.join(sockdir, "api.sock")
    try:
        d = launcher('[api]\nsocket_group = "nogroup"\n', socket=path)
        before = machine_digest(d.root)
        st_ = os.stat(path)
        assert stat.S_IMODE(st_.st_mode) == 0o660 and (st_.st_uid, st_.st_gid) == (0, nogroup)

        def as_member():
            from halotune.daemon.client import ApiError, Client
            out = {}
            with Client(path, timeout=20) as c:
                out["status"] = c.call("status")["schema"]
                for method, params in MUTATIONS.items():
                    try:
                        c.call(method, params)
                        out[method] = "accepted"
                    except ApiError as e:
                        out[method] = [e.code, e.message]
            return out

        seen = _in_child_as(nobody, nogroup, as_member)
        assert "error" not in seen, seen
        assert seen["status"] == "halotune.status/1"
        for method in MUTATIONS:
            assert seen[method][0] == "EPERM" and f"uid {nobody}" in seen[method][1], seen
        # One event per user and minute (the rest are counted into the next one), so a
        # reader cannot flood the history: the first refusal is the one named.
        auth = d.events("auth")
        first = next(iter(MUTATIONS))
        assert len(auth) == 1, auth
        assert auth[0]["message"].startswith(f"refused {first} from uid {nobody} "), auth
        log = d.stderr()
        assert f"refused apply from uid {nobody}" in log, "the refusal is not in the daemon's log"
        assert machine_digest(d.root) == before and d.profile() is None

        # A uid outside the socket group cannot even connect (the socket's mode 0660).
        other_gid = _gid("daemon") or _gid("bin") or 1

        def as_stranger():
            import socket as _s
            sk = _s.socket(_s.AF_UNIX, _s.SOCK_STREAM)
            try:
                sk.connect(path)
                return {"connect": "accepted"}
            except PermissionError:
                return {"connect": "EACCES"}
            finally:
                sk.close()

        assert _in_child_as(nobody, other_gid, as_stranger) == {"connect": "EACCES"}
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
    record("security: non-admin mutation refused", methods=sorted(MUTATIONS), refused="all",
           logged=True, stranger_connect="EACCES")


# --- 2. modes and owners --------------------------------------------------------------------------

def test_journal_and_lock_modes(sim, scratch):
    state = os.path.join(scratch, "fresh-state")
    rc, out, err = _main(["apply", "llm-efficient", "--root", sim, "--state-dir", state])
    assert rc == 0, err
    modes = {}
    for name in ("journal.json", "lock"):
        st_ = os.stat(os.path.join(state, name))
        modes[name] = f"{stat.S_IMODE(st_.st_mode):04o}"
        assert stat.S_IMODE(st_.st_mode) == 0o600, (name, modes)
        assert st_.st_uid == os.geteuid()
    st_ = os.stat(state)
    modes["state dir"] = f"{stat.S_IMODE(st_.st_mode):04o}"
    assert st_.st_uid == os.geteuid()
    record("security: modes", **modes)


def test_state_directory_is_0750_everywhere(sim, scratch):
    """The state directory holds the journal (0600, root only) and the history database (0640,
    group halotune): 0750, created so by halotune, the unit and tmpfiles.d alike."""
    state = os.path.join(scratch, "fresh-state")
    rc, out, err = _main(["apply", "llm-efficient", "--root", sim, "--state-dir", state])
    assert rc == 0, err
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o750
    with open(os.path.join(REPO, "systemd", "halotune.service")) as f:
        assert re.search(r"^StateDirectoryMode=0750$", f.read(), re.M)
    with open(os.path.join(REPO, "systemd", "halotune.tmpfiles.conf")) as f:
        assert re.search(r"^d /var/lib/halotune 0750 root halotune", f.read(), re.M)


TEST_RUN = [{"name": "tg128", "n_prompt": 0, "n_gen": 128, "n_depth": 0, "tokens_per_s": 50.0}]


def _db_files(path: str) -> dict[str, tuple[int, int, int]]:
    out = {}
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            st_ = os.stat(path + suffix)
            out[suffix or "db"] = (stat.S_IMODE(st_.st_mode), st_.st_uid, st_.st_gid)
    return out


def test_history_database_mode_and_group(scratch, no_daemon):
    """The state history database (history/record.py): 0640, group halotune. Recorded the
    way halotune records (record(), into the state directory of a root); the group mechanism
    is checked with an existing group when this machine has no `halotune`."""
    record_mod = pytest.importorskip("halotune.history.record")
    db_mod = pytest.importorskip("halotune.history.db")
    assert record_mod.STATE_MODE == 0o640 and record_mod.STATE_GROUP == "halotune"
    root = os.path.join(scratch, "root")
    os.makedirs(os.path.join(root, ".halotune-state"), mode=0o750)
    res = record_mod.record("import", TEST_RUN, fingerprint={"schema": "x"}, root=root,
                            use_daemon=False)
    assert res.via == "state", res
    files = _db_files(res.db)
    halotune_gid = _gid("halotune")
    for name, (mode, uid, gid) in files.items():
        assert mode == 0o640, (name, oct(mode))
        if halotune_gid is not None and os.geteuid() == 0:
            assert (uid, gid) == (0, halotune_gid), files
    group = "halotune" if halotune_gid is not None else "nogroup"
    if _gid(group) is None:
        pytest.skip("neither group halotune nor nogroup exists")
    path = os.path.join(scratch, "other", "history.db")
    os.makedirs(os.path.dirname(path))
    with db_mod.HistoryDB(path, mode=record_mod.STATE_MODE, group=group) as db:
        db.add_run("import", TEST_RUN, fingerprint={"schema": "x"})
    other = _db_files(path)
    for name, (mode, uid, gid) in other.items():
        assert mode == 0o640
        if os.geteuid() == 0:
            assert (uid, gid) == (0, _gid(group)), other
    record("security: history database", state_db={k: f"{v[0]:04o} {v[1]}:{v[2]}"
                                                   for k, v in files.items()},
           group_check=group)


def test_history_creates_the_state_directory_0750(scratch, no_daemon):
    record_mod = pytest.importorskip("halotune.history.record")
    root = os.path.join(scratch, "root")
    os.makedirs(root)
    res = record_mod.record("import", TEST_RUN, fingerprint={"schema": "x"}, root=root,
                            use_daemon=False)
    assert stat.S_IMODE(os.stat(os.path.dirname(res.db)).st_mode) == 0o750


@ROOT_ONLY
def test_socket_mode_and_the_default_group(launcher):
    from halotune.daemon.config import DaemonConfig

    assert DaemonConfig().api.socket_group == "halotune"
    with open(os.path.join(REPO, "systemd", "halotune.sysusers.conf")) as f:
        assert re.search(r"^g\s+halotune\b", f.read(), re.M)
    group = "halotune" if _gid("halotune") is not None else "nogroup"
    if _gid(group) is None:
        pytest.skip("no group to give the socket")
    d = launcher(f'[api]\nsocket_group = "{group}"\n')
    st_ = os.stat(d.socket)
    assert stat.S_ISSOCK(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o660
    assert (st_.st_uid, st_.st_gid) == (0, _gid(group))
    record("security: socket", mode="0660", owner=f"root:{group}")


# --- 3. what root executes ------------------------------------------------------------------------

MARKER_PROGRAM = "#!/bin/sh\ntouch {marker}\necho 'CPU Family: Strix Halo'\n"


def _plant(root: str, marker: str, *, owner: int = 0, mode: int = 0o755,
           dir_mode: int = 0o755, where: str = "usr/bin") -> str:
    d = os.path.join(root, where)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, dir_mode)
    p = os.path.join(d, "ryzenadj")
    with open(p, "w") as f:
        f.write(MARKER_PROGRAM.format(marker=marker))
    os.chmod(p, mode)
    os.chown(p, owner, -1)
    return p


@ROOT_ONLY
@pytest.mark.parametrize("how", ["owned by nobody", "group-writable", "world-writable",
                                 "in a group-writable directory"])
def test_planted_program_under_a_fake_root_is_refused(tmp_path, how, monkeypatch, no_daemon):
    from conftest import copy_reference

    nobody = _ids("nobody") or 65534
    root = copy_reference(str(tmp_path / "fake"))
    marker = str(tmp_path / "ran")
    kw = {"owned by nobody": {"owner": nobody}, "group-writable": {"mode": 0o775},
          "world-writable": {"mode": 0o757},
          "in a group-writable directory": {"dir_mode": 0o775}}[how]
    planted = _plant(root, marker, **kw)
    with pytest.raises(ProgramRefused):
        Programs(RootFS(root)).resolve("ryzenadj")
    # Through the command line, the root chosen by --root and by HALOTUNE_ROOT.
    for argv, env in ((["status", "--json", "--root", root], None),
                      (["status", "--json"], root)):
        if env:
            monkeypatch.setenv("HALOTUNE_ROOT", env)
        rc, out, err = _main(argv)
        monkeypatch.delenv("HALOTUNE_ROOT", raising=False)
        assert rc == 0, err
        hint = json.loads(out)["power"]["limits_hint"] or ""
        assert "refusing to run" in hint and planted in hint, hint
        assert not os.path.exists(marker), f"{planted} ({how}) was executed"
    record("security: planted programs refused", **{how: "refused, not run"})


def test_path_is_not_consulted_for_another_root(tmp_path, monkeypatch):
    from conftest import copy_reference

    root = copy_reference(str(tmp_path / "fake"))
    bindir = tmp_path / "evil-bin"
    bindir.mkdir()
    evil = bindir / "ryzenadj"
    evil.write_text("#!/bin/sh\nexit 0\n")
    evil.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    progs = Programs(RootFS(root))
    assert str(evil) not in progs.candidates("ryzenadj")
    with pytest.raises(Exception) as e:
        progs.resolve("ryzenadj")
    assert str(evil) not in str(e.value)


@ROOT_ONLY
def test_path_cannot_make_root_run_a_foreign_program_on_the_host(tmp_path, monkeypatch):
    for d in ("/usr/local/bin", "/usr/bin"):
        if os.path.exists(os.path.join(d, "ryzenadj")):
            pytest.skip(f"a real ryzenadj is installed in {d}")
    bindir = tmp_path / "evil-bin"
    bindir.mkdir()
    os.chmod(bindir, 0o777)
    evil = _plant(str(tmp_path), str(tmp_path / "ran"), owner=_ids("nobody") or 65534,
                  where="evil-bin")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    try:
        found = Programs(RootFS("/")).resolve("ryzenadj")
    except ProgramRefused:
        return
    except Exception:  # noqa: BLE001 - not found: also fine
        return
    assert found != evil, f"PATH made root resolve {found}, owned by uid " \
                          f"{os.stat(found).st_uid}"


# --- 4. no shell, no string-built commands --------------------------------------------------------

SUBPROCESS_FUNCS = {"run", "Popen", "call", "check_call", "check_output"}
SHELL_FUNCS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"),
               ("subprocess", "getstatusoutput"), ("asyncio", "create_subprocess_shell"),
               ("os", "execlp"), ("os", "execvp"), ("os", "spawnlp"), ("os", "spawnvp")}


def _stringish(node: ast.AST, assigned: dict[str, list[ast.AST]], depth: int = 0) -> bool:
    """A str literal, f-string, concatenation/format of strings, str.format/join, or a name
    assigned one of those in the same function."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return _stringish(node.left, assigned, depth) or _stringish(node.right, assigned, depth)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr in ("format", "join") and isinstance(node.func.value,
                                                                    (ast.Constant, ast.JoinedStr)):
        return True
    if isinstance(node, ast.Name) and depth < 3:
        return any(_stringish(v, assigned, depth + 1) for v in assigned.get(node.id, []))
    return False


def scan_source(text: str, filename: str) -> list[str]:
    tree = ast.parse(text, filename)
    problems = []
    aliases = {"subprocess": "subprocess", "os": "os", "asyncio": "asyncio"}
    direct: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in aliases:
                    aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module in ("subprocess", "os", "asyncio"):
            for a in node.names:
                direct[a.asname or a.name] = (node.module, a.name)
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                          ast.Module))]
    for scope in scopes:
        assigned: dict[str, list[ast.AST]] = {}
        for n in ast.walk(scope):
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    if isinstance(t, ast.Name):
                        assigned.setdefault(t.id, []).append(n.value)
        for n in ast.walk(scope):
            if not isinstance(n, ast.Call):
                continue
            where = f"{filename}:{n.lineno}"
            f = n.func
            mod = name = None
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                mod, name = aliases.get(f.value.id), f.attr
            elif isinstance(f, ast.Name) and f.id in direct:
                mod, name = direct[f.id]
            for kw in n.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant)
                                              and kw.value.value is False):
                    problems.append(f"{where}: shell= {ast.unparse(kw.value)}")
            if (mod, name) in SHELL_FUNCS:
                problems.append(f"{where}: {mod}.{name}() runs a shell or searches PATH")
            if mod in ("subprocess", "asyncio") and name in SUBPROCESS_FUNCS | {
                    "create_subprocess_exec"}:
                first = n.args[0] if n.args else next(
                    (k.value for k in n.keywords if k.arg == "args"), None)
                if first is not None and _stringish(first, assigned):
                    problems.append(f"{where}: {mod}.{name}() with a command built as a "
                                    f"string: {ast.unparse(first)[:80]}")
    return problems


def test_no_shell_and_no_string_built_commands():
    bad = """
import os, subprocess
from subprocess import run as r
subprocess.run("ls -l", shell=False)
subprocess.Popen(["ls"], shell=True)
os.system("reboot")
os.popen("id")
cmd = "ryzenadj " + str(1)
subprocess.check_output(cmd)
r(f"echo {1}")
subprocess.getoutput("id")
"""
    control = scan_source(bad, "control.py")
    assert len(control) == 7, control            # the checker finds what it must
    problems, files = [], 0
    for dirpath, _dirs, names in os.walk(PACKAGE, followlinks=False):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as f:
                    problems += scan_source(f.read(), os.path.relpath(path, REPO))
                files += 1
    record("security: no shell / string commands", files_scanned=files,
           findings=len(problems))
    assert not problems, "\n".join(problems)


# --- 5. traversal -----------------------------------------------------------------------------------

STRING_KEYS = {"inherits": "", "power.platform_profile": "power", "gpu.performance_level": "gpu",
               "gpu.power_profile": "gpu", "cpu.governor": "cpu", "cpu.epp": "cpu",
               "thp.enabled": "thp", "thp.defrag": "thp"}
LIST_KEYS = ("requires.gfx_target", "requires.device_id")


def test_traversal_in_every_profile_field_is_refused_naming_the_key(tmp_path):
    from halotune.tuning.loader import ProfileError, ProfileStore

    admin = tmp_path / "admin"
    admin.mkdir()
    n = 0
    for key in [*STRING_KEYS, *LIST_KEYS, "power.stapm_w", "gpu.sclk_max_mhz", "cpu.boost",
                "memory.gtt_gib", "sysctl.vm.swappiness"]:
        for bad in TRAVERSALS:
            value = json.dumps([bad] if key in LIST_KEYS else bad)
            section, _, k = key.rpartition(".") if not key.startswith("sysctl.") else (
                "sysctl", "", json.dumps(key[len("sysctl."):]))
            if key.startswith("sysctl."):
                body = f'description = "t"\n[sysctl]\n{k} = {value}\n'
            elif section:
                body = f'description = "t"\n[{section}]\n{k} = {value}\n'
            else:
                body = f'description = "t"\n{k} = {value}\n'
            (admin / "t.toml").write_text(body)
            with pytest.raises(ProfileError) as e:
                ProfileStore(str(admin)).load("t")
            assert e.value.key == key, f"{key} = {bad!r}: {e.value}"
            n += 1
    # Keys that are not on the schema (a path as a sysctl name, a table name) name themselves.
    for bad in ('"../../etc/passwd"', '"vm/../../../../etc/shadow"'):
        (admin / "t.toml").write_text(f'description = "t"\n[sysctl]\n{bad} = 1\n')
        with pytest.raises(ProfileError) as e:
            ProfileStore(str(admin)).load("t")
        assert json.loads(bad) in str(e.value)
        n += 1
    record("security: traversal in profile fields", cases=n, refused=n)


AUDIT_BOOT = """
import os, sys
_log = open(os.environ["HALOTUNE_TEST_AUDIT"], "a", buffering=1)
def _hook(event, args):
    if event in ("open", "os.listdir", "os.scandir", "shutil.copyfile"):
        p = args[0]
        if isinstance(p, bytes):
            p = p.decode("utf-8", "replace")
        if isinstance(p, str):
            _log.write(event + " " + p + "\\n")
sys.addaudithook(_hook)
"""


def _outside_hits(log_path: str) -> list[str]:
    hits = []
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            p = line.split(" ", 1)[1].strip()
            norm = os.path.normpath(p)
            if norm.endswith(("etc/passwd", "etc/shadow", ".ssh/id_rsa", "proc/self/environ")):
                hits.append(line.strip())
    return hits


def test_traversal_in_cli_arguments_opens_nothing_outside(sim, scratch):
    """`apply`, `profiles show` and `profiles diff` with traversal names, run in a child with
    an audit hook that logs every file it opens."""
    log = os.path.join(scratch, "audit.log")
    state = os.path.join(scratch, "state")
    before = None
    from tuning.conftest import tree_digest
    before = tree_digest(sim)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.environ["HALOTUNE_TEST_AUDIT"] = log
            exec(AUDIT_BOOT, {})
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            for bad in TRAVERSALS:
                for argv in (["apply", bad, "--root", sim, "--state-dir", state],
                             ["apply", bad, "--dry-run", "--root", sim, "--state-dir", state],
                             ["profiles", "show", bad], ["profiles", "diff", bad, "llm-max"]):
                    rc, _o, _e = _main(argv)
                    if rc not in (2, 64):
                        code = 10
        except BaseException:  # noqa: BLE001
            code = 70
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    hits = _outside_hits(log)
    assert not hits, hits[:10]
    assert tree_digest(sim) == before
    record("security: traversal in CLI arguments", cases=len(TRAVERSALS) * 4,
           outside_opens=len(hits))


def test_traversal_in_api_arguments_opens_nothing_outside(tmp_path):
    """The daemon started with an audit hook; every argument of every method given traversal
    strings: each is answered (an error code or a harmless result), no file outside is opened,
    and the machine is unchanged."""
    from daemon.conftest import BASE_CONFIG, _env, machine_digest, wait_for
    from halotune.daemon.client import ApiError, Client
    from halotune.sim.tree import lay_out

    root = str(tmp_path / "machine")
    lay_out(root)
    before = machine_digest(root)
    log = str(tmp_path / "audit.log")
    sock = str(tmp_path / "api.sock")
    cfg = tmp_path / "d.toml"
    cfg.write_text(BASE_CONFIG)
    boot = AUDIT_BOOT + "from halotune.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
    env = _env()
    env["HALOTUNE_TEST_AUDIT"] = log
    with open(tmp_path / "daemon.log", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", boot, "daemon", "--root", root, "--socket",
                                 sock, "--state-dir", str(tmp_path / "state"), "--config",
                                 str(cfg)], env=env, stdout=err, stderr=err,
                                stdin=subprocess.DEVNULL)
    answers: dict[str, int] = {}
    try:
        def up():
            try:
                with Client(sock, timeout=2) as c:
                    return c.call("status") is not None
            except Exception:  # noqa: BLE001
                return False
        wait_for(up, 20, 0.1, "the daemon")
        with Client(sock, timeout=30) as c:
            for bad in TRAVERSALS:
                calls = [("apply", {"profile": bad}), ("apply", {"profile": bad, "dry_run": True}),
                         ("hold", {"owner": bad, "reason": bad, "ttl_s": 1}),
                         ("release", {"hold_id": bad}), ("history", {"seconds": bad}),
                         ("events", {"since": bad}), ("subscribe", {"interval_s": bad}),
                         ("profiles", {"dir": bad}), ("status", {"root": bad}),
                         ("verify", {"state_dir": bad}), ("rollback", {"dry_run": True,
                                                                       "state_dir": bad})]
                for method, params in calls:
                    try:
                        c.call(method, params)
                        answers["ok"] = answers.get("ok", 0) + 1
                    except ApiError as e:
                        answers[e.code] = answers.get(e.code, 0) + 1
                c.call("unsubscribe")
    finally:
        proc.terminate()
        proc.wait(20)
    hits = _outside_hits(log)
    assert not hits, hits[:10]
    assert machine_digest(root) == before
    assert set(answers) <= {"ok", "EINVAL", "ENOENT"}, answers
    record("security: traversal in API arguments", cases=sum(answers.values()),
           answers=answers, outside_opens=len(hits))


_segments = st.sampled_from(["sys", "class", "drm", "card1", "card0", "device", "..", ".", "",
                             "proc", "vm", "swappiness", "etc", "passwd", "modprobe.d",
                             "halotune-gtt.conf", "power_dpm_force_performance_level",
                             "pp_od_clk_voltage", "firmware", "acpi", "platform_profile",
                             "devices", "system", "cpu", "cpufreq", "policy0", "boost", "x\x00",
                             "kernel", "mm", "transparent_hugepage", "enabled", "\n"])


ALLOWED_EXAMPLES = ["sys/class/drm/card1/device/power_dpm_force_performance_level",
                    "sys/class/drm/card0/device/pp_od_clk_voltage",
                    "sys/firmware/acpi/platform_profile",
                    "sys/devices/system/cpu/cpufreq/policy0/scaling_governor",
                    "sys/devices/system/cpu/cpufreq/boost", "proc/sys/vm/swappiness",
                    "proc/sys/kernel/numa_balancing", "sys/kernel/mm/transparent_hugepage/enabled",
                    "etc/modprobe.d/halotune-gtt.conf"]


def test_write_allowlist_admits_only_normalised_allowlisted_paths():
    """Allowlisted paths edited at random (segments inserted, replaced, dropped; leading
    slashes): whatever the allowlist admits is a normalised path under sys/, proc/sys/ or
    etc/modprobe.d/ with no NUL or newline."""
    for rel in ALLOWED_EXAMPLES:
        assert allowlist.allowed(rel), rel
    t = Tally()
    edit = st.tuples(st.sampled_from(["insert", "replace", "drop"]), st.integers(0, 12),
                     _segments)

    @fuzz_settings()
    @given(base=st.sampled_from(ALLOWED_EXAMPLES), edits=st.lists(edit, max_size=3),
           lead=st.sampled_from(["", "", "/", "//"]))
    def run(base, edits, lead):
        parts = base.split("/")
        for op, at, seg in edits:
            at %= len(parts) + (op == "insert")
            if op == "insert":
                parts.insert(at, seg)
            elif op == "replace" and parts:
                parts[at % len(parts)] = seg
            elif op == "drop" and len(parts) > 1:
                del parts[at % len(parts)]
        rel = lead + "/".join(parts)
        ok = allowlist.allowed(rel)
        t.hit("allowed" if ok else "refused")
        if ok:
            clean = rel.lstrip("/")
            assert os.path.normpath(clean) == clean, rel
            assert "\x00" not in rel and "\n" not in rel, rel
            assert clean.startswith(("sys/", "proc/sys/", "etc/modprobe.d/")), rel

    run()
    for bad in ("sys/class/drm/card1/device/../../../../etc/passwd", "/etc/passwd",
                "etc/modprobe.d/../passwd", "proc/sys/vm/../../../etc/shadow",
                "sys/firmware/acpi/platform_profile/..", "etc/modprobe.d/halotune-gtt.conf\n"):
        assert not allowlist.allowed(bad), bad
    record("security: write allowlist fuzz", **t.figures())


def test_a_symlink_in_a_fake_tree_cannot_redirect_a_write_outside(tmp_path, no_daemon):
    from conftest import copy_reference

    root = copy_reference(str(tmp_path / "fake"))
    outside = tmp_path / "outside-file"
    outside.write_text("balanced\n")
    link = os.path.join(root, "sys/firmware/acpi/platform_profile")
    os.unlink(link)
    os.symlink(str(outside), link)
    _main(["apply", "llm-max", "--root", root, "--state-dir", str(tmp_path / "state")])
    assert outside.read_text() == "balanced\n", "a write escaped the root through a symlink"


# --- 6. RyzenAdj: fixed argv, numbers only ------------------------------------------------------------

ARG_RE = re.compile(r"^(-i|--(stapm|fast|slow|apu-slow)-limit=-?\d+)$")
INJECT = ["85000;rm -rf /", "85000 --max-performance", "$(reboot)", "`id`", "--stapm-limit=1",
          "1e5", "0x10", "", " 85000", "85000\n--power-saving", 85000.7, True, -5, 10 ** 30,
          float("nan"), float("inf"), None, [85000], {"a": 1}]


class RecordingPrograms:
    def __init__(self):
        self.calls: list[list[str]] = []

    def run(self, name, args, timeout=15.0):
        from halotune.machine.programs import ProgramResult

        self.calls.append([name, *args])
        return ProgramResult([name, *args], 0, "", "")


def test_ryzenadj_wrapper_passes_numbers_only():
    from halotune.machine.ryzenadj import SET_FLAGS, RyzenAdj

    outcomes: dict[str, int] = {}
    for flag in SET_FLAGS:
        for v in INJECT:
            progs = RecordingPrograms()
            try:
                RyzenAdj(progs).set_limits(**{flag: v})
                outcomes["ran"] = outcomes.get("ran", 0) + 1
            except (ValueError, TypeError, OverflowError) as e:
                outcomes[type(e).__name__] = outcomes.get(type(e).__name__, 0) + 1
            for call in progs.calls:
                assert call[0] == "ryzenadj"
                assert all(ARG_RE.match(a) for a in call[1:]), (flag, v, call)
    with pytest.raises(KeyError):            # no way to pass another option
        RyzenAdj(RecordingPrograms()).set_limits(stapm_time_mw=1)
    record("security: ryzenadj wrapper", values=len(INJECT) * len(SET_FLAGS), outcomes=outcomes)


def test_every_ryzenadj_argv_of_apply_and_rollback_is_fixed(sim, monkeypatch, scratch):
    from halotune.machine import programs as _programs

    seen: list[list[str]] = []
    real = _programs.Programs.run

    def spy(self, name, args, timeout=15.0):
        seen.append([name, *args])
        return real(self, name, args, timeout)

    monkeypatch.setattr(_programs.Programs, "run", spy)
    state = os.path.join(scratch, "state")
    for p in ("llm-max", "llm-efficient", "quiet", "bench-stable", "stock"):
        for argv in (["apply", p], ["rollback"]):
            rc, out, err = _main([*argv, "--root", sim, "--state-dir", state])
            assert rc == 0, err
    ryz = [c for c in seen if c[0] == "ryzenadj"]
    assert ryz and any(len(c) > 1 and c[1] != "-i" for c in ryz)
    for c in ryz:
        assert all(ARG_RE.match(a) for a in c[1:]), c
    record("security: ryzenadj argv in apply/rollback", calls=len(ryz))


def test_injection_at_the_profile_loader_and_the_api(tmp_path, launcher):
    from halotune.tuning.loader import ProfileError, ProfileStore

    admin = tmp_path / "admin"
    admin.mkdir()
    for v in ('"85;rm -rf /"', '"--stapm-limit=1"', '"$(reboot)"', '"85000"'):
        (admin / "t.toml").write_text(f'description = "t"\n[power]\nstapm_w = {v}\n')
        with pytest.raises(ProfileError) as e:
            ProfileStore(str(admin)).load("t")
        assert e.value.key == "power.stapm_w"
    (admin / "good.toml").write_text('description = "t"\n[power]\nstapm_w = 80\nslow_w = 80\n')
    d = launcher(profiles_dir=str(admin))
    from halotune.daemon.client import ApiError, Client

    codes = []
    with Client(d.socket, timeout=60) as c:
        for params in ({"profile": "llm-max;rm -rf /"}, {"profile": "good --stapm-limit=1"},
                       {"profile": "good", "stapm_w": "1;rm", "args": ["--stapm-limit=1"]}):
            try:
                c.call("apply", params)
                codes.append("ok")
            except ApiError as e:
                codes.append(e.code)
        c.call("rollback")
    assert codes == ["ENOENT", "ENOENT", "ok"], codes
    with open(os.path.join(d.root, ".halotune-sim", "writes.log")) as f:
        limits_written = [json.loads(line) for line in f if "ryzenadj" in line]
    assert limits_written and all(str(e["value"]).isdigit() for e in limits_written), \
        limits_written
    assert {e["value"] for e in limits_written if "stapm" in e["path"]} >= {"80000"}


def test_injection_at_the_engine_and_the_tunable_is_a_refusal(sim, scratch):
    from halotune.tuning.engine import Engine, EngineError
    from halotune.tuning.tunables.base import InvalidTarget
    from halotune.tuning.tunables.tdp import TdpLimits
    from tuning.conftest import make_profile

    eng = Engine(RootFS(sim), os.path.join(scratch, "state"))
    with pytest.raises(InvalidTarget):
        TdpLimits().plan(eng.ctx, {"power.stapm_w": "85;rm"}, {}, {})
    with pytest.raises(EngineError):
        eng.apply(make_profile("inj", **{"power.stapm_w": "85000;rm"}))


# --- 7. TDP range -----------------------------------------------------------------------------------

OUT_OF_RANGE = [44.9, 120.1, 0, -1, 1000, 200.5]


def test_tdp_range_at_the_loader_cli_and_api(tmp_path, launcher, sim, scratch):
    from halotune.daemon.client import ApiError, Client
    from halotune.tuning.loader import ProfileError, ProfileStore

    admin = tmp_path / "admin"
    admin.mkdir()
    refused = 0
    for key in ("stapm_w", "slow_w", "fast_w"):
        for w in OUT_OF_RANGE:
            (admin / "t.toml").write_text(f'description = "t"\n[power]\n{key} = {w}\n')
            with pytest.raises(ProfileError) as e:
                ProfileStore(str(admin)).load("t")
            assert e.value.key == f"power.{key}", str(e.value)
            refused += 1
    # The documented ceiling: max_w (with its source) up to 200 W, never above.
    (admin / "t.toml").write_text('description = "t"\n[power]\nfast_w = 140\nmax_w = 140\n'
                                  'max_w_source = "board ships 140 W"\n')
    assert ProfileStore(str(admin)).load("t").values["power.fast_w"] == 140
    for text in ('fast_w = 140.5\nmax_w = 140\nmax_w_source = "x"\n',
                 'fast_w = 201\nmax_w = 201\nmax_w_source = "x"\n', 'fast_w = 140\n'):
        (admin / "t.toml").write_text(f'description = "t"\n[power]\n{text}')
        with pytest.raises(ProfileError):
            ProfileStore(str(admin)).load("t")
        refused += 1
    # CLI: exit 2, the key named, nothing written.
    (admin / "hot.toml").write_text('description = "t"\n[power]\nstapm_w = 130\n')
    from tuning.conftest import tree_digest
    before = tree_digest(sim)
    rc, out, err = _main(["apply", "hot", "--root", sim, "--state-dir",
                          os.path.join(scratch, "st"), "--profiles-dir", str(admin)])
    assert rc == 2 and "power.stapm_w" in err and "between 45 and 120" in err, err
    assert tree_digest(sim) == before
    # API: EINVAL naming the key.
    d = launcher(profiles_dir=str(admin))
    with Client(d.socket, timeout=60) as c:
        with pytest.raises(ApiError) as e:
            c.call("apply", {"profile": "hot"})
    assert e.value.code == "EINVAL" and "power.stapm_w" in e.value.message
    # The daemon's thermal guard never steps below the platform minimum.
    from halotune.daemon.config import ThermalRule
    from halotune.daemon.rules.thermal import ThermalGuard
    assert ThermalGuard(None, ThermalRule(enabled=True, min_w=15)).floor_w == limits.TDP_MIN_W
    record("security: TDP range (loader, CLI, API, thermal guard)", refused=refused + 2)


@pytest.mark.parametrize("watts", [200.0, 10.0])
def test_tdp_range_at_the_engine_and_the_tunable(sim, scratch, watts):
    from halotune.tuning.engine import Engine, EngineError
    from halotune.tuning.tunables.base import InvalidTarget
    from halotune.tuning.tunables.tdp import TdpLimits
    from tuning.conftest import make_profile, tree_digest

    eng = Engine(RootFS(sim), os.path.join(scratch, "state"))
    before = tree_digest(sim)
    values = {"power.stapm_w": watts, "power.slow_w": watts, "power.fast_w": watts}
    try:
        with pytest.raises(EngineError):
            eng.apply(make_profile("range", **values))
    finally:
        if tree_digest(sim) != before:
            eng.rollback()
    with pytest.raises(InvalidTarget):
        TdpLimits().plan(eng.ctx, values, {}, {})


# --- 8. systemd-analyze security ----------------------------------------------------------------------

def test_systemd_analyze_security_score_and_the_reasons_given():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (.ci/setup-systemd.sh installs it)")
    unit = os.path.join(REPO, "systemd", "halotune.service")
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "halotune.service")
        with open(unit) as f:
            text = f.read().replace("ExecStart=/usr/bin/halotune",
                                    f"ExecStart={shutil.which('true') or '/bin/true'}")
        with open(copy, "w") as f:
            f.write(text)
        cp = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", copy],
                            capture_output=True, text=True, timeout=60)
    out = cp.stdout + cp.stderr
    m = re.search(r"Overall exposure level for \S+:\s*([\d.]+)\s+(\S+)", out)
    assert m, out[-2000:]
    score, verdict = float(m.group(1)), m.group(2)
    left_off = []
    for line in out.splitlines():
        # "✗ PrivateDevices=      Service potentially has access to hardware devices    0.2"
        mm = re.match(r"\s*✗\s+(\S+)\s{2,}(.*?)\s+([\d.]+)\s*$", line)
        if mm and float(mm.group(3)) > 0:
            left_off.append((mm.group(1), mm.group(2), float(mm.group(3))))
    with open(os.path.join(REPO, "systemd", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = "What cannot be enabled" in readme

    def explained(setting: str) -> bool:
        """The directive (any of "A=/B=") and the item after "~" are both in the README."""
        names = [n for n in re.split(r"=/?", setting.split("~")[0]) if n]
        item = setting.split("~", 1)[1] if "~" in setting else ""
        item = item.replace("AF_(INET|INET6)", "AF_INET")
        return any(n in readme for n in names) and (not item or item in readme)

    undocumented = sorted(s for s, _why, _w in left_off if not explained(s))
    record("security: systemd-analyze security", score=score, verdict=verdict,
           left_off=len(left_off), reasons_section=section,
           not_named_in_readme=undocumented,
           left_off_settings=[f"{n} ({w})" for n, _why, w in sorted(left_off,
                                                                    key=lambda x: -x[2])])
    print(f"systemd-analyze security: {score} {verdict}; {len(left_off)} protections left off; "
          f"not named in systemd/README.md: {undocumented}")
    assert section, "systemd/README.md has no section on the protections left off"
    assert score <= 3.2, out[-3000:]
