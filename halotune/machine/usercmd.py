"""Run the user's own benchmark command (`halotune bench -- CMD...`) as the user.

A fixed argument vector, never a shell. Under sudo (euid 0 with SUDO_UID/SUDO_GID set) the
child drops to the invoking user, with that user's supplementary groups (render/video matter
for /dev/dri and /dev/kfd) and HOME/USER/LOGNAME, so the benchmark runs exactly as it would
without halotune and never with root's rights. stdout and stderr are streamed line by line to
a callback (live progress) and also kept whole for parsing afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from halotune.machine.parse import is_uint


class UserCommandError(Exception):
    """The command could not be started; the message says why."""


@dataclass
class RunAs:
    uid: int
    gid: int
    groups: list[int] = field(default_factory=list)
    name: str | None = None
    home: str | None = None


@dataclass
class UserCommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    run_as: RunAs | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def invoking_user(environ=None) -> RunAs | None:
    """Who to run as: the sudo caller when we are root under sudo, else None (ourselves)."""
    env = os.environ if environ is None else environ
    if os.geteuid() != 0:
        return None
    uid, gid = env.get("SUDO_UID", ""), env.get("SUDO_GID", "")
    if not (is_uint(uid) and is_uint(gid)) or int(uid) == 0:
        return None
    who = RunAs(int(uid), int(gid))
    try:
        import pwd

        pw = pwd.getpwuid(who.uid)
        who.name, who.home = pw.pw_name, pw.pw_dir
        who.groups = [g for g in os.getgrouplist(pw.pw_name, who.gid)]
    except (KeyError, OSError):
        who.groups = []             # no passwd entry: no supplementary groups at all
    return who


def resolve_command(name: str, env: dict) -> str:
    """argv[0] as the user's shell would find it (PATH), without a shell."""
    if "/" in name:
        if not os.path.isfile(name):
            raise UserCommandError(f"{name}: no such file")
        return name
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if not found:
        raise UserCommandError(f"{name}: command not found (PATH={env.get('PATH', os.defpath)})")
    return found


def run_user_command(argv: list[str], on_line: Callable[[str, str], None] | None = None, *,
                     env: dict | None = None, cwd: str | None = None,
                     run_as: RunAs | None | bool = True,
                     timeout: float | None = None) -> UserCommandResult:
    """Run `argv`; `on_line(stream, line)` gets each line of "stdout"/"stderr" as it comes
    (calls never overlap). `run_as`: True = the sudo caller when there is one (invoking_user),
    None/False = as we are, or an explicit RunAs."""
    if not argv:
        raise UserCommandError("no command given")
    env = dict(os.environ if env is None else env)
    who = invoking_user(env) if run_as is True else (run_as or None)
    kwargs = {}
    if who is not None:
        kwargs = {"user": who.uid, "group": who.gid, "extra_groups": who.groups}
        if who.name:
            env.update(USER=who.name, LOGNAME=who.name)
        if who.home:
            env["HOME"] = who.home
    exe = resolve_command(argv[0], env)
    start = time.monotonic()
    try:
        proc = subprocess.Popen([exe, *argv[1:]], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                                close_fds=True, **kwargs)
    except PermissionError as e:
        raise UserCommandError(f"{argv[0]}: permission denied ({e.filename or exe})"
                               + (f" for uid {who.uid}" if who else "")) from None
    except OSError as e:
        raise UserCommandError(f"{argv[0]}: cannot run it: {e.strerror or e}") from None
    kept: dict[str, list[str]] = {"stdout": [], "stderr": []}
    lock = threading.Lock()

    def pump(stream, name):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            with lock:
                kept[name].append(line)
                if on_line is not None:
                    try:
                        on_line(name, line.rstrip("\n"))
                    except Exception:  # noqa: BLE001 - a display error must not lose output
                        pass
        stream.close()

    pumps = [threading.Thread(target=pump, args=(proc.stdout, "stdout"), daemon=True),
             threading.Thread(target=pump, args=(proc.stderr, "stderr"), daemon=True)]
    for t in pumps:
        t.start()
    timed_out = False
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        proc.wait()
    except BaseException:
        # Ctrl-C reached the child too (same process group); give it a moment, then kill.
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    finally:
        for t in pumps:
            t.join(5)
    return UserCommandResult(argv=list(argv), returncode=proc.returncode,
                             stdout="".join(kept["stdout"]), stderr="".join(kept["stderr"]),
                             duration_s=round(time.monotonic() - start, 3), run_as=who,
                             timed_out=timed_out)
