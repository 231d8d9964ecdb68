"""Write Google Satellite Embedding COG indexes as published (tests, benchmarks).

``index_rows`` describes given files the way ``aef_index.csv`` / ``.parquet`` do (UTM and
clipped lon/lat bounds, year, CRS, zone, ``gs://`` path); ``global_index_rows`` makes a
realistic-size index (8192-pixel files on a 81.92 km grid in every UTM zone and
hemisphere, a random subset per year, ~34k rows a year as published).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import shapely

from rsembed_db.specs.spatial import WGS84, transformer

BUCKET = "gs://alphaearth_foundations/satellite_embedding/v1/annual"
FILE_M = 81_920.0  # 8192 pixels of 10 m


def index_rows(files: list[tuple[str, int, str, tuple[float, float, float, float]]]) -> dict[str, list]:
    """Columns for files given as (``<year>/<zone>/<name>.tiff``, year, CRS, UTM bounds)."""
    rows: dict[str, list] = {k: [] for k in ("WKT", "crs", "year", "utm_zone", "utm_west", "utm_south", "utm_east",
                                             "utm_north", "wgs84_west", "wgs84_south", "wgs84_east",
                                             "wgs84_north", "path")}
    for relative, year, crs, (w, s, e, n) in files:
        code = int(crs.split(":")[1])
        zone = code % 100
        lon0 = -180.0 + 6.0 * (zone - 1)
        xs = np.r_[np.linspace(w, e, 21), np.full(21, e), np.linspace(e, w, 21), np.full(21, w)]
        ys = np.r_[np.full(21, s), np.linspace(s, n, 21), np.full(21, n), np.linspace(n, s, 21)]
        lon, lat = transformer(crs, WGS84).transform(xs, ys)
        lon = np.clip(lon, lon0, lon0 + 6.0)
        _append(rows, shapely.Polygon(np.column_stack([lon, lat])).wkt, crs, year,
                f"{zone}{'S' if code >= 32700 else 'N'}", (w, s, e, n),
                (lon.min(), lat.min(), lon.max(), lat.max()), f"{BUCKET}/{relative}")
    return rows


def global_index_rows(years: list[int], per_year: int = 33_600, seed: int = 0,
                      covered: tuple[float, float, float, float] | None = None) -> dict[str, list]:
    """A realistic-size index: ``per_year`` files a year over all 120 zone-hemispheres, always
    including the files whose centre lies in the lon/lat box ``covered``."""
    crs_list, xs, ys = [], [], []
    for zone in range(1, 61):
        for south in (False, True):
            easts = np.arange(160_000.0, 840_000.0, FILE_M)
            norths = np.arange(1_000_000.0 if south else 0.0, 10_000_000.0 if south else 9_300_000.0, FILE_M)
            e, n = np.meshgrid(easts, norths)
            crs_list += [32700 + zone if south else 32600 + zone] * e.size
            xs.append(e.ravel())
            ys.append(n.ravel())
    codes, x, y = np.array(crs_list), np.concatenate(xs), np.concatenate(ys)
    forced = np.zeros(len(codes), bool)
    if covered is not None:
        for code in np.unique(codes).tolist():
            sel = np.flatnonzero(codes == code)
            lon, lat = transformer(f"EPSG:{code}", WGS84).transform(x[sel] + FILE_M / 2, y[sel] + FILE_M / 2)
            forced[sel] = (lon >= covered[0]) & (lon <= covered[2]) & (lat >= covered[1]) & (lat <= covered[3])
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("WKT", "crs", "year", "utm_zone", "utm_west", "utm_south", "utm_east",
                                             "utm_north", "wgs84_west", "wgs84_south", "wgs84_east",
                                             "wgs84_north", "path")}
    for year in years:
        others = np.flatnonzero(~forced)
        extra = rng.choice(others, size=max(min(per_year, len(codes)) - int(forced.sum()), 0), replace=False)
        pick = np.sort(np.r_[np.flatnonzero(forced), extra])
        for code in np.unique(codes[pick]).tolist():
            sel = pick[codes[pick] == code]
            w, s, e, n = x[sel], y[sel], x[sel] + FILE_M, y[sel] + FILE_M
            lon, lat = transformer(f"EPSG:{code}", WGS84).transform(np.c_[w, e, e, w], np.c_[s, s, n, n])
            zone, hemi = code % 100, "S" if code >= 32700 else "N"
            lon = np.clip(lon, -180.0 + 6.0 * (zone - 1), -174.0 + 6.0 * (zone - 1))
            for k in range(len(sel)):
                box = (lon[k].min(), lat[k].min(), lon[k].max(), lat[k].max())
                name = f"{int(rng.integers(1 << 62)):017x}-{int((s[k] % FILE_M) // 10):010d}-{int(w[k] // 10):010d}"
                _append(rows, shapely.box(*box).wkt, f"EPSG:{code}", year, f"{zone}{hemi}",
                        (w[k], s[k], e[k], n[k]), box, f"{BUCKET}/{year}/{zone}{hemi}/{name}.tiff")
    return rows


def _append(rows, wkt, crs, year, zone, utm, wgs84, path) -> None:
    rows["WKT"].append(wkt)
    rows["crs"].append(crs)
    rows["year"].append(int(year))
    rows["utm_zone"].append(zone)
    for key, value in zip(("utm_west", "utm_south", "utm_east", "utm_north"), utm):
        rows[key].append(float(value))
    for key, value in zip(("wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north"), wgs84):
        rows[key].append(float(value))
    rows["path"].append(path)


def write_index(path: str | Path, rows: dict[str, list]) -> Path:
    """``aef_index.csv`` (with its ``WKT`` column) or ``.parquet`` (``geometry`` as WKB), by suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        pacsv.write_csv(pa.table(rows), path)
    else:
        columns = {("geometry" if k == "WKT" else k): v for k, v in rows.items()}
        columns["geometry"] = shapely.to_wkb(shapely.from_wkt(np.array(rows["WKT"], dtype=object))).tolist()
        pq.write_table(pa.table(columns), path)
    return path
