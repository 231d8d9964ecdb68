#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: everything in the lean .venv
# (torch 2.13.0 CPU), then the model-zoo tests in .venv-zoo (the `zoo` extra:
# torch 2.14.1 + torchvision, timm, open_clip, torchgeo, terratorch), where they run
# for real instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q
bash scripts/setup_zoo.sh
.venv-zoo/bin/python -m pytest -q tests/test_model_zoo.py tests/test_zoo_registry.py tests/zoo
