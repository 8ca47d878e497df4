"""`halotune service install|uninstall`, always into a scratch --prefix and against the
simulated Strix Halo (never the real /etc or the real machine)."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from halotune.cli import exitcodes, service

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DESTS = [rel for _name, rel in service.FILES]
UNIT_REL = "etc/systemd/system/halotune.service"
GTT_REL = "etc/modprobe.d/halotune-gtt.conf"


def ns(action, prefix, **kw) -> argparse.Namespace:
    return argparse.Namespace(service_command=action, prefix=str(prefix),
                              dry_run=kw.pop("dry_run", False), root=kw.pop("root", "/"),
                              state_dir=kw.pop("state_dir", None), **kw)


def tree_digest(root: str) -> str:
    """Every path, mode, symlink target and content of the simulated machine (not the
    simulator's own bookkeeping)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir.split(os.sep)[0] == ".halotune-sim":
            continue
        names = filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            h.update(f"{os.path.relpath(path, root)}\0{st.st_mode:o}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode())
            else:
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def unit_exec_start(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        lines = [ln for ln in f.read().splitlines() if ln.startswith("ExecStart=")]
    assert len(lines) == 1
    return lines[0][len("ExecStart="):]


@pytest.fixture
def machine(tmp_path):
    """A simulated Strix Halo with a profile applied that changes runtime values and writes
    halotune's modprobe.d file; returns (root, state_dir, digest before the apply)."""
    from halotune.machine.rootfs import RootFS
    from halotune.sim.tree import lay_out
    from halotune.tuning.engine import Engine
    from halotune.tuning.loader import ProfileStore

    root = str(tmp_path / "machine")
    lay_out(root)
    # The simulated kernel command line sets ttm.pages_limit, which makes the engine refuse a
    # GTT size in modprobe.d (the command line would win): this machine has none.
    cmdline = os.path.join(root, "proc/cmdline")
    with open(cmdline) as f:
        text = f.read()
    with open(cmdline, "w") as f:
        f.write(re.sub(r" (?:amd)?ttm\.\S+", "", text))
    original = tree_digest(root)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "big-gtt.toml").write_text(
        'inherits = "llm-max"\ndescription = "llm-max with a 64 GiB GTT"\n'
        "[memory]\ngtt_gib = 64\n")
    state_dir = str(tmp_path / "state")
    out = Engine(RootFS(root), state_dir).apply(ProfileStore(str(profiles)).load("big-gtt"))
    assert out.ok, out.summary
    assert os.path.exists(os.path.join(root, GTT_REL))
    assert tree_digest(root) != original
    return root, state_dir, original


# --- install ---------------------------------------------------------------------------------------

def test_install_into_a_prefix(tmp_path, capsys):
    prefix = tmp_path / "pfx"
    assert service.run(ns("install", prefix)) == exitcodes.OK
    out = capsys.readouterr().out
    for rel in DESTS:
        path = prefix / rel
        assert path.is_file(), rel
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, rel
        assert f"wrote: {path}" in out
    # tmpfiles.d and sysusers.d go in unchanged.
    assert (prefix / "etc/tmpfiles.d/halotune.conf").read_bytes() == \
        open(os.path.join(REPO, "systemd/halotune.tmpfiles.conf"), "rb").read()
    assert (prefix / "etc/sysusers.d/halotune.conf").read_bytes() == \
        open(os.path.join(REPO, "systemd/halotune.sysusers.conf"), "rb").read()
    # Not /: the systemd commands are printed, not run.
    assert "systemd-sysusers /etc/sysusers.d/halotune.conf" in out
    assert "systemd-tmpfiles --create /etc/tmpfiles.d/halotune.conf" in out
    assert "systemctl daemon-reload" in out


def test_exec_start_points_at_this_installation(tmp_path):
    prefix = tmp_path / "pfx"
    assert service.run(ns("install", prefix)) == exitcodes.OK
    words = unit_exec_start(str(prefix / UNIT_REL)).split()
    exe = words[0]
    assert os.path.isabs(exe) and os.path.isfile(exe) and os.access(exe, os.X_OK)
    assert exe != "/usr/bin/halotune" or os.path.exists("/usr/bin/halotune")
    assert words[-1] == "daemon"
    if words[1:3] == ["-m", "halotune"]:
        assert exe == os.path.abspath(sys.executable)
    else:
        assert os.path.basename(exe) == "halotune" and len(words) == 2
    # Everything else is the packaged unit.
    packaged = open(os.path.join(REPO, "systemd/halotune.service"), encoding="utf-8").read()
    installed = (prefix / UNIT_REL).read_text()
    strip = re.compile(r"^(ExecStart=|Environment=PYTHONPATH|ProtectHome=|#).*$\n?", re.M)
    assert strip.sub("", installed) == strip.sub("", packaged)


def test_entry_point_preference(tmp_path, monkeypatch):
    script = tmp_path / "bin" / "halotune"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script), "service", "install"])
    assert service.entry_point() == [str(script), "daemon"]
    # `python -m halotune`: argv[0] is __main__.py; then the script beside the interpreter,
    # or the interpreter itself.
    monkeypatch.setattr(sys, "argv", [os.path.join(REPO, "halotune", "__main__.py")])
    argv = service.entry_point()
    beside = os.path.join(os.path.dirname(sys.executable), "halotune")
    if os.access(beside, os.X_OK):
        assert argv == [os.path.realpath(beside), "daemon"]
    else:
        assert argv == [os.path.abspath(sys.executable), "-m", "halotune", "daemon"]


