"""What a table holds, for pickers and maps: its time windows, years, extent and tiling."""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from rsembed_db.store.lance_store import EmbeddingStore


def table_summary(store: EmbeddingStore, name: str) -> dict[str, Any]:
    """``windows`` (each ``start``, ``end`` (exclusive), ``year``, ``rows``; by start), the
    distinct ``years``, the ``extent`` ``[minlon, minlat, maxlon, maxlat]`` of the
    footprints (None when empty), the stored ``h3_res`` and ``spatial_kinds``."""
    rows = store.dataset(name).to_table(columns=["t_start", "t_end", "year", "h3_res", "spatial_kind",
                                                 "minlon", "minlat", "maxlon", "maxlat"])
    windows = rows.group_by(["t_start", "t_end", "year"]).aggregate([([], "count_all")])
    windows = windows.sort_by([("t_start", "ascending"), ("t_end", "ascending")]).to_pylist()
    extent = None
    if rows.num_rows:
        extent = [pc.min(rows["minlon"]).as_py(), pc.min(rows["minlat"]).as_py(),
                  pc.max(rows["maxlon"]).as_py(), pc.max(rows["maxlat"]).as_py()]
    return {
        "windows": [{"start": w["t_start"].isoformat(), "end": w["t_end"].isoformat(), "year": w["year"],
                     "rows": w["count_all"]} for w in windows],
        "years": sorted({w["year"] for w in windows}),
        "extent": extent,
        "h3_res": sorted(r for r in pc.unique(rows["h3_res"]).to_pylist() if r is not None),
        "spatial_kinds": sorted(k for k in pc.unique(rows["spatial_kind"]).to_pylist() if k is not None),
    }
