"""Lay out the simulated Strix Halo: a sysfs/procfs tree shaped exactly like the reference
snapshot (tests/fixtures/strix-halo), plus the files the snapshot leaves out (32 CPUs, procfs,
KFD topology, memory-management knobs, AC adapter, an empty etc/modprobe.d, the kernel's
lib/modules) and the simulator's own directory.

Static attributes are written here once; everything that depends on state is rendered by
publish.py, the same code that keeps the tree current afterwards. No step needs root.
"""

from __future__ import annotations

import errno
import os
import sys
import uuid

import halotune
from halotune.machine.rootfs import SIM_MARKER
from halotune.sim import formats as fmt
from halotune.sim import hardware as hw
from halotune.sim import kversion, paths, publish, scenarios, store
from halotune.sim import platform_profile as pprof

_DEV, _HW = paths.DEV, paths.HWMON

# Attributes whose value never changes (reference values; provenance in the fixture README).
_DEVICE_FILES = {
    f"{_DEV}/vendor": "0x1002\n",
    f"{_DEV}/device": "0x1586\n",
    f"{_DEV}/revision": "0xc1\n",
    f"{_DEV}/subsystem_vendor": "0xf111\n",
    f"{_DEV}/subsystem_device": "0x000a\n",
    f"{_DEV}/class": "0x038000\n",
    f"{_DEV}/modalias": "pci:v00001002d00001586sv0000F111sd0000000Abc03sc80i00\n",
    f"{_DEV}/uevent": ("DRIVER=amdgpu\nPCI_CLASS=38000\nPCI_ID=1002:1586\n"
                       "PCI_SUBSYS_ID=F111:000A\nPCI_SLOT_NAME=0000:c3:00.0\n"
                       "MODALIAS=pci:v00001002d00001586sv0000F111sd0000000Abc03sc80i00\n"),
    f"{_DEV}/vbios_version": "113-STRXLGEN-001\n",
    f"{_DEV}/fw_version/smc_fw_version": "0x0a640600\n",
    f"{_DEV}/power/control": "auto\n",
    f"{_DEV}/power/runtime_status": "active\n",
    f"{_DEV}/mem_info_vram_total": "536870912\n",
    f"{_DEV}/mem_info_vram_used": "168820736\n",
    f"{_DEV}/mem_info_vis_vram_total": "536870912\n",
    f"{_DEV}/mem_info_vis_vram_used": "168820736\n",
    f"{_DEV}/mem_info_preempt_used": "0\n",
    f"{_DEV}/power_dpm_state": "performance\n",
    f"{_DEV}/pp_num_states": "states: 1\n0 default\n",
    f"{_DEV}/pp_cur_state": "0\n",
    f"{_DEV}/pp_force_state": "\n",
    f"{_DEV}/pp_dpm_dcefclk": "\n",
    f"{_DEV}/pp_dpm_pcie": "\n",
    f"{_DEV}/thermal_throttling_logging":
        "0000:c3:00.0: thermal throttling logging enabled, with interval 60 seconds\n",
    f"{_DEV}/drm/card1/dev": "226:1\n",
    f"{_DEV}/drm/card1/uevent": "MAJOR=226\nMINOR=1\nDEVNAME=dri/card1\nDEVTYPE=drm_minor\n",
    # ip_discovery: GC 11.5.1 (gfx1151), MP1 14.0.1 (inferred, spec §0)
    f"{_DEV}/ip_discovery/die/0/11/0/major": "11\n",
    f"{_DEV}/ip_discovery/die/0/11/0/minor": "5\n",
    f"{_DEV}/ip_discovery/die/0/11/0/revision": "1\n",
    f"{_DEV}/ip_discovery/die/0/1/0/major": "14\n",
    f"{_DEV}/ip_discovery/die/0/1/0/minor": "0\n",
    f"{_DEV}/ip_discovery/die/0/1/0/revision": "1\n",
    f"{_HW}/name": "amdgpu\n",
    f"{_HW}/temp1_label": "edge\n",
    f"{_HW}/power1_label": "PPT\n",
    f"{_HW}/in0_input": "0\n",
    f"{_HW}/in0_label": "vddgfx\n",
    f"{_HW}/in1_input": "0\n",
    f"{_HW}/in1_label": "vddnb\n",
    f"{_HW}/freq1_label": "sclk\n",
}

