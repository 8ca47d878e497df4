"""`halotune doctor`: every entry of doctor.toml found on a crafted tree and not on a clean one;
the data file's validation; the CLI's exit codes and JSON."""

from __future__ import annotations

import os

import pytest

from halotune.checks.doctor import DoctorDataError, load_entries, run_doctor
from halotune.checks.facts import Facts
from halotune.machine.rootfs import RootFS

from .conftest import add_process, write

KFD_PROPS = "sys/devices/virtual/kfd/kfd/topology/nodes/1/properties"
GTT_TOTAL = "sys/devices/pci0000:00/0000:00:08.1/0000:c3:00.0/mem_info_gtt_total"
CMDLINE = "BOOT_IMAGE=/boot/vmlinuz root=UUID=3f6d ro quiet ttm.pages_limit=28835840"


class Machine:
    """A crafted machine for doctor: an idle simulated Strix Halo on a fixed kernel, a user
    alice in render and video, /dev/kfd 0660 group render, and a package list."""

    def __init__(self, root: str):
        self.root = root
        self.packages = {"linux-firmware": "20260110-1.fc43"}
        self.environ: dict[str, str] = {}
        write(root, "proc/sys/kernel/osrelease", "6.18.9-200.fc43.x86_64\n")
        self.cmdline(CMDLINE)
        kfd = write(root, "dev/kfd", "", 0o660)
        if os.geteuid() == 0:
            os.chown(kfd, 0, 4242)
        gid = os.stat(kfd).st_gid          # the group owning /dev/kfd is "render"
        # alice's ids differ from the test runner's: she owns nothing under the root
        write(root, "etc/passwd", "root:x:0:0::/root:/bin/bash\n"
                                  "alice:x:4321:4321::/home/alice:/bin/bash\n")
        self.groups(f"alice:x:4321:\nvideo:x:4444:alice\nrender:x:{gid}:bob,alice\n")
        # root-only on a real machine; readable here so the clean tree has no "unknown"
        os.chmod(os.path.join(root, "sys/module/amdgpu/parameters/gttsize"), 0o644)

    def cmdline(self, text: str) -> None:
        write(self.root, "proc/cmdline", text + "\n")

    def groups(self, text: str) -> None:
        write(self.root, "etc/group", text)

    def run(self, **kw) -> dict:
        facts = Facts(RootFS(self.root), environ=self.environ, user="alice",
                      package_version=lambda name, programs: self.packages.get(name))
        return run_doctor(RootFS(self.root), facts=facts, **kw)

    def entry(self, eid: str) -> dict:
        return next(e for e in self.run()["entries"] if e["id"] == eid)


@pytest.fixture
def machine(idle_root) -> Machine:
    return Machine(idle_root)


def test_clean_machine_has_no_finding(machine):
    r = machine.run()
    assert r["schema"] == "halotune.doctor/1" and r["status"] == "ok"
    bad = [(e["id"], e["status"], e["what"]) for e in r["entries"] if e["status"] != "ok"]
    assert not bad
    assert len(r["entries"]) == len(load_entries())


def test_every_entry_has_why_fix_and_a_source_link():
    for e in load_entries():
        assert e["why"] and e["fix"] and e["title"]
        assert e["source"].startswith("https://"), e["id"]


def found(machine, eid) -> dict:
    e = machine.entry(eid)
    assert e["status"] == "found", e
    return e


def clean(machine, eid) -> dict:
    e = machine.entry(eid)
    assert e["status"] == "ok", e
    return e


# --- kernel, firmware, driver ------------------------------------------------------------------

def test_old_kernel_without_kfd_fix(machine):
    write(machine.root, "proc/sys/kernel/osrelease", "6.17.0-5-generic\n")
    e = found(machine, "kernel-gfx1151-cwsr")
    assert "6.17.0-5-generic (older than 6.18.4)" in e["what"] and e["severity"] == "warn"


def test_old_kernel_with_backported_kfd_fix(machine):
    write(machine.root, "proc/sys/kernel/osrelease", "6.14.0-1018-oem\n")
    with open(os.path.join(machine.root, KFD_PROPS), "a") as f:
        f.write("cwsr_size 1234\nctl_stack_size 5678\n")
    e = clean(machine, "kernel-gfx1151-cwsr")
    assert "but KFD topology has cwsr_size, ctl_stack_size" in e["what"]


def test_known_bad_firmware_is_a_fault(machine):
    machine.packages["linux-firmware"] = "20251125-1.fc43"
    r = machine.run()
    e = next(e for e in r["entries"] if e["id"] == "linux-firmware-20251125")
    assert e["status"] == "found" and e["severity"] == "fault"
    assert r["status"] == "fault"


def test_firmware_package_through_the_package_manager(idle_root):
    """The real query path: a dpkg-query stand-in planted under the root."""
    write(idle_root, "usr/bin/dpkg-query",
          "#!/bin/sh\n[ \"$4\" = linux-firmware ] && printf 'install ok installed\\t20251125.git1-0ubuntu1\\n' && exit 0\nexit 1\n",
          0o755)
    r = run_doctor(RootFS(idle_root), user="alice")
    e = next(e for e in r["entries"] if e["id"] == "linux-firmware-20251125")
    assert e["status"] == "found" and "20251125.git1-0ubuntu1" in e["what"]


