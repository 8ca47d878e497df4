#!/usr/bin/env bash
# CI helper for tests/deploy (the Debian package, the Ansible role, the alert rules):
#   - apt: dpkg-dev, debhelper, python3.11 and python3-venv (debian/control's Build-Depends),
#     prometheus (for promtool), git (the package is built from a copy of the tracked files)
#   - ansible-core from PyPI into its own venv, outside the checkout (the role test copies the
#     tracked files; a venv in the tree would be copied too). Prints the ansible-playbook path.
# Fails loudly: in CI (CI=true) the deploy tests fail rather than skip without these tools.
set -euo pipefail

as_root=()
if [ "$(id -u)" -ne 0 ]; then as_root=(sudo -n); fi
export DEBIAN_FRONTEND=noninteractive
if command -v apt-get >/dev/null; then
    ${as_root[@]+"${as_root[@]}"} apt-get update -qq >/dev/null
    ${as_root[@]+"${as_root[@]}"} apt-get install -y -qq --no-install-recommends \
        dpkg-dev debhelper python3.11 python3-venv ca-certificates git prometheus >/dev/null
fi

venv="${HALOTUNE_CI_CACHE:-$HOME/.cache/halotune-ci}/ansible"
if [ ! -x "$venv/bin/ansible-playbook" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip --disable-pip-version-check -q install 'ansible-core>=2.16,<2.19'
fi
echo "$venv/bin/ansible-playbook"
