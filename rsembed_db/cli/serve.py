"""``rsembed-db serve``: the HTTP service (FastAPI on uvicorn, one process)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Optional

import typer

from rsembed_db.errors import SpecError


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    db: Annotated[Optional[str], typer.Option(help="Database path or URI.", envvar="RSEMBED_DB")] = None,
    imagery: Annotated[Optional[list[Path]], typer.Option(
        help="Rasters for on-the-fly models (file(s) or directory); default $RSEMBED_IMAGERY.")] = None,
    imagery_date: Annotated[Optional[str], typer.Option(help="Acquisition date for scenes without one.")] = None,
    source: Annotated[Optional[str], typer.Option(
        help="Imagery source instead of --imagery: local:<path>, gee[:<project>], stac:<url>[#collection]; "
             "default $RSEMBED_SOURCE.")] = None,
    public_reads: Annotated[bool, typer.Option(help="With API keys configured, let reads through without a key.")] = False,
    max_body_bytes: Annotated[Optional[int], typer.Option(help="Largest request body (bytes).")] = None,
    max_region_tiles: Annotated[Optional[int], typer.Option(help="Largest ingest plan (tiles).")] = None,
    basemap_style: Annotated[Optional[str], typer.Option(
        help="MapLibre style URL drawn under the explorer's cells (default: bundled country outlines, offline); "
             "default $RSEMBED_BASEMAP_STYLE.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API (OpenAPI at /docs) and the map explorer (/explore). API keys: RSEMBED_API_KEYS="key1:read,key2:write"
    or RSEMBED_API_KEYS_FILE; without keys the service is open and binds to loopback only."""
    import uvicorn

    from rsembed_db.service import ServiceSettings, create_app

    settings = ServiceSettings.from_env(
        db=db, imagery=tuple(map(str, imagery)) if imagery else None, imagery_date=imagery_date, source=source,
        public_reads=public_reads or None, max_body_bytes=max_body_bytes, max_region_tiles=max_region_tiles,
        basemap_style=basemap_style)
    if not settings.api_keys and not _loopback(host):
        raise SpecError("host", f"refusing to serve without API keys on {host}: set RSEMBED_API_KEYS "
                                "(e.g. \"k1:read,k2:write\") or RSEMBED_API_KEYS_FILE, or bind to 127.0.0.1")
    uvicorn.run(create_app(settings), host=host, port=port, workers=1, log_level=log_level)
