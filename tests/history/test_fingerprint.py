"""The fingerprint: collected through the machine layer on the reference tree and a simulated
root, compared by dotted keys."""

from __future__ import annotations

import os

from halotune.machine.rootfs import RootFS
from halotune.model.fingerprint import (FINGERPRINT_SCHEMA, diff_fingerprints, empty_fingerprint,
                                        flatten)
from halotune.telemetry.fingerprint import collect_fingerprint

DEV = "sys/devices/pci0000:00/0000:00:08.1/0000:c3:00.0"


def write(root, rel, text, mode=0o644):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def test_reference_tree(reference_root, hist_env):
    fp = collect_fingerprint(RootFS(reference_root))
    assert set(fp) == set(empty_fingerprint())          # every key, always
    assert fp["schema"] == FINGERPRINT_SCHEMA
    assert fp["kernel_release"] == "6.17.0-5-generic"
    assert fp["kernel_cmdline"].endswith("amd_iommu=off ttm.pages_limit=28835840 "
                                         "ttm.page_pool_size=28835840")
    assert fp["firmware"] == {"smu": "0x0a640600", "vbios": "113-STRXLGEN-001",
                              "ip": {"smc": "0x0a640600"}}
    assert fp["gpu"] == {"gfx_target": "gfx1151", "device_id": "0x1586"}
    assert fp["carveout_bytes"] == 536870912
    assert fp["gtt_bytes"] == 118111600640
    assert fp["ttm_pages_limit"] == 28835840
    assert fp["memory_total_bytes"] == 131752264 * 1024
    assert fp["platform_profile"] == "performance"
    assert fp["governor"] == "powersave" and fp["epp"] == "balance_performance"
    # a fake root has no package database, no ROCm, no ryzenadj, no journal
    assert fp["linux_firmware_package"] == "unknown"
    assert fp["mesa_version"] is None and fp["rocm_version"] is None
    assert fp["tdp"] == {"stapm_w": None, "fast_w": None, "slow_w": None}
    assert fp["active_profile"] is None and fp["cpu_model"] is None
    assert fp["llama_cpp"] == {"build": None, "backend": None}


def test_firmware_rocm_cpu_and_packages_when_present(ref_copy, hist_env):
    # per-IP firmware as amdgpu_ucode.c prints it ("0x%08x"), ROCm's version file, cpuinfo
    write(ref_copy, f"{DEV}/fw_version/mec_fw_version", "0x000001f6\n")
    write(ref_copy, f"{DEV}/fw_version/sdma_fw_version", "0x0000000e\n")
    write(ref_copy, f"{DEV}/fw_version/vcn_fw_version", "0x0911800b\n")
    write(ref_copy, "opt/rocm/.info/version", "6.4.1-120\n")
    write(ref_copy, "proc/cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\n"
          "model name\t: AMD RYZEN AI MAX+ 395 w/ Radeon 8060S\nflags\t\t: fpu\n")
    write(ref_copy, "usr/bin/dpkg-query", "#!/bin/sh\nfor last; do :; done\ncase \"$last\" in\n"
          "  linux-firmware) printf 'install ok installed\\t20251125.git1d8e1d7-0ubuntu1\\n' ;;\n"
          "  mesa-vulkan-drivers) printf 'install ok installed\\t25.2.3-1ubuntu1\\n' ;;\n"
          "  *) exit 1 ;;\nesac\n", mode=0o755)
    fp = collect_fingerprint(RootFS(ref_copy))
    assert fp["firmware"]["ip"] == {"mec": "0x000001f6", "sdma": "0x0000000e",
                                    "vcn": "0x0911800b", "smc": "0x0a640600"}
    assert fp["rocm_version"] == "6.4.1-120"
    assert fp["cpu_model"] == "AMD RYZEN AI MAX+ 395 w/ Radeon 8060S"
    assert fp["linux_firmware_package"] == "20251125.git1d8e1d7-0ubuntu1"
    assert fp["mesa_version"] == "25.2.3-1ubuntu1"


def test_extra_is_merged(reference_root, hist_env):
    fp = collect_fingerprint(RootFS(reference_root),
                             extra={"llama_cpp": {"build": "0c1e570 (1)", "backend": "Vulkan"},
                                    "kernel_release": None})
    assert fp["llama_cpp"] == {"build": "0c1e570 (1)", "backend": "Vulkan"}
    assert fp["kernel_release"] == "6.17.0-5-generic"      # a None never erases a known value


def test_simulated_root_tdp_and_active_profile(hist_env, tmp_path):
    from halotune.sim.tree import lay_out
    from halotune.tuning.engine import Engine, default_state_dir
    from halotune.tuning.loader import ProfileStore

    root = str(tmp_path / "sim")
    lay_out(root)
    before = collect_fingerprint(RootFS(root))
    assert before["tdp"] == {"stapm_w": 120.0, "fast_w": 140.0, "slow_w": 120.0}
    assert before["active_profile"] is None
    Engine(RootFS(root), default_state_dir(root)).apply(ProfileStore(None).load("llm-efficient"))
    after = collect_fingerprint(RootFS(root))
    assert after["active_profile"] == "llm-efficient"
    changed = {k: (a, b) for k, a, b in diff_fingerprints(before, after)}
    assert changed["tdp.stapm_w"] == (120.0, 85.0)
    assert changed["active_profile"] == (None, "llm-efficient")
    assert "kernel_release" not in changed and "firmware.smu" not in changed


def test_diff_uses_dotted_keys_and_missing_is_null():
    a = {"kernel_release": "6.17", "tdp": {"stapm_w": 120, "fast_w": 140},
         "firmware": {"ip": {"mec": "0x1"}}, "x": [1, 2]}
    b = {"kernel_release": "6.18", "tdp": {"stapm_w": 120, "fast_w": 100},
         "firmware": {"ip": {"mec": "0x2", "vcn": "0x3"}}, "x": [1, 2]}
    assert diff_fingerprints(a, b) == [
        ("firmware.ip.mec", "0x1", "0x2"), ("firmware.ip.vcn", None, "0x3"),
        ("kernel_release", "6.17", "6.18"), ("tdp.fast_w", 140, 100)]
    assert diff_fingerprints(a, a) == []
    assert flatten({"a": {"b": {}}, "c": 1}) == {"c": 1}
