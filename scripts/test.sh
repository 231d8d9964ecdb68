#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: everything in the lean .venv
# (torch 2.13.0 CPU), then the model-zoo tests in .venv-zoo (the `zoo` extra:
# torch 2.14.1 + torchvision, timm, open_clip, torchgeo, terratorch), where they run
# for real instead of being skipped. The map explorer's browser tests need chromium
# (installed below from Debian's packages when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Lint and types first: ruff (with import sorting) and mypy on the package, both clean.
.venv/bin/ruff check rsembed_db tests bench
.venv/bin/mypy
# The explorer's browser tests drive Debian's chromium through Playwright (which cannot
# download its own browsers here): install the distribution's package when it is missing.
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
fi
# The Ray tests (marker `ray`: one local Ray for the session, ~30 s to start; the engine
# tests and the docs' Ray example) and the object-storage tests (moto in .venv-s3) run here;
# a missing S3 server fails instead of skipping.
RSEMBED_RAY_TESTS=1 RSEMBED_REQUIRE_S3=1 RAY_AUTH_MODE=disabled .venv/bin/python -m pytest -q
bash scripts/setup_zoo.sh
.venv-zoo/bin/python -m pytest -q tests/test_model_zoo.py tests/test_zoo_registry.py tests/zoo
