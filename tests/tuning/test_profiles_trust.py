"""Who may define profiles: files of the system directory (ROOT/etc/halotune/profiles under a
test root) must be root's alone, as sudo and polkit demand of their rules; a --profiles-dir
too when halotune runs as root; and power.max_w above 120 W never comes from a file a user
controls. These tests run as root and give files away to `nobody` (or run a child as nobody)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import pytest

from halotune.tuning.loader import ProfileError, ProfileStore

from .conftest import REPO, clean_environ

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files away")

NOBODY = pwd.getpwnam("nobody")
HOT = ('description = "hot"\n[power]\nstapm_w = 140\nslow_w = 140\nfast_w = 140\n'
       'max_w = 140\nmax_w_source = "vendor BIOS"\n')
PLAIN = 'description = "plain"\ninherits = "llm-max"\n[power]\nstapm_w = 100\n'


def _system_dir(root: str) -> str:
    d = os.path.join(root, "etc/halotune/profiles")
    os.makedirs(d, exist_ok=True)
    return d


def _write(directory: str, name: str, text: str, mode: int = 0o644) -> str:
    path = os.path.join(directory, f"{name}.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def test_group_writable_system_file_is_refused(tmp_path, run_cli):
    root = str(tmp_path)
    path = _write(_system_dir(root), "mine", PLAIN, mode=0o664)
    with pytest.raises(ProfileError) as e:
        ProfileStore(root=root).load("mine")
    assert str(e.value) == (
        f"{path}: refused: it is group- or world-writable (root:root, mode 0664); profiles are "
        "system configuration, read only when root alone can change them: run "
        f"`chown root:root {path} && chmod go-w {path}`")
    r = run_cli("--root", root, "profiles", "show", "mine")
    assert r.rc != 0 and f"{path}: refused: it is group- or world-writable" in r.err, r
    os.chmod(path, 0o644)
    assert ProfileStore(root=root).load("mine").values["power.stapm_w"] == 100


def test_symlink_to_a_file_nobody_owns_is_refused(tmp_path):
    root = str(tmp_path / "root")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = _write(str(elsewhere), "hot", HOT)
    os.chown(target, NOBODY.pw_uid, NOBODY.pw_gid)
    link = os.path.join(_system_dir(root), "hot.toml")
    os.symlink(target, link)
    with pytest.raises(ProfileError) as e:
        ProfileStore(root=root).load("hot")
    assert str(e.value).startswith(
        f"{link}: refused: its target {target} is not owned by root (nobody:nogroup, mode 0644)")
    # The same file owned by root, behind the same link, is fine.
    os.chown(target, 0, 0)
    assert ProfileStore(root=root).load("hot").max_w == 140


def test_a_refused_file_does_not_fall_back_to_the_shipped_profile(tmp_path):
    root = str(tmp_path)
    path = _write(_system_dir(root), "llm-max", PLAIN.replace('inherits = "llm-max"\n', ""))
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    store = ProfileStore(root=root)
    with pytest.raises(ProfileError, match="refused: it is not owned by root"):
        store.load("llm-max")
    profiles, errors = store.load_all()
    assert not {"llm-max", "llm-efficient"} & {p.name for p in profiles}   # the child too
    assert sorted(str(e.profile) for e in errors if e.file == path) == ["None", "llm-efficient"]


def test_a_writable_directory_is_refused(tmp_path):
    root = str(tmp_path)
    directory = _system_dir(root)
    _write(directory, "mine", PLAIN)
    os.chmod(directory, 0o777)
    with pytest.raises(ProfileError, match=f"directory {directory} is group- or world-writable"):
        ProfileStore(root=root).load("mine")


def test_root_refuses_a_profiles_dir_a_user_owns(tmp_path):
    d = tmp_path / "user"
    d.mkdir()
    path = _write(str(d), "plain", PLAIN)
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    with pytest.raises(ProfileError, match=f"{path}: refused: it is not owned by root"):
        ProfileStore(str(d)).load("plain")


@pytest.fixture
def nobodys_dir():
    """A directory of nobody's own, reachable by nobody."""
    d = tempfile.mkdtemp(prefix="halotune-nobody-")
    os.chmod(d, 0o755)
    os.chown(d, NOBODY.pw_uid, NOBODY.pw_gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _drop():
    os.setgroups([])
    os.setgid(NOBODY.pw_gid)
    os.setuid(NOBODY.pw_uid)


def _python_for_nobody() -> list[str] | None:
    """An interpreter nobody may run (this one may live under /root), with this one's
    site-packages (pydantic) on the path."""
    here = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    check = f"import sys; assert sys.version_info[:2] == {tuple(sys.version_info[:2])}"
    for exe in (sys.executable, shutil.which(here) or "", f"/usr/bin/{here}", "/usr/bin/python3"):
        try:
            ok = exe and subprocess.run([exe, "-c", check], preexec_fn=_drop,
                                        capture_output=True, cwd="/").returncode == 0
        except OSError:       # not executable by nobody
            ok = False
        if ok:
            return [exe]
    return None


@pytest.fixture
def traversable():
    """Let nobody import from the checkout and this venv's site-packages: a clone may live
    under a 0700 directory (mktemp -d). Adds o+rx to the two import directories (Python lists
    a sys.path entry) and only o+x (search, not list) to the directories above them, where
    missing, and takes it away again afterwards."""
    changed = []
    for top in (REPO, sysconfig.get_paths()["purelib"]):
        path, need = os.path.abspath(top), 0o005
        while path != "/":
            mode = os.stat(path).st_mode
            if mode & need != need:
                os.chmod(path, mode | need)
                changed.append((path, mode))
            path, need = os.path.dirname(path), 0o001
    yield
    for path, mode in reversed(changed):
        os.chmod(path, mode & 0o7777)


def _as_nobody(*args) -> subprocess.CompletedProcess:
    python = _python_for_nobody()
    if python is None:
        pytest.skip("no Python interpreter that the user nobody may run")
    env = clean_environ({"HOME": "/nonexistent"})
    env["PYTHONPATH"] += os.pathsep + sysconfig.get_paths()["purelib"]
    return subprocess.run([*python, "-m", "halotune", *args], cwd=REPO, env=env,
                          preexec_fn=_drop, capture_output=True, text=True, timeout=60)


def test_a_user_cannot_raise_the_tdp_ceiling_from_their_own_profiles_dir(nobodys_dir,
                                                                         traversable):
    for name, text in (("hot", HOT), ("plain", PLAIN)):
        os.chown(_write(nobodys_dir, name, text), NOBODY.pw_uid, NOBODY.pw_gid)
    hot = os.path.join(nobodys_dir, "hot.toml")
    r = _as_nobody("profiles", "show", "hot", "--profiles-dir", nobodys_dir)
    assert r.returncode != 0, r
    assert (f"{hot}: power.max_w = 140: a TDP ceiling above 120 W is accepted only from system "
            "configuration that root alone can change (the shipped profiles or "
            "/etc/halotune/profiles), and it is not owned by root (nobody:nogroup, mode 0644)"
            ) in r.stderr, r
    # The user's own profiles are otherwise theirs to use.
    r = _as_nobody("profiles", "show", "plain", "--profiles-dir", nobodys_dir)
    assert r.returncode == 0, r
