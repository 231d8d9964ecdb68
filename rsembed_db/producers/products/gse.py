"""``gse``: Google Satellite Embedding V1 annual / AlphaEarth Foundations (64-d, 10 m).

Two backends, same values up to the COGs' 8-bit quantisation:

- ``cog`` (``--config cogs=...`` / ``RSEMBED_GSE_COGS``): published COGs, local paths,
  directories or HTTP(S) URLs, comma-separated; ``index`` (``RSEMBED_GSE_INDEX``): the
  published ``aef_index.parquet`` / ``.csv`` (path or URL) that says which file covers a
  place (found by itself at the top of a ``cogs`` directory; ``none``: read every file's
  header instead); with an index, ``cogs`` is the
  directory or URL holding ``<year>/<zone>/<name>.tiff`` (unset: the index's own paths);
- ``earthengine`` (``--config project=...`` / ``RSEMBED_EE_PROJECT`` or
  ``GOOGLE_CLOUD_PROJECT``): ``computePixels`` on the collection.

``backend`` (``RSEMBED_GSE_BACKEND``) picks one; by default ``cog`` when COGs are
configured, else ``earthengine``. Each ROI is read on its chip grid (local UTM, 10 m)
and pooled over the pixels whose centre lies inside it, skipping masked pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.models.base import FeatureMap, ModelDescription
from rsembed_db.models.pooling import pool, to_dataarray
from rsembed_db.producers.products.base import ProductProducer, check_roi_size
from rsembed_db.producers.products.zonal import NOT_FINITE
from rsembed_db.producers.records import EmbeddingRecord, FailureRecord
from rsembed_db.sources.gse_cog import BANDS, GseCogSource
from rsembed_db.sources.gse_earthengine import COLLECTION, GseEarthEngineSource
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.specs.validate import require_choice
from rsembed_db.tiling.chip_grid import chip_grid_for
from rsembed_db.tiling.plan import tile_id

SCALE_M = 10.0
YEARS = tuple(range(2017, 2026))
BACKENDS = ("cog", "earthengine")
GROUP = 64  # records per yielded group


class GseProducer(ProductProducer):
    name = "gse"
    years = YEARS
    options = {"backend": "RSEMBED_GSE_BACKEND", "cogs": "RSEMBED_GSE_COGS", "index": "RSEMBED_GSE_INDEX",
               "project": "RSEMBED_EE_PROJECT", "max_concurrency": ""}

    def __init__(self, **config) -> None:
        super().__init__(**config)
        cog_configured = self.setting("cogs") or self.setting("index")
        self.backend = self.setting("backend") or ("cog" if cog_configured else "earthengine")
        require_choice("gse.backend", self.backend, BACKENDS)
        self.description = ModelDescription(
            name=self.name, dim=len(BANDS), kind="precomputed", bands=(), scale_m=SCALE_M,
            licence="CC-BY-4.0 (attribution: \"The AlphaEarth Foundations Satellite Embedding "
                    "dataset is produced by Google and Google DeepMind.\")",
            source=f"Earth Engine {COLLECTION} / AlphaEarth Foundations COGs",
            summary="Google Satellite Embedding V1 annual (AlphaEarth Foundations): 64-d unit-length "
                    "embedding per 10 m pixel",
            modalities=("optical", "sar"), years=YEARS,
            config={"backend": self.backend, "collection": COLLECTION, "bands": "A00..A63"})
        self._source: GseCogSource | GseEarthEngineSource | None = None

    @property
    def source(self) -> GseCogSource | GseEarthEngineSource:
        if self._source is None:
            if self.backend == "cog":
                cogs, index = self.setting("cogs") or "", self.setting("index")
                if not cogs and not index:
                    raise SpecError("gse.cogs", "the cog backend needs the COGs: --config cogs=PATH|DIR|URL "
                                    "(or RSEMBED_GSE_COGS); they are published at "
                                    "gs://alphaearth_foundations and source.coop/tge-labs/aef")
                off = index is not None and str(index).strip().lower() in ("none", "off")
                self._source = GseCogSource(cogs, None if off else index, find_index_file=not off)
            else:
                project = self.setting("project") or os.environ.get("GOOGLE_CLOUD_PROJECT")
                self._source = GseEarthEngineSource(project, int(self.setting("max_concurrency", 4)))
        return self._source

    def compute_many(self, requests: list[EmbeddingRequest], workers: int = 2
                     ) -> Iterator[list[EmbeddingRecord | FailureRecord]]:
        for temporal in {r.temporal for r in requests}:
            self.year_of(temporal)
        source = self.source
        if isinstance(source, GseEarthEngineSource):
            source.ee()  # credentials checked once, before any thread starts
        else:
            source.prepare()  # the index, or every file's header, read once
        with ThreadPoolExecutor(max_workers=max(int(workers), 1), thread_name_prefix="gse") as pool_:
            group: list[EmbeddingRecord | FailureRecord] = []
            for record in pool_.map(lambda r: self._one(source, r), requests):
                group.append(record)
                if len(group) >= GROUP:
                    yield group
                    group = []
            if group:
                yield group

    def _one(self, source, request: EmbeddingRequest) -> EmbeddingRecord | FailureRecord:
        grid = chip_grid_for(request.spatial, SCALE_M)
        try:
            check_roi_size(len(BANDS), (grid.height, grid.width), "the 10 m raster")
            if isinstance(source, GseCogSource):
                values, used = source.read(grid, self.year_of(request.temporal))
            else:
                values, used = source.read(grid, request.temporal)
            features = FeatureMap(values, ~np.isnan(values).any(axis=0), grid.transform, grid.crs)
            vector = pool(features, grid, request.output.pooling)
            if not np.isfinite(vector).all():
                raise TileFailure(NOT_FINITE)
        except SpecError:
            raise
        except TileFailure as exc:
            return FailureRecord(request, tile_id(request.spatial), str(exc))
        except Exception as exc:  # noqa: BLE001 - one ROI's I/O error is recorded, not fatal
            return FailureRecord(request, tile_id(request.spatial), f"{type(exc).__name__}: {exc}")
        out_grid = to_dataarray(features) if request.output.mode == "grid" else None
        meta = self.meta(request, backend=self.backend, files=used, crs=grid.crs,
                         image_size=[grid.height, grid.width])
        return EmbeddingRecord(request, tile_id(request.spatial), vector, out_grid, meta)
