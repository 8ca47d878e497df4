"""Preflight checks, one small function each: `check(ctx) -> dict` (see checks/report.item).

The order here is the order of the report: what was asked of the machine (profile, limits),
then what else is running, then its physical state, then the model.
"""

from halotune.checks.items import activity, memory, state, thermal

ALL = (state.profile, state.pending_reboot, activity.gpu_busy, activity.gpu_clients,
       activity.llm_servers, activity.cpu_load, activity.io, activity.swap,
       thermal.temperature, thermal.throttle, thermal.power_source, memory.memory,
       state.tdp, state.platform_profile, state.cpu_policy)
