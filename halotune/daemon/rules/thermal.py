"""Thermal guard: when the APU stays above limit_c for `seconds`, step the TDP limits down.

An override on top of whichever profile wins below it (process rule, power source, default):
a ceiling per TDP key, applied by writing a synthetic profile derived from the base one (its
TDP values capped) through the engine, so the journal keeps the originals as for any apply.
Each further `seconds` above the limit steps down again, never below min_w (nor the platform's
cTDP minimum). After RELEASE_FACTOR x `seconds` below limit_c - HYSTERESIS_C the ceiling is
raised again by step_w every `seconds`, until the base profile's limits are back: in stages,
as it came down, so a machine at the edge does not saw between full TDP and the ceiling. A
manual apply outranks the guard: it does not act then.

The guard's profile is named `BASE+thermal-NNw`: a daemon restarted while one is applied (a
crash, an upgrade) resumes the guard from it (`resume`) instead of taking it for a manual
apply, which would keep the ceiling forever.

The temperature is the hottest of the GPU's edge/hotspot/SoC sensors and the CPU cores
(one die: the GPU and the cores share the cooler).
"""

from __future__ import annotations

import dataclasses

from halotune.tuning import limits

HYSTERESIS_C = 5.0
RELEASE_FACTOR = 4.0
TDP_KEYS = ("power.stapm_w", "power.slow_w", "power.fast_w")
SNAPSHOT_KEYS = {"power.stapm_w": "stapm_limit_w", "power.slow_w": "slow_limit_w",
                 "power.fast_w": "fast_limit_w"}
TAG = "+thermal-"


def split_name(name: str | None) -> tuple[str | None, bool]:
    """("llm-max", True) for the guard's "llm-max+thermal-110w"; ("stock+thermal-...") is the
    machine's own limits capped: (None, True). Profile files cannot be named with a "+"."""
    if not name or TAG not in name:
        return name, False
    base = name.split(TAG, 1)[0]
    return (None if base == "stock" else base), True


def hottest(snap) -> float | None:
    temps = []
    g = snap.primary_gpu
    if g is not None:
        temps += [g.edge_temp_c, g.hotspot_temp_c, g.soc_temp_c]
    temps.append(snap.cpu.temp_c)
    temps = [t for t in temps if isinstance(t, (int, float)) and t == t]
    return max(temps) if temps else None