def _system_files(release: str) -> dict[str, str]:
    return {
        "proc/cmdline": (f"BOOT_IMAGE=/boot/vmlinuz-{release} "
                         "root=UUID=3f6d2c1e-8b7a-4e21-9c4d-5a0b1e2f3c4d ro quiet splash "
                         "amd_iommu=off ttm.pages_limit=28835840 ttm.page_pool_size=28835840\n"),
        "proc/version": (f"Linux version {release} (buildd@lcy02-amd64-077) "
                         "(x86_64-linux-gnu-gcc-15 (Ubuntu 15.2.0-4ubuntu4) 15.2.0, "
                         "GNU ld (GNU Binutils for Ubuntu) 2.45) #5-Ubuntu SMP PREEMPT_DYNAMIC "
                         "Tue Oct  7 09:41:20 UTC 2025\n"),
        "proc/sys/kernel/osrelease": f"{release}\n",
        f"{paths.CPU}/possible": f"0-{hw.CPUS - 1}\n",
        f"{paths.CPU}/present": f"0-{hw.CPUS - 1}\n",
        "sys/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0003:00/power_supply/ACAD/type": "Mains\n",
        "sys/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0003:00/power_supply/ACAD/online": "1\n",
    }

# Kernel modules of the installed kernel. CHOSEN: a representative part of an Ubuntu generic
# kernel's modules.builtin; ttm and amdgpu are modules there (not built in), so their options
# can come from modprobe.d (spec §4.2). The .ko.zst files are empty markers.
_BUILTIN = ("kernel/drivers/acpi/ac.ko", "kernel/drivers/acpi/battery.ko",
            "kernel/drivers/acpi/button.ko", "kernel/drivers/acpi/fan.ko",
            "kernel/drivers/acpi/processor.ko", "kernel/drivers/acpi/thermal.ko",
            "kernel/drivers/block/loop.ko", "kernel/drivers/cpufreq/acpi-cpufreq.ko",
            "kernel/drivers/cpufreq/cpufreq_conservative.ko",
            "kernel/drivers/cpufreq/cpufreq_ondemand.ko",
            "kernel/drivers/cpufreq/cpufreq_performance.ko",
            "kernel/drivers/cpufreq/cpufreq_powersave.ko",
            "kernel/drivers/cpufreq/cpufreq_userspace.ko", "kernel/drivers/hid/hid.ko",
            "kernel/drivers/input/keyboard/atkbd.ko", "kernel/drivers/input/serio/i8042.ko",
            "kernel/drivers/input/serio/serio.ko", "kernel/drivers/md/dm-mod.ko",
            "kernel/drivers/tty/serial/8250/8250.ko", "kernel/fs/ext4/ext4.ko",
            "kernel/fs/fuse/fuse.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/mbcache.ko",
            "kernel/net/unix/unix.ko")


def _module_files(release: str) -> dict[str, str]:
    modules = f"lib/modules/{release}"
    return {
        f"{modules}/modules.builtin": "".join(f"{m}\n" for m in _BUILTIN),
        f"{modules}/kernel/drivers/gpu/drm/ttm/ttm.ko.zst": "",
        f"{modules}/kernel/drivers/gpu/drm/amd/amdgpu/amdgpu.ko.zst": "",
    }

# KFD topology (drivers/gpu/drm/amd/amdkfd/kfd_topology.c node_show order). gfx_target_version,
# vendor/device, location_id (bus 0xc3 << 8 | devfn 0) and the 80 SIMDs are REAL; the rest
# CHOSEN for a 40-CU RDNA 3.5 APU (2 SE x 2 SA x 10 CU).
_KFD_COMMON = ("cpu_cores_count", "simd_count", "mem_banks_count", "caches_count",
               "io_links_count", "p2p_links_count", "cpu_core_id_base", "simd_id_base",
               "max_waves_per_simd", "lds_size_in_kb", "gds_size_in_kb", "num_gws",
               "wave_front_size", "array_count", "simd_arrays_per_engine", "cu_per_simd_array",
               "simd_per_cu", "max_slots_scratch_cu", "gfx_target_version", "vendor_id",
               "device_id", "location_id", "domain", "drm_render_minor", "hive_id",
               "num_sdma_engines", "num_sdma_xgmi_engines", "num_sdma_queues_per_engine",
               "num_cp_queues")
