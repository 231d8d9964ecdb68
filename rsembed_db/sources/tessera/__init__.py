"""Tessera precomputed embeddings: the published layouts, registries, stores and tiles."""

from rsembed_db.sources.tessera.layout import TileId
from rsembed_db.sources.tessera.tile import TesseraTile
from rsembed_db.sources.tessera.tiles import TesseraTiles

__all__ = ["TesseraTile", "TesseraTiles", "TileId"]
