"""Text queries: a text-image model's text embedding as a search vector."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from rsembed_db.errors import SpecError
from rsembed_db.producers.catalog import embedder_class, get_embedder, is_product, list_models
from rsembed_db.specs.canonical import canonical_json


@runtime_checkable
class TextEncoder(Protocol):
    """An embedder with a text tower: prompts -> (N, D) L2-normalised float32 vectors."""

    def encode_text(self, prompts: list[str]) -> np.ndarray: ...


def text_query(model: str, text: str, model_config: dict[str, Any] | None = None) -> tuple[np.ndarray, str]:
    """(query vector, stored ``model_config``) for searching ``model``'s table with text.

    Text and image vectors share one space only for the model's global image embedding
    (for remoteclip ``tokens="global"``, the default here): search only rows stored with
    exactly this configuration (``SearchFilters.model_config``).
    """
    if is_product(model) or not hasattr(embedder_class(model), "encode_text"):
        capable = [m for m in list_models("on_the_fly") if hasattr(embedder_class(m), "encode_text")]
        raise SpecError("text", f"model {model!r} has no text tower", capable)
    embedder = get_embedder(model, **{"tokens": "global", **(model_config or {})})
    assert isinstance(embedder, TextEncoder)  # its class has encode_text (checked above)
    vector = embedder.encode_text([text])[0]
    return vector, canonical_json(embedder.config)


def has_text_tower(model: str) -> bool:
    """Whether ``model`` is an on-the-fly model that can embed text (False for products and unknown names)."""
    try:
        return not is_product(model) and hasattr(embedder_class(model), "encode_text")
    except SpecError:
        return False
