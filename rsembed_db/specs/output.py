"""OutputSpec (pooled vector or grid) and InputPrepSpec (resize vs tiled inference)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rsembed_db.errors import SpecError
from rsembed_db.specs.validate import from_fields, require_choice

POOLINGS = ("mean", "max")
ORIENTATIONS = ("north_up", "native")
PREP_MODES = ("resize", "tile", "auto")


@dataclass(frozen=True)
class OutputSpec:
    """``pooled`` gives a (D,) vector, ``grid`` a (D, H, W) georeferenced DataArray.

    ``grid_orientation`` is accepted for compatibility with the reference library: every
    rsembed-db grid lies on a north-up chip grid (products stored bottom-up, such as the
    GSE COGs, are flipped on read), so ``native`` and ``north_up`` give the same grid.
    """

    mode: str = "pooled"
    pooling: str = "mean"
    grid_orientation: str = "north_up"

    def __post_init__(self) -> None:
        require_choice("output.mode", self.mode, ("pooled", "grid"))
        require_choice("output.pooling", self.pooling, POOLINGS)
        require_choice("output.grid_orientation", self.grid_orientation, ORIENTATIONS)

    @classmethod
    def pooled(cls, pooling: str = "mean") -> "OutputSpec":
        return cls("pooled", pooling=pooling)

    @classmethod
    def grid(cls, grid_orientation: str = "north_up", pooling: str = "mean") -> "OutputSpec":
        return cls("grid", pooling=pooling, grid_orientation=grid_orientation)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "pooling": self.pooling, "grid_orientation": self.grid_orientation}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OutputSpec":
        return from_fields(cls, data, "output")


@dataclass(frozen=True)
class InputPrepSpec:
    """How an ROI larger than the model's native size is fed to it.

    ``resize`` rescales the chip to the model size; ``tile`` runs the model on
    ``tile_size`` tiles (cover-shift starts, midpoint-cut stitching); ``auto`` tiles for
    grid output when at most ``max_tiles`` tiles are needed, else resizes.
    """

    mode: str = "resize"
    tile_size: int | None = None
    tile_stride: int | None = None
    max_tiles: int = 9
    pad_edges: bool = True

    def __post_init__(self) -> None:
        require_choice("input_prep.mode", self.mode, PREP_MODES)
        for name in ("tile_size", "tile_stride"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise SpecError(f"input_prep.{name}", f"must be a positive integer, got {value!r}")
        if self.tile_stride is not None and self.tile_stride != self.tile_size:
            raise SpecError("input_prep.tile_stride",
                            f"must equal tile_size ({self.tile_size}), got {self.tile_stride}")
        if isinstance(self.max_tiles, bool) or not isinstance(self.max_tiles, int) or self.max_tiles < 1:
            raise SpecError("input_prep.max_tiles", f"must be an integer >= 1, got {self.max_tiles!r}")

    @classmethod
    def resize(cls) -> InputPrepSpec:
        """Resample the whole ROI to the model's input size and run it once."""
        return cls("resize")

    @classmethod
    def tile(cls, *, tile_size: int | None = None, tile_stride: int | None = None, max_tiles: int = 9,
             pad_edges: bool = True) -> InputPrepSpec:
        """Run the model on ``tile_size`` tiles (default: the model's input size) and stitch."""
        return cls("tile", tile_size, tile_stride, max_tiles, pad_edges)

    @classmethod
    def auto(cls, *, tile_size: int | None = None, tile_stride: int | None = None, max_tiles: int = 9,
             pad_edges: bool = True) -> InputPrepSpec:
        """Tile for grid output when at most ``max_tiles`` tiles are needed, else resize."""
        return cls("auto", tile_size, tile_stride, max_tiles, pad_edges)

    @classmethod
    def parse(cls, value: InputPrepSpec | str | None, default: str = "resize") -> InputPrepSpec:
        """Accept a spec, one of the string shorthands (any case), or None (``default``)."""
        if value is None:
            return cls(default)
        if isinstance(value, InputPrepSpec):
            return value
        mode = value.strip().lower() if isinstance(value, str) else value
        require_choice("input_prep", mode, PREP_MODES)
        return cls(mode=mode)

    def to_dict(self) -> dict[str, Any]:
        out = {"mode": self.mode, "tile_size": self.tile_size, "tile_stride": self.tile_stride,
               "max_tiles": self.max_tiles, "pad_edges": self.pad_edges}
        if self.mode == "tile":  # tiled outputs keep the patch layout (models.input_prep)
            out["stitch"] = "patch_layout"
        return out
