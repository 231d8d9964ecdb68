"""Tessera precomputed embeddings: the published tile layout, registries and tiles."""

from rsembed_db.sources.tessera.layout import TileId
from rsembed_db.sources.tessera.tiles import TesseraTile, TesseraTiles

__all__ = ["TesseraTile", "TesseraTiles", "TileId"]