def test_no_package_manager_is_unknown_not_found(idle_root):
    e = next(e for e in run_doctor(RootFS(idle_root))["entries"]
             if e["id"] == "linux-firmware-20251125")
    assert e["status"] == "unknown" and "no package manager" in e["what"]


def test_dkms_driver_by_module(machine):
    os.makedirs(os.path.join(machine.root, "sys/module/amdttm/parameters"))
    assert "amdttm" in found(machine, "amdgpu-dkms")["what"]


def test_dkms_driver_by_package(machine):
    machine.packages["amdgpu-dkms"] = "1:6.12.12.60402-2164967.24.04"
    found(machine, "amdgpu-dkms")


# --- kernel command line, GTT ------------------------------------------------------------------

def test_amd_iommu_pt_is_flagged(machine):
    machine.cmdline(CMDLINE + " amd_iommu=pt")
    e = found(machine, "amd-iommu-pt")
    assert "amd_iommu=pt" in e["what"]


def test_iommu_pt_is_fine(machine):
    machine.cmdline(CMDLINE + " iommu=pt")
    clean(machine, "amd-iommu-pt")


def test_amd_iommu_off_is_information(machine):
    machine.cmdline(CMDLINE + " amd_iommu=off")
    r = machine.run()
    e = next(e for e in r["entries"] if e["id"] == "amd-iommu-off")
    assert e["status"] == "found" and e["severity"] == "info"
    assert r["status"] == "info"
    assert next(e for e in r["entries"] if e["id"] == "amd-iommu-off-npu")["status"] == "ok"


def test_amd_iommu_off_warns_when_npu_software_is_there(machine):
    machine.cmdline(CMDLINE + " amd_iommu=off")
    os.makedirs(os.path.join(machine.root, "opt/xilinx/xrt"))
    e = found(machine, "amd-iommu-off-npu")
    assert e["severity"] == "warn" and "/opt/xilinx/xrt" in e["what"]
    clean(machine, "amd-iommu-off")


def test_amd_iommu_off_warns_when_npu_runtime_runs(machine):
    machine.cmdline(CMDLINE + " amd_iommu=off")
    add_process(machine.root, 4100, "flm", ["/opt/flm/bin/flm", "serve"])
    found(machine, "amd-iommu-off-npu")


@pytest.mark.parametrize("where", ["cmdline", "modprobe", "sysfs"])
def test_deprecated_gttsize(machine, where):
    if where == "cmdline":
        machine.cmdline(CMDLINE + " amdgpu.gttsize=126976")
    elif where == "modprobe":
        write(machine.root, "etc/modprobe.d/amdgpu.conf", "# big GTT\noptions amdgpu gttsize=126976\n")
    else:
        write(machine.root, "sys/module/amdgpu/parameters/gttsize", "126976\n")
    e = found(machine, "amdgpu-gttsize-deprecated")
    assert "126976" in e["what"]


def test_gtt_at_half_ram_on_128_gb(machine):
    write(machine.root, GTT_TOTAL, f"{134914318336 // 2}\n")
    e = found(machine, "gtt-half-ram-default")
    assert "50% of 126 GiB RAM" in e["what"]


# --- other tools, users, environment ------------------------------------------------------------

@pytest.mark.parametrize("eid,comm,argv", [
    ("ppd-manages-gpu", "power-profiles-", ["/usr/libexec/power-profiles-daemon"]),
    ("tuned-manages-gpu", "tuned", ["/usr/bin/python3", "-Es", "/usr/sbin/tuned", "-l", "-P"]),
    ("lact-manages-gpu", "lactd", ["/usr/bin/lact", "daemon"]),
])
def test_other_gpu_managers(machine, eid, comm, argv):
    clean(machine, eid)
    add_process(machine.root, 900, comm, argv)
    assert "pid 900" in found(machine, eid)["what"]


def test_user_not_in_render(machine):
    text = open(os.path.join(machine.root, "etc/group")).read()
    machine.groups(text.replace("bob,alice", "bob").replace("video:x:4444:alice", "video:x:4444:"))
    e = found(machine, "user-not-in-render-video")
    assert "alice is not in" in e["what"] and "video" in e["what"]


def test_dev_kfd_not_accessible(machine):
    os.chmod(os.path.join(machine.root, "dev/kfd"), 0o600)
    e = found(machine, "dev-kfd-permissions")
    assert "mode 0600, group render" in e["what"] and "alice" in e["what"]


def test_no_dev_directory_is_unknown(idle_root):
    e = next(e for e in run_doctor(RootFS(idle_root), user="alice")["entries"]
             if e["id"] == "dev-kfd-permissions")
    assert e["status"] == "unknown"


def test_hsa_override_with_native_rocm(machine):
    machine.environ["HSA_OVERRIDE_GFX_VERSION"] = "11.0.0"
    clean(machine, "hsa-override-gfx-version")          # no ROCm with gfx1151 code objects
    write(machine.root, "opt/rocm-7.0.2/lib/rocblas/library/TensileLibrary_lazy_gfx1151.dat", "")
    e = found(machine, "hsa-override-gfx-version")
    assert "HSA_OVERRIDE_GFX_VERSION=11.0.0" in e["what"]


