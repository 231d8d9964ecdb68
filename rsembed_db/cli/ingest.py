"""``rsembed-db ingest``: a region, a model and a window into the store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from rsembed_db.cli.errors import INGEST_ALL_FAILED, INGEST_SOME_FAILED
from rsembed_db.cli.options import DEFAULT_DB, DbOption, parse_config, temporal_from_options
from rsembed_db.errors import SpecError
from rsembed_db.specs.validate import require_choice

if TYPE_CHECKING:
    from rsembed_db.ingest.engine import IngestSummary

console = Console(stderr=True)


def ingest(
    region: Annotated[Path, typer.Argument(help="GeoJSON region (Feature, FeatureCollection or Polygon geometry).")],
    model: Annotated[str, typer.Option(help="Model name (see `rsembed-db models`).")],
    tiles: Annotated[str, typer.Option(help="Tiler: h3:<res> or grid:<size_m>.")] = "h3:8",
    cover: Annotated[str, typer.Option(help="h3 tiles: 'centre' (cell centre in region) or 'full' (cover region).")] = "centre",
    year: Annotated[Optional[int], typer.Option(help="Calendar year window [Y-01-01, Y+1-01-01).")] = None,
    start: Annotated[Optional[str], typer.Option(help="Window start (inclusive), YYYY-MM-DD.")] = None,
    end: Annotated[Optional[str], typer.Option(help="Window end (exclusive), YYYY-MM-DD.")] = None,
    imagery: Annotated[Optional[list[Path]], typer.Option(help="Local rasters: file(s) or directory.")] = None,
    imagery_date: Annotated[Optional[str], typer.Option(help="Acquisition date for scenes without one.")] = None,
    source: Annotated[Optional[str], typer.Option(
        help="Imagery source: local:<path>, gee[:<project>] or stac:<url>[#collection] "
             "(default: --imagery, else $RSEMBED_SOURCE).")] = None,
    output: Annotated[str, typer.Option(help="pooled, grid or both (grid/both also keep the (D,H,W) grid).")] = "pooled",
    pooling: Annotated[str, typer.Option(help="Pooling of the vector: mean or max.")] = "mean",
    config: Annotated[Optional[list[str]], typer.Option(help="Model config key=value (repeatable).")] = None,
    db: DbOption = DEFAULT_DB,
    max_tiles: Annotated[int, typer.Option(help="Refuse plans with more tiles than this.")] = 100_000,
    batch_size: Annotated[int, typer.Option(help="Chips per model call.")] = 16,
    workers: Annotated[Optional[int], typer.Option(
        help="Fetch threads (default: 4; local imagery: one per core beyond the first, 1 to 4).")] = None,
    commit_every: Annotated[Optional[int], typer.Option(
        help="Rows per atomic commit (default: 64 for models, 16384 for precomputed products).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Plan and count only; compute nothing.")] = False,
    vector_dtype: Annotated[Optional[str], typer.Option(
        help="float32 or float16: how a new table stores vectors (default: float16 for the int8 products "
             "tessera and gse, float32 otherwise); an existing table keeps its own.")] = None,
    input_prep: Annotated[Optional[str], typer.Option(
        help="Fixed-size models: resize, tile or auto (default: tile; resize when a tile fits one model input).")] = None,
    engine: Annotated[str, typer.Option(help="local (this process) or ray (Ray Data; needs the `distributed` extra).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(
        help="--engine ray: the cluster (auto, ray://host:10001, host:6379); default: start a local Ray.")] = None,
    ray_actors: Annotated[Optional[int], typer.Option(help="--engine ray: worker actors (default: the cluster's CPUs).")] = None,
    tiles_per_unit: Annotated[int, typer.Option(help="--engine ray: source tiles per work unit (products).")] = 4,
    requests_per_unit: Annotated[int, typer.Option(help="--engine ray: tiles per work unit (on-the-fly models).")] = 64,
) -> None:
    """Compute and store embeddings for every tile of REGION (resumable, idempotent)."""
    from rsembed_db.ingest.engine import IngestOptions, run_ingest
    from rsembed_db.producers.catalog import is_product, make_producer
    from rsembed_db.specs.output import OutputSpec
    from rsembed_db.store.lance_store import EmbeddingStore
    from rsembed_db.tiling.plan import tile_region
    from rsembed_db.tiling.region import load_region

    require_choice("output", output, ("pooled", "grid", "both"))
    require_choice("engine", engine, ("local", "ray"))
    if engine != "ray" and ray_address is not None:
        raise SpecError("ray-address", "only with --engine ray")
    temporal = temporal_from_options(year, start, end)
    out_spec = OutputSpec.pooled(pooling) if output == "pooled" else OutputSpec.grid(pooling=pooling)
    if is_product(model) and (imagery or source):
        raise SpecError("imagery", f"{model!r} is a precomputed product that reads its own tiles "
                        "(configure it with --config, see docs/products.md); drop --imagery/--source")
    producer = make_producer(model, imagery, imagery_date, parse_config(config), source)
    # Fetch counters of this process's source (a Ray run fetches in its workers).
    fetches = getattr(getattr(producer, "source", None), "stats", None) if engine == "local" else None
    spatials = tile_region(load_region(region), tiles, cover=cover, max_tiles=max_tiles)
    requests = producer.requests(spatials, temporal, out_spec, input_prep=input_prep)
    store = EmbeddingStore(db)
    options = IngestOptions(batch_size=batch_size, workers=workers, commit_every=commit_every,
                            vector_dtype=vector_dtype)
    run = run_ingest
    if engine == "ray":
        run = _ray_runner(model, imagery, imagery_date, parse_config(config), source, ray_address, ray_actors,
                          tiles_per_unit, requests_per_unit)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[fetch]}"), console=console, transient=False) as bar:
        task = bar.add_task(f"{producer.model} {tiles}", total=None, rate="", fetch="")

        def started(todo: int) -> None:
            bar.update(task, total=todo)

        def advanced(computed: int, failed: int) -> None:
            bar.advance(task, computed + failed)
            elapsed = bar.tasks[task].elapsed or 0
            done = bar.tasks[task].completed
            counts = fetches.snapshot() if fetches is not None else None
            bar.update(task, rate=f"{done / elapsed:.1f}/s" if elapsed else "", fetch=_fetch_text(counts))

        summary = run(store, producer, requests, options, dry_run=dry_run, on_start=started, on_progress=advanced)
    print_summary(summary, db, dry_run, fetches)
    if summary.failed:  # what succeeded is committed; the exit code says that not all did
        raise typer.Exit(INGEST_ALL_FAILED if not summary.computed else INGEST_SOME_FAILED)


def _ray_runner(model, imagery, imagery_date, config, source, address, actors, tiles_per_unit, requests_per_unit):
    """``run_ingest``'s signature over ``run_ingest_ray`` with these options."""
    try:
        import ray  # noqa: F401

        from rsembed_db.ingest.distributed import ProducerSpec, RayOptions, run_ingest_ray
    except ImportError as exc:
        raise SpecError("engine", f"--engine ray needs Ray: pip install 'rsembed-db[distributed]' ({exc})") from None
    spec = ProducerSpec.of(model, imagery, imagery_date, config, source)
    ray_options = RayOptions(address, actors, tiles_per_unit, requests_per_unit)

    def run(store, producer, requests, options, **kwargs):
        return run_ingest_ray(store, producer, spec, requests, options, ray_options, **kwargs)
    return run


