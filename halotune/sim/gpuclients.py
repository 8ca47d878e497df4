"""The simulated machine's GPU client: the llama-server that holds the loaded model.

The simulator models the hardware and the kernel's files; real processes of the host are read
from the host's /proc (machine/processes.py process_root). So that a demo's GPU-process panel
is not empty, the simulated workload also has a simulated process, published where no process
table is read: `<root>/.halotune-sim/clients/proc/<pid>/` (comm, cmdline, fd/<n> -> the render
node, fdinfo/<n>). Only the GPU-client reader (machine/drmclients.py) reads it, in addition to
the host's /proc; the daemon's rules, preflight and doctor never see it.

Its pid is PID_MAX_LIMIT (include/linux/threads.h: 4 * 1024 * 1024 on 64-bit), which pid_max
never reaches, so it cannot collide with a host pid.

fdinfo starts with the generic lines of fs/proc/fd.c seq_show (pos, flags, mnt_id, ino), then
follows what the kernel prints for an amdgpu DRM file descriptor
(Documentation/gpu/drm-usage-stats.rst), Linux 6.11 to 6.18:
- drivers/gpu/drm/drm_file.c drm_show_fdinfo: "drm-driver:\\t%s", "drm-client-id:\\t%llu",
  "drm-pdev:\\t%04x:%02x:%02x.%d", then the driver's show_fdinfo;
- drivers/gpu/drm/amd/amdgpu/amdgpu_fdinfo.c amdgpu_show_fdinfo: "pasid:\\t%u", the generic
  memory stats per region (drm_file.c drm_print_memory_stats: drm-total-, drm-shared-,
  drm-resident-, drm-purgeable- with sizes in B/KiB/MiB, print_size), the legacy
  "drm-memory-vram:\\t%llu KiB" / "drm-memory-gtt: \\t%llu KiB" / "drm-memory-cpu: \\t%llu
  KiB", amd-* keys, and "drm-engine-<ip>:\\t%Ld ns" for every IP with non-zero usage
  (cumulative busy time of the client's contexts, amdgpu_ctx_mgr_usage).
The stored amdgpu_fdinfo.c read for this is a pre-6.9 version (stats.vram/1024 without
drm_print_memory_stats); the legacy drm-memory-* keys and drm-engine-* lines have the same
format in both, and those are what halotune reads.

Model (CHOSEN): the server is present while a model is loaded (GTT above the idle desktop's
buffers); its GTT is the model's weights plus the KV cache, its VRAM a fixed compute buffer in
the carve-out, and its gfx engine time grows by the GPU activity times the elapsed time.
"""

from __future__ import annotations

import os

from halotune.machine.rootfs import SIM_MARKER
from halotune.sim import paths

PID = 4 * 1024 * 1024                   # PID_MAX_LIMIT: no host pid can be this
CLIENTS = f"{SIM_MARKER}/clients"       # proc/<pid>/ below it, read by drmclients only
FD = "5"
RENDER_NODE = "/dev/dri/renderD128"
CLIENT_ID = 17
PASID = 32770
VRAM_BYTES = 96 * 2**20                 # CHOSEN: llama.cpp's compute buffer in the carve-out
COMM = "llama-server"
CMDLINE = ("/usr/local/bin/llama-server", "-m", "/opt/models/model.gguf", "-ngl", "999",
           "--host", "127.0.0.1")


def base(pid: int = PID) -> str:
    return f"{CLIENTS}/proc/{pid}"


def _idle_gtt() -> int:
    from halotune.sim.scenarios import IDLE_GTT_BYTES   # scenarios imports physics, which us
    return IDLE_GTT_BYTES


def loaded(state: dict) -> bool:
    return state["memory"]["gtt_model_bytes"] > _idle_gtt()


def gtt_bytes(state: dict) -> int:
    mem = state["memory"]
    return max(0, mem["gtt_model_bytes"] - _idle_gtt()) + mem["gtt_kv_bytes"]


def advance(state: dict, activity: float, dt: float) -> None:
    """Engine time: the client's gfx contexts were busy activity * dt seconds."""
    client = state.setdefault("gpu_client", {"gfx_ns": 0})
    if loaded(state):
        client["gfx_ns"] = int(client["gfx_ns"] + activity * dt * 1e9)


def _size(stat: str, region: str, n: int) -> str:
    """drm_file.c print_size: divide by 1024 while the value is a non-zero multiple of it,
    at most to MiB."""
    units = ("", " KiB", " MiB")
    u = 0
    while u < len(units) - 1 and n != 0 and n % 1024 == 0:
        n //= 1024
        u += 1
    return f"drm-{stat}-{region}:\t{n}{units[u]}\n"


def fdinfo(state: dict) -> str:
    vram, gtt = VRAM_BYTES, gtt_bytes(state)
    gfx_ns = state.get("gpu_client", {}).get("gfx_ns", 0)
    text = (f"pos:\t0\nflags:\t02100002\nmnt_id:\t26\nino:\t1045\n"
            f"drm-driver:\tamdgpu\ndrm-client-id:\t{CLIENT_ID}\ndrm-pdev:\t{paths.PCI_SLOT}\n"
            f"pasid:\t{PASID}\n")
    for region, n in (("cpu", 0), ("gtt", gtt), ("vram", vram)):
        text += (_size("total", region, n) + _size("shared", region, 0)
                 + _size("resident", region, n) + _size("purgeable", region, 0))
    text += (f"drm-memory-vram:\t{vram // 1024} KiB\ndrm-memory-gtt: \t{gtt // 1024} KiB\n"
             f"drm-memory-cpu: \t0 KiB\namd-evicted-vram:\t0 KiB\n"
             f"amd-requested-vram:\t{vram // 1024} KiB\namd-requested-gtt:\t{gtt // 1024} KiB\n")
    if gfx_ns:
        text += f"drm-engine-gfx:\t{gfx_ns} ns\n"
    return text


def render(state: dict) -> dict[str, str | None]:
    """Root-relative path -> content of the simulated client's files (None: absent)."""
    b = base()
    if not loaded(state):
        return {f"{b}/comm": None, f"{b}/cmdline": None, f"{b}/fdinfo/{FD}": None}
    return {f"{b}/comm": f"{COMM}\n", f"{b}/cmdline": "\0".join(CMDLINE) + "\0",
            f"{b}/fdinfo/{FD}": fdinfo(state)}


def lay_out(root: str) -> None:
    """The client's directories and its fd link to the render node (older trees get them at
    their next publish)."""
    b = os.path.join(root, base())
    link = os.path.join(b, "fd", FD)
    if os.path.islink(link):
        return
    os.makedirs(os.path.join(b, "fd"), exist_ok=True)
    os.makedirs(os.path.join(b, "fdinfo"), exist_ok=True)
    os.symlink(RENDER_NODE, link)
