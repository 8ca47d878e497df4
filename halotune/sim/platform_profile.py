"""The ACPI platform profile of the simulated machine: one or more handler drivers.

state["platform_profile"] maps each handler's name to its profile, in registration order
(amd-pmf, then the OEM driver if the machine has one). What the kernel shows of them depends
on the version (drivers/acpi/platform_profile.c):

- Linux 6.11-6.13: one handler only. platform_profile_register keeps a single `cur_profile`
  and fails a second registration with -EEXIST, so only the first handler is registered and
  the legacy files sys/firmware/acpi/platform_profile(+_choices) are its own.
- Linux >= 6.14: every handler registers a class device sys/class/platform-profile/
  platform-profile-N (name, profile, choices; N from an IDA in registration order), and the
  legacy files aggregate them: platform_profile_show reads "custom" when the handlers'
  profiles differ (_aggregate_profiles); platform_profile_choices_show lists the intersection
  of the handlers' choices with their hidden_choices (_aggregate_choices), or, for a single
  handler, its visible choices only (_remove_hidden_choices).

The hidden choices (amd-pmf: quiet, balanced-performance) came with the fix "ACPI:
platform_profile: Add support for hidden choices" (Feb 2025, Fixes: the 6.14 commit that
allowed multiple handlers); the simulator takes them to be in 6.14 and later.
"""

from __future__ import annotations

from halotune.sim import formats as fmt
from halotune.sim import hardware as hw
from halotune.sim import kversion, paths


def profiles(state: dict) -> dict[str, str]:
    """Handler name -> profile (a state of an older simulator holds one amd-pmf string)."""
    value = state["platform_profile"]
    return {"amd-pmf": value} if isinstance(value, str) else value


def power_on(handlers: tuple[str, ...]) -> dict[str, str]:
    """Each handler's profile right after boot."""
    return {name: hw.PROFILE_HANDLERS[name]["power_on"] for name in handlers}


def check_handlers(handlers) -> tuple[str, ...]:
    """The handler names lay_out accepts: known, distinct, amd-pmf among them."""
    handlers = tuple(handlers)
    unknown = [h for h in handlers if h not in hw.PROFILE_HANDLERS]
    if unknown or not handlers or len(set(handlers)) != len(handlers):
        raise ValueError(f"platform-profile handlers {','.join(handlers) or '(none)'!r}: give "
                         f"distinct names from {', '.join(hw.PROFILE_HANDLERS)}")
    return handlers


def class_interface(state: dict) -> bool:
    """sys/class/platform-profile exists from Linux 6.14."""
    return kversion.at_least(state, 6, 14)


def registered(state: dict) -> list[str]:
    """Handlers the kernel registered, in platform-profile-N order (6.11-6.13: the first;
    a second platform_profile_register returns -EEXIST)."""
    names = list(profiles(state))
    return names if class_interface(state) else names[:1]


def names(state: dict) -> tuple[str, ...]:
    """profile_names of the running kernel ("custom" from 6.14)."""
    return hw.PROFILE_NAMES if class_interface(state) else hw.PROFILE_NAMES[:-1]


def _ordered(words) -> tuple[str, ...]:
    """In profile_names (bit) order, as for_each_set_bit prints them."""
    return tuple(p for p in hw.PROFILE_NAMES if p in set(words))


def accepted(state: dict, handler: str) -> tuple[str, ...]:
    """What _store_class_profile lets through for one handler: choices | hidden_choices
    (6.11-6.13: choices only, there are no hidden choices)."""
    h = hw.PROFILE_HANDLERS[handler]
    return _ordered(h["choices"] + (h["hidden"] if class_interface(state) else ()))


def legacy_accepted(state: dict) -> tuple[str, ...]:
    """What platform_profile_store accepts: the AND over every handler's accepted set."""
    sets = [set(accepted(state, h)) for h in registered(state)]
    return _ordered(set.intersection(*sets))


def legacy_choices(state: dict) -> tuple[str, ...]:
    """platform_profile_choices: 6.14+ platform_profile_choices_show (one handler: its
    visible choices; several: the intersection with hidden ones); before, the handler's."""
    handlers = registered(state)
    if len(handlers) == 1:
        return _ordered(hw.PROFILE_HANDLERS[handlers[0]]["choices"])
    return legacy_accepted(state)


def legacy_profile(state: dict) -> str:
    """platform_profile: _aggregate_profiles (6.14+), "custom" when the handlers differ."""
    current = profiles(state)
    values = {current[h] for h in registered(state)}
    return values.pop() if len(values) == 1 else "custom"


def class_dir(state: dict, handler: str) -> str:
    n = registered(state).index(handler)
    return paths.platform_profile_device(hw.PROFILE_HANDLERS[handler]["parent"], n)


def class_links(state: dict) -> dict[str, str]:
    """sys/class/platform-profile/platform-profile-N -> the device under the handler's parent
    (relative, as sysfs links class devices)."""
    if not class_interface(state):
        return {}
    links = {}
    for h in registered(state):
        device = class_dir(state, h)
        links[f"{paths.PLATFORM_PROFILE_CLASS}/{device.rsplit('/', 1)[-1]}"] = \
            f"../../{device.removeprefix('sys/')}"
    return links


def files(state: dict) -> dict[str, str]:
    """Every platform-profile attribute, rendered from the state."""
    out = {paths.PLATFORM_PROFILE: fmt.value(legacy_profile(state)),
           paths.PLATFORM_PROFILE_CHOICES: fmt.words(legacy_choices(state))}
    if class_interface(state):
        current = profiles(state)
        for h in registered(state):
            d = class_dir(state, h)
            # name_show / profile_show / choices_show (visible choices only)
            out[f"{d}/name"] = fmt.value(h)
            out[f"{d}/profile"] = fmt.value(current[h])
            out[f"{d}/choices"] = fmt.words(_ordered(hw.PROFILE_HANDLERS[h]["choices"]))
    return out
