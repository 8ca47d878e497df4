"""KFD topology: the GPUs as ROCm sees them.

Interface: sys/class/kfd/kfd/topology/nodes/N/{gpu_id,name,properties}
(drivers/gpu/drm/amd/amdkfd/kfd_topology.c); `properties` holds one `key value` per line, and a
node whose gpu_id is 0 is a CPU. Kernels with the gfx1151 CWSR fixes (6.18.4, and distribution
backports) add `cwsr_size` and `ctl_stack_size` to a GPU node's properties.
"""

from __future__ import annotations

from halotune.machine import parse
from halotune.machine.rootfs import RootFS

NODES = "sys/class/kfd/kfd/topology/nodes"


def kfd_present(fs: RootFS) -> bool:
    return fs.isdir(NODES)


def gpu_nodes(fs: RootFS) -> list[dict[str, str]]:
    """Properties of every GPU node (plus "node" and "gfx_target"), by node number."""
    out = []
    for node in sorted(fs.listdir(NODES), key=lambda n: int(n) if parse.is_uint(n) else 1 << 30):
        gpu_id = (fs.read_text(f"{NODES}/{node}/gpu_id") or "").strip()
        if not gpu_id or gpu_id == "0":
            continue
        props = parse.parse_key_value_lines(fs.read_text(f"{NODES}/{node}/properties"))
        props["node"] = node
        props["gfx_target"] = parse.gfx_target_from_kfd(
            parse.parse_int(props.get("gfx_target_version"))) or ""
        out.append(props)
    return out
