"""Regions -> tiles (H3 cells or projected grid squares) -> chip grids."""
