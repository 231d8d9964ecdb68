"""``rsembed-db export-batch``: the tiles of a region x models into npz / NetCDF / Parquet / the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rsembed_db.cli.options import parse_config, temporal_from_options
from rsembed_db.specs.validate import require_choice


def export_batch(
    region: Annotated[Path, typer.Argument(help="GeoJSON region.")],
    model: Annotated[list[str], typer.Option(help="Model name (repeatable).")],
    out: Annotated[Path, typer.Option(help="Output file (one combined file; the format's extension is added "
                                           "when missing), or a folder with --per-item.")],
    format: Annotated[str, typer.Option(help="npz, netcdf, parquet or store (needs --db).")] = "npz",
    per_item: Annotated[bool, typer.Option(help="One output per tile (named by tile id).")] = False,
    tiles: Annotated[str, typer.Option(help="Tiler: h3:<res> or grid:<size_m>.")] = "h3:8",
    cover: Annotated[str, typer.Option(help="h3 tiles: centre or full.")] = "centre",
    year: Annotated[Optional[int], typer.Option()] = None,
    start: Annotated[Optional[str], typer.Option()] = None,
    end: Annotated[Optional[str], typer.Option()] = None,
    output: Annotated[str, typer.Option(help="pooled or grid.")] = "pooled",
    pooling: Annotated[str, typer.Option(help="mean or max.")] = "mean",
    input_prep: Annotated[Optional[str], typer.Option(
        help="Fixed-size models: resize, tile or auto (default: tile; resize when a tile fits one model input).")] = None,
    source: Annotated[Optional[str], typer.Option(
        help="local:<path>, gee[:<project>] or stac:<url>[#collection].")] = None,
    imagery: Annotated[Optional[list[Path]], typer.Option(help="Local rasters.")] = None,
    imagery_date: Annotated[Optional[str], typer.Option()] = None,
    config: Annotated[Optional[list[str]], typer.Option(help="Model config key=value (all models).")] = None,
    save_inputs: Annotated[bool, typer.Option(help="Also save the model-ready input chips.")] = False,
    resume: Annotated[bool, typer.Option(help="Skip outputs whose manifest matches this request.")] = False,
    chunk_size: Annotated[int, typer.Option(help="Tiles per processing chunk.")] = 16,
    workers: Annotated[int, typer.Option(help="Fetch threads.")] = 4,
    db: Annotated[Optional[str], typer.Option(
        help="Store (default $RSEMBED_DB): stored keys are read back instead of computed, new ones written to "
             "it; needed by --format store.", envvar="RSEMBED_DB")] = None,
    max_tiles: Annotated[int, typer.Option(help="Refuse plans with more tiles than this.")] = 100_000,
) -> None:
    """Export embeddings of every tile of REGION for one or more models, with JSON manifests."""
    from rsembed_db.export import export_batch as run_export
    from rsembed_db.specs.export import EXPORT_FORMATS, ExportConfig, ExportModelRequest, ExportTarget
    from rsembed_db.specs.output import OutputSpec
    from rsembed_db.tiling.plan import tile_id, tile_region
    from rsembed_db.tiling.region import load_region

    require_choice("format", format, EXPORT_FORMATS)
    require_choice("output", output, ("pooled", "grid"))
    spatials = tile_region(load_region(region), tiles, cover=cover, max_tiles=max_tiles)
    names = [tile_id(s) for s in spatials]
    target = ExportTarget.per_item(out, names=names) if per_item else ExportTarget.combined(out)
    model_config = parse_config(config)
    result = run_export(
        spatials=spatials, temporal=temporal_from_options(year, start, end),
        models=[ExportModelRequest(m, model_config=model_config) for m in model],
        target=target, config=ExportConfig(format=format, save_inputs=save_inputs, chunk_size=chunk_size,
                                           num_workers=workers, resume=resume),
        output=OutputSpec.pooled(pooling) if output == "pooled" else OutputSpec.grid(pooling=pooling),
        input_prep=input_prep, store=db, source=source, imagery=imagery, imagery_date=imagery_date)
    manifests = result if isinstance(result, list) else [result]
    skipped = sum(bool(m.get("resume_skipped")) for m in manifests)
    statuses = [m["status"] for m in manifests]
    print(f"{len(manifests)} output(s) ({skipped} skipped by resume): "
          + ", ".join(f"{statuses.count(s)} {s}" for s in ("ok", "partial", "failed") if s in statuses))
    fetches = next((m.get("fetch_stats") for m in manifests if m.get("fetch_stats")), None)
    if fetches:
        print("fetches: " + ", ".join(f"{v} {k}" for k, v in fetches.items()))
    for manifest in manifests[:5]:
        print(f"{manifest['path']} ({manifest['manifest_path']})")