class ThermalGuard:
    def __init__(self, rules, config):
        self.rules = rules
        self.config = config
        self.cap: dict[str, float] | None = None    # TDP ceilings in force
        # The machine's own limits when the first step was taken: the base for keys a profile
        # leaves alone (live readings would show the ceiling itself once it is written).
        self.machine_base: dict[str, float] | None = None
        self.temp: float | None = None
        self._hot_since: float | None = None
        self._cool_since: float | None = None
        self._last_step: float | None = None
        self._floor_noted = False
        self._releasing = False

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    @property
    def floor_w(self) -> float:
        return max(self.config.min_w, limits.TDP_MIN_W)

    def update(self, snap, now: float) -> None:
        if not self.enabled:
            return
        t = self.temp = hottest(snap)
        if t is None:
            return
        if t > self.config.limit_c:
            self._cool_since = None
            self._releasing = False
            if self._hot_since is None:
                self._hot_since = now
        else:
            self._hot_since = None
            if t < self.config.limit_c - HYSTERESIS_C:
                if self._cool_since is None:
                    self._cool_since = now
            else:
                self._cool_since = None
        if (self.cap is not None and not self._releasing and self._cool_since is not None
                and now - self._cool_since >= RELEASE_FACTOR * self.config.seconds):
            self._releasing = True
            self._last_step = None
            cool = self.config.limit_c - HYSTERESIS_C
            self.rules.fire("thermal", f"thermal guard: below {cool:g} °C for "
                            f"{now - self._cool_since:.0f} s: stepping the TDP back up, "
                            f"{self.config.step_w:g} W every {self.config.seconds:g} s")

    def release_due(self, now: float) -> bool:
        """Cool for long enough, and the last step up (if any) had its time to show."""
        return (self._releasing and self.cap is not None and self._cool_since is not None
                and (self._last_step is None or now - self._last_step >= self.config.seconds))

    def step_up(self, base: dict[str, float], now: float) -> None:
        """Raise the ceiling one step towards `base` (the winning profile's TDP values); at
        `base` the ceiling is gone."""
        self._last_step = now
        current = {k: min(v, self.cap.get(k, v)) for k, v in base.items()}
        new = {k: min(base[k], v + self.config.step_w) for k, v in current.items()}
        if all(new[k] >= base[k] - 0.5 for k in new):
            self.cap = None
            self.machine_base = None
            self._last_step = None
            self._floor_noted = False
            self._releasing = False
            self.rules.fire("thermal", f"thermal guard: TDP {_show(current)} -> {_show(new)}: "
                            "the profile's TDP limits are back", before=current, after=new)
            return
        self.cap = {**self.cap, **new}
        self.rules.fire("thermal", f"thermal guard: still cool: TDP {_show(current)} -> "
                        f"{_show(new)} (step {self.config.step_w:g} W)", before=current, after=new)

    def resume(self, cap: dict[str, float], machine_base: dict[str, float] | None) -> None:
        """Take over a ceiling found applied at start (the daemon was restarted under it)."""
        self.cap = dict(cap) or None
        self.machine_base = dict(machine_base) if machine_base else None
        if self.cap:
            self.rules.fire("thermal", f"thermal guard: resuming the ceiling found applied "
                            f"({_show(self.cap)}): it is released in steps once cool")

    def due(self, now: float) -> bool:
        """Hot for long enough, and the last step (if any) had its time to work."""
        return (self.enabled and self._hot_since is not None
                and now - self._hot_since >= self.config.seconds
                and (self._last_step is None or now - self._last_step >= self.config.seconds))

    def machine(self, live: dict[str, float]) -> dict[str, float]:
        """The machine's own limits to complete a profile with: frozen at the first step."""
        return self.machine_base if self.machine_base is not None else live

    def step(self, base: dict[str, float], now: float, live: dict | None = None) -> None:
        """Lower the ceiling one step below the limits in force (`base`: the winning
        profile's TDP values, completed from the machine's limits; `live`: the machine's
        current limits, remembered at the first step)."""
        self._last_step = now
        if self.cap is None and live is not None:
            self.machine_base = dict(live)
        current = {k: min(v, self.cap.get(k, v)) if self.cap else v for k, v in base.items()}
        floor = self.floor_w
        new = {k: max(floor, v - self.config.step_w) for k, v in current.items()}
        if new == current:
            if not self._floor_noted:
                self._floor_noted = True
                self.rules.fire("thermal", f"thermal guard: {self.temp:g} °C above "
                                f"{self.config.limit_c:g} °C, but the TDP is at its floor "
                                f"({floor:g} W): nothing more to step down")
            return
        self.cap = new
        self.rules.fire("thermal", f"thermal guard: {self.temp:g} °C above "
                        f"{self.config.limit_c:g} °C for {now - self._hot_since:.0f} s: "
                        f"TDP {_show(current)} -> {_show(new)} "
                        f"(step {self.config.step_w:g} W, floor {floor:g} W)",
                        before=current, after=new)

    def overlay(self, profile, machine: dict[str, float]):
        """The profile (a ResolvedProfile or None for the machine's originals) with the
        ceilings applied, or None when the ceilings do not lower anything."""
        if not self.cap:
            return None
        base = tdp_of(profile, machine)
        capped = {k: min(v, self.cap[k]) for k, v in base.items() if k in self.cap}
        if all(abs(capped[k] - base[k]) < 0.5 for k in capped):
            return None
        tag = f"thermal-{capped.get('power.stapm_w', min(capped.values())):g}w"
        if profile is None:
            from halotune.tuning.loader import ResolvedProfile
            name = f"stock+{tag}"
            return ResolvedProfile(name=name, path="(thermal guard)",
                                   display_path="(thermal guard)", chain=[name],
                                   description="TDP lowered by the thermal guard",
                                   values=dict(capped),
                                   sources={k: "(thermal guard)" for k in capped})
        return dataclasses.replace(profile, name=f"{profile.name}+{tag}",
                                   values={**profile.values, **capped},
                                   sources={**profile.sources,
                                            **{k: "(thermal guard)" for k in capped}})


def tdp_of(profile, machine: dict[str, float]) -> dict[str, float]:
    """TDP values in force under `profile`: its own, else the machine's current limits."""
    values = profile.values if profile is not None else {}
    out = {}
    for k in TDP_KEYS:
        v = values.get(k, machine.get(k))
        if v is not None:
            out[k] = float(v)
    return out


def machine_tdp(snap) -> dict[str, float]:
    if snap is None:
        return {}
    return {k: getattr(snap.power, attr) for k, attr in SNAPSHOT_KEYS.items()
            if getattr(snap.power, attr) is not None}


def _show(values: dict[str, float]) -> str:
    return "/".join(f"{values[k]:g}" for k in TDP_KEYS if k in values) + " W (stapm/slow/fast)"
