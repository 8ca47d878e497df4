"""Prove profiles with measurements: `halotune validate` and `halotune sweep`.

    plan.py          the A B A B order of the runs
    settle.py        wait (bounded) for temperatures and clock limits to stand still
    appliers.py      apply/roll back through the engine, the daemon's API, or inside the daemon
    measure.py       run the probe and boil its documents down to the figures compared
    expectations.py  a profile's [validate] table and the pass/fail verdicts with numbers
    validate.py      apply -> settle -> probe -> roll back, per profile and round
    table.py         the comparison table, best value per column marked
    sweep.py         the probe at each TDP step: Pareto-optimal points and the knee
    plot.py          the plain-text plot of the sweep

Documents: "halotune.validate/1" and "halotune.sweep/1" (keys documented in validate.py and
sweep.py). Heavy imports stay inside functions.
"""

VALIDATE_SCHEMA = "halotune.validate/1"
SWEEP_SCHEMA = "halotune.sweep/1"
