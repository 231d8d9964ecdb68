"""Text queries: a text-image model's text embedding as a search vector."""

from __future__ import annotations

from typing import Any

import numpy as np

from rsembed_db.models.registry import embedder_class, get_embedder, list_models
from rsembed_db.specs.canonical import canonical_json
from rsembed_db.specs.errors import SpecError
from rsembed_db.store.lance_store import sql_quote


def text_query(model: str, text: str, model_config: dict[str, Any] | None = None) -> tuple[np.ndarray, str]:
    """(query vector, where-clause) for searching ``model``'s table with a text prompt.

    Text and image vectors share one space only for the model's global image embedding
    (for remoteclip ``tokens="global"``, the default here), so the where-clause keeps
    the rows stored with exactly this configuration.
    """
    if not hasattr(embedder_class(model), "encode_text"):
        capable = [m for m in list_models() if hasattr(embedder_class(m), "encode_text")]
        raise SpecError("text", f"model {model!r} has no text tower", capable)
    embedder = get_embedder(model, **{"tokens": "global", **(model_config or {})})
    vector = embedder.encode_text([text])[0]
    return vector, f"model_config = {sql_quote([canonical_json(embedder.config)])}"

