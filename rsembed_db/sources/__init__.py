"""Imagery and precomputed-product sources."""

from rsembed_db.errors import TileFailure
from rsembed_db.sources.base import Chip, ImagerySource
from rsembed_db.sources.counting import CountingSource, FetchStats
from rsembed_db.sources.earthengine import EarthEngineSource
from rsembed_db.sources.factory import make_source, parse_source
from rsembed_db.sources.local import LocalImagerySource
from rsembed_db.sources.stac import StacImagerySource

__all__ = ["Chip", "CountingSource", "EarthEngineSource", "FetchStats", "ImagerySource",
           "LocalImagerySource", "StacImagerySource", "TileFailure", "make_source", "parse_source"]
