"""The daemon's rules: which profile the machine should have, and keeping it there.

One arbitration model (arbitration.py) decides who wins: the effective target is the winning
profile plus temporary overrides, by priority hold > manual apply > thermal guard > battery >
process rule > AC power > default profile. Switches the rules make are rate-limited
([rules] min_switch_interval_s), except going to battery and the thermal guard's steps. While a hold is active nothing switches and drift is
not re-asserted. Each rule lives in its own module and reads its inputs through the event
sources of halotune.machine (processes, power supply, uevents, clocks), polled at its own
cadence from `on_sample`, which the daemon calls after every sample:

- process.py: a matching process (llama-server, ollama, ...) runs -> its profile; hold_s after
  it exits, back to what wins then (the default profile, or the original values);
- power.py: AC / battery -> ac_profile / battery_profile;
- resume.py: after a resume or a GPU reset, the active profile is applied again;
- drift.py: verify every interval_s, re-assert with back-off, one event when another actor
  keeps winning;
- thermal.py: too hot for too long -> step the TDP down (an override on top of the profile);
- conflicts: power-profiles-daemon, TuneD and friends running at start are reported.

Changes go through the daemon (`apply_profile`, `rollback`), one at a time, in a background
task so sampling never waits for an apply. halotune's own child processes are not seen by the
process source. Every firing is an event (API `events`, and the log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from halotune.daemon.rules.arbitration import PRIORITY, Candidate, arbitrate, outranks, winner
from halotune.daemon.rules.drift import DriftRule
from halotune.daemon.rules.power import PowerRule
from halotune.daemon.rules.process import ProcessRules
from halotune.daemon.rules.resume import ResumeRule
from halotune.daemon.rules.sources import Sources
from halotune.daemon.rules.thermal import (TDP_KEYS, ThermalGuard, machine_tdp, split_name,
                                           tdp_of)

log = logging.getLogger("halotune.daemon.rules")

RETRY_S = 60.0          # a switch that failed is not tried again for this long
PROFILE_CACHE_S = 300.0     # thermal planning only: a switch always loads afresh

__all__ = ["PRIORITY", "Candidate", "Rules", "Sources", "Target", "arbitrate", "winner"]


@dataclass(frozen=True)
class Target:
    """What the rules want in force: a profile (None: the original values), who wants it, and
    the thermal guard's TDP ceilings on top (sorted (key, watts) pairs) or None."""

    profile: str | None
    source: str | None
    cap: tuple | None = None

    @property
    def key(self) -> tuple:
        return (self.profile, self.cap)


