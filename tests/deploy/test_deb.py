"""The Debian package: `dpkg-buildpackage -us -uc -b` builds it from a copy of the tree, `dpkg -i`
installs it on this machine (no systemd as PID 1: the maintainer scripts must cope), the
installed halotune reads a simulated Strix Halo, and `dpkg --purge` removes its state.

The install test changes the machine (/usr/bin/halotune, /etc/halotune, the group halotune), so
it runs where that is expected: as root, with no halotune package or /var/lib/halotune already
there. It always purges what it installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from .conftest import REPO, clean_env, copy_tree, in_ci, need, require_tool

VENV = "/usr/lib/halotune/venv"


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> str:
    for tool in ("dpkg-buildpackage", "dpkg-checkbuilddeps", "dh", "dh_installsysusers"):
        require_tool(tool)
    work = tmp_path_factory.mktemp("deb")
    src = str(work / "halotune")
    copy_tree(src)
    deps = subprocess.run(["dpkg-checkbuilddeps"], cwd=src, capture_output=True, text=True)
    need(deps.returncode == 0, f"build dependencies missing: {deps.stderr.strip()}")
    started = time.monotonic()
    r = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, capture_output=True,
                       text=True, timeout=1800, env=clean_env())
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    print(f"dpkg-buildpackage: {time.monotonic() - started:.0f} s")
    debs = [p for p in os.listdir(work) if p.endswith(".deb")]
    assert debs == ["halotune_0.1.0_amd64.deb"], debs
    return str(work / debs[0])


def _dpkg_deb(option: str, deb: str, *args) -> str:
    return subprocess.run(["dpkg-deb", option, deb, *args], capture_output=True, text=True,
                          check=True).stdout


def test_package_contents(deb):
    listing = _dpkg_deb("--contents", deb)
    paths = {line.split()[5].lstrip(".") for line in listing.splitlines()}
    for path in ("/lib/systemd/system/halotune.service", "/usr/lib/tmpfiles.d/halotune.conf",
                 "/usr/lib/sysusers.d/halotune.conf", "/etc/halotune/halotune.toml",
                 "/usr/bin/halotune", f"{VENV}/bin/halotune", f"{VENV}/pyvenv.cfg",
                 "/usr/share/doc/halotune/README.Debian"):
        assert path in paths, path
    assert "/usr/bin/halotune -> ../lib/halotune/venv/bin/halotune" in listing
    # the installed unit runs the packaged entry point
    unit = open(os.path.join(REPO, "systemd", "halotune.service")).read()
    assert "ExecStart=/usr/bin/halotune daemon" in unit
    # configuration is a conffile; the group exists before tmpfiles.d hands it a directory
    work = os.path.dirname(deb)
    ctrl = os.path.join(work, "control")
    subprocess.run(["dpkg-deb", "--control", deb, ctrl], check=True)
    assert open(os.path.join(ctrl, "conffiles")).read().split() == ["/etc/halotune/halotune.toml"]
    postinst = open(os.path.join(ctrl, "postinst")).read()
    assert 0 <= postinst.index("systemd-sysusers") < postinst.index("systemd-tmpfiles")
    assert "deb-systemd-helper enable 'halotune.service'" in postinst
    depends = _dpkg_deb("--field", deb, "Depends")
    assert "python3.11" in depends and "pydantic" not in depends


@pytest.fixture
def machine_is_ours():
    need(os.geteuid() == 0, "installing a .deb needs root")
    require_tool("dpkg")
    taken = [p for p in ("/var/lib/halotune", "/etc/halotune", "/usr/bin/halotune")
             if os.path.lexists(p)]
    installed = subprocess.run(["dpkg-query", "-W", "halotune"], capture_output=True).returncode == 0
    if (taken or installed) and not in_ci():
        pytest.skip(f"halotune is already on this machine ({', '.join(taken) or 'package'}): "
                    "not touching it")
    assert not installed and not taken, f"a fresh CI machine has no halotune: {taken}"


def _dpkg(*args) -> subprocess.CompletedProcess:
    """dpkg, waiting for the lock another package tool may hold (up to 5 minutes)."""
    for _ in range(60):
        r = subprocess.run(["dpkg", *args], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if r.returncode == 0 or "lock" not in r.stderr:
            return r
        time.sleep(5)
    return r


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def test_install_status_purge(deb, machine_is_ours, tmp_path):
    group_before = _group_exists("halotune")
    started = time.monotonic()
    r = _dpkg("-i", deb)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        print(f"dpkg -i: {time.monotonic() - started:.0f} s")
        # the installed command, from the private environment, never this checkout
        env = clean_env()
        env["PATH"] = "/usr/bin:/bin"
        where = subprocess.run([f"{VENV}/bin/python", "-c", "import halotune, pydantic; "
                                "print(halotune.__file__, pydantic.VERSION)"],
                               capture_output=True, text=True, env=env, check=True,
                               cwd=tmp_path).stdout.split()
        assert where[0].startswith(f"{VENV}/lib/python3.11/site-packages/halotune/")
        assert int(where[1].split(".")[0]) >= 2
        sim = str(tmp_path / "sim")
        r = subprocess.run(["/usr/bin/halotune", "sim", sim], capture_output=True, text=True,
                           env=env, timeout=120, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(["/usr/bin/halotune", "status", "--json", "--root", sim],
                           capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        status = json.loads(r.stdout)
        assert status["gpus"][0]["gfx_target"] == "gfx1151"
        r = subprocess.run(["/usr/bin/halotune", "daemon", "--check-config"],
                           capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr       # the shipped conffile is valid
        # maintainer scripts without systemd as PID 1: group, directories, enablement
        import grp

        gid = grp.getgrnam("halotune").gr_gid
        st = os.stat("/var/lib/halotune")
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o750, 0, gid)
        assert os.path.islink("/etc/systemd/system/multi-user.target.wants/halotune.service")
        with open("/var/lib/halotune/history.db", "w"):
            pass                           # state the purge must remove
    finally:
        started = time.monotonic()
        purge = _dpkg("--purge", "halotune")
        # Debian keeps system groups on purge; the tests that follow expect this machine as
        # it was, so the group goes when the test made it.
        group_kept = _group_exists("halotune")
        if not group_before and group_kept:
            subprocess.run(["groupdel", "halotune"], check=False)
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert group_kept                      # purge keeps the system group, as Debian does
    print(f"dpkg --purge: {time.monotonic() - started:.0f} s")
    for gone in ("/var/lib/halotune", "/etc/halotune", "/usr/bin/halotune", VENV,
                 "/etc/systemd/system/multi-user.target.wants/halotune.service"):
        assert not os.path.lexists(gone), gone
