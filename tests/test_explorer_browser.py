"""The map explorer in a real browser: Playwright drives Debian's headless Chromium
(``apt-get install chromium``; scripts/test.sh installs it) against a uvicorn server on
127.0.0.1 over a demo database ingested here from the bundled scene (2017) and from a
copy of it with a known change (2021).

Every step saves a screenshot (1280x720) in the test's tmp dir and in tests/artifacts/.
Checks read pixels of those screenshots, not only the DOM.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from rsembed_db.service import ServiceSettings
from rsembed_db.service.auth import ApiKeys, key_id
from tests.conftest import REGION, ROOT, SCENE, run_cli
from tests.helpers.live_server import server_thread
from tests.helpers.scenes import CHANGED_BOX, changed_scene

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
VIEWPORT = {"width": 1280, "height": 720}
READ, WRITE = "reader-key", "writer-key"
LAND = (246, 245, 241)  # the offline background under the cells (explorer/src/basemap.js)
NEAR, FAR = (255, 230, 0), (35, 40, 120)  # ends of the distance ramp (explorer/src/colours.js)
MOST_CHANGE = (150, 0, 40)
# The 2021 acquisition covers the east of the example region, where the changed scene differs.
EAST = {"type": "Polygon", "coordinates": [[[12.605, 52.47], [12.67, 52.47], [12.67, 52.505], [12.605, 52.505],
                                            [12.605, 52.47]]]}


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    """The demo database: the example region in 2017, its eastern part again in 2021 from the changed scene."""
    folder = tmp_path_factory.mktemp("explorer")
    db = folder / "demo-db"
    run_cli("ingest", str(REGION), "--model", "mosaiks", "--tiles", "h3:8", "--year", "2017",
            "--imagery", str(SCENE), db=db)
    east = folder / "east.geojson"
    east.write_text(json.dumps(EAST))
    run_cli("ingest", str(east), "--model", "mosaiks", "--tiles", "h3:8", "--year", "2021",
            "--imagery", str(changed_scene(folder)), db=db)
    return db


@pytest.fixture(scope="module")
def server(demo_db) -> Iterator[str]:
    settings = ServiceSettings(db=str(demo_db), api_keys=ApiKeys.parse(f"{READ}:read,{WRITE}:write", "test"))
    with server_thread(settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.exists(), "the browser tests need Debian's chromium: apt-get install -y chromium (scripts/test.sh does)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox", "--enable-unsafe-swiftshader"])
        yield chromium
        chromium.close()


class Session:
    """One browser tab on the explorer: console errors, requests, screenshots, helpers."""

    def __init__(self, browser, base: str, shots: Path, key: str) -> None:
        self.base, self.shots = base, shots
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(f"{base}/explore")
        self.page.wait_for_selector("#key-dialog[open]")  # the server needs a key: the page asks once
        self.page.fill("#key-input", key)
        self.page.click("#key-dialog button[value=save]")
        self.idle()

    def idle(self) -> None:
        self.page.wait_for_function("window.rsembedExplorer && rsembedExplorer.state.loaded && !rsembedExplorer.busy()"
                                    " && rsembedExplorer.map.loaded()", timeout=60_000)
        self.page.mouse.move(2, 715)  # no tooltip over the map
        self.page.wait_for_timeout(700)  # a few frames for deck.gl

    def state(self, expression: str):
        return self.page.evaluate(f"() => {{ const s = rsembedExplorer.state; return {expression}; }}")

    def screen(self, lon: float, lat: float) -> tuple[float, float]:
        return tuple(self.page.evaluate("""([lon, lat]) => { const m = rsembedExplorer.map; const p = m.project([lon, lat]);
            const r = m.getContainer().getBoundingClientRect(); return [p.x + r.left, p.y + r.top]; }""", [lon, lat]))

    def click(self, place: dict, modifier: str | None = None) -> None:
        x, y = self.screen(place["lon"], place["lat"])
        if modifier:
            self.page.keyboard.down(modifier)
        self.page.mouse.click(x, y)
        if modifier:
            self.page.keyboard.up(modifier)

    def shot(self, name: str) -> Image.Image:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path))
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(path, ARTIFACTS / path.name)
        return Image.open(path).convert("RGB")

    def listed(self) -> list[str]:
        return self.page.eval_on_selector_all("#results tbody tr", "rows => rows.map(r => r.dataset.id)")

    def close(self, allowed_errors: tuple[str, ...] = ()) -> None:
        errors = [e for e in self.errors if not any(a in e for a in allowed_errors)]
        self.context.close()
        assert errors == [], errors
        outside = [u for u in self.requests if not u.startswith((self.base, "data:", "blob:"))]
        assert outside == [], outside  # nothing from a CDN or any other host


@pytest.fixture
def session(browser, server, tmp_path) -> Iterator[Session]:
    opened = Session(browser, server, tmp_path, WRITE)
    yield opened
    opened.close()


def api(server: str, method: str, path: str, key: str = READ, **kwargs):
    answer = httpx.request(method, server + path, headers={"X-API-Key": key}, timeout=60, **kwargs)
    assert answer.status_code == 200, answer.text
    return answer.json()


def blended(rgb, alpha: int, under=LAND) -> tuple[int, ...]:
    return tuple(round(c * alpha / 255 + u * (1 - alpha / 255)) for c, u in zip(rgb, under))


def close_to(pixel, expected, tolerance: int = 14) -> bool:
    return all(abs(int(p) - int(e)) <= tolerance for p, e in zip(pixel, expected))


def view_cells(server: str, session: Session) -> list[dict]:
    """The cells the page asked for, as /v1/cells answers the same query."""
    query = session.state("s.cellsQuery")
    return [f["properties"] for f in api(server, "GET", "/v1/cells", params=query)["features"]]


def middle_cell(cells: list[dict]) -> dict:
    lon = sum(c["lon"] for c in cells) / len(cells)
    lat = sum(c["lat"] for c in cells) / len(cells)
    return min(cells, key=lambda c: (c["lon"] - lon) ** 2 + (c["lat"] - lat) ** 2)


def test_page_loads_and_draws_the_cells_in_their_embedding_colours(session, server):
    assert session.page.evaluate("sessionStorage.getItem('rsembed-api-key')") == WRITE
    assert session.page.input_value("#window") == "year:2017"  # the year with most rows
    assert session.page.is_hidden("#text-search")  # mosaiks has no text tower
    cells = view_cells(server, session)
    assert len(cells) == 54 and session.state("s.cells.length") == 54
    image = session.shot("1-cells")
    # Pixels at each cell's centre are its PCA colour (fill alpha 235 over the land colour).
    matches = [close_to(image.getpixel(tuple(map(int, session.screen(c["lon"], c["lat"])))), blended(c["color"], 235))
               for c in cells]
    assert sum(matches) >= 0.9 * len(cells), f"{sum(matches)} of {len(cells)} cells drawn in their colour"
    map_area = image.crop((360, 20, 1220, 680))
    assert len(map_area.getcolors(maxcolors=1 << 20)) > 40  # many distinct colours, not a blank map
    session.page.reload()  # the key is kept for this tab: no dialog again
    session.idle()
    assert not session.page.is_visible("#key-dialog") and session.state("s.cells.length") == 54


def test_click_shows_the_k_nearest_like_the_search_api(session, server):
    cells = view_cells(server, session)
    query = middle_cell(cells)
    session.click(query)
    session.page.wait_for_selector("#results tbody tr")
    session.idle()
    expected = api(server, "POST", "/v1/search", json={"table": "mosaiks", "key": query["key"], "k": 10,
                                                        "filters": {"year": 2017}})["results"]
    assert session.listed() == [r["h3"] for r in expected]
    image = session.shot("2-similar")
    nearest, farthest = expected[0], expected[-1]
    assert close_to(image.getpixel(tuple(map(int, session.screen(nearest["lon"], nearest["lat"])))), NEAR)
    assert close_to(image.getpixel(tuple(map(int, session.screen(farthest["lon"], farthest["lat"])))), FAR)
    legend = session.page.text_content("#legend")
    assert "near" in legend and "far" in legend

    # The k slider and the distance threshold.
    session.page.eval_on_selector("#k", "el => { el.value = 5; el.dispatchEvent(new Event('input')); "
                                        "el.dispatchEvent(new Event('change')); }")
    session.page.wait_for_function("document.querySelectorAll('#results tbody tr').length === 5")
    session.idle()
    assert session.listed() == [r["h3"] for r in expected[:5]]
    session.page.check("#use-threshold")
    session.page.fill("#threshold", str(expected[2]["distance"]))
    session.page.dispatch_event("#threshold", "change")
    session.page.wait_for_function("document.querySelectorAll('#results tbody tr').length === 3")
    assert session.listed() == [r["h3"] for r in expected[:3]]

    # A list row flies the map there.
    session.page.click(f"#results tbody tr[data-id='{expected[2]['h3']}']")
    session.page.wait_for_timeout(2500)
    centre = session.page.evaluate("rsembedExplorer.map.getCenter().toArray()")
    assert centre == pytest.approx([expected[2]["lon"], expected[2]["lat"]], abs=1e-4)


def test_positive_and_negative_examples_rerank_and_persist(browser, server, session):
    cells = view_cells(server, session)
    query = middle_cell(cells)
    session.click(query)
    session.page.wait_for_selector("#results tbody tr")
    session.idle()
    single = session.listed()
    set_name = "pytest-examples"
    session.page.fill("#label-set", set_name)
    session.page.dispatch_event("#label-set", "change")
    session.idle()
    by_h3 = {c["h3"]: c for c in cells}
    positives = [by_h3[single[-1]], by_h3[single[-2]]]  # the far end of the first ranking
    negative = by_h3[single[0]]
    # Marking by modifier key (Shift: positive) and by the toolbar's mark buttons.
    marks = [(positives[0], "Shift", None), (positives[1], None, "positive"), (negative, None, "negative")]
    for place, modifier, button in marks:
        if button:
            session.page.click(f"[data-mark={button}]")
        session.click(place, modifier)
        session.page.wait_for_function(f"document.getElementById('status').textContent.includes('{place['h3']}')")
    session.page.click("[data-mark=inspect]")
    assert session.page.text_content("#example-counts") == "2 pos. · 1 neg."
    session.page.click("#search-examples")
    session.page.wait_for_function("document.getElementById('status').textContent.includes('examples')")
    session.idle()
    body = {"table": "mosaiks", "positives": [p["key"] for p in positives], "negatives": [negative["key"]], "k": 10,
            "filters": {"year": 2017}}
    expected = [r["h3"] for r in api(server, "POST", "/v1/search", json=body)["results"]]
    assert session.listed() == expected and expected != single
    image = session.shot("3-examples")
    assert close_to(image.getpixel(tuple(map(int, session.screen(*_lonlat(cells, expected[0]))))), NEAR)

    saved = api(server, "GET", f"/v1/labels/{set_name}")
    assert saved["table"] == "mosaiks"
    assert sorted((x["key"], x["label"]) for x in saved["labels"]) == sorted(
        [(p["key"], "positive") for p in positives] + [(negative["key"], "negative")])
    assert {x["who"] for x in saved["labels"]} == {key_id(WRITE)}

    # A new tab with the same set name finds the examples again.
    again = Session(browser, server, session.shots, WRITE)
    again.page.fill("#label-set", set_name)
    again.page.dispatch_event("#label-set", "change")
    again.page.wait_for_function("document.getElementById('example-counts').textContent === '2 pos. · 1 neg.'")
    again.close()

    # A read key can search but not save: the page says so and the set is unchanged.
    reader = Session(browser, server, session.shots, READ)
    reader.page.fill("#label-set", set_name)
    reader.page.dispatch_event("#label-set", "change")
    reader.idle()
    reader.click(by_h3[single[3]], "Shift")
    reader.page.wait_for_function("document.getElementById('status').textContent.includes('not saved')")
    assert "write" in reader.page.text_content("#status")
    reader.close(allowed_errors=("status of 403",))
    assert len(api(server, "GET", f"/v1/labels/{set_name}")["labels"]) == 3


def _lonlat(cells: list[dict], h3: str) -> tuple[float, float]:
    cell = next(c for c in cells if c["h3"] == h3)
    return cell["lon"], cell["lat"]


def test_change_view_colours_cells_by_their_change(session, server):
    session.page.click("#mode-change")
    session.page.wait_for_function("rsembedExplorer.state.change.length > 0")
    session.idle()
    body = session.state("s.lastChange")
    assert body["from_year"] == 2017 and body["to_year"] == 2021
    expected = api(server, "POST", "/v1/change", json=body)["features"]
    assert len(expected) >= 10
    assert session.listed()[:10] == [f["properties"]["h3"] for f in expected[:10]]
    image = session.shot("4-change")
    top = expected[0]["properties"]
    assert close_to(image.getpixel(tuple(map(int, session.screen(top["lon"], top["lat"])))), blended(MOST_CHANGE, 235))
    # The change lies where the scene was altered; well outside it the two years agree exactly.
    west, south, east, north = CHANGED_BOX
    assert west <= top["lon"] <= east and south <= top["lat"] <= north and top["distance"] > 0.05
    outside = [f["properties"]["distance"] for f in expected if f["properties"]["lon"] < west - 0.006]
    assert outside and max(outside) < 1e-6
    assert "2017 \u2192 2021" in session.page.text_content("#legend")


def test_search_filters_polygon_h3_parent_and_view(session, server):
    cells = view_cells(server, session)
    query = middle_cell(cells)
    session.page.click("#filters summary")
    # A polygon drawn around the western half of the cells.
    lons = sorted(c["lon"] for c in cells)
    lats = sorted(c["lat"] for c in cells)
    west, east, south, north = lons[0] - 0.003, (lons[0] + lons[-1]) / 2 + 0.002, lats[0] - 0.003, lats[-1] + 0.003
    session.page.click("#draw")
    for lon, lat in ((west, south), (east, south), (east, north), (west, north)):
        x, y = session.screen(lon, lat)
        session.page.mouse.click(x, y)
    session.page.click("#draw")  # finish
    polygon = session.state("{type: 'Polygon', coordinates: [s.draw.points]}")
    assert len(polygon["coordinates"][0]) == 5 and session.state("s.draw.closed")
    session.click(query)
    session.page.wait_for_selector("#results tbody tr")
    session.idle()
    body = {"table": "mosaiks", "key": query["key"], "k": 10, "filters": {"year": 2017, "polygon": polygon}}
    expected = api(server, "POST", "/v1/search", json=body)["results"]
    assert session.listed() == [r["h3"] for r in expected]
    assert all(r["lon"] <= east + 1e-9 for r in expected)
    session.shot("5-polygon")
    session.page.click("#clear-polygon")

    # An H3 parent (the query cell's resolution-7 parent: 7 cells of resolution 8).
    import h3

    parent = h3.cell_to_parent(query["h3"], 7)
    session.page.fill("#h3-parent", parent)
    session.click(query)
    session.page.wait_for_function(f"rsembedExplorer.state.lastSearch.filters.h3_parent === '{parent}'")
    session.idle()
    expected = api(server, "POST", "/v1/search", json={"table": "mosaiks", "key": query["key"], "k": 10,
                                                        "filters": {"year": 2017, "h3_parent": parent}})["results"]
    assert session.listed() == [r["h3"] for r in expected] and 0 < len(expected) <= 6
    assert all(h3.cell_to_parent(r["h3"], 7) == parent for r in expected)
    session.page.fill("#h3-parent", "not-a-cell")
    session.click(query)
    session.page.wait_for_function("document.getElementById('status').dataset.kind === 'error'")
    assert "filters.h3_parent" in session.page.text_content("#status")
    session.page.fill("#h3-parent", "")

    # Only the current view: zoom in, then the bbox of the view is a filter.
    session.page.evaluate(f"rsembedExplorer.map.jumpTo({{center: [{query['lon']}, {query['lat']}], zoom: 14}})")
    session.idle()
    session.page.check("#in-view")
    session.click(query)
    session.page.wait_for_function("rsembedExplorer.state.lastSearch.filters.bbox !== undefined")
    session.idle()
    bbox = session.state("s.lastSearch.filters.bbox")
    expected = api(server, "POST", "/v1/search", json={"table": "mosaiks", "key": query["key"], "k": 10,
                                                        "filters": {"year": 2017, "bbox": bbox}})["results"]
    assert session.listed() == [r["h3"] for r in expected] and len(expected) < 10
    assert all(bbox[0] <= r["lon"] <= bbox[2] and bbox[1] <= r["lat"] <= bbox[3] for r in expected)


def test_bbox_tiles_are_drawn_as_their_polygons(session, server, demo_db):
    """A table of bbox tiles (no H3 ids): drawn from the footprints /v1/cells returns."""
    import numpy as np

    from rsembed_db.producers.records import EmbeddingRecord
    from rsembed_db.specs import BBox, EmbeddingRequest, TemporalSpec
    from rsembed_db.store import EmbeddingStore

    rng = np.random.default_rng(3)
    boxes = [BBox(12.55 + 0.02 * i, 52.47 + 0.012 * j, 12.568 + 0.02 * i, 52.481 + 0.012 * j)
             for i in range(5) for j in range(3)]
    records = [EmbeddingRecord(EmbeddingRequest("tiles", box, TemporalSpec.year(2020)), f"tile-{n}",
                               rng.normal(size=16).astype(np.float32)) for n, box in enumerate(boxes)]
    EmbeddingStore(demo_db).write("tiles", records, 16)
    session.page.reload()  # the table list is read when the page loads
    session.idle()
    session.page.select_option("#table", "tiles")
    session.page.wait_for_function("rsembedExplorer.state.table.name === 'tiles' && rsembedExplorer.state.cells.length"
                                   " === 15")
    session.idle()
    cells = view_cells(server, session)
    assert len(cells) == 15 and all(c["h3"] is None for c in cells)
    image = session.shot("6-tiles")
    for cell in cells:
        pixel = image.getpixel(tuple(map(int, session.screen(cell["lon"], cell["lat"]))))
        assert close_to(pixel, blended(cell["color"], 235)), (cell["tile_id"], pixel, cell["color"])
    session.click(cells[7])
    session.page.wait_for_selector("#results tbody tr")
    session.idle()
    expected = api(server, "POST", "/v1/search", json={"table": "tiles", "key": cells[7]["key"], "k": 10,
                                                        "filters": {"year": 2020}})["results"]
    assert session.listed() == [r["tile_id"] for r in expected]
