"""``h3:<res>`` tiling: the H3 cells of a lon/lat region."""

from __future__ import annotations

from typing import Literal

import h3

from rsembed_db.errors import SpecError
from rsembed_db.specs.spatial import H3Cell
from rsembed_db.specs.validate import require_choice
from rsembed_db.tiling.region import Region

Cover = Literal["centre", "full"]
COVERS: tuple[str, ...] = ("centre", "full")


def check_res(res: object) -> int:
    """Return ``res`` if it is an H3 resolution (an int in 0..15), else raise SpecError."""
    if isinstance(res, bool) or not isinstance(res, int) or not 0 <= res <= 15:
        raise SpecError("tiles", f"H3 resolution must be an integer 0..15, got {res!r}")
    return res


def h3_tiles(region: Region, res: int, cover: Cover = "centre") -> list[H3Cell]:
    """H3 cells of ``region`` at ``res``, sorted by cell id.

    ``cover="centre"``: cells whose centre lies in the region (H3 polygon fill), so each
    point belongs to at most one region's cells. ``cover="full"``: every cell that
    overlaps the region, so the hexagons together cover all of it.
    """
    check_res(res)
    require_choice("cover", cover, COVERS)
    shape = h3.geo_to_h3shape(region)
    if cover == "centre":
        cells = h3.h3shape_to_cells(shape, res)
    else:
        cells = h3.h3shape_to_cells_experimental(shape, res, contain="overlap")
    return [H3Cell(c) for c in sorted(cells, key=h3.str_to_int)]
