#!/usr/bin/env bash
# CI helper: make `systemd-analyze` (plus systemd-tmpfiles and systemd-sysusers) available so
# tests/daemon/test_systemd_unit.py can verify the unit offline. CI has no systemd as PID 1;
# only the binaries are needed. Debian/Ubuntu: installs the `systemd` package. Idempotent and
# quiet; never fails the CI run: without the tools those tests skip, and say so.
set -u

if command -v systemd-analyze >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-systemd: no systemd-analyze and no apt-get: the systemd unit tests will skip" >&2
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "setup-systemd: not root and no password-less sudo: the systemd unit tests will skip" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ${as_root[@]+"${as_root[@]}"} apt-get update -qq >/dev/null \
        && ${as_root[@]+"${as_root[@]}"} apt-get install -y -qq --no-install-recommends systemd >/dev/null; then
    echo "setup-systemd: installed $(systemd-analyze --version | head -n 1)"
else
    echo "setup-systemd: installing the systemd package failed: the systemd unit tests will skip" >&2
fi
exit 0
