#!/usr/bin/env bash
# Create .venv-zoo: rsembed-db with the test and zoo extras (torch 2.14.1 + torchvision
# 0.29.1, timm, open_clip, huggingface_hub, torchgeo, terratorch), separate from the lean
# .venv. torch and torchvision are installed first, as a pair, so that the extras' other
# requirements resolve against them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv-zoo/bin/python ]; then
  "$PYTHON" -m venv .venv-zoo
fi
.venv-zoo/bin/python -m pip install --quiet --upgrade pip
.venv-zoo/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
.venv-zoo/bin/python -m pip install --quiet -e ".[test,zoo]"
