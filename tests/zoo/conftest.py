"""Model-zoo tests run in the environment with the ``zoo`` extra (``.venv-zoo``)."""

import pytest

for _module in ("timm", "open_clip", "torchgeo", "terratorch", "huggingface_hub"):
    pytest.importorskip(_module, reason="needs the zoo extra: pip install 'rsembed-db[zoo]'")

import torch  # noqa: E402

# Importing terratorch (its Clay v1.5 module) sets float32 matmul precision to "medium"
# process-wide, which lets CPU matmuls run in bf16; the zoo computes in full fp32.
torch.set_float32_matmul_precision("highest")
