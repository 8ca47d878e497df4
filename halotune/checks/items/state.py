"""What was asked of the machine: the profile and its values (limits, platform profile, CPU
policy), and boot-time changes still waiting for a reboot."""

from __future__ import annotations

from halotune.checks.report import item, watts

TDP_KEYS = (("power.stapm_w", "stapm_limit_w", "STAPM"),
            ("power.fast_w", "fast_limit_w", "fast PPT"),
            ("power.slow_w", "slow_limit_w", "slow PPT"))


def profile(ctx) -> dict:
    title = "Profile applied, no drift"
    want = ctx.profile_name
    if ctx.profile_error:
        return item("profile", title, "fail", ctx.profile_error, want,
                    "check the name with `halotune profiles list`")
    out = ctx.verify
    if out is None:
        status = "warn" if want else "skip"
        return item("profile", title, status, ctx.verify_error or "not verified", want,
                    "run preflight as root, or with the daemon running, to read the journal")
    applied = getattr(out, "profile", None)
    drift = [r for r in out.rows if r.status == "drift"]
    if want is None and applied is None:
        return item("profile", title, "skip", "no profile applied by halotune on this boot", None)
    if want is not None and want == "stock" and applied is None:
        return item("profile", title, "pass", "stock (no halotune profile applied)", want)
    if want is not None and applied != want:
        return item("profile", title, "fail", applied or "no profile applied", want,
                    f"sudo halotune apply {want}")
    if drift:
        what = "; ".join(f"{r.key} is {r.after}, profile says {r.target}" for r in drift)
        return item("profile", title, "fail", f"{applied}: drifted: {what}", applied,
                    f"re-apply it (sudo halotune apply {applied}) and find what changes these "
                    "values (power-profiles-daemon, tuned, the EC/firmware)")
    return item("profile", title, "pass", f"{applied}: all {len(out.rows)} value(s) hold", want)


def pending_reboot(ctx) -> dict:
    pending = ctx.obs.last.pending_reboot
    title = "No boot-time change pending"
    if not pending:
        return item("pending_reboot", title, "pass", "none", "none")
    what = ", ".join(f"{p.get('key')} ({p.get('file')})" for p in pending)
    return item("pending_reboot", title, "warn", f"waiting for a reboot: {what}", "none",
                "reboot before measuring, or undo the boot-time change (halotune rollback)")


def tdp(ctx) -> dict:
    title = "TDP limits (RyzenAdj readback)"
    p = ctx.obs.last.power
    wanted = {k: ctx.expected[k] for k, _a, _n in TDP_KEYS if k in ctx.expected}
    now = ", ".join(f"{n} {watts(getattr(p, a))}" for _k, a, n in TDP_KEYS)
    if p.limits_source is None:
        status = "warn" if wanted else "skip"
        why = p.limits_hint or "RyzenAdj was not asked (no AMD APU found)"
        return item("tdp", title, status, f"limits not readable: {why}",
                    _show(wanted), "install RyzenAdj (>= 0.17) and run preflight as root")
    if not wanted:
        return item("tdp", title, "pass", now, None)
    tol = ctx.th["power"]["tdp_tolerance_w"]
    off = [f"{n} {watts(getattr(p, a))} (want {watts(float(wanted[k]))})"
           for k, a, n in TDP_KEYS if k in wanted
           and (getattr(p, a) is None or abs(getattr(p, a) - float(wanted[k])) > tol)]
    if off:
        return item("tdp", title, "fail", "; ".join(off), _show(wanted),
                    f"re-apply the profile (sudo halotune apply {_name(ctx)}); the EC or "
                    "amd-pmf resets RyzenAdj limits on AC and platform-profile changes")
    return item("tdp", title, "pass", now, _show(wanted))


def platform_profile(ctx) -> dict:
    title = "ACPI platform profile"
    now = ctx.obs.last.power.platform_profile
    want = ctx.expected.get("power.platform_profile")
    if now is None:
        status = "warn" if want else "skip"
        return item("platform_profile", title, status, "no platform_profile on this machine",
                    want, "load the amd-pmf (or vendor) platform-profile driver")
    if want is not None and now != want:
        return item("platform_profile", title, "fail", now, want,
                    f"re-apply the profile (sudo halotune apply {_name(ctx)})")
    return item("platform_profile", title, "pass", now, want)


def cpu_policy(ctx) -> dict:
    title = "CPU governor and EPP"
    c = ctx.obs.last.cpu
    now = f"governor {c.governor or '?'}, EPP {c.epp or '?'}"
    want = {k: ctx.expected[k] for k in ("cpu.governor", "cpu.epp") if k in ctx.expected}
    wrong = [f"{k.split('.')[1]} {now_v} (want {want[k]})"
             for k, now_v in (("cpu.governor", c.governor), ("cpu.epp", c.epp))
             if k in want and now_v != want[k]]
    if wrong:
        return item("cpu_policy", title, "fail", "; ".join(wrong), _show(want),
                    f"re-apply the profile (sudo halotune apply {_name(ctx)})")
    if c.governors_mixed or c.epp_mixed:
        return item("cpu_policy", title, "warn", now + " (not the same on every CPU)",
                    _show(want) or "the same on every CPU",
                    "set one governor/EPP for all CPUs (a halotune profile does)")
    if c.governor is None:
        return item("cpu_policy", title, "skip", "no cpufreq policy readable", _show(want))
    return item("cpu_policy", title, "pass", now, _show(want))


def _show(values: dict) -> str | None:
    if not values:
        return None
    return ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                     for k, v in values.items())


def _name(ctx) -> str:
    return ctx.profile_name or (ctx.expected_from or "NAME").split()[-1]
