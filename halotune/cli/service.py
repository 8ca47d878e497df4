"""`halotune service install|uninstall`: the systemd unit, tmpfiles.d and sysusers.d files for
pip/pipx installs (distribution packages ship them themselves).

install   writes, under --prefix (default /):
              etc/systemd/system/halotune.service   ExecStart= pointing at this installation
              etc/tmpfiles.d/halotune.conf          /run/halotune, /var/lib/halotune
              etc/sysusers.d/halotune.conf          group halotune
          all mode 0644, each atomically. /etc, not /usr/lib: a pip install is local
          administrator configuration (file-hierarchy(7)); /usr belongs to the package manager
          and is read-only on image-based systems. On a running systemd with prefix /, it then
          runs systemd-sysusers, systemd-tmpfiles --create and systemctl daemon-reload;
          otherwise it prints those commands.
uninstall stops and disables the service (its SIGTERM handler rolls back; stopping first also
          keeps its drift re-assertion from undoing the rollback below), rolls the machine back
          to the original values with the engine (the journal in --state-dir), removes
          halotune's modprobe.d file if the rollback left it, removes the three files and
          reloads systemd. A rollback that cannot restore everything stops it before any file
          is removed, so it can be run again once the cause is fixed.

--dry-run prints what would be done and changes nothing. Exit codes: 0 done, 2 failed,
4 permission denied (prefix / needs root), 64 usage.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys

from halotune.cli import exitcodes
from halotune.machine.programs import ProgramError, ProgramNotFound
from halotune.machine.spawn import run_host

UNIT = "halotune.service"
# (file in systemd/ of the source tree = package data halotune/systemd/, destination under prefix)
FILES = (
    ("halotune.service", "etc/systemd/system/halotune.service"),
    ("halotune.tmpfiles.conf", "etc/tmpfiles.d/halotune.conf"),
    ("halotune.sysusers.conf", "etc/sysusers.d/halotune.conf"),
)
FILE_MODE = 0o644
# ProtectHome=yes hides these; an installation inside them needs ProtectHome=read-only.
HOME_DIRS = ("/home", "/root", "/run/user")
INSTALLED_MARK = "# Installed by `halotune service install`"


class ServiceError(Exception):
    def __init__(self, message: str, code: int = exitcodes.NOT_READY):
        super().__init__(message)
        self.code = code


# --- the files ---------------------------------------------------------------------------------

def packaged(name: str) -> bytes:
    """A file of systemd/ as shipped: package data of `halotune` (wheel, editable install), or
    <repo>/systemd next to the package in an uninstalled source tree."""
    import importlib.resources

    try:
        return importlib.resources.files("halotune").joinpath("systemd", name).read_bytes()
    except (FileNotFoundError, NotADirectoryError, ModuleNotFoundError):
        import halotune

        repo = os.path.dirname(os.path.dirname(os.path.abspath(halotune.__file__)))
        with open(os.path.join(repo, "systemd", name), "rb") as f:
            return f.read()


def entry_point() -> list[str]:
    """The command line that starts this installation's daemon, absolute paths only:
    the `halotune` script being run (sys.argv[0]), else the one beside this interpreter
    (same virtual environment), else `<python> -m halotune daemon`."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "halotune" and _is_executable(argv0):
        return [os.path.realpath(argv0), "daemon"]
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "halotune")
    if _is_executable(beside):
        return [os.path.realpath(beside), "daemon"]
    # Not resolved: a virtual environment's bin/python is a symlink, and resolving it would
    # leave the environment (and its site-packages) behind.
    return [os.path.abspath(sys.executable), "-m", "halotune", "daemon"]


def _is_executable(path: str) -> bool:
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def package_dir() -> str:
    import halotune

    return os.path.dirname(os.path.realpath(halotune.__file__))


def script_interpreter(path: str) -> str | None:
    """The interpreter on a script's #! line (console scripts name their Python there)."""
    try:
        with open(path, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode("utf-8", "replace").split()
    return parts[0] if parts and parts[0].startswith("/") else None


def installation_paths(argv: list[str]) -> list[str]:
    """Everything the service needs to reach to start this installation: the entry point,
    the interpreter that runs it (as named and resolved: a virtual environment's python is
    a link to the base interpreter, often under /root/.pyenv or a home), the standard
    library's prefix and the halotune package."""
    paths = [argv[0], os.path.realpath(argv[0])]
    interpreter = argv[0] if argv[1:2] == ["-m"] else script_interpreter(argv[0])
    if interpreter:
        paths += [interpreter, os.path.realpath(interpreter)]
    paths += [os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), package_dir()]
    seen: list[str] = []
    for p in paths:
        if p not in seen:
            seen.append(p)
    return seen


