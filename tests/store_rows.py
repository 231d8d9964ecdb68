"""Rows for store-only tests, written with ``EmbeddingStore.write`` (nothing computed)."""

from __future__ import annotations

import h3
import numpy as np

from rsembed_db.producers.records import EmbeddingRecord
from rsembed_db.specs import EmbeddingRequest, H3Cell, TemporalSpec
from rsembed_db.store import EmbeddingStore

CENTRE = h3.latlng_to_cell(52.49, 12.6, 8)


def toy_records(model: str = "toy", dim: int = 4, rings: int = 2, year: int = 2021,
                model_config: dict | None = None) -> list[EmbeddingRecord]:
    """One record per H3 cell of a disk around Havelland; vector i is (i, i+1, ...).

    ``model_config`` is stored as given; pass a real model's resolved config to make the
    rows that model's default variant (what ``search --model`` looks at).
    """
    cells = sorted(h3.grid_disk(CENTRE, rings))
    return [EmbeddingRecord(EmbeddingRequest(model, H3Cell(c), TemporalSpec.year(year),
                                             model_config=model_config or {}), c,
                            np.arange(i, i + dim, dtype=np.float32), meta={"i": i})
            for i, c in enumerate(cells)]


def toy_store(path, **kwargs) -> EmbeddingStore:
    store = EmbeddingStore(path)
    records = toy_records(**kwargs)
    store.write(records[0].request.model, records, len(records[0].vector))
    return store
