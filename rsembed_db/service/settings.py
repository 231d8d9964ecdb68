"""Service configuration: a dataclass, filled from the environment or ``rsembed-db serve``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rsembed_db.errors import SpecError
from rsembed_db.query.hot import ENV_BUDGET
from rsembed_db.query.sql import SqlLimits
from rsembed_db.service.auth import ApiKeys
from rsembed_db.store.lance_store import default_db_path
from rsembed_db.tiling.chip_grid import DEFAULT_MAX_ROI_PIXELS


@dataclass(frozen=True)
class ServiceSettings:
    """Everything ``create_app`` needs.

    ``imagery`` (local rasters) or ``source`` (``local:``, ``gee``, ``stac:`` see
    ``sources.factory``): where on-the-fly models read imagery; precomputed products need neither.
    ``api_keys``: empty means an open service (``serve`` only binds it to loopback).
    ``public_reads``: with keys configured, let reads through without a key.
    Limits: ``max_body_bytes`` (request body), ``max_region_tiles`` (ingest plans),
    ``max_batch`` (ROIs per embeddings request), ``max_roi_pixels`` (pixels of one ROI at
    the model's scale, checked for every ROI before anything is read or computed: 422
    naming ``buffer_m`` / ``bbox`` / ``spatials[i]...``), ``sql`` (rows, time, memory,
    result bytes, spill),
    ``max_cells`` (rows per page of ``/v1/cells`` and ``/v1/change``), ``max_view_rows``
    (rows a map view or change request may span before it must be narrowed).
    ``basemap_style``: a MapLibre style URL the explorer draws under the cells (default:
    the country outlines shipped with the package, offline).
    ``max_producers``: model configurations kept loaded (least recently used evicted).
    ``storage_options``: LanceDB object-store options for an ``s3://`` (``gs://``, ``az://``)
    ``db``, on top of ``$RSEMBED_STORAGE_OPTIONS`` and the ``AWS_*`` variables (``store.options``).
    ``search_cache_mb``: tables' vectors kept in memory for exact searches
    (``query.hot``; ``$RSEMBED_SEARCH_CACHE_MB``; 0: none).
    """

    db: str = field(default_factory=default_db_path)
    imagery: tuple[str, ...] = ()
    imagery_date: str | None = None
    source: str | None = None
    api_keys: ApiKeys = field(default_factory=ApiKeys)
    public_reads: bool = False
    max_body_bytes: int = 2 * 1024 * 1024
    max_region_tiles: int = 10_000
    max_batch: int = 256
    max_roi_pixels: int = DEFAULT_MAX_ROI_PIXELS
    sql: SqlLimits = field(default_factory=SqlLimits)
    ingest_workers: int = 1
    max_cells: int = 5_000
    max_view_rows: int = 200_000
    basemap_style: str | None = None
    max_producers: int = 8
    storage_options: dict[str, str] = field(default_factory=dict)
    search_cache_mb: float = 1024

    @classmethod
    def from_env(cls, **overrides: object) -> ServiceSettings:
        """Read ``RSEMBED_DB``, ``RSEMBED_IMAGERY`` (paths separated by ``os.pathsep``),
        ``RSEMBED_IMAGERY_DATE``, ``RSEMBED_SOURCE``, ``RSEMBED_API_KEYS`` / ``RSEMBED_API_KEYS_FILE``,
        ``RSEMBED_PUBLIC_READS`` (1/true), ``RSEMBED_BASEMAP_STYLE``, ``RSEMBED_SEARCH_CACHE_MB``;
        ``overrides`` win over the environment."""
        env = os.environ
        values: dict[str, object] = {
            "db": default_db_path(),
            "imagery": tuple(p for p in env.get("RSEMBED_IMAGERY", "").split(os.pathsep) if p),
            "imagery_date": env.get("RSEMBED_IMAGERY_DATE") or None,
            "source": env.get("RSEMBED_SOURCE") or None,
            "api_keys": ApiKeys.from_env(env),
            "public_reads": env.get("RSEMBED_PUBLIC_READS", "").lower() in ("1", "true", "yes"),
            "basemap_style": env.get("RSEMBED_BASEMAP_STYLE") or None,
        }
        budget = _megabytes(env.get(ENV_BUDGET))
        if budget is not None:  # unset: the field's default
            values["search_cache_mb"] = budget
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _megabytes(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise SpecError(ENV_BUDGET, f"must be a number of megabytes, got {raw!r}") from None
