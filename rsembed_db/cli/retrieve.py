"""``rsembed-db get``: one embedding, from the store or computed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rsembed_db.cli.options import DEFAULT_DB, DbOption, parse_config, temporal_from_options
from rsembed_db.errors import SpecError
from rsembed_db.specs.validate import require_choice


def get(
    model: Annotated[str, typer.Option(help="Model name.")],
    lon: Annotated[float, typer.Option(help="Centre longitude.")],
    lat: Annotated[float, typer.Option(help="Centre latitude.")],
    buffer_m: Annotated[float, typer.Option(help="Half side of the square ROI, metres.")] = 500.0,
    year: Annotated[Optional[int], typer.Option()] = None,
    start: Annotated[Optional[str], typer.Option()] = None,
    end: Annotated[Optional[str], typer.Option()] = None,
    output: Annotated[str, typer.Option(help="pooled or grid.")] = "pooled",
    pooling: Annotated[str, typer.Option(help="mean or max.")] = "mean",
    imagery: Annotated[Optional[list[Path]], typer.Option(help="Local rasters for a miss.")] = None,
    source: Annotated[Optional[str], typer.Option(
        help="Imagery source for a miss: local:<path>, gee[:<project>] or stac:<url>[#collection] "
             "(default: --imagery, else $RSEMBED_SOURCE).")] = None,
    imagery_date: Annotated[Optional[str], typer.Option()] = None,
    config: Annotated[Optional[list[str]], typer.Option(help="Model config key=value.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Write .npy (vector or grid), or a grid as .tif (Cloud-Optimised GeoTIFF) or .nc (CF NetCDF).")] = None,
    input_prep: Annotated[Optional[str], typer.Option(
        help="Fixed-size models: resize, tile or auto (default: tile; resize when a tile fits one model input).")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """One embedding for a point + buffer: from the store if present, else computed and stored."""
    import numpy as np
    import xarray as xr

    from rsembed_db.api import get_embedding
    from rsembed_db.export.grid_files import write_grid
    from rsembed_db.specs.output import OutputSpec
    from rsembed_db.specs.spatial import PointBuffer
    from rsembed_db.store.lance_store import EmbeddingStore

    require_choice("output", output, ("pooled", "grid"))
    spec = OutputSpec.pooled(pooling) if output == "pooled" else OutputSpec.grid(pooling=pooling)
    emb = get_embedding(model, spatial=PointBuffer(lon, lat, buffer_m),
                        temporal=temporal_from_options(year, start, end), output=spec,
                        store=EmbeddingStore(db), imagery=imagery, imagery_date=imagery_date,
                        model_config=parse_config(config), input_prep=input_prep, source=source)
    values = emb.numpy()
    origin = "store" if emb.meta["from_store"] else "computed"
    print(f"key {emb.meta['key']} ({origin}) shape {values.shape} "
          f"mean {np.nanmean(values):.6f} std {np.nanstd(values):.6f}")
    if out is None:
        if values.ndim == 1:
            print(np.array2string(values[:8], precision=5) + (" ..." if values.size > 8 else ""))
        return
    if out.suffix.lower() == ".npy":
        np.save(out, values)
    elif not isinstance(emb.data, xr.DataArray):
        raise SpecError("out", f"{out.suffix} holds a georeferenced grid: add --output grid (a pooled "
                        "vector goes to .npy)")
    else:
        write_grid(emb.data, out)
    print(f"wrote {out}")