def _fetch_text(counts: dict[str, int] | None) -> str:
    """Compact fetch counters for the progress line (failures and retries only when any)."""
    if not counts:
        return ""
    text = f"fetched {counts['done'] + counts['cached']}/{counts['planned']}"
    return text + "".join(f" {counts[name]} {name}" for name in ("failed", "retries") if counts[name])


def print_summary(summary: IngestSummary, db: str, dry_run: bool, fetches: object = None) -> None:
    out = Console()
    engine = f", engine {summary.engine}" if summary.engine != "local" else ""
    out.print(f"[bold]ingest {'plan' if dry_run else 'summary'}[/bold]: {escape(summary.model)} -> {escape(db)} "
              f"(table {summary.table}{engine})", highlight=False)
    table = Table(show_header=False, box=box.SIMPLE)
    to_compute = summary.planned - summary.already_stored
    rows: list[tuple[str, object]] = [("planned tiles", summary.planned), ("already stored", summary.already_stored)]
    rows += [("to compute", to_compute)] if dry_run else [
        ("computed", summary.computed), ("failed", summary.failed),
        ("seconds", f"{summary.seconds:.2f}"), ("tiles/s", f"{summary.tiles_per_second:.1f}")]
    if fetches is not None and not dry_run and summary.engine == "local":
        rows.append(("imagery fetches", str(fetches)))
    if summary.timings and not dry_run:
        rows.append(("time spent", ", ".join(f"{name.removesuffix('_s')} {value:.2f}s"
                                             for name, value in summary.timings.items())))
    for name, value in rows:
        table.add_row(name, str(value))
    out.print(table)
    if summary.failures:
        out.print(f"[bold red]{summary.failed} failed tiles[/bold red] (logged; retried on the next run; "
                  "see `rsembed-db failures`)")
        failures = Table("tile", "error", box=box.SIMPLE)
        for tile, error in summary.failures[:20]:
            failures.add_row(tile, Text(error))  # plain text: errors may hold [brackets]
        out.print(failures)