def test_install_is_idempotent(tmp_path, capsys):
    prefix = tmp_path / "pfx"
    service.run(ns("install", prefix))
    before = {rel: (prefix / rel).stat().st_mtime_ns for rel in DESTS}
    capsys.readouterr()
    assert service.run(ns("install", prefix)) == exitcodes.OK
    out = capsys.readouterr().out
    assert all(f"unchanged: {prefix / rel}" in out for rel in DESTS)
    assert {rel: (prefix / rel).stat().st_mtime_ns for rel in DESTS} == before


def test_install_dry_run_writes_nothing(tmp_path, capsys):
    prefix = tmp_path / "pfx"
    prefix.mkdir()
    assert service.run(ns("install", prefix, dry_run=True)) == exitcodes.OK
    assert list(prefix.iterdir()) == []
    out = capsys.readouterr().out
    assert all(f"would write: {prefix / rel}" in out for rel in DESTS)


def test_render_unit_quotes_and_home(tmp_path):
    text = open(os.path.join(REPO, "systemd/halotune.service"), encoding="utf-8").read()
    unit = service.render_unit(text, ["/opt/my tools/50%/$x/halotune", "daemon"],
                               pythonpath="/srv/halo tune", home_read_only=True)
    assert 'ExecStart="/opt/my tools/50%%/$x/halotune" daemon' in unit.splitlines()
    assert service.systemd_line("ExecStart", ["/bin/x", "$HOME", "a b"]) == \
        'ExecStart=/bin/x $$HOME "a b"'
    assert 'Environment="PYTHONPATH=/srv/halo tune"' in unit.splitlines()
    assert "ProtectHome=read-only" in unit.splitlines()
    assert "ProtectHome=yes" not in unit.splitlines()
    plain = service.render_unit(text, ["/usr/local/bin/halotune", "daemon"])
    assert "ExecStart=/usr/local/bin/halotune daemon" in plain.splitlines()
    assert "ProtectHome=yes" in plain.splitlines() and "PYTHONPATH" not in plain


def test_installation_under_a_home_relaxes_protect_home(tmp_path, monkeypatch):
    monkeypatch.setattr(service, "entry_point", lambda: ["/root/.local/bin/halotune", "daemon"])
    monkeypatch.setattr(service, "needs_pythonpath", lambda argv: None)
    prefix = tmp_path / "pfx"
    assert service.run(ns("install", prefix)) == exitcodes.OK
    lines = (prefix / UNIT_REL).read_text().splitlines()
    assert "ProtectHome=read-only" in lines and "ExecStart=/root/.local/bin/halotune daemon" in lines


