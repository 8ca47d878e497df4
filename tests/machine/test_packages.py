"""Package versions through the machine layer: dpkg-query, rpm and pacman found under the root.

On a fake root there is no package database: every query is None ("unknown"). Stand-ins
planted at ROOT/usr/bin print what the real programs print (formats from dpkg-query(1)
-W -f, rpm(8) -q --qf, pacman(8) -Q), which is how the parsing is exercised.
"""

from __future__ import annotations

import os

import pytest

from halotune.machine.packages import first_package_version, package_version
from halotune.machine.programs import Programs
from halotune.machine.rootfs import RootFS


def plant(root, name: str, script: str) -> str:
    d = os.path.join(root, "usr", "bin")
    os.makedirs(d, exist_ok=True)
    os.chmod(root, 0o755)
    for p in (os.path.join(root, "usr"), d):
        os.chmod(p, 0o755)
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + script)
    os.chmod(path, 0o755)
    return path


# dpkg-query -W -f '${Status}\t${Version}\n' NAME, as Ubuntu 24.04 prints it; unknown names
# exit 1 with "dpkg-query: no packages found matching NAME" on stderr.
DPKG = r'''
for last; do :; done
case "$last" in
  linux-firmware) printf 'install ok installed\t20240318.git3b128b60-0ubuntu2.12\n' ;;
  mesa-vulkan-drivers) printf 'install ok installed\t24.2.8-1ubuntu1~24.04.1\n' ;;
  firmware-amd-graphics) printf 'deinstall ok config-files\t20230210-5\n' ;;
  *) echo "dpkg-query: no packages found matching $last" >&2; exit 1 ;;
esac
'''
RPM = r'''
for last; do :; done
case "$last" in
  linux-firmware) echo "20251125-1.fc43" ;;
  kernel) printf '6.17.7-300.fc43\n6.17.9-300.fc43\n' ;;
  *) echo "package $last is not installed"; exit 1 ;;
esac
'''
PACMAN = r'''
case "$2" in
  linux-firmware) echo "linux-firmware 20251125.1d8e1d7-1" ;;
  *) echo "error: package '$2' was not found" >&2; exit 1 ;;
esac
'''


@pytest.fixture
def root(tmp_path) -> str:
    r = tmp_path / "root"
    r.mkdir()
    return str(r)


def programs(root):
    return Programs(RootFS(root))


def test_fake_root_without_package_manager_is_unknown(root):
    assert package_version("linux-firmware", programs(root)) is None
    assert first_package_version(["linux-firmware", "mesa"], programs(root)) is None


def test_reference_tree_has_no_package_database(reference_root):
    assert package_version("linux-firmware", programs(reference_root)) is None


def test_dpkg_installed_version(root):
    plant(root, "dpkg-query", DPKG)
    assert package_version("linux-firmware", programs(root)) == "20240318.git3b128b60-0ubuntu2.12"
    assert package_version("mesa-vulkan-drivers", programs(root)) == "24.2.8-1ubuntu1~24.04.1"


def test_dpkg_removed_package_and_unknown_name_are_none(root):
    plant(root, "dpkg-query", DPKG)
    assert package_version("firmware-amd-graphics", programs(root)) is None   # config files only
    assert package_version("no-such-package", programs(root)) is None


def test_rpm_versions(root):
    plant(root, "rpm", RPM)
    assert package_version("linux-firmware", programs(root)) == "20251125-1.fc43"
    assert package_version("kernel", programs(root)) == "6.17.9-300.fc43"        # the last listed
    assert package_version("mesa-vulkan-drivers", programs(root)) is None


def test_pacman_version(root):
    plant(root, "pacman", PACMAN)
    assert package_version("linux-firmware", programs(root)) == "20251125.1d8e1d7-1"
    assert package_version("vulkan-radeon", programs(root)) is None


def test_first_package_version_takes_the_first_installed_name(root):
    plant(root, "dpkg-query", DPKG)
    got = first_package_version(["firmware-amd-graphics", "linux-firmware"], programs(root))
    assert got == ("linux-firmware", "20240318.git3b128b60-0ubuntu2.12")


def test_a_failing_manager_falls_through_to_the_next(root):
    plant(root, "dpkg-query", "exit 2\n")          # a broken dpkg database
    plant(root, "rpm", RPM)
    assert package_version("linux-firmware", programs(root)) == "20251125-1.fc43"
