#!/usr/bin/env bash
# Create .venv and install rsembed-db with its test extras at the tested versions
# (constraints/lean.txt; scripts/lock.sh regenerates it).
#
# torch: the CPU build (a few hundred MB) from PyTorch's CPU wheel index. TORCH_INDEX_URL
# picks another index (e.g. https://download.pytorch.org/whl/cu128 for CUDA); set it empty
# to take torch from your default index (on Linux, PyPI's torch is the multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
TORCH_INDEX_URL=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet -c constraints/lean.txt)
.venv/bin/python -m pip install --quiet --upgrade pip
"${pip[@]}" ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "torch==2.13.0"
"${pip[@]}" -e ".[test,fast]"
