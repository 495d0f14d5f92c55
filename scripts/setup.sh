#!/usr/bin/env bash
# Sets up a fresh machine: system packages (when root and apt is there), then a virtualenv with
# the project and its dev extra. Idempotent: re-running only installs what is missing.
set -euo pipefail
venv="${1:-.venv}"
cd "$(dirname "$0")/.."

apt_packages=()   # system packages the project needs (redis-server arrives with the server issue)
if ((${#apt_packages[@]})) && command -v apt-get >/dev/null; then
  missing=()
  for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
fi

python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e ".[dev]"
echo "setup: $venv ready"