def needs_pythonpath(argv: list[str]) -> str | None:
    """For `python -m halotune`: the directory to put on PYTHONPATH when that interpreter,
    started from / as systemd starts it, cannot import this halotune (an uninstalled source
    tree). None when it can, or for a script entry point."""
    if argv[1:3] != ["-m", "halotune"]:
        return None
    parent = os.path.dirname(package_dir())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        out = run_host([argv[0], "-c", "import halotune, os; print(os.path.dirname("
                        "os.path.dirname(os.path.realpath(halotune.__file__))))"],
                       timeout=30, cwd="/", env=env, search_path=False)
    except ProgramError:
        return parent
    if out.returncode == 0 and os.path.realpath(out.stdout.strip()) == os.path.realpath(parent):
        return None
    return parent


def systemd_quote(arg: str, dollar: bool = True) -> str:
    """One word of an ExecStart= or Environment= line, taken literally by systemd: `%`
    doubled (specifiers), `$` doubled where variables are expanded (dollar=True),
    backslashes and double quotes escaped, and the word quoted when it holds white space,
    quotes, a backslash or a semicolon."""
    s = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if dollar:
        s = s.replace("$", "$$")
    if not s or any(c.isspace() or c in "\"'\\;" for c in arg):
        return f'"{s}"'
    return s


def render_unit(text: str, argv: list[str], pythonpath: str | None = None,
                home_read_only: bool = False) -> str:
    """The packaged unit with ExecStart= set to `argv` (plus PYTHONPATH when given, and
    ProtectHome=read-only when the installation lives under a home directory)."""
    from halotune import __version__

    out: list[str] = []
    replaced = False
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            if replaced:
                continue
            out.append(f"{INSTALLED_MARK} (halotune {__version__}): ExecStart= points at "
                       "this installation.")
            if pythonpath:
                out.append("Environment=" + systemd_quote(f"PYTHONPATH={pythonpath}", dollar=False))
            out.append(systemd_line("ExecStart", argv))
            replaced = True
        elif home_read_only and line.strip() == "ProtectHome=yes":
            out.append("# read-only, not yes: this installation lives under a home directory.")
            out.append("ProtectHome=read-only")
        else:
            out.append(line)
    if not replaced:
        raise ServiceError("the packaged unit has no ExecStart= line")
    return "\n".join(out) + "\n"


def systemd_line(key: str, words: list[str]) -> str:
    """A command line: systemd expands `$VAR` in the arguments but not in the executable's
    path (checked with systemd-analyze verify), so `$` is doubled in the arguments only."""
    return f"{key}=" + " ".join(systemd_quote(w, dollar=i > 0) for i, w in enumerate(words))


def _under_home(path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in HOME_DIRS)


def _user(uid: int) -> str:
    import pwd
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    import grp
    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"


def trust_problems(paths: list[str]) -> list[str]:
    """Files and directories of the installation that someone other than root could change:
    whoever can is root once the service starts."""
    problems = []
    seen = set()
    for p in paths:
        for q in (p, os.path.dirname(p)):
            if q in seen:
                continue
            seen.add(q)
            try:
                st = os.stat(q)
            except OSError:
                continue
            mode = f"mode {stat.S_IMODE(st.st_mode):04o}"
            if st.st_uid != 0:
                problems.append(f"{q} is owned by {_user(st.st_uid)}, not root ({mode})")
            elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
                problems.append(f"{q} is writable by group or others "
                                f"(owner root, group {_group(st.st_gid)}, {mode})")
    return problems


# --- running systemd -------------------------------------------------------------------------

def _dest(prefix: str, rel: str) -> str:
    return os.path.join(prefix, rel)


def systemd_running() -> bool:
    """sd_booted(3): PID 1 is systemd."""
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


def _live(prefix: str) -> bool:
    return os.path.abspath(prefix) == "/" and systemd_running()


