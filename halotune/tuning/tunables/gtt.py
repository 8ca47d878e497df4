"""memory.gtt_gib: the GTT size (GPU-mappable system RAM), a boot-time setting.

Interface: ttm.pages_limit / ttm.page_pool_size, 4 KiB pages (drivers/gpu/drm/ttm/ttm_tt.c);
GTT = pages_limit x 4096 when amdgpu.gttsize is unset. A runtime write to the parameter does
not resize GTT (computed once at amdgpu init), so halotune writes
/etc/modprobe.d/halotune-gtt.conf and the change waits for a reboot. The ROCm DKMS driver
uses its own `amdttm` module instead. A ttm.pages_limit= on the kernel command line, an
amdgpu.gttsize that would win (command line or any modprobe.d file), or a ttm built into the
kernel, would make the file a silent no-op: refused with what to do instead. halotune never
edits the bootloader. Another modprobe.d file read after halotune's (kmod reads every
directory's files in name order, the last value wins: machine/modprobe.py) is warned about by
apply, and verify says whether the value is live or waits for a reboot; both use the same
next-boot computation as `status` (machine/memory.py gtt_next_boot).
"""

from __future__ import annotations

import os

from halotune.machine import modprobe, parse
from halotune.machine.memory import GTT_CONF as CONF
from halotune.machine.memory import PAGE_SIZE, gtt_next_boot, pages_in_conf, ttm_module_of
from halotune.machine.platform import read_kernel_release
from halotune.tuning import limits
from halotune.tuning.tunables.base import InvalidTarget, Tunable

KEY = "memory.gtt_gib"


ttm_module = ttm_module_of


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / (1 << 30):g} GiB"


def running_gtt_bytes(fs) -> int | None:
    """The running GTT size: the GPU's mem_info_gtt_total (bytes), else the live TTM limit."""
    for rel in fs.glob("sys/class/drm/card[0-9]*/device/mem_info_gtt_total"):
        value = fs.read_int(rel)
        if value:
            return value
    pages = fs.read_int(f"sys/module/{ttm_module(fs)}/parameters/pages_limit")
    return pages * PAGE_SIZE if pages else None


def initramfs_note(fs, conf: str) -> str | None:
    """Tell when the initramfs predates `conf` (root-relative): a boot that loads amdgpu from
    it uses the copy of modprobe.d inside it."""
    release = read_kernel_release(fs)
    image = modprobe.initramfs_image(fs, release)
    try:
        stale = image is not None and os.stat(fs.path(image)).st_mtime_ns < \
            os.stat(fs.path(conf)).st_mtime_ns
    except OSError:
        return None
    if not stale:
        return None
    return (f"/{image} is older than /{conf}: if amdgpu and ttm load from the initramfs (they "
            "do when amdgpu loads early, e.g. for the boot splash), the next boot reads the "
            "initramfs's own copy of modprobe.d; rebuild it first: "
            f"`update-initramfs -u -k {release}` (Debian/Ubuntu) or "
            f"`dracut -f --kver {release}` (Fedora)")


def render(module: str, pages: int, gib) -> str:
    return (f"# Written by halotune for memory.gtt_gib = {gib:g}: the iGPU's GTT size.\n"
            f"# {module}.pages_limit is in 4 KiB pages (GiB x {limits.GIB_PAGES}); "
            f"it takes effect at the next boot.\n"
            f"options {module} pages_limit={pages} page_pool_size={pages}\n")


def ttm_builtin(fs) -> bool:
    release = read_kernel_release(fs)
    text = fs.read_text(f"lib/modules/{release}/modules.builtin") if release else None
    return bool(text) and any(line.strip().endswith("/ttm/ttm.ko") for line in text.splitlines())


