"""GPU memory: does the model (weights + KV cache of the context) fit what the GPU can use?"""

from __future__ import annotations

from halotune.checks import model as gguf
from halotune.checks.report import gib, item


def memory(ctx) -> dict:
    title = "GPU memory"
    m = ctx.obs.last.memory
    g = ctx.obs.last.primary_gpu
    usable = m.gpu_usable_bytes
    in_use = None if g is None else (g.gtt_used_bytes or 0) + (g.vram_used_bytes or 0)
    th = ctx.th["memory"]
    if ctx.model_error:
        return item("memory", title, "fail", ctx.model_error, None,
                    "give the path of a .gguf file (the first part of a split model)")
    if usable is None:
        return item("memory", title, "skip", "GPU-usable memory not readable", None)
    free = usable - (in_use or 0)
    if ctx.model is None:
        return item("memory", title, "pass",
                    f"{gib(usable)} usable by the GPU, {gib(in_use)} in use, {gib(free)} free "
                    "(give --model to check a model)", None)
    info = ctx.model
    weights = int(info.size_bytes)
    kv = gguf.kv_bytes(info, ctx.n_ctx, th["kv_bytes_per_elem"])
    need = weights + (kv or 0) + th["overhead_bytes"]
    kv_text = (f"KV cache {gib(kv)} at {ctx.n_ctx} tokens" if kv is not None
               else "KV cache not computed (no model geometry)")
    value = (f"weights {gib(weights)} + {kv_text} + overhead {gib(th['overhead_bytes'])} = "
             f"{gib(need)} of {gib(usable)} usable ({gib(free)} free now)")
    spare = th["headroom_warn_bytes"]
    expected = f"<= {gib(usable - spare)} (keeping {gib(spare)} spare)"
    if need > usable:
        return item("memory", title, "fail", value + ": does not fit", expected,
                    "use a smaller quantisation or context, or raise the GTT limit "
                    "(memory.gtt_gib in a profile, then reboot)")
    if need > free:
        return item("memory", title, "warn", value + ": other processes hold GPU memory", expected,
                    "close the programs holding GPU memory (see the GPU clients check)")
    if usable - need < th["headroom_warn_bytes"]:
        return item("memory", title, "warn", value + ": little headroom", expected,
                    "a larger context or a second model will not fit; consider a smaller context")
    return item("memory", title, "pass", value, expected)