class Rules:
    def __init__(self, daemon, sources: Sources | None = None):
        self.daemon = daemon
        cfg = daemon.config.rules
        self.sources = sources if sources is not None else Sources.open(daemon.fs)
        self.process = ProcessRules(self, cfg.process)
        self.power = PowerRule(self, cfg.power_source)
        self.thermal = ThermalGuard(self, cfg.thermal)
        self.drift = DriftRule(self, cfg.drift)
        self.resume = ResumeRule(self)
        self.default = daemon.config.daemon.default_profile or None
        self.snap = None
        self.manual: str | None = None            # a profile applied by hand: wins until rollback
        self._task: asyncio.Task | None = None
        self._failed: dict[tuple, float] = {}     # target key -> monotonic time to retry
        self.min_switch_interval_s = cfg.min_switch_interval_s
        self._last_switch: float | None = None    # monotonic time of the last rule switch
        self._deferred: tuple | None = None       # target key whose wait was announced
        self._profiles: dict[str, tuple[float, object]] = {}
        self._effective = None                    # the ResolvedProfile the rules applied last
        active = daemon.active_profile
        self._seen_active = active
        base, capped = split_name(active)
        if capped:
            # The guard's own profile, found at start: the guard resumes it; not manual.
            targets = getattr(daemon, "active_targets", {}) or {}
            cap = {k: float(v) for k, v in targets.items()
                   if k in TDP_KEYS and isinstance(v, (int, float))}
            self.thermal.resume(cap, getattr(daemon, "original_tdp", None))
            self.applied = Target(base, None, tuple(sorted(cap.items())) or None)
        elif active is not None and active != self.default:
            self.manual = active                  # applied before the daemon started
            self.applied = Target(active, "manual")
        else:
            self.applied = Target(active, "default" if active else None)
        self.conflicts = []
        self._check_conflicts()

    # --- events --------------------------------------------------------------------------------
    def fire(self, rule: str, message: str, kind: str = "rule", **data) -> None:
        self.daemon.events.add(kind, message, rule=rule, **data)

    def _check_conflicts(self) -> None:
        from halotune.machine.processes import conflicting
        try:
            self.conflicts = conflicting(self.sources.processes.snapshot())
        except Exception as e:  # noqa: BLE001 - a process table we cannot read is no conflict
            log.debug("process scan failed: %s", e)
            return
        for proc, what in self.conflicts:
            self.fire("conflict", f"{proc.describe()} is running: {what}. It and halotune will "
                      "undo each other's changes; stop it (or mask its service) to let halotune "
                      "own these settings", kind="drift", pid=proc.pid, process=proc.name)

    def conflicts_text(self) -> str:
        from halotune.machine.processes import conflicting
        try:
            found = conflicting(self.sources.processes.snapshot())
        except Exception:  # noqa: BLE001
            return ""
        return ", ".join(p.describe() for p, _ in found)

    # --- hooks called by the daemon -----------------------------------------------------------
    def note_manual(self, name: str | None, ok: bool = True) -> None:
        """An apply (name) or rollback (None) through the API: a manual apply wins over every
        rule until a rollback, which hands the machine back to the rules."""
        if name is not None and not ok and self.daemon.active_profile != name:
            return                                # failed and undone: nothing changed
        self.manual = name
        self._seen_active = self.daemon.active_profile
        self.applied = Target(name, "manual") if name is not None else Target(None, None)
        self._failed.clear()
        self.drift.postpone(time.monotonic())

    # --- the sampling hook ---------------------------------------------------------------------
    async def on_sample(self, snap) -> None:
        now = time.monotonic()
        self.snap = snap
        for ev in self.sources.uevents.poll():
            if ev.subsystem == "power_supply":
                self.power.kick()
            else:
                self.resume.uevent(ev, now)
        self.process.update(now)
        self.power.update(now)
        self.resume.update(now)
        self.thermal.update(snap, now)
        if self._task is not None and not self._task.done():
            return
        self._sync_external()
        stop = getattr(self.daemon, "_stop", None)
        if (stop is not None and stop.is_set()) or self.daemon.hold_active():
            return
        action = self._next_action(now)
        if action is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(action))

    def held(self) -> bool:
        return bool(self.daemon.hold_active())

    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def _sync_external(self) -> None:
        """A profile change the rules did not make and no hook reported (another client of the
        journal, a confirm deadline): it counts as manual."""
        active = self.daemon.active_profile
        if active == self._seen_active:
            return
        self._seen_active = active
        if active is None:
            self.manual = None
            self.applied = Target(None, None)
            self.fire("manual", "the profile was rolled back outside the rules: they decide again")
        else:
            self.manual = active
            self.applied = Target(active, "manual")
            self.fire("manual", f"{active} was applied outside the rules: it wins over them "
                      "until a rollback")

    # --- deciding ------------------------------------------------------------------------------
    def candidates(self, now: float) -> list[Candidate]:
        cands = []
        if self.manual is not None:
            cands.append(Candidate("manual", self.manual, "manual apply"))
        cands += [self.process.candidate(now), self.power.candidate(now)]
        if self.default:
            cands.append(Candidate("default", self.default, "default profile"))
        return [c for c in cands if c is not None]

    def decide(self, now: float) -> tuple[Target, Candidate | None]:
        win = winner(self.candidates(now))
        profile, source = (win.profile, win.source) if win else (None, None)
        if source == "manual" or not self.thermal.enabled or not outranks("thermal", source):
            return Target(profile, source), win
        base = self._profile(profile, cached=True) if profile else None
        live = machine_tdp(self.snap)
        machine = self.thermal.machine(live)
        if self.thermal.due(now):
            values = tdp_of(base, machine)
            if values:
                self.thermal.step(values, now, live)
        elif self.thermal.release_due(now):
            values = tdp_of(base, machine)
            if values:
                self.thermal.step_up(values, now)
        eff = self.thermal.overlay(base, machine)
        cap = None
        if eff is not None:
            cap = tuple(sorted((k, v) for k, v in eff.values.items() if k in self.thermal.cap))
        return Target(profile, source, cap), win

    def _next_action(self, now: float):
        target, win = self.decide(now)
        if target.source == "manual":
            self.applied = target
        elif target.key != self.applied.key:
            if self._failed.get(target.key, 0.0) <= now and not self._rate_limited(target, now):
                return lambda: self._switch(target, win)
        elif target.source != self.applied.source:
            self.applied = target
        why = self.resume.take()
        if why and self.daemon.active_profile:
            return lambda: self.reassert(why)
        if self.daemon.active_profile and self.drift.due(now):
            return lambda: self.drift.check(time.monotonic())
        return None

    def _rate_limited(self, target: Target, now: float) -> bool:
        """A rule switch within min_switch_interval_s of the last one waits (one event says
        so). Battery and thermal-guard changes (same profile, other ceiling) never wait."""
        if (self._last_switch is None or target.source == "battery"
                or target.profile == self.applied.profile
                or now - self._last_switch >= self.min_switch_interval_s):
            return False
        if self._deferred != target.key:
            self._deferred = target.key
            wait = self.min_switch_interval_s - (now - self._last_switch)
            self.fire("switch", f"switch to {target.profile or 'the original values'} waits "
                      f"{wait:.0f} s: the rules switched {now - self._last_switch:.0f} s ago "
                      f"(min_switch_interval_s = {self.min_switch_interval_s:g})",
                      profile=target.profile)
        return True

    async def _run(self, action) -> None:
        try:
            await action()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a failed switch must not stop the rules
            message = getattr(e, "message", None) or str(e) or repr(e)
            log.debug("rules action failed", exc_info=True)
            self.fire("rules", f"rules: {message}", kind="error")

    # --- acting --------------------------------------------------------------------------------
    def _profile(self, name: str, cached: bool = False):
        """The resolved profile `name` (None when it does not load)."""
        from halotune.tuning.loader import ProfileError, ProfileStore
        now = time.monotonic()
        hit = self._profiles.get(name)
        if cached and hit is not None and now - hit[0] < PROFILE_CACHE_S:
            return hit[1]
        try:
            profile = ProfileStore(self.daemon.profiles_dir, root=self.daemon.root).load(name)
        except ProfileError:
            if not cached:
                raise
            profile = None
        self._profiles[name] = (now, profile)
        return profile

    async def _switch(self, target: Target, win: Candidate | None) -> None:
        from halotune.daemon.server import ApiError
        from halotune.tuning.loader import ProfileError

        prev = self.applied
        now = time.monotonic()
        why = win.why if win is not None else (
            f"no rule wants a profile any more (was: {prev.source})" if prev.source
            and prev.source != target.source else "no rule wants a profile")
        if target.cap != prev.cap and target.key[0] == prev.key[0]:
            why = f"thermal guard, on top of {target.profile or 'the original values'}" \
                if target.cap else "thermal guard released"
        try:
            if target.profile is None and target.cap is None:
                if self.daemon.active_profile is not None:
                    self.fire("switch", f"{why}: back to the original values")
                    await self.daemon.rollback(f"rules: {why}")
                self._effective = None
            else:
                base = self._profile(target.profile) if target.profile else None
                eff = (self.thermal.overlay(base, self.thermal.machine(machine_tdp(self.snap)))
                       if target.cap else None)
                eff = eff or base
                self.fire("switch", f"{why}: switching to {eff.name}", profile=eff.name,
                          source=target.source)
                await self.daemon.apply_profile(eff.name, reason=f"rule: {why}", profile=eff)
                self._effective = eff
        except (ApiError, ProfileError) as e:
            self._failed[target.key] = now + RETRY_S
            message = getattr(e, "message", None) or str(e)
            self.fire("switch", f"{why}: switching to {target.profile or 'the original values'} "
                      f"failed: {message} (retry in {RETRY_S:g} s)", kind="error")
            return
        finally:
            self._seen_active = self.daemon.active_profile
        self.applied = target
        self._last_switch = time.monotonic()
        self._deferred = None
        self.drift.postpone(time.monotonic())

    async def reassert(self, why: str) -> None:
        """Apply the active profile again (drift, resume, GPU reset)."""
        name = self.daemon.active_profile
        if name is None:
            return
        profile = self._effective if (self._effective is not None
                                      and self._effective.name == name) else self._profile(name)
        try:
            await self.daemon.apply_profile(name, reason=why, profile=profile)
        finally:
            self._seen_active = self.daemon.active_profile
        self.drift.postpone(time.monotonic())
