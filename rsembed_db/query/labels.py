"""Label sets joined with their rows: where each labelled place is, as dicts or GeoJSON."""

from __future__ import annotations

from typing import Any

import h3

from rsembed_db.query.cells import geojson_geometry
from rsembed_db.store.labels import KEY_CHUNK, LabelSets
from rsembed_db.store.lance_store import EmbeddingStore, sql_quote

PLACE_COLUMNS = ["key", "tile_id", "h3", "lon", "lat", "t_start", "t_end", "year", "geometry"]


def labelled_rows(store: EmbeddingStore, name: str) -> list[dict[str, Any]]:
    """The labels of set ``name`` with their rows' ``tile_id``, ``h3`` (hex), ``lon``, ``lat``,
    ``start``, ``end``, ``year`` and ``geometry`` (GeoJSON); a row deleted since is kept with
    nulls. NotFound when the set does not exist."""
    labels = LabelSets(store).labels(name)
    table = labels[0]["table"]
    keys = [label["key"] for label in labels]
    places: dict[str, dict[str, Any]] = {}
    if table in store.table_names():
        dataset = store.dataset(table)
        for i in range(0, len(keys), KEY_CHUNK):
            where = f"key IN ({sql_quote(keys[i:i + KEY_CHUNK])})"
            places.update((r["key"], r) for r in dataset.to_table(columns=PLACE_COLUMNS, filter=where).to_pylist())
    out = []
    for label in labels:
        place = places.get(label["key"], {})
        out.append({"key": label["key"], "label": label["label"], "who": label["who"], "at": label["at"].isoformat(),
                    "table": table, "tile_id": place.get("tile_id"),
                    "h3": h3.int_to_str(place["h3"]) if place.get("h3") is not None else None,
                    "lon": place.get("lon"), "lat": place.get("lat"),
                    "start": place["t_start"].isoformat() if place else None,
                    "end": place["t_end"].isoformat() if place else None, "year": place.get("year"),
                    "geometry": geojson_geometry(place.get("geometry"))})
    return out


def label_set_geojson(store: EmbeddingStore, name: str) -> dict[str, Any]:
    """Set ``name`` as a GeoJSON FeatureCollection: one Feature per label (the row's footprint)."""
    rows = labelled_rows(store, name)
    features = [{"type": "Feature", "id": row["key"], "geometry": row.pop("geometry"), "properties": row}
                for row in rows]
    return {"type": "FeatureCollection", "features": features,
            "properties": {"set": name, "table": rows[0]["table"] if rows else None,
                           "positives": sum(r["label"] == "positive" for r in rows),
                           "negatives": sum(r["label"] == "negative" for r in rows)}}
