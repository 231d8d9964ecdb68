#!/usr/bin/env bash
# Create .venv-zoo: rsembed-db with the test and zoo extras (torch 2.14.1 + torchvision
# 0.29.1, timm, open_clip, huggingface_hub, torchgeo, terratorch), separate from the lean
# .venv, at the tested versions (constraints/zoo.txt). torch and torchvision are installed
# first, as a pair, so that the extras' other requirements resolve against them; the CPU
# builds unless TORCH_INDEX_URL says otherwise (see scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
TORCH_INDEX_URL=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
if [ ! -x .venv-zoo/bin/python ]; then
  "$PYTHON" -m venv .venv-zoo
fi
pip=(.venv-zoo/bin/python -m pip install --quiet -c constraints/zoo.txt)
.venv-zoo/bin/python -m pip install --quiet --upgrade pip
"${pip[@]}" ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "torch==2.14.1" "torchvision==0.29.1"
"${pip[@]}" -e ".[test,zoo]"