def _run(argv: list[str], dry_run: bool) -> bool:
    """Run a fixed command (no shell); print it and its failure. True on success."""
    shown = " ".join(argv)
    if dry_run:
        print(f"would run: {shown}")
        return True
    try:
        # 180 s: `systemctl disable --now` waits for the stop, whose rollback may take 90 s.
        cp = run_host(argv, timeout=180)
    except ProgramNotFound:
        print(f"halotune: {argv[0]} not found; run yourself: {shown}", file=sys.stderr)
        return False
    except ProgramError as e:
        print(f"halotune: {shown}: {e}", file=sys.stderr)
        return False
    if cp.returncode != 0:
        why = (cp.stderr or cp.stdout).strip()
        print(f"halotune: {shown} failed (exit {cp.returncode})" + (f": {why}" if why else ""),
              file=sys.stderr)
        return False
    print(f"ran: {shown}")
    return True


# --- install ---------------------------------------------------------------------------------

def install(prefix: str, dry_run: bool, force: bool = False) -> int:
    from halotune.machine import durable

    argv = entry_point()
    pythonpath = needs_pythonpath(argv)
    involved = installation_paths(argv)
    home_ro = any(_under_home(p) for p in involved)
    problems = trust_problems(involved)
    for problem in problems:
        print(f"halotune: {'warning' if force else 'error'}: {problem}: the service runs this "
              "as root, so whoever can write it can take over the machine", file=sys.stderr)
    if problems and not force:
        # The unit would run code a non-root user can replace: refuse unless told otherwise.
        raise ServiceError("refusing to install a service that runs a non-root-writable "
                           "installation as root; install halotune as root (e.g. pipx as root, "
                           "or pip into a root-owned virtual environment), fix the owner/mode "
                           "above, or pass --force to install anyway", exitcodes.NOT_READY)
    contents = {}
    for name, rel in FILES:
        data = packaged(name)
        if name == UNIT:
            data = render_unit(data.decode("utf-8"), argv, pythonpath, home_ro).encode("utf-8")
        contents[rel] = data
    for rel, data in contents.items():
        path = _dest(prefix, rel)
        try:
            with open(path, "rb") as f:
                same = f.read() == data and stat.S_IMODE(os.fstat(f.fileno()).st_mode) == FILE_MODE
        except OSError:
            same = False
        if same:
            print(f"unchanged: {path}")
            continue
        if dry_run:
            print(f"would write: {path} (mode 0644)")
            continue
        try:
            durable.ensure_dir(os.path.dirname(path), mode=0o755)
            durable.atomic_write(path, data, mode=FILE_MODE)
        except PermissionError as e:
            raise ServiceError(f"{e.filename or path}: permission denied (run as root)",
                               exitcodes.PERMISSION) from None
        except OSError as e:
            raise ServiceError(f"cannot write {path}: {e.strerror}") from None
        print(f"wrote: {path}")
    print(f"ExecStart={' '.join(argv)}" + (f" (PYTHONPATH={pythonpath})" if pythonpath else ""))
    if home_ro:
        print("note: halotune is installed under a home directory: the unit uses "
              "ProtectHome=read-only instead of ProtectHome=yes")
    sysusers = "/" + FILES[2][1]
    tmpfiles = "/" + FILES[1][1]
    commands = [["systemd-sysusers", sysusers], ["systemd-tmpfiles", "--create", tmpfiles],
                ["systemctl", "daemon-reload"]]
    if _live(prefix):
        for cmd in commands:
            if not _run(cmd, dry_run):
                return exitcodes.NOT_READY
    else:
        why = ("systemd is not running here" if os.path.abspath(prefix) == "/" else
               f"the files went under {prefix}, not /")
        print(f"{why}; on the target system, as root, run:")
        for cmd in commands:
            print("  " + " ".join(cmd))
    print(f"next: systemctl enable --now {UNIT}; add users who may use the API with "
          "`usermod -aG halotune USER`")
    return exitcodes.OK


# --- uninstall -------------------------------------------------------------------------------

def _rollback(root: str, state_dir: str, dry_run: bool) -> bool:
    """Restore the original values; True when nothing is left to restore."""
    from halotune.machine.rootfs import RootFS
    from halotune.tuning.engine import Engine, EngineError
    from halotune.tuning.journal import JournalError
    from halotune.views import plan

    if not os.path.isdir(state_dir):
        print(f"no journal in {state_dir}: halotune changed nothing to roll back")
        return True
    try:
        outcome = Engine(RootFS(root), state_dir, wait_s=30.0).rollback(dry_run=dry_run)
    except PermissionError as e:
        raise ServiceError(f"{e.filename or state_dir}: permission denied (run as root)",
                           exitcodes.PERMISSION) from None
    except (EngineError, JournalError) as e:
        if dry_run:
            print(f"halotune: warning: cannot read the journal: {e}", file=sys.stderr)
            return True
        raise ServiceError(f"rollback failed: {e}") from None
    print(plan.render(outcome))
    return outcome.ok


