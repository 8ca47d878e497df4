"""Find amdgpu devices under a root and identify them.

Interface: sys/class/drm/card<N> (a symlink to the PCI device's drm/card<N> on real kernels, a
plain directory in some captures) with `device/vendor` = 0x1002. N and the hwmon index vary per
boot, so both are globbed. Connector entries such as card1-eDP-1 are not cards.

Naming, most exact first: KFD topology gfx_target_version, IP discovery (GC major.minor.rev,
sysfs ip_discovery/die/0/11/0 since Linux 5.19), then a device-ID table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from halotune.machine import parse
from halotune.machine.rootfs import RootFS

AMD_VENDOR = 0x1002
STRIX_HALO_DEVICE = 0x1586

# device id -> (marketing name, is an APU). Only IDs whose identity is certain.
KNOWN_DEVICES: dict[int, tuple[str, bool]] = {
    0x1586: ("AMD Strix Halo (Radeon 8060S / 8050S)", True),
    0x150E: ("AMD Strix Point (Radeon 880M / 890M)", True),
    0x15BF: ("AMD Phoenix (Radeon 780M / 760M)", True),
    0x15C8: ("AMD Phoenix2 (Radeon 740M)", True),
    0x1681: ("AMD Rembrandt (Radeon 680M / 660M)", True),
    0x163F: ("AMD Van Gogh (Steam Deck)", True),
    0x1636: ("AMD Renoir (Radeon Vega)", True),
    0x1638: ("AMD Cezanne (Radeon Vega)", True),
    0x164C: ("AMD Lucienne (Radeon Vega)", True),
    0x164E: ("AMD Raphael (Radeon Graphics)", True),
    0x744C: ("AMD Navi 31 (Radeon RX 7900 series)", False),
    0x7480: ("AMD Navi 33 (Radeon RX 7600 series)", False),
    0x73BF: ("AMD Navi 21 (Radeon RX 6800 / 6900 series)", False),
    0x73DF: ("AMD Navi 22 (Radeon RX 6700 series)", False),
    0x731F: ("AMD Navi 10 (Radeon RX 5600 / 5700 series)", False),
    0x7550: ("AMD Navi 48 (Radeon RX 9070 series)", False),
    0x66AF: ("AMD Vega 20 (Radeon VII / Instinct MI50)", False),
}

# GC IP version -> LLVM target, as drivers/gpu/drm/amd/amdkfd/kfd_device.c assigns
# gfx_target_version. Not a formula: 11.0.1 (Phoenix) is gfx1103, 11.0.3 (Navi 32) gfx1101,
# 10.3.1 (Van Gogh) gfx1033. Versions not listed fall back to gfx{major}{minor}{rev:x}.
_GC_TARGETS = {
    (9, 0, 1): "gfx900", (9, 1, 0): "gfx902", (9, 2, 1): "gfx909", (9, 2, 2): "gfx90c",
    (9, 3, 0): "gfx90c", (9, 4, 0): "gfx906", (9, 4, 1): "gfx908", (9, 4, 2): "gfx90a",
    (9, 4, 3): "gfx942", (9, 4, 4): "gfx942", (9, 2, 0): "gfx904",
    (10, 1, 10): "gfx1010", (10, 1, 2): "gfx1011", (10, 1, 1): "gfx1012", (10, 1, 3): "gfx1013",
    (10, 1, 4): "gfx1013",
    (10, 3, 0): "gfx1030", (10, 3, 2): "gfx1031", (10, 3, 4): "gfx1032", (10, 3, 1): "gfx1033",
    (10, 3, 5): "gfx1034", (10, 3, 3): "gfx1035", (10, 3, 6): "gfx1036", (10, 3, 7): "gfx1036",
    (11, 0, 0): "gfx1100", (11, 0, 1): "gfx1103", (11, 0, 2): "gfx1102", (11, 0, 3): "gfx1101",
    (11, 0, 4): "gfx1103", (11, 5, 0): "gfx1150", (11, 5, 1): "gfx1151", (11, 5, 2): "gfx1152",
    (11, 5, 3): "gfx1153", (12, 0, 0): "gfx1200", (12, 0, 1): "gfx1201",
}

_CARD = re.compile(r"^card(\d+)$")


@dataclass(frozen=True)
class AmdGpuDevice:
    card: str                    # "card1"
    device_dir: str              # root-relative, e.g. sys/class/drm/card1/device
    pci_slot: str | None         # "0000:c3:00.0"
    vendor_id: int
    device_id: int | None        # None when neither device nor uevent PCI_ID is readable
    revision: int | None
    subsystem: str | None        # "f111:000a"
    hwmon_dir: str | None        # root-relative hwmon directory, or None
    gfx_target: str | None       # "gfx1151"
    gc_version: tuple[int, int, int] | None
    mp1_version: tuple[int, int, int] | None
    smc_fw_version: int | None
    vbios_version: str | None
    name: str
    known_apu: bool | None       # from the device table; None when the ID is not in it

    @property
    def device_id_hex(self) -> str | None:
        return None if self.device_id is None else f"0x{self.device_id:04x}"

    @property
    def is_strix_halo(self) -> bool:
        return self.device_id == STRIX_HALO_DEVICE or self.gfx_target == "gfx1151"


def _ip_version(fs: RootFS, dev: str, block: int) -> tuple[int, int, int] | None:
    base = f"{dev}/ip_discovery/die/0/{block}/0"
    major, minor, rev = (fs.read_int(f"{base}/{k}") for k in ("major", "minor", "revision"))
    # All three or nothing: a missing revision read as 0 turns GC 11.5.1 (Strix Halo, gfx1151)
    # into 11.5.0 (gfx1150); without it KFD or the device-ID table decides.
    if major is None or minor is None or rev is None:
        return None
    return major, minor, rev


def gfx_target_from_gc(gc: tuple[int, int, int] | None) -> str | None:
    """GC IP version -> LLVM target: 11.5.1 -> gfx1151 (table first, see _GC_TARGETS)."""
    if gc is None:
        return None
    if gc in _GC_TARGETS:
        return _GC_TARGETS[gc]
    return f"gfx{gc[0]}{gc[1]}{gc[2]:x}" if gc[0] >= 10 else None


def _kfd_targets(fs: RootFS) -> dict[tuple[int, int], str]:
    """(pci domain, location_id) -> gfx target from sys/class/kfd/kfd/topology/nodes/*/properties
    (`key value` lines; location_id = bus << 8 | devfn)."""
    out = {}
    for props in fs.glob("sys/class/kfd/kfd/topology/nodes/*/properties"):
        kv = parse.parse_key_value_lines(fs.read_text(props))
        target = parse.gfx_target_from_kfd(parse.parse_int(kv.get("gfx_target_version")))
        loc = parse.parse_int(kv.get("location_id"))
        if target and loc is not None:
            out[(parse.parse_int(kv.get("domain")) or 0, loc)] = target
    return out