def test_trust_problems(tmp_path):
    d = tmp_path / "venv"
    d.mkdir()
    f = d / "halotune"
    f.write_text("")
    f.chmod(0o755)
    d.chmod(0o777)
    problems = service.trust_problems([str(f)])
    if os.geteuid() == 0:
        assert any("writable by group or others" in p for p in problems)
    else:
        assert any("not root" in p for p in problems)
    assert service.trust_problems(["/usr/bin/env"]) == []


ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("odd", [False, True])
def test_installed_unit_passes_systemd_analyze_verify(tmp_path, monkeypatch, odd):
    """The unit exactly as `service install` writes it; with an awkward path (space, %, $),
    verify finding the binary proves the quoting."""
    if odd:
        exe = tmp_path / "my tools" / "50%" / "$x" / "halotune"
        exe.parent.mkdir(parents=True)
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
        monkeypatch.setattr(service, "entry_point", lambda: [str(exe), "daemon"])
    prefix = tmp_path / "pfx"
    assert service.run(ns("install", prefix)) == exitcodes.OK
    unit = str(prefix / UNIT_REL)
    out = subprocess.run([ANALYZE, "verify", unit], capture_output=True, text=True, timeout=120)
    about = [ln for ln in (out.stdout + out.stderr).splitlines() if "halotune.service" in ln]
    assert out.returncode == 0 and about == [], out.stdout + out.stderr


# --- uninstall -------------------------------------------------------------------------------------

def test_uninstall_rolls_back_and_removes_everything(tmp_path, machine, capsys):
    root, state_dir, original = machine
    prefix = tmp_path / "pfx"
    assert service.run(ns("install", prefix)) == exitcodes.OK
    capsys.readouterr()
    code = service.run(ns("uninstall", prefix, root=root, state_dir=state_dir))
    out = capsys.readouterr()
    assert code == exitcodes.OK, out.out + out.err
    assert tree_digest(root) == original            # every original value is back
    # Gone, by the rollback (the original was "no file") or, while the engine's rollback
    # leaves it (the xfail in tests/tuning/test_tunables_sim.py), by uninstall itself.
    assert not os.path.exists(os.path.join(root, GTT_REL))
    for rel in DESTS:
        assert not (prefix / rel).exists(), rel
        assert f"removed: {prefix / rel}" in out.out
    assert "restored" in out.out
    # The journal holds nothing more to undo.
    from halotune.tuning.journal import StateDir
    journal = StateDir(state_dir).load(root)
    assert journal.baseline == {} and journal.active is None and journal.txn is None


def test_uninstall_order_rollback_before_removal(tmp_path, machine, capsys):
    root, state_dir, _ = machine
    prefix = tmp_path / "pfx"
    service.run(ns("install", prefix))
    capsys.readouterr()
    service.run(ns("uninstall", prefix, root=root, state_dir=state_dir))
    out = capsys.readouterr().out
    unit_removed = out.index("removed: " + str(prefix / UNIT_REL))
    assert out.index("halotune rollback") < unit_removed
    gtt_removed = "removed: " + os.path.join(root, GTT_REL)
    assert gtt_removed not in out or out.index(gtt_removed) < unit_removed


def test_uninstall_dry_run_changes_nothing(tmp_path, machine, capsys):
    root, state_dir, _ = machine
    prefix = tmp_path / "pfx"
    service.run(ns("install", prefix))
    applied = tree_digest(root)
    journal = open(os.path.join(state_dir, "journal.json"), "rb").read()
    capsys.readouterr()
    assert service.run(ns("uninstall", prefix, root=root, state_dir=state_dir,
                          dry_run=True)) == exitcodes.OK
    out = capsys.readouterr().out
    assert tree_digest(root) == applied
    assert open(os.path.join(state_dir, "journal.json"), "rb").read() == journal
    assert all((prefix / rel).exists() for rel in DESTS)
    assert f"would remove: {os.path.join(root, GTT_REL)}" in out
    assert all(f"would remove: {prefix / rel}" in out for rel in DESTS)
    assert "rollback (dry run)" in out


def test_uninstall_removes_a_modprobe_file_without_journal(tmp_path, capsys):
    from halotune.sim.tree import lay_out

    root = str(tmp_path / "machine")
    lay_out(root)
    conf = os.path.join(root, GTT_REL)
    with open(conf, "w") as f:
        f.write("options ttm pages_limit=16777216 page_pool_size=16777216\n")
    state_dir = str(tmp_path / "no-state")
    prefix = tmp_path / "pfx"
    assert service.run(ns("uninstall", prefix, root=root, state_dir=state_dir)) == exitcodes.OK
    out = capsys.readouterr().out
    assert not os.path.exists(conf) and not os.path.exists(state_dir)
    assert f"no journal in {state_dir}" in out
    assert all(f"not present: {prefix / rel}" in out for rel in DESTS)


