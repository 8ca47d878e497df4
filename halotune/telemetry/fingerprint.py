"""Collect the fingerprint (halotune.model.fingerprint) of the machine under a root.

Everything comes through the machine layer: kernel and firmware files through RootFS, package
versions through Programs (dpkg-query/rpm/pacman, found under the root), the settings from a
telemetry Snapshot (taken here when the caller has none).

Interfaces: sys/class/drm/cardN/device/fw_version/<ip>_fw_version ("0x%08x", one file per
firmware the driver loaded: mec, rlc, sdma, smc, vcn ...; drivers/gpu/drm/amd/amdgpu/
amdgpu_ucode.c), vbios_version; /proc/cmdline; /proc/cpuinfo "model name"; ROCm's
/opt/rocm/.info/version (written by the ROCm packages, e.g. "6.4.1-120").
"""

from __future__ import annotations

from halotune import __version__
from halotune.machine import packages
from halotune.machine.rootfs import RootFS
from halotune.model.fingerprint import empty_fingerprint, merge

# Names of the same software in Debian/Ubuntu, Fedora and Arch, most specific first.
LINUX_FIRMWARE_PACKAGES = ("linux-firmware", "firmware-amd-graphics", "amd-gpu-firmware",
                           "linux-firmware-amdgpu")
MESA_PACKAGES = ("mesa-vulkan-drivers", "libgl1-mesa-dri", "vulkan-radeon", "mesa")
ROCM_VERSION_FILE = "opt/rocm/.info/version"
FW_SUFFIX = "_fw_version"


def _cpu_model(fs: RootFS) -> str | None:
    raw = fs.read_bytes("proc/cpuinfo", size=64 * 1024)
    if raw is None:
        return None
    for line in raw.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name":
            return value.strip() or None
    return None


def firmware_versions(fs: RootFS, device_dir: str) -> dict[str, str]:
    """{"mec": "0x000001f6", "smc": "0x0a640600", ...} from the device's fw_version/ directory."""
    out = {}
    for name in fs.listdir(f"{device_dir}/fw_version"):
        if not name.endswith(FW_SUFFIX):
            continue
        value = fs.read_text(f"{device_dir}/fw_version/{name}")
        if value:
            out[name[: -len(FW_SUFFIX)]] = value
    return out


def _active_profile(root: str) -> str | None:
    """The profile the engine's journal says is applied; None when the journal is absent or
    unreadable (it is root-only on a real machine): this is a cheap best effort."""
    try:
        from halotune.tuning.engine import default_state_dir
        from halotune.tuning.journal import StateDir

        journal = StateDir(default_state_dir(root)).load(root)
    except Exception:  # noqa: BLE001 - any reason to not know is "unknown"
        return None
    active = journal.active or {}
    name = active.get("profile")
    return name if isinstance(name, str) else None


def _snapshot(fs: RootFS, programs):
    from halotune.telemetry.sampler import Sampler

    sampler = Sampler(fs, programs)
    sampler.drm_clients = None       # the host's GPU processes are not part of a fingerprint
    try:
        return sampler.sample()
    finally:
        for r in sampler.readers:
            r.close()


def collect_fingerprint(fs: RootFS, snapshot=None, programs=None, extra: dict | None = None) -> dict:
    """The fingerprint of the machine under fs.root (see halotune.model.fingerprint).

    `snapshot`: a Snapshot already taken (saves a sample); `extra`: keys merged over the
    collected ones (e.g. {"llama_cpp": {"build": "0c1e570 (1)", "backend": "Vulkan"}})."""
    from halotune.machine.programs import Programs

    programs = programs or Programs(fs)
    if snapshot is None:
        snapshot = _snapshot(fs, programs)
    fp = empty_fingerprint()
    fp["halotune_version"] = __version__
    fp["kernel_release"] = snapshot.kernel_release
    fp["kernel_cmdline"] = fs.read_text("proc/cmdline")
    gpu = snapshot.primary_gpu
    if gpu is not None:
        fp["firmware"] = {"smu": gpu.smc_fw_version, "vbios": gpu.vbios_version,
                          "ip": firmware_versions(fs, f"sys/class/drm/{gpu.card}/device")}
        fp["gpu"] = {"gfx_target": gpu.gfx_target, "device_id": gpu.device_id}
        fp["carveout_bytes"] = gpu.vram_total_bytes
        fp["gtt_bytes"] = gpu.gtt_total_bytes
    found = packages.first_package_version(LINUX_FIRMWARE_PACKAGES, programs)
    if found:
        fp["linux_firmware_package"] = found[1]
    fp["rocm_version"] = fs.read_text(ROCM_VERSION_FILE) or None
    mesa = packages.first_package_version(MESA_PACKAGES, programs)
    fp["mesa_version"] = mesa[1] if mesa else None
    fp["cpu_model"] = _cpu_model(fs)
    fp["memory_total_bytes"] = snapshot.memory.system_total_bytes
    fp["ttm_pages_limit"] = snapshot.memory.ttm_pages_limit
    p = snapshot.power
    fp["tdp"] = {"stapm_w": p.stapm_limit_w, "fast_w": p.fast_limit_w, "slow_w": p.slow_limit_w}
    fp["platform_profile"] = p.platform_profile
    fp["active_profile"] = _active_profile(fs.root)
    fp["governor"] = snapshot.cpu.governor
    fp["epp"] = snapshot.cpu.epp
    return merge(fp, extra)