_KFD_CPU = {"cpu_cores_count": hw.CPUS, "mem_banks_count": 1, "io_links_count": 1}
_KFD_GPU = {"simd_count": 80, "mem_banks_count": 1, "caches_count": 5, "io_links_count": 1,
            "simd_id_base": 2147487744, "max_waves_per_simd": 16, "lds_size_in_kb": 64,
            "num_gws": 64, "wave_front_size": 32, "array_count": 4, "simd_arrays_per_engine": 2,
            "cu_per_simd_array": 10, "simd_per_cu": 2, "max_slots_scratch_cu": 32,
            "gfx_target_version": 110501, "vendor_id": 0x1002, "device_id": 0x1586,
            "location_id": 0xC3 << 8, "domain": 0, "drm_render_minor": 128,
            "num_sdma_engines": 2, "num_sdma_queues_per_engine": 6, "num_cp_queues": 8}
_KFD_GPU_ONLY = (("max_engine_clk_fcompute", hw.SCLK_MAX), ("local_mem_size", 0),
                 ("fw_version", 32), ("capability", 671588992), ("sdma_fw_version", 14),
                 ("unique_id", 0), ("num_xcc", 1))
_CCOMPUTE = ("max_engine_clk_ccompute", hw.CPUINFO_MAX_KHZ // 1000)


def _kfd_files() -> dict[str, str]:
    cpu = [(k, _KFD_CPU.get(k, 0)) for k in _KFD_COMMON] + [_CCOMPUTE]
    gpu = [(k, _KFD_GPU.get(k, 0)) for k in _KFD_COMMON] + list(_KFD_GPU_ONLY) + [_CCOMPUTE]
    nodes = f"{paths.KFD}/topology/nodes"
    return {
        f"{paths.KFD}/topology/generation_id": "1\n",
        f"{nodes}/0/properties": fmt.properties(cpu),
        f"{nodes}/0/name": "\n",
        f"{nodes}/0/gpu_id": "0\n",
        f"{nodes}/1/properties": fmt.properties(gpu),
        f"{nodes}/1/name": "gfx1151\n",
        f"{nodes}/1/gpu_id": "1797\n",
    }


def _cpu_files() -> dict[str, str]:
    files = {}
    for n in range(hw.CPUS):
        core = n % hw.CORES
        files[f"{paths.CPU}/cpu{n}/topology/core_id"] = f"{core}\n"
        files[f"{paths.CPU}/cpu{n}/topology/thread_siblings_list"] = f"{core},{core + hw.CORES}\n"
    return files


def _symlinks() -> dict[str, str]:
    """Link path -> target, relative like the kernel's (sysfs class dirs point into devices)."""
    links = {
        paths.CARD_LINK: f"../../devices/pci0000:00/0000:00:08.1/{paths.PCI_SLOT}/drm/card1",
        f"{_DEV}/drm/card1/device": f"../../../{paths.PCI_SLOT}",
        paths.HWMON_LINK: f"../../devices/pci0000:00/0000:00:08.1/{paths.PCI_SLOT}/hwmon/hwmon3",
        "sys/class/power_supply/ACAD":
            "../../devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0003:00/power_supply/ACAD",
        paths.KFD_LINK: "../../devices/virtual/kfd/kfd",
    }
    for n in range(hw.CPUS):
        links[f"{paths.CPU}/cpu{n}/cpufreq"] = f"../cpufreq/policy{n}"
    return links


def _ryzenadj_script() -> str:
    """The stand-in finds its tree from its own location (ROOT/usr/local/bin/ryzenadj)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(halotune.__file__)))
    return (f"#!{sys.executable}\n"
            "# Simulated RyzenAdj written by halotune.sim.tree.lay_out; not the real tool.\n"
            "import os\nimport sys\n\n"
            f"sys.path.insert(0, {package_parent!r})\n"
            "from halotune.sim.ryzenadj import main  # noqa: E402\n\n"
            "_here = os.path.realpath(__file__)\n"
            "_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(_here))))\n"
            "sys.exit(main(sys.argv[1:], _root))\n")


def _check_target(root: str, force: bool) -> None:
    # Laying out overwrites files: refuse / always, and a directory that is neither empty nor
    # an earlier simulated machine unless the caller insists.
    if os.path.realpath(root) == "/":
        raise ValueError("refusing to lay out a simulated machine over /")
    if not force and os.path.isdir(root) and os.listdir(root) and \
            not os.path.isdir(os.path.join(root, SIM_MARKER)):
        raise FileExistsError(errno.EEXIST, "not empty and not a simulated machine", root)


def _link(root: str, rel: str, target: str) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.islink(path):
        if os.readlink(path) == target:
            return
        os.unlink(path)
    os.symlink(target, path)


def _clear_config(root: str) -> None:
    """Remove what was written into etc/modprobe.d of an earlier simulated machine."""
    conf = os.path.join(root, paths.MODPROBE_D)
    if os.path.isdir(conf) and not os.path.islink(conf):
        for entry in os.scandir(conf):
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)


def _clear_platform_profiles(root: str) -> None:
    import glob
    import shutil

    for d in glob.glob(os.path.join(root, "sys/devices/platform/*/platform-profile")):
        shutil.rmtree(d)
    class_dir = os.path.join(root, paths.PLATFORM_PROFILE_CLASS)
    if os.path.isdir(class_dir):
        shutil.rmtree(class_dir)


def lay_out(root: str, scenario: str = "reference", *, force: bool = False,
            kernel: str = kversion.DEFAULT,
            profile_handlers: tuple[str, ...] = hw.DEFAULT_PROFILE_HANDLERS) -> None:
    """Create (or reset) the simulated machine in directory `root` in state `scenario`
    ("reference": the snapshot's moment, "idle": an idle machine), running Linux `kernel`
    ("X.Y"; the drivers answer as that version does, see kversion.py), with the
    platform-profile handler drivers `profile_handlers` in registration order (amd-pmf, or
    amd-pmf plus an OEM driver such as asus-wmi; see sim/platform_profile.py). Resetting an
    earlier simulated machine also empties its etc/modprobe.d, as the laid-out machine has none.

    Raises FileExistsError for a non-empty directory that holds no simulated machine unless
    `force`, ValueError for an unknown scenario or handler, an unmodelled kernel version or
    for "/".
    """
    state = scenarios.initial_state(scenario, kernel, profile_handlers)
    release = kversion.release(state["kernel"])
    _check_target(root, force)
    if os.path.isdir(os.path.join(root, SIM_MARKER)):
        _clear_config(root)  # a reset forgets boot-time configuration too

    if os.path.isdir(os.path.join(root, SIM_MARKER)) and \
            os.path.isdir(os.path.join(root, "lib/modules")):   # an earlier machine's kernel
        import shutil
        shutil.rmtree(os.path.join(root, "lib/modules"))
    if os.path.isdir(os.path.join(root, SIM_MARKER)):
        _clear_platform_profiles(root)   # the earlier machine's handlers or kernel
    static = {**_DEVICE_FILES, **_system_files(release), **_kfd_files(), **_cpu_files(),
              **_module_files(release),
              paths.BOOT_ID: f"{uuid.uuid4()}\n"}
    dirs = {os.path.dirname(rel) for rel in static} | {SIM_MARKER, paths.MODPROBE_D}
    dirs |= {os.path.dirname(rel) for rel in publish.render(state)}
    dirs.add(os.path.dirname(paths.RYZENADJ))
    for d in sorted(dirs):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for rel, target in {**_symlinks(), **pprof.class_links(state)}.items():
        _link(root, rel, target)
    for rel, content in static.items():
        store.put(root, rel, content)

    open(os.path.join(root, paths.WRITES_LOG), "w").close()
    with store.locked(root):
        store.commit(root, state)
    os.chmod(os.path.join(root, paths.GTTSIZE), 0o600)  # amdgpu_drv.c: module_param 0600
    script = os.path.join(root, paths.RYZENADJ)
    store.put(root, paths.RYZENADJ, _ryzenadj_script())
    os.chmod(script, 0o755)
