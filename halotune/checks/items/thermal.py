"""The machine's physical state: temperatures, throttling, power source."""

from __future__ import annotations

from halotune.checks.report import item


def _hottest(snap) -> tuple[float | None, str | None]:
    cands = []
    g = snap.primary_gpu
    if g is not None:
        cands += [(g.edge_temp_c, "GFX"), (g.soc_temp_c, "SoC"), (g.hotspot_temp_c, "hotspot")]
    cands.append((snap.cpu.temp_c, "CPU cores"))
    cands = [(t, n) for t, n in cands if t is not None]
    return max(cands) if cands else (None, None)


def temperature(ctx) -> dict:
    title = "Temperatures well below throttling"
    th = ctx.th["thermal"]
    t, where = _hottest(ctx.obs.last)
    warn_at, fail_at = th["limit_c"] - th["warn_margin_c"], th["limit_c"] - th["fail_margin_c"]
    expected = f"< {warn_at:g} °C (throttling at {th['limit_c']:g} °C)"
    if t is None:
        return item("temperature", title, "skip", "no temperature readable", expected)
    value = f"{t:.1f} °C ({where})"
    fix = ("let the machine cool down (a few minutes idle), check the fans and the airflow, "
           "then run preflight again")
    if t >= fail_at:
        hot = f": hot, within {th['limit_c'] - t:.0f} °C of the limit"
        return item("temperature", title, "fail", value + hot, expected, fix)
    if t >= warn_at:
        return item("temperature", title, "warn", value, expected, fix)
    return item("temperature", title, "pass", value, expected)


def throttle(ctx) -> dict:
    title = "No throttling during the window"
    a = ctx.obs.first.primary_gpu
    b = ctx.obs.last.primary_gpu
    ra = a.throttle_residency if a is not None else None
    rb = b.throttle_residency if b is not None else None
    if not ra or not rb:
        return item("throttle", title, "skip", "no throttle counters (gpu_metrics v3.0 only)",
                    "no increase")
    grew = {k: rb[k] - ra[k] for k in rb
            if ra.get(k) is not None and rb.get(k) is not None and rb[k] > ra[k]}
    thermal = [k for k in ctx.th["throttle"]["thermal"] if k in grew]
    power = [k for k in ctx.th["throttle"]["power"] if k in grew]
    value = ", ".join(f"{k} +{grew[k]}" for k in grew) or \
        f"no counter moved in {ctx.obs.seconds:g} s"
    if thermal:
        return item("throttle", title, "fail", f"thermal throttling: {value}", "no increase",
                    "the SoC is at its thermal limit: let it cool down, check the cooling")
    if power:
        return item("throttle", title, "warn", f"power-limit throttling: {value}", "no increase",
                    "the power limit engaged while preflight watched: something is loading the "
                    "machine")
    return item("throttle", title, "pass", value, "no increase")


def power_source(ctx) -> dict:
    title = "On AC power"
    ac = ctx.obs.last.power.on_ac_power
    if ac is None:
        return item("power_source", title, "skip", "no mains supply reported (a desktop)", "AC")
    if not ac:
        return item("power_source", title, "fail", "on battery", "AC",
                    "plug in: on battery the firmware lowers the power limits")
    return item("power_source", title, "pass", "AC", "AC")
