"""Model-zoo tests run in the environment with the ``zoo`` extra (``.venv-zoo``)."""

import pytest

for _module in ("timm", "open_clip", "torchgeo", "terratorch", "huggingface_hub"):
    pytest.importorskip(_module, reason="needs the zoo extra: pip install 'rsembed-db[zoo]'")
