"""Drift: verify the active profile every interval_s; when another actor changed a value, say
what changed and re-assert it. When the other actor keeps winning (the value drifts again right
after each re-assert), back off (interval x 2^n, at most max_backoff_s) and raise one event
naming the keys and any known conflicting daemon."""

from __future__ import annotations

import time

KEEPS_WINNING = 3       # consecutive lost re-asserts before the one "keeps winning" event


class DriftRule:
    def __init__(self, rules, config):
        self.rules = rules
        self.config = config
        self.streak = 0                 # consecutive checks that found drift after a re-assert
        self.announced = False
        self._due = time.monotonic() + config.interval_s   # the start's apply was verified
        self._reported: set[str] = set()   # reassert = false: keys already reported

    def postpone(self, now: float) -> None:
        """A change was just applied (and verified by the engine): next check one interval on."""
        self._due = now + self.config.interval_s

    def due(self, now: float) -> bool:
        return now >= self._due

    def delay(self) -> float:
        return min(self.config.max_backoff_s, self.config.interval_s * 2 ** max(0, self.streak - 1))

    async def check(self, now: float) -> None:
        """One verify; re-assert when needed (the caller runs this as the one rules task)."""
        self._due = now + self.config.interval_s
        result = await self.rules.daemon.api_verify(None, {})
        drifted = [r for r in result.get("rows", []) if r.get("status") == "drift"]
        if not drifted:
            if self.streak or self.announced:
                self.rules.fire("drift", "the profile's values hold again")
            self.streak, self.announced = 0, False
            self._reported.clear()
            return
        what = ", ".join(f"{r['key']} = {r.get('after')} (profile: {r.get('target')})"
                         for r in drifted)
        keys = [r["key"] for r in drifted]
        profile = result.get("profile")
        if not self.config.reassert:
            new = [k for k in keys if k not in self._reported]
            if new:
                self._reported.update(new)
                self.rules.fire("drift", f"{profile}: changed by another actor: {what} "
                                "(re-assert is off)", kind="drift", keys=keys)
            return
        self.streak += 1
        if self.streak >= KEEPS_WINNING and not self.announced:
            self.announced = True
            others = self.rules.conflicts_text()
            self.rules.fire("drift", f"another actor keeps winning on {', '.join(keys)} "
                            f"({self.streak} re-asserts undone in a row); backing off up to "
                            f"{self.config.max_backoff_s:g} s between re-asserts"
                            + (f"; running: {others}" if others else ""),
                            kind="drift", keys=keys, streak=self.streak)
        elif not self.announced:
            self.rules.fire("drift", f"{profile}: changed by another actor: {what}; "
                            "re-asserting", kind="drift", keys=keys)
        await self.rules.reassert(f"drift re-assert of {', '.join(keys)}")
        self._due = now + self.delay()