def test_uninstall_stops_when_the_rollback_fails(tmp_path, machine, capsys):
    root, state_dir, _ = machine
    prefix = tmp_path / "pfx"
    service.run(ns("install", prefix))
    with open(os.path.join(state_dir, "journal.json"), "w") as f:
        f.write("{ truncated")
    capsys.readouterr()
    code = service.run(ns("uninstall", prefix, root=root, state_dir=state_dir))
    err = capsys.readouterr().err
    assert code == exitcodes.NOT_READY
    assert "rollback failed" in err and "damaged" in err
    assert all((prefix / rel).exists() for rel in DESTS)       # left for a second attempt
    assert os.path.exists(os.path.join(root, GTT_REL))


# --- permissions, usage ------------------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
@pytest.mark.parametrize("action", ["install", "uninstall"])
def test_prefix_root_refused_for_non_root(tmp_path, action):
    """In a forked child that has dropped to nobody: exit 4 and a message saying why."""
    log = tmp_path / "child.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT, 0o666)
    os.chmod(log, 0o666)
    pid = os.fork()
    if pid == 0:    # child: never returns into pytest
        code = 99
        try:
            sys.stdout = sys.stderr = os.fdopen(fd, "w", buffering=1)   # not pytest's capture
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = service.run(ns(action, "/"))
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    text = log.read_text()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == exitcodes.PERMISSION, text
    assert "needs root" in text and f"sudo halotune service {action}" in text


def test_usage(capsys):
    assert service.run(argparse.Namespace(service_command=None)) == exitcodes.USAGE
    assert "install|uninstall" in capsys.readouterr().err


def test_registered_in_the_command_line(tmp_path):
    """main.py registers `service`: its options reach run() as these tests pass them."""
    from halotune.cli import main

    argv = ["service", "install", "--prefix", str(tmp_path), "--dry-run"]
    args = main.build_parser(argv).parse_args(argv)
    assert (args.command, args.service_command, args.prefix, args.dry_run) == (
        "service", "install", str(tmp_path), True)
    argv = ["service", "uninstall", "--state-dir", "/x"]
    args = main.build_parser(argv).parse_args(argv)
    assert (args.service_command, args.prefix, args.dry_run, args.state_dir) == (
        "uninstall", "/", False, "/x")


def _writable_installation(tmp_path, monkeypatch) -> str:
    """An entry point in a directory anyone can write (mode 0777, no sticky bit)."""
    d = tmp_path / "venv" / "bin"
    d.mkdir(parents=True)
    exe = d / "halotune"
    exe.write_text("#!/usr/bin/python3\n")
    exe.chmod(0o755)
    d.chmod(0o777)
    monkeypatch.setattr(service, "entry_point", lambda: [str(exe), "daemon"])
    monkeypatch.setattr(service, "needs_pythonpath", lambda argv: None)
    return str(d)


def test_install_refuses_a_non_root_writable_installation(tmp_path, monkeypatch, capsys):
    # Issue 15: the unit runs the installation as root; one a non-root user can write was
    # only warned about, and installed.
    writable = _writable_installation(tmp_path, monkeypatch)
    prefix = tmp_path / "pfx"
    assert service.run(ns("install", prefix)) == exitcodes.NOT_READY
    err = capsys.readouterr().err
    owner = "owner root" if os.geteuid() == 0 else "not root"
    assert f"{writable} is " in err and "mode 0777" in err and owner in err, err
    assert "--force" in err
    assert not (prefix / UNIT_REL).exists()


def test_install_force_installs_a_writable_installation_with_a_warning(tmp_path, monkeypatch,
                                                                         capsys):
    writable = _writable_installation(tmp_path, monkeypatch)
    prefix = tmp_path / "pfx"
    assert service.run(ns("install", prefix, force=True)) == exitcodes.OK
    err = capsys.readouterr().err
    assert f"warning: {writable} is " in err and "mode 0777" in err, err
    assert f"ExecStart={writable}/halotune daemon" in (prefix / UNIT_REL).read_text()


def test_install_force_is_a_cli_flag(tmp_path, monkeypatch):
    from halotune.cli.main import build_parser

    argv = ["service", "install", "--prefix", str(tmp_path), "--force"]
    args = build_parser(argv).parse_args(argv)
    assert args.force is True
