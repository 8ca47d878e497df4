"""memory.gtt_gib: the GTT size (GPU-mappable system RAM), a boot-time setting.

Interface: ttm.pages_limit / ttm.page_pool_size, 4 KiB pages (drivers/gpu/drm/ttm/ttm_tt.c);
GTT = pages_limit x 4096 when amdgpu.gttsize is unset. A runtime write to the parameter does
not resize GTT (computed once at amdgpu init), so halotune writes
/etc/modprobe.d/halotune-gtt.conf and the change waits for a reboot. The ROCm DKMS driver
uses its own `amdttm` module instead. A ttm.pages_limit= on the kernel command line, or a
ttm built into the kernel, would make the file a silent no-op: refused with the exact
command line to use instead. halotune never edits the bootloader.
"""

from __future__ import annotations

from halotune.machine import parse
from halotune.machine.memory import GTT_CONF as CONF
from halotune.machine.memory import PAGE_SIZE, pages_in_conf
from halotune.machine.platform import read_kernel_release
from halotune.tuning import limits
from halotune.tuning.tunables.base import InvalidTarget, Tunable

KEY = "memory.gtt_gib"


def ttm_module(fs) -> str:
    return "amdttm" if fs.exists("sys/module/amdttm") else "ttm"


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
        for conf in ctx.fs.glob("etc/modprobe.d/*.conf"):
            if conf.endswith(CONF):
                continue
            for line in (ctx.fs.read_text(conf) or "").splitlines():
                words = line.split()
                if (len(words) >= 3 and words[0] == "options" and words[1] == "amdgpu"
                        and any(w.startswith("gttsize=") and w != "gttsize=-1" for w in words[2:])):
                    raise InvalidTarget(KEY, gib, (
                        f"/{conf} sets `{line.strip()}`, which overrides ttm.pages_limit (and "
                        "is deprecated): remove that option, then apply again"))
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
        return {KEY: render(module, pages, gib)}

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
            return [f"{CONF} removed; the GTT size returns to its default at the next boot"]
        return [f"{CONF} written: reboot to apply. If ttm is in your initramfs (it is when "
                "amdgpu loads early), rebuild it first: `update-initramfs -u` (Debian/Ubuntu) "
                "or `dracut -f` (Fedora)"]

    def show(self, key, state):
        if state is None:
            return "default (no halotune-gtt.conf)"
        pages = pages_in_conf(state)
        return f"{pages * PAGE_SIZE / (1 << 30):g} GiB at next boot" if pages else "custom file"


TUNABLES = [GttSize()]
