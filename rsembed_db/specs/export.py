"""Export vocabulary of ``export_batch``: where outputs go and how the run behaves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsembed_db.errors import SpecError
from rsembed_db.specs.sensor import SensorSpec
from rsembed_db.specs.validate import require_choice

EXPORT_FORMATS = ("npz", "netcdf", "parquet", "store")


@dataclass(frozen=True)
class ExportTarget:
    """``combined(path)``: one file for all items; ``per_item(dir, names)``: one file each."""

    mode: str
    path: Path
    names: tuple[str, ...] | None = None
    format: str = "npz"

    def __post_init__(self) -> None:
        require_choice("target.mode", self.mode, ("combined", "per_item"))
        require_choice("target.format", self.format, EXPORT_FORMATS)
        object.__setattr__(self, "path", Path(self.path))
        if self.names is not None:
            names = tuple(self.names)
            if len(set(names)) != len(names):
                raise SpecError("target.names", "must be unique")
            object.__setattr__(self, "names", names)

    @classmethod
    def combined(cls, path: str | Path, format: str = "npz") -> "ExportTarget":
        return cls("combined", Path(path), None, format)

    @classmethod
    def per_item(cls, directory: str | Path, names: list[str] | None = None,
                 format: str = "npz") -> "ExportTarget":
        return cls("per_item", Path(directory), tuple(names) if names else None, format)


@dataclass(frozen=True)
class ExportConfig:
    """Run options of ``export_batch``."""

    save_inputs: bool = False
    save_embeddings: bool = True
    chunk_size: int = 16
    num_workers: int = 4
    resume: bool = False

    def __post_init__(self) -> None:
        for name in ("chunk_size", "num_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(name, f"must be an integer >= 1, got {value!r}")
        if not (self.save_inputs or self.save_embeddings):
            raise SpecError("save_embeddings", "nothing to export: save_inputs and save_embeddings are both False")


@dataclass(frozen=True)
class ExportModelRequest:
    """One model of an ``export_batch`` run, with its own modality/sensor/config."""

    name: str
    modality: str | None = None
    sensor: SensorSpec | None = None
    model_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecError("name", f"must be a model name, got {self.name!r}")

    @classmethod
    def configure(cls, name: str, *, modality: str | None = None, sensor: SensorSpec | None = None,
                  **model_config: Any) -> ExportModelRequest:
        """A request with the model's config as keyword arguments:
        ``ExportModelRequest.configure("thor", variant="large")``."""
        return cls(name, modality=modality, sensor=sensor, model_config=model_config)