class GttSize(Tunable):
    name = "gtt"
    keys = (KEY,)
    boot_time = True
    none_is_state = True           # no halotune-gtt.conf is a state a rollback restores
    apply_rank = 90
    rollback_rank = 90

    def read(self, ctx):
        # The file's exact content (None: absent) is the state: rollback restores the bytes.
        raw = ctx.fs.read_bytes(CONF, 1 << 16)
        return {KEY: None if raw is None else raw.decode("utf-8", "replace")}

    def plan(self, ctx, targets, planned, current):
        gib = targets[KEY]
        if isinstance(gib, bool) or not isinstance(gib, (int, float)) or gib <= 0:
            raise InvalidTarget(KEY, gib, "must be a positive number of GiB")
        pages = round(gib * limits.GIB_PAGES)
        module = ttm_module(ctx.fs)
        wanted = f"{module}.pages_limit={pages} {module}.page_pool_size={pages}"
        cmdline = parse.parse_cmdline(ctx.fs.read_text("proc/cmdline"))
        for name in ("ttm.pages_limit", "amdttm.pages_limit"):
            if name in cmdline:
                raise InvalidTarget(KEY, gib, (
                    f"the kernel command line sets {name}={cmdline[name]}, which overrides "
                    f"modprobe.d: change it there instead to `{wanted}` (e.g. in "
                    "GRUB_CMDLINE_LINUX_DEFAULT of /etc/default/grub, then update-grub); "
                    "halotune does not edit the bootloader"))
        gttsize = cmdline.get("amdgpu.gttsize")
        if gttsize not in (None, "", "-1"):
            raise InvalidTarget(KEY, gib, (
                f"the kernel command line sets amdgpu.gttsize={gttsize}, which overrides "
                f"ttm.pages_limit (and is deprecated): remove it, then apply again"))
        content = render(module, pages, gib)
        after = gtt_next_boot(ctx.fs, {CONF: content})
        src = after.source
        if src is not None and src.param == "gttsize" and src.where != modprobe.CMDLINE:
            raise InvalidTarget(KEY, gib, (
                f"{src.where} sets `options amdgpu gttsize={src.value}`, which overrides "
                f"{module}.pages_limit (and is deprecated): remove that option, then apply "
                "again"))
        if module == "ttm" and ttm_builtin(ctx.fs):
            raise InvalidTarget(KEY, gib, (
                "ttm is built into this kernel, so modprobe.d options never reach it: add "
                f"`{wanted}` to the kernel command line instead"))
        mem_total = parse.parse_meminfo(ctx.fs.read_text("proc/meminfo")).get("MemTotal")
        if mem_total and pages * PAGE_SIZE > limits.GTT_MAX_FRACTION * mem_total and not ctx.force:
            raise InvalidTarget(KEY, gib, (
                f"is more than {limits.GTT_MAX_FRACTION:.0%} of MemTotal "
                f"({mem_total / (1 << 30):.1f} GiB): the OS would be starved; use --force to "
                "override"))
        return {KEY: content}

    def check_restore_state(self, key, state):
        # The file's bytes as read (at most 64 KiB), or None: no file.
        if state is None or (isinstance(state, str) and len(state) <= 1 << 16):
            return None
        return "must be the text of halotune-gtt.conf (at most 64 KiB) or null (no file)"

    def write(self, ctx, states, current):
        ctx.write_config(KEY, CONF, states[KEY])

    def cleanup(self, ctx):
        from halotune.machine import durable

        try:
            durable.remove_temps(ctx.fs.real_path_inside(CONF))
        except OSError:      # no modprobe.d directory (or one leading outside the root)
            pass

    def notes(self, ctx, states) -> list[str]:
        if states.get(KEY) is None:
            after = gtt_next_boot(ctx.fs)
            return [f"{CONF} removed; at the next boot GTT is {_gib(after.bytes)} "
                    f"({after.where})"]
        stale = initramfs_note(ctx.fs, CONF)
        if stale:
            return [f"{CONF} written: reboot to apply", stale]
        return [f"{CONF} written: reboot to apply. If ttm is in your initramfs (it is when "
                "amdgpu loads early), rebuild it first: `update-initramfs -u` (Debian/Ubuntu) "
                "or `dracut -f` (Fedora)"]

    def warnings(self, ctx, states) -> list[str]:
        content = states.get(KEY)
        if content is None:
            return []
        after = gtt_next_boot(ctx.fs, {CONF: content})
        if after.problem:
            return [after.problem]
        src = after.source
        if src is None or src.where == "/" + CONF:
            return []
        mine = pages_in_conf(content)
        return [f"{src.where} sets `{src.module} {src.param}={src.value}` and is read after "
                f"/{CONF} (kmod reads the *.conf files of /etc, /run, /usr/local/lib, /usr/lib "
                "and /lib/modprobe.d in name order; the last value wins): the next boot sizes GTT "
                f"to {_gib(after.bytes)}, not {_gib(mine and mine * PAGE_SIZE)}. Remove that "
                f"option from {src.where} (or set the value there), then apply again"]

    def row_note(self, ctx, key, state) -> str:
        if state is None:
            return ""
        after = gtt_next_boot(ctx.fs)
        if after.problem:
            return after.problem
        live = running_gtt_bytes(ctx.fs)
        if after.source is not None and after.source.where != "/" + CONF:
            return f"overridden by {after.where}: {_gib(after.bytes)} at the next boot"
        if after.bytes is not None and after.bytes == live:
            return "live"
        return f"written, pending reboot (running: {_gib(live)})"

    def show(self, key, state):
        if state is None:
            return "default (no halotune-gtt.conf)"
        pages = pages_in_conf(state)
        return f"{pages * PAGE_SIZE / (1 << 30):g} GiB at next boot" if pages else "custom file"


TUNABLES = [GttSize()]
