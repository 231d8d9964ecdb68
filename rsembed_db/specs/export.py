"""Export vocabulary of ``export_batch``: where outputs go, how the run behaves, per-model overrides.

The names, fields and defaults are the reference library's (``ExportTarget.combined(out_file)``,
``ExportTarget.per_item(out_dir, names=[...])``, ``ExportConfig(...)``,
``ExportModelRequest(name, sensor=, fetch=, modality=, model_config=)``); rsembed-db adds the
``parquet`` and ``store`` formats.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsembed_db.errors import SpecError
from rsembed_db.specs.output import InputPrepSpec
from rsembed_db.specs.sensor import FetchSpec, SensorSpec
from rsembed_db.specs.validate import require_choice

EXPORT_FORMATS = ("npz", "netcdf", "parquet", "store")


class ExportLayout(enum.Enum):
    """``ExportTarget.layout``: one combined output, or one output per item."""

    COMBINED = "combined"
    PER_ITEM = "per_item"


LAYOUTS = tuple(layout.value for layout in ExportLayout)


@dataclass(frozen=True)
class ExportTarget:
    """``combined(out_file)``: one output for all items; ``per_item(out_dir, names=...)``: one each."""

    layout: str
    out_file: str | None = None
    out_dir: str | None = None
    names: list[str] | None = None

    def __post_init__(self) -> None:
        layout = getattr(self.layout, "value", self.layout)  # an enum member, as the reference spells it
        require_choice("target.layout", layout, LAYOUTS)
        object.__setattr__(self, "layout", layout)
        wanted, other = ("out_file", "out_dir") if layout == "combined" else ("out_dir", "out_file")
        value = getattr(self, wanted)
        if not isinstance(value, (str, Path)) or not str(value):
            raise SpecError(f"target.{wanted}", f"a {layout} export needs a path, got {value!r}")
        if getattr(self, other) is not None:
            raise SpecError(f"target.{other}", f"not used by a {layout} export")
        object.__setattr__(self, wanted, str(value))
        if self.names is not None:
            if layout != "per_item":
                raise SpecError("target.names", "only a per_item export names its items")
            names = [str(n) for n in self.names]
            if len(set(names)) != len(names):
                raise SpecError("target.names", "must be unique")
            object.__setattr__(self, "names", names)

    @classmethod
    def combined(cls, out_file: str | Path) -> ExportTarget:
        """One file for the whole run (the format's extension is added when missing)."""
        return cls("combined", out_file=str(out_file))

    @classmethod
    def per_item(cls, out_dir: str | Path, *, names: list[str] | None = None) -> ExportTarget:
        """One file per ROI in ``out_dir``, named by ``names`` (one per ROI) or ``item_00000``..."""
        return cls("per_item", out_dir=str(out_dir), names=names)

    @property
    def mode(self) -> str:
        return self.layout

    @property
    def path(self) -> Path:
        """The combined file or the per-item directory."""
        return Path(self.out_file if self.layout == "combined" else self.out_dir)  # type: ignore[arg-type]


def _require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(name, f"must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class ExportConfig:
    """How an ``export_batch`` run behaves (the reference's fields and defaults).

    ``format`` (npz, netcdf, parquet, store); ``save_inputs`` / ``save_embeddings`` /
    ``save_manifest``; ``chunk_size`` ROIs per chunk; ``infer_batch_size`` model batch
    (default: ``chunk_size``); ``num_workers`` fetch threads; ``continue_on_error``
    records a failed output write (or an unexpected error of one output) in its manifest
    instead of stopping; ``max_retries`` / ``retry_backoff_s`` (seconds, doubled per try)
    retry fetches and writes; ``async_write`` writes outputs on ``writer_workers``
    threads; ``resume`` skips outputs already complete for the same request;
    ``show_progress`` draws a progress bar on stderr; ``fail_on_bad_input`` stops the run
    when an input check (``SensorSpec.check_input``) fails instead of recording it;
    ``input_prep`` equals ``export_batch(input_prep=...)`` (give one, not both).
    """

    format: str = "npz"
    save_inputs: bool = True
    save_embeddings: bool = True
    save_manifest: bool = True
    fail_on_bad_input: bool = False
    chunk_size: int = 16
    infer_batch_size: int | None = None
    num_workers: int = 8
    continue_on_error: bool = False
    max_retries: int = 0
    retry_backoff_s: float = 0.0
    async_write: bool = True
    writer_workers: int = 2
    resume: bool = False
    show_progress: bool = True
    input_prep: InputPrepSpec | str | None = None

    def __post_init__(self) -> None:
        require_choice("config.format", self.format, EXPORT_FORMATS)
        for name in ("chunk_size", "num_workers", "writer_workers"):
            _require_int(f"config.{name}", getattr(self, name), 1)
        if self.infer_batch_size is not None:
            _require_int("config.infer_batch_size", self.infer_batch_size, 1)
        _require_int("config.max_retries", self.max_retries, 0)
        backoff = self.retry_backoff_s
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or not 0 <= backoff <= 3600:
            raise SpecError("config.retry_backoff_s", f"must be seconds within [0, 3600], got {backoff!r}")
        for name in ("save_inputs", "save_embeddings", "save_manifest", "fail_on_bad_input", "continue_on_error",
                     "async_write", "resume", "show_progress"):
            if not isinstance(getattr(self, name), bool):
                raise SpecError(f"config.{name}", f"must be true or false, got {getattr(self, name)!r}")
        if not (self.save_inputs or self.save_embeddings):
            raise SpecError("config.save_embeddings",
                            "nothing to export: save_inputs and save_embeddings are both False")
        if self.resume and not self.save_manifest:
            raise SpecError("config.resume", "resuming reads the manifests: keep save_manifest=True")
        if self.input_prep is not None:
            InputPrepSpec.parse(self.input_prep)

    @property
    def batch_size(self) -> int:
        """Chips per model batch."""
        return self.infer_batch_size or self.chunk_size


@dataclass(frozen=True)
class ExportModelRequest:
    """One model of an ``export_batch`` run with its own overrides (they take precedence
    over the run's shared ``sensor`` / ``fetch`` / ``modality``)."""

    name: str
    sensor: SensorSpec | None = None
    fetch: FetchSpec | None = None
    modality: str | None = None
    model_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecError("name", f"must be a model name, got {self.name!r}")
        if self.sensor is not None and self.fetch is not None:
            raise SpecError("fetch", f"{self.name}: cannot be combined with sensor; put the overrides in sensor")
        if self.model_config is not None and not isinstance(self.model_config, dict):
            raise SpecError("model_config", f"must be a mapping of settings, got {self.model_config!r}")

    @classmethod
    def configure(cls, name: str, *, sensor: SensorSpec | None = None, fetch: FetchSpec | None = None,
                  modality: str | None = None, **model_kwargs: Any) -> ExportModelRequest:
        """A request whose model settings are keyword arguments: ``configure("thor", variant="large")``."""
        return cls(name, sensor=sensor, fetch=fetch, modality=modality, model_config=model_kwargs or None)


@dataclass(frozen=True)
class ModelConfig:
    """The reference's resolved per-model settings; ``export_batch`` accepts it in ``models``
    (``backend`` and ``model_type`` are informational: the run's ``backend`` applies)."""

    name: str
    backend: str = "auto"
    sensor: SensorSpec | None = None
    model_config: dict[str, Any] | None = None
    model_type: str = ""

    def request(self) -> ExportModelRequest:
        return ExportModelRequest(self.name, sensor=self.sensor, model_config=self.model_config)
