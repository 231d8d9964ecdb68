"""The published index of the Google Satellite Embedding COGs (``aef_index.csv`` / ``.parquet``).

One row per COG (~34k per year): ``year``, ``crs`` (EPSG:326NN / 327NN), ``utm_zone``,
``utm_west/south/east/north`` (the file's bounds in its CRS), ``wgs84_west/south/east/north``
(its footprint in lon/lat, clipped to the zone) and ``path`` (``gs://alphaearth_foundations/
satellite_embedding/v1/annual/<year>/<zone>/<name>.tiff``, or the Source Cooperative mirror's
``s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual/...``). The geometry column (``WKT``
in the CSV) is not needed and not read. A local file is read in place; a URL is downloaded
once into the cache. Lookups are vectorised over one year's rows.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rsembed_db.errors import SpecError
from rsembed_db.sources.download import DownloadError, download
from rsembed_db.sources.ranged import is_url

COLUMNS = ("year", "crs", "utm_west", "utm_south", "utm_east", "utm_north",
           "wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north", "path")
INDEX_NAMES = ("aef_index.parquet", "aef_index.csv")
_PUBLIC = {"gs://": "https://storage.googleapis.com/",
           "s3://us-west-2.opendata.source.coop/": "https://data.source.coop/"}
_TAIL = re.compile(r"(?:^|/)((?:19|20)\d\d/\d{1,2}[NS]/[^/]+\.tiff?)$")


@dataclass(frozen=True)
class CogFile:
    """One COG: where it is, its year, CRS and bounds in that CRS (whatever its row order)."""

    location: str
    year: int
    crs: str
    bounds: tuple[float, float, float, float]  # in ``crs``


class GseIndex:
    """Rows of the index grouped by year; ``lookup`` finds the files meeting a lon/lat box."""

    def __init__(self, table: pa.Table, root: str | None, source: str) -> None:
        self.source, self.root = source, root.rstrip("/") if root else None
        self.rows = table.num_rows
        years = table["year"].to_numpy().astype(np.int64)
        self._by_year: dict[int, tuple[np.ndarray, list, list]] = {}
        bounds = np.column_stack([table[c].to_numpy().astype(np.float64) for c in COLUMNS[2:10]])
        crs, paths = table["crs"].to_pylist(), table["path"].to_pylist()
        order = np.argsort(years, kind="stable")
        cuts = np.flatnonzero(np.diff(years[order])) + 1
        for part in np.split(order, cuts):
            if len(part):
                self._by_year[int(years[part[0]])] = (bounds[part], [crs[i] for i in part], [paths[i] for i in part])

    @classmethod
    def load(cls, location: str, root: str | None = None, cache_dir: Path | None = None) -> "GseIndex":
        """The index at a path or URL (``.parquet`` or ``.csv``); ``root``: where the COGs are
        (a directory or URL holding ``<year>/<zone>/<name>.tiff``; None: the rows' own paths)."""
        path = Path(location).expanduser()
        if is_url(location):
            cache = cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rsembed-db" / "gse"
            digest = hashlib.sha256(location.encode()).hexdigest()[:12]
            path = cache / f"index-{digest}-{location.rsplit('/', 1)[-1]}"
            if not path.is_file():
                try:
                    download(location, path)
                except DownloadError as exc:
                    raise SpecError("gse.index", f"cannot download the COG index: {exc}") from None
        if not path.is_file():
            raise SpecError("gse.index", f"{location} does not exist; expected aef_index.parquet or aef_index.csv")
        try:
            if path.suffix.lower() == ".csv":
                table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=list(COLUMNS)))
            else:
                table = pq.read_table(path, columns=list(COLUMNS))
        except (pa.ArrowInvalid, KeyError, OSError) as exc:
            raise SpecError("gse.index", f"cannot read {location} as the COG index (columns "
                            f"{', '.join(COLUMNS)}): {exc}") from None
        return cls(table, root, location)

    def years(self) -> list[int]:
        return sorted(self._by_year)

    def lookup(self, year: int, west: float, south: float, east: float, north: float) -> list[CogFile]:
        """Files of ``year`` whose lon/lat footprint meets the box (edges touching do not count)."""
        if year not in self._by_year:
            return []
        bounds, crs, paths = self._by_year[year]
        hit = np.flatnonzero((bounds[:, 4] < east) & (bounds[:, 6] > west) & (bounds[:, 5] < north) & (bounds[:, 7] > south))
        return [CogFile(self.locate(paths[i]), year, crs[i], tuple(bounds[i, :4].tolist())) for i in hit.tolist()]

    def locate(self, path: str) -> str:
        """Where to read a row's file: under ``root`` when configured, else its public HTTPS URL."""
        if self.root is not None:
            match = _TAIL.search(path)
            if match is None:
                raise SpecError("gse.index", f"cannot find <year>/<zone>/<name>.tiff in the index path {path!r}")
            return f"{self.root}/{match[1]}"
        for prefix, public in _PUBLIC.items():
            if path.startswith(prefix):
                return public + path[len(prefix):]
        return path


def find_index(locations: list[str]) -> str | None:
    """An index file at the top of a configured local COG directory, if any."""
    for location in locations:
        if is_url(location):
            continue
        for name in INDEX_NAMES:
            candidate = Path(location).expanduser() / name
            if candidate.is_file():
                return str(candidate)
    return None
