#!/usr/bin/env bash
# One-step set-up for a fresh Debian 12 / Ubuntu 24.04 machine (or any Linux with Python >= 3.11).
#   ./bootstrap.sh run    install into .venv, then show the machine's state: the real Strix Halo
#                         when there is one, the built-in simulated Strix Halo otherwise
#   ./bootstrap.sh test   install with the test tools, then run the whole test suite
# Everything goes into ./.venv: Ubuntu refuses system-wide pip installs, and nothing here needs root
# except installing python3-venv where the distribution split it out.
set -euo pipefail
cd "$(dirname "$0")"

mode=${1:-run}
case "$mode" in run|test) ;; *) echo "usage: $0 run|test" >&2; exit 64;; esac

py=${PYTHON:-python3}
if ! command -v "$py" >/dev/null; then
    echo "bootstrap: $py not found; install Python 3.11 or newer" >&2; exit 2
fi
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: halotune needs Python >= 3.11 ($("$py" -V 2>&1) found)" >&2; exit 2
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x .venv/bin/python ]; then
    # Debian/Ubuntu ship venv's ensurepip in python3-venv (python3.X-venv on Ubuntu).
    if ! "$py" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        if command -v apt-get >/dev/null; then
            ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
            as_root apt-get update -qq
            as_root apt-get install -y -qq python3-venv "python${ver}-venv" >/dev/null 2>&1 \
                || as_root apt-get install -y -qq python3-venv
        fi
        "$py" -m venv .venv
    fi
fi

pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install -U pip 'setuptools>=77' wheel
if [ "$mode" = test ]; then
    # The probe's smoke test runs real llama.cpp in-process: llama-cpp-python builds it from
    # source (a C++ compiler and cmake; ~3-10 min on 2 cores). Portable (no -march=native) and
    # without the multimodal library, which the probe never uses.
    # The daemon's udev path is tested under umockdev (a faked /sys and uevent socket:
    # umockdev-wrapper and libumockdev; tests/daemon/test_udev_umockdev.py).
    need=()
    if ! command -v c++ >/dev/null || ! command -v cmake >/dev/null; then
        need+=(build-essential cmake)
    fi
    command -v umockdev-wrapper >/dev/null || need+=(umockdev)
    if [ "${#need[@]}" -gt 0 ] && command -v apt-get >/dev/null; then
        as_root apt-get update -qq
        as_root apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF}"
    "${pip[@]}" install -e '.[test,probe]'
    exec .venv/bin/python -m pytest -q "${@:2}"
fi

# A regular install, not an editable one: setuptools' editable finder imports pathlib and
# urllib at every start, ~15 ms of each `halotune status --json` (run again after a pull).
"${pip[@]}" install .
set +e
.venv/bin/halotune status "${@:2}"
rc=$?
set -e
if [ "$rc" -eq 3 ]; then
    echo "No AMD GPU here: showing the built-in simulated Strix Halo instead." >&2
    exec .venv/bin/halotune status --demo "${@:2}"
fi
exit "$rc"
