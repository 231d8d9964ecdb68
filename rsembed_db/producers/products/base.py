"""What every precomputed product shares: configuration, annual windows, requests, meta.

A product's configuration mixes *where the data is* (directories, URLs, credentials:
never part of the storage key, since the same embedding can come from a mirror or a
local copy) and *what the data is* (e.g. a dataset version: part of the key).
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from typing import Any, ClassVar

from rsembed_db.errors import SpecError, TileFailure
from rsembed_db.producers.base import BulkProducer
from rsembed_db.specs.output import InputPrepSpec, OutputSpec
from rsembed_db.specs.request import EmbeddingRequest
from rsembed_db.specs.temporal import TemporalSpec

MAX_ROI_VALUES = 1 << 28  # float32 values (D x H x W) one ROI may hold in memory: 1 GiB


def check_roi_size(dim: int, shape: tuple[int, int], what: str) -> None:
    """TileFailure when an ROI's raster would not fit in memory."""
    values = dim * shape[0] * shape[1]
    if values > MAX_ROI_VALUES:
        raise TileFailure(f"{what} of this ROI would hold {values:,} values ({shape[0]} x {shape[1]} "
                          f"pixels x {dim}), more than {MAX_ROI_VALUES:,}: use a smaller ROI "
                          "(e.g. finer --tiles)")


class ProductProducer(BulkProducer):
    """A precomputed annual embedding product (no imagery, no sensor, no model run)."""

    name: ClassVar[str]
    years: ClassVar[tuple[int, ...]]
    default_year: ClassVar[int | None] = None  # the year of ``temporal=None`` (None: temporal is required)
    options: ClassVar[dict[str, str]]  # config key -> environment variable ("" if none)

    def __init__(self, **config: Any) -> None:
        unknown = sorted(set(config) - set(self.options))
        if unknown:
            raise SpecError(f"{self.name}.{unknown[0]}", f"unknown option for model {self.name!r}",
                            sorted(self.options))
        self.config = config

    @property
    def default_dim(self) -> int:
        return type(self)().dim

    def setting(self, key: str, default: Any = None) -> Any:
        """``--config key=...``, else its environment variable, else ``default``."""
        if key in self.config:
            return self.config[key]
        env = self.options[key]
        return os.environ.get(env, default) if env else default

    @property
    def key_config(self) -> dict[str, Any]:
        """The part of the configuration that changes values (hashed into keys)."""
        return {}

    def request(self, spatial, temporal, output=OutputSpec(), sensor=None, fetch=None,
                input_prep=None, modality=None) -> EmbeddingRequest:
        self.check_modality(modality)
        if sensor is not None or fetch is not None:
            raise SpecError("sensor", f"{self.name} is a precomputed product: it takes no sensor "
                            "or fetch spec")
        temporal = self.resolve_temporal(temporal)
        return EmbeddingRequest(model=self.model, spatial=spatial, temporal=temporal,
                                output=output, sensor=None, input_prep=InputPrepSpec(),
                                model_config=self.key_config)

    def resolve_temporal(self, temporal: TemporalSpec | None) -> TemporalSpec:
        """The annual window a request reads, as the reference resolves it: ``None`` is the
        product's default year (with a warning) or an error naming ``temporal``; a window
        that is not one calendar year selects the year it starts in (with a warning)."""
        span = f"{self.years[0]}" if len(self.years) == 1 else f"{self.years[0]}..{self.years[-1]}"
        if temporal is None:
            if self.default_year is None:
                raise SpecError("temporal", f"{self.name} is an annual product: give a year "
                                f"(TemporalSpec.year(Y), --year Y) with Y in {span}")
            warnings.warn(f"temporal=None: {self.name} defaults to year {self.default_year}; pass "
                          "TemporalSpec.year(...) for reproducible, self-documented results",
                          UserWarning, stacklevel=4)
            return TemporalSpec.year(self.default_year)
        year = temporal.calendar_year
        if year is None:
            year = temporal.start_date.year
            warnings.warn(f"{self.name} publishes annual embeddings: the window [{temporal.start_date}, "
                          f"{temporal.end_date}) reads year {year} (the year it starts in)",
                          UserWarning, stacklevel=4)
        if year not in self.years:
            raise SpecError("year", f"{self.name} covers {span}, got {year}")
        return temporal if temporal.calendar_year == year else TemporalSpec.year(year)

    def year_of(self, temporal: TemporalSpec) -> int:
        """The year of an already resolved request's window (``resolve_temporal``)."""
        return self.resolve_temporal(temporal).start_date.year

    def meta(self, request: EmbeddingRequest, **extra: Any) -> dict[str, Any]:
        return {**self._meta_base(request.temporal), **extra}

    @lru_cache(maxsize=16)  # noqa: B019 - one entry per window; producers live for a run
    def _meta_base(self, temporal: TemporalSpec) -> dict[str, Any]:
        return {"model": self.model, "source": self.description.source,
                "temporal": temporal.to_dict(), "input_time": temporal.midpoint.isoformat(),
                "year": temporal.start_date.year}
