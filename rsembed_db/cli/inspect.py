"""``rsembed-db inspect``: the patch a model would receive at a point, with statistics and a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rsembed_db.cli.options import parse_config, temporal_from_options
from rsembed_db.errors import SpecError


def inspect(
    lon: Annotated[float, typer.Option(help="Centre longitude.")],
    lat: Annotated[float, typer.Option(help="Centre latitude.")],
    buffer_m: Annotated[float, typer.Option(help="Half side of the square ROI, metres.")] = 500.0,
    model: Annotated[Optional[str], typer.Option(help="Model whose input contract is used.")] = None,
    collection: Annotated[Optional[str], typer.Option(help="Without --model: the collection.")] = None,
    bands: Annotated[Optional[list[str]], typer.Option(help="Without --model: the bands (repeatable).")] = None,
    scale_m: Annotated[float, typer.Option(help="Without --model: metres per pixel.")] = 10.0,
    year: Annotated[Optional[int], typer.Option()] = None,
    start: Annotated[Optional[str], typer.Option()] = None,
    end: Annotated[Optional[str], typer.Option()] = None,
    source: Annotated[Optional[str], typer.Option(
        help="local:<path>, gee[:<project>] or stac:<url>[#collection].")] = None,
    imagery: Annotated[Optional[list[Path]], typer.Option(help="Local rasters.")] = None,
    imagery_date: Annotated[Optional[str], typer.Option()] = None,
    config: Annotated[Optional[list[str]], typer.Option(help="Model config key=value.")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where <name>.png and <name>.json go.")] = Path("inspect"),
    name: Annotated[str, typer.Option(help="File name stem of the quicklook and report.")] = "patch",
) -> None:
    """Fetch exactly what a model would receive at a point; report ranges, fill and band statistics."""
    from rsembed_db.inspect import inspect_provider_patch
    from rsembed_db.specs.sensor import SensorSpec
    from rsembed_db.specs.spatial import PointBuffer

    sensor = None
    if model is None:
        if not (collection and bands):
            raise SpecError("model", "give --model, or --collection with --bands")
        sensor = SensorSpec(collection, tuple(bands), scale_m=scale_m)
    result = inspect_provider_patch(spatial=PointBuffer(lon, lat, buffer_m),
                                    temporal=temporal_from_options(year, start, end), model=model,
                                    sensor=sensor, source=source, imagery=imagery, imagery_date=imagery_date,
                                    model_config=parse_config(config), out_dir=out_dir, name=name)
    report = result["report"]
    out = Console()
    grid = report["grid"]
    out.print(f"[bold]{result['source']}[/bold] {result['sensor']['collection']} "
              f"{grid['width']}x{grid['height']} px at {grid['scale_m']:g} m ({grid['crs']}); "
              f"valid {report['valid_fraction']:.1%}, NaN {report['nan_fraction']:.1%}", highlight=False)
    table = Table("band", "min", "p2", "mean", "p98", "max", "fill value", box=box.SIMPLE)
    for band, stats in report["band_stats"].items():
        cells = [f"{stats[k]:.4g}" if k in stats else "-" for k in ("min", "p2", "mean", "p98", "max")]
        table.add_row(band, *cells, f"{stats['fill_value_fraction']:.1%}")
    out.print(table)
    for issue in report["issues"]:
        out.print(f"[yellow]issue:[/yellow] {escape(issue)}", highlight=False)
    out.print(f"quicklook {result['artifacts']['quicklook']}, report {result['artifacts']['report']}", highlight=False)
