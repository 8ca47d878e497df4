"""The daemon's configuration file (/etc/halotune/halotune.toml), validated by pydantic.

Every option is documented, with its default, in systemd/halotune.toml.example; a test parses
that file, so an undocumented or mis-documented option fails CI (LACT's CONFIG.md rule).
"""

from __future__ import annotations

import os
import tomllib

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from halotune.machine.parse import is_uint

DEFAULT_PATH = "/etc/halotune/halotune.toml"
DEFAULT_SOCKET = "/run/halotune/halotune.sock"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DaemonSection(_Strict):
    sample_interval_s: float = Field(1.0, ge=0.1, le=10.0)
    history_s: int = Field(3600, ge=60, le=86400)
    default_profile: str | None = None
    restore_on_exit: bool = True


class ApiSection(_Strict):
    socket: str = DEFAULT_SOCKET
    socket_group: str | None = "halotune"
    admin_group: str | None = None
    # What readers may hold of the daemon (root and the admin group have a reserve beyond).
    max_connections: int = Field(256, ge=4, le=4096)
    max_connections_per_user: int = Field(16, ge=1, le=1024)
    idle_timeout_s: float = Field(300.0, ge=1, le=86400)


class MetricsSection(_Strict):
    enabled: bool = False
    listen: str = "127.0.0.1:9874"
    allow_remote: bool = False

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not is_uint(port) or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9874")
        return v


# Any local user can start a process with a matching name: a rule's profile stays at least
# this long after the process exits, so start/exit loops cannot cycle apply and rollback.
MIN_HOLD_S = 5.0


class ProcessRule(_Strict):
    name: str = Field(min_length=1)
    match: list[str] = Field(min_length=1)          # process names (comm) or argv[0] basenames
    profile: str = Field(min_length=1)
    hold_s: float = Field(30.0, ge=MIN_HOLD_S, le=3600)   # keep the profile after the exit
    # Optional: only processes whose real uid is one of these (names or uids) match.
    users: list[str | int] | None = None
    # Optional: only processes whose /proc/PID/exe is one of these paths (globs allowed).
    exe: list[str] | None = None

    @field_validator("users")
    @classmethod
    def _known_users(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("must name at least one user (or leave users out)")
        return [resolve_uid(u) for u in v]

    @field_validator("exe")
    @classmethod
    def _absolute_paths(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("must name at least one path (or leave exe out)")
        for path in v:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} is not an absolute path")
        return v


def resolve_uid(user: str | int) -> int:
    """A user name or uid, as a uid; a name this machine does not know is an error."""
    import pwd

    if isinstance(user, int) or is_uint(str(user)):
        if int(user) < 0:
            raise ValueError(f"{user!r} is not a uid")
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ValueError(f"no such user: {user!r}") from None


class PowerSourceRule(_Strict):
    ac_profile: str | None = None
    battery_profile: str | None = None


class ThermalRule(_Strict):
    enabled: bool = False
    limit_c: float = Field(95.0, ge=50, le=110)
    seconds: float = Field(30.0, ge=1, le=600)
    step_w: float = Field(10.0, ge=1, le=50)
    min_w: float = Field(45.0, ge=15, le=120)


class DriftRule(_Strict):
    interval_s: float = Field(30.0, ge=1, le=3600)
    reassert: bool = True
    max_backoff_s: float = Field(600.0, ge=1, le=86400)


class RulesSection(_Strict):
    # Rule-driven switches (process rules, AC power, the default profile) at least this far
    # apart: a switch wanted sooner waits. Battery and the thermal guard are never delayed.
    min_switch_interval_s: float = Field(10.0, ge=1, le=3600)
    process: list[ProcessRule] = Field(default_factory=list)
    power_source: PowerSourceRule = Field(default_factory=PowerSourceRule)
    thermal: ThermalRule = Field(default_factory=ThermalRule)
    drift: DriftRule = Field(default_factory=DriftRule)


class DaemonConfig(_Strict):
    daemon: DaemonSection = Field(default_factory=DaemonSection)
    api: ApiSection = Field(default_factory=ApiSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    rules: RulesSection = Field(default_factory=RulesSection)


class ConfigError(Exception):
    pass


def _loc(loc) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")


def load(path: str | None) -> DaemonConfig:
    """Read and validate; a missing file at the default path means all defaults."""
    explicit = path is not None
    path = path or os.environ.get("HALOTUNE_CONFIG") or DEFAULT_PATH
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if explicit or os.environ.get("HALOTUNE_CONFIG"):
            raise ConfigError(f"{path}: no such file") from None
        return DaemonConfig()
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    try:
        return DaemonConfig.model_validate(data)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            value = err.get("input")
            shown = "" if isinstance(value, dict) else f" = {value!r}"
            msgs.append(f"{path}: {_loc(err['loc'])}{shown}: {err['msg']}")
        raise ConfigError("\n".join(msgs)) from None