def _remove_gtt_conf(root: str, dry_run: bool) -> bool:
    """Remove halotune's modprobe.d file under `root`; True if it was there."""
    from halotune.machine import durable
    from halotune.machine.rootfs import RootFS
    from halotune.tuning.tunables.gtt import CONF

    path = RootFS(root).path(CONF)
    if not os.path.lexists(path):
        return False
    if dry_run:
        print(f"would remove: {path}")
        return False
    try:
        durable.remove(path)
    except PermissionError:
        raise ServiceError(f"{path}: permission denied (run as root)", exitcodes.PERMISSION) from None
    except OSError as e:
        raise ServiceError(f"cannot remove {path}: {e.strerror}") from None
    print(f"removed: {path} (the GTT size returns to its default at the next boot; if ttm is in "
          "your initramfs, rebuild it first: update-initramfs -u, or dracut -f)")
    return True


def uninstall(prefix: str, root: str, state_dir: str, dry_run: bool) -> int:
    from halotune.machine import durable

    live = _live(prefix)
    if live:
        # Not fatal: the unit may be unknown already (a second uninstall).
        _run(["systemctl", "disable", "--now", UNIT], dry_run)
    else:
        why = ("systemd is not running here" if prefix == "/" else
               f"the files are under {prefix}, not /")
        print(f"{why}: if {UNIT} runs on the target system, stop it there first with "
              f"`systemctl disable --now {UNIT}`")
    restored = _rollback(root, state_dir, dry_run)
    # halotune's modprobe.d file goes whatever its journal says (it may predate the journal).
    # A rollback to "no file" is then complete too: the second rollback finds it so and
    # clears the journal entry.
    removed_conf = _remove_gtt_conf(root, dry_run)
    if not restored and removed_conf:
        print("checking again after removing the modprobe.d file:")
        restored = _rollback(root, state_dir, dry_run)
    if not restored:
        print("halotune: some original values could not be restored; the service files are "
              "left in place. Fix the cause (see above), then run `halotune service uninstall` "
              "again", file=sys.stderr)
        return exitcodes.NOT_READY
    for _name, rel in FILES:
        path = _dest(prefix, rel)
        if not os.path.lexists(path):
            print(f"not present: {path}")
            continue
        if dry_run:
            print(f"would remove: {path}")
            continue
        try:
            durable.remove(path)
        except PermissionError:
            raise ServiceError(f"{path}: permission denied (run as root)",
                               exitcodes.PERMISSION) from None
        except OSError as e:
            raise ServiceError(f"cannot remove {path}: {e.strerror}") from None
        print(f"removed: {path}")
    if live:
        if not _run(["systemctl", "daemon-reload"], dry_run):
            return exitcodes.NOT_READY
    print("kept: the group halotune (groupdel halotune) and the state directory "
          f"{state_dir}")
    return exitcodes.OK


# --- entry -----------------------------------------------------------------------------------

def run(args) -> int:
    action = getattr(args, "service_command", None)
    if action not in ("install", "uninstall"):
        print("usage: halotune service install|uninstall [--prefix DIR] [--dry-run] [--force]",
              file=sys.stderr)
        return exitcodes.USAGE
    prefix = os.path.abspath(getattr(args, "prefix", None) or "/")
    dry_run = bool(getattr(args, "dry_run", False))
    if prefix == "/" and not dry_run and os.geteuid() != 0:
        print(f"halotune service {action} writes to /etc and talks to systemd: it needs root "
              f"(sudo halotune service {action}), or --prefix DIR to stage the files",
              file=sys.stderr)
        return exitcodes.PERMISSION
    try:
        if action == "install":
            return install(prefix, dry_run, bool(getattr(args, "force", False)))
        from halotune.tuning.engine import default_state_dir

        root = getattr(args, "root", None) or "/"
        state_dir = getattr(args, "state_dir", None) or default_state_dir(root)
        return uninstall(prefix, root, state_dir, dry_run)
    except ServiceError as e:
        print(f"halotune: {e}", file=sys.stderr)
        return e.code
