"""Model-zoo tests run in the environment with the ``zoo`` extra (``.venv-zoo``)."""

import pytest
import torch

_precision = torch.get_float32_matmul_precision()
for _module in ("timm", "open_clip", "torchgeo", "terratorch", "huggingface_hub"):
    pytest.importorskip(_module, reason="needs the zoo extra: pip install 'rsembed-db[zoo]'")
# Importing terratorch lowers the float32 matmul precision process-wide ("medium"); the
# models restore it (models.zoo.import_keeping_torch_settings), so must this import.
torch.set_float32_matmul_precision(_precision)