def _pci_location(slot: str | None) -> tuple[int, int] | None:
    """"0000:c3:00.0" -> (domain 0, location_id 0xc300)."""
    m = re.match(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$", slot or "")
    if not m:
        return None
    dom, bus, dev, fn = (int(g, 16) for g in m.groups())
    return dom, (bus << 8) | (dev << 3) | fn


def _hwmon_dir(fs: RootFS, dev: str) -> str | None:
    for name_file in fs.glob(f"{dev}/hwmon/hwmon*/name"):
        if fs.read_text(name_file) == "amdgpu":
            return name_file.rsplit("/", 1)[0]
    return None


def find_amd_gpus(fs: RootFS) -> list[AmdGpuDevice]:
    """Every amdgpu card under the root, ordered by card index."""
    cards = []
    for entry in fs.listdir("sys/class/drm"):
        m = _CARD.match(entry)
        if m and fs.read_int(f"sys/class/drm/{entry}/device/vendor") == AMD_VENDOR:
            cards.append((int(m.group(1)), entry))
    if not cards:
        return []
    kfd = _kfd_targets(fs)
    return [_identify(fs, card, kfd) for _, card in sorted(cards)]


def _identify(fs: RootFS, card: str, kfd: dict) -> AmdGpuDevice:
    dev = f"sys/class/drm/{card}/device"
    uevent = parse.parse_key_value_lines(fs.read_text(f"{dev}/uevent"), sep="=")
    slot = uevent.get("PCI_SLOT_NAME") or _slot_from_path(fs.realpath(dev))
    # PCI config device id; the uevent's PCI_ID=VVVV:DDDD says the same (drivers/pci/pci-driver.c
    # pci_uevent). Neither readable: unknown (None), never a made-up 0x0000.
    device_id = fs.read_int(f"{dev}/device")
    if device_id is None:
        device_id = _pci_id_device(uevent.get("PCI_ID"))
    sv, sd = fs.read_int(f"{dev}/subsystem_vendor"), fs.read_int(f"{dev}/subsystem_device")
    gc = _ip_version(fs, dev, 11)
    loc = _pci_location(slot)
    target = (kfd.get(loc) if loc else None) or gfx_target_from_gc(gc)
    known = KNOWN_DEVICES.get(device_id)
    if known:
        name = known[0]
    else:
        name = "AMD GPU" + (f" [1002:{device_id:04x}]" if device_id is not None else "") \
            + (f" ({target})" if target else "")
    return AmdGpuDevice(
        card=card, device_dir=dev, pci_slot=slot, vendor_id=AMD_VENDOR, device_id=device_id,
        revision=fs.read_int(f"{dev}/revision"),
        subsystem=f"{sv:04x}:{sd:04x}" if sv is not None and sd is not None else None,
        hwmon_dir=_hwmon_dir(fs, dev), gfx_target=target, gc_version=gc,
        mp1_version=_ip_version(fs, dev, 1),
        smc_fw_version=fs.read_int(f"{dev}/fw_version/smc_fw_version"),
        vbios_version=fs.read_text(f"{dev}/vbios_version"),
        name=name, known_apu=known[1] if known else None,
    )


def _pci_id_device(pci_id: str | None) -> int | None:
    """"1002:1586" (uevent PCI_ID, vendor:device in hex) -> 0x1586; anything else -> None."""
    m = re.match(r"^[0-9a-fA-F]{4}:([0-9a-fA-F]{4})$", (pci_id or "").strip())
    return int(m.group(1), 16) if m else None


def _slot_from_path(real: str) -> str | None:
    base = real.rstrip("/").rsplit("/", 1)[-1]
    return base if _pci_location(base) else None
