"""Imagery and precomputed-product sources."""

from rsembed_db.sources.base import Chip, ImagerySource, TileFailure
from rsembed_db.sources.local import LocalImagerySource

__all__ = ["Chip", "ImagerySource", "LocalImagerySource", "TileFailure"]