def test_hsa_override_in_a_service_override(machine):
    write(machine.root, "opt/rocm/lib/rocblas/library/TensileLibrary_lazy_gfx1151.dat", "")
    write(machine.root, "etc/systemd/system/ollama.service.d/override.conf",
          "[Service]\nEnvironment=\"HSA_OVERRIDE_GFX_VERSION=11.5.1\"\n")
    assert "ollama.service.d" in found(machine, "hsa-override-gfx-version")["what"]


def test_hsa_override_in_etc_environment(machine):
    write(machine.root, "opt/rocm/lib/rocblas/library/TensileLibrary_lazy_gfx1151.dat", "")
    write(machine.root, "etc/environment", 'PATH="/usr/bin"\nHSA_OVERRIDE_GFX_VERSION="11.5.1"\n')
    assert "/etc/environment" in found(machine, "hsa-override-gfx-version")["what"]


# --- the data file -----------------------------------------------------------------------------

ENTRY = """
[[check]]
id = "x"
severity = "warn"
title = "t"
when.cmdline_has = "quiet"
why = "w"
fix = "f"
source = "https://example.org"
"""


def test_adding_a_check_is_adding_an_entry(machine, tmp_path):
    path = write(str(tmp_path), "d.toml", ENTRY)
    r = machine.run(entries_path=path)
    assert [(e["id"], e["status"]) for e in r["entries"]] == [("x", "found")]
    assert r["status"] == "warn"


@pytest.mark.parametrize("change,message", [
    (("severity = \"warn\"", "severity = \"bad\""), "severity = 'bad'"),
    (("when.cmdline_has", "when.cmdline_hass"), "unknown condition 'cmdline_hass'"),
    (("when.cmdline_has = \"quiet\"", "when.cmdline_has = 3"), "cmdline_has = 3: must be a string"),
    (("why = \"w\"\n", ""), "why is missing"),
    (("fix = \"f\"", "fix = \"f\"\nfixx = 1"), "unknown key 'fixx'"),
    (("when.cmdline_has = \"quiet\"",
      "when.module_param_not = { param = \"amdgpu.gttsize\" }"), "a table with keys param, value"),
    (("when.cmdline_has = \"quiet\"", "when.any_of = [{ nope = 1 }]"), "any_of[0]: unknown condition"),
])
def test_malformed_data_names_entry_and_key(tmp_path, change, message):
    path = write(str(tmp_path), "d.toml", ENTRY.replace(*change))
    with pytest.raises(DoctorDataError) as e:
        load_entries(path)
    assert str(e.value).startswith(f"{path}: check x") and message in str(e.value)


def test_duplicate_ids_refused(tmp_path):
    path = write(str(tmp_path), "d.toml", ENTRY + ENTRY)
    with pytest.raises(DoctorDataError, match="id used twice"):
        load_entries(path)


# --- the command line ----------------------------------------------------------------------------

def test_cli_flags_crafted_bad_command_line(run_cli, machine):
    machine.cmdline(CMDLINE + " amd_iommu=pt amdgpu.gttsize=126976")
    r = run_cli("doctor", "--root", machine.root, "--user", "alice")
    assert r.rc == 0, r
    assert "amd_iommu=pt is not a valid value" in r.out and "[amd-iommu-pt]" in r.out
    assert "source: https://docs.kernel.org/admin-guide/kernel-parameters.html" in r.out
    assert run_cli("doctor", "--root", machine.root, "--user", "alice", "--strict").rc == 1
    doc = run_cli("doctor", "--root", machine.root, "--user", "alice", "--json").json()
    assert doc["schema"] == "halotune.doctor/1" and doc["status"] == "warn"
    ids = {e["id"] for e in doc["entries"] if e["status"] == "found"}
    assert {"amd-iommu-pt", "amdgpu-gttsize-deprecated"} <= ids


def test_cli_fault_exits_2(run_cli, machine):
    write(machine.root, "usr/bin/pacman",
          "#!/bin/sh\n[ \"$2\" = linux-firmware ] && echo 'linux-firmware 20251125-1' && exit 0\nexit 1\n",
          0o755)
    r = run_cli("doctor", "--root", machine.root, "--user", "alice")
    assert r.rc == 2 and "FAULT" in r.out


def test_cli_clean_exits_0(run_cli, machine):
    r = run_cli("doctor", "--root", machine.root, "--user", "alice", "--strict")
    assert r.rc == 0, r
    assert "No known problem found." in r.out


def test_cli_bad_checks_file_exits_64(run_cli, machine, tmp_path):
    path = write(str(tmp_path), "d.toml", ENTRY.replace("warn", "loud"))
    r = run_cli("doctor", "--root", machine.root, "--checks", path)
    assert r.rc == 64 and "severity = 'loud'" in r.err


def test_cli_without_gpu_exits_3(run_cli, empty_root):
    assert run_cli("doctor", "--root", empty_root).rc == 3
