"""The map explorer: ``/explore`` (a static page bundled in ``service/explorer``) and ``/``.

The page and its assets need no key (they hold no data); everything it shows comes from
the public HTTP API with the key the user enters. ``basemap_style`` is handed to the page
in a JSON script element, with ``key_required`` (reads need a key: the page asks for one first).
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from rsembed_db import __version__
from rsembed_db.service.context import Context

ASSETS = Path(__file__).resolve().parent / "explorer"
CONFIG_SLOT = '<script id="rsembed-config" type="application/json">{}</script>'
router = APIRouter(tags=["explore"])

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rsembed-db</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;margin:3rem auto;max-width:40rem;color:#222}}a{{color:#0b63c5}}</style>
</head><body><h1>rsembed-db {version}</h1>
<p>An embedding database for Earth observation.</p>
<ul><li><a href="/explore">Map explorer</a>: stored cells on a map, similarity search, labels, change</li>
<li><a href="/docs">API documentation</a> (<a href="/openapi.json">OpenAPI schema</a>)</li>
<li><a href="/healthz">Health</a></li></ul></body></html>"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index() -> str:
    return INDEX.format(version=__version__)


@router.get("/explore", response_class=HTMLResponse, summary="The map explorer (HTML page)")
def explore(ctx: Context) -> str:
    page = (ASSETS / "index.html").read_text(encoding="utf-8")
    settings = ctx.settings
    config = json.dumps({"basemap_style": settings.basemap_style, "version": __version__,
                         "key_required": bool(settings.api_keys) and not settings.public_reads})
    return page.replace(CONFIG_SLOT, CONFIG_SLOT.replace("{}", config.replace("<", "\\u003c")))


def mount_assets(app: FastAPI) -> None:
    """Serve the bundle (JS, CSS, MapLibre's worker, country outlines, licences) at ``/explore/static``."""
    app.mount("/explore/static", StaticFiles(directory=ASSETS), name="explorer-assets")
