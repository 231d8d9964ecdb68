"""The explorer's endpoints in-process: /v1/cells (paging, caps, PCA colours), /v1/labels
(CRUD with scopes, GeoJSON), /v1/change, table summaries, the page and its assets, the
CLI commands `labels` and `change`, and the wheel carrying the bundle."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rsembed_db.cli.app import app
from rsembed_db.producers.records import EmbeddingRecord
from rsembed_db.query.pca import PcaColours
from rsembed_db.service import ServiceSettings, create_app
from rsembed_db.service.auth import ApiKeys, key_id
from rsembed_db.specs import EmbeddingRequest, H3Cell, TemporalSpec
from rsembed_db.store import EmbeddingStore
from tests.conftest import ROOT, run_cli
from tests.store_rows import CENTRE, toy_store

KEYS = ApiKeys.parse("r1:read,w1:write", "test")
READ, WRITE = {"X-API-Key": "r1"}, {"X-API-Key": "w1"}
ASSETS = ROOT / "rsembed_db" / "service" / "explorer"


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "db")


def client(db: str, **settings) -> TestClient:
    return TestClient(create_app(ServiceSettings(db=db, api_keys=KEYS, **settings)), raise_server_exceptions=False)


def two_years(db: str, rings: int = 3) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Table ``toy``: the cells of a disk in 2017 and 2021 with random 8-d vectors;
    returns {cell: vector} per year."""
    rng = np.random.default_rng(7)
    cells = sorted(h3.grid_disk(CENTRE, rings))
    years: list[dict[str, np.ndarray]] = []
    records = []
    for year in (2017, 2021):
        vectors = {c: rng.normal(size=8).astype(np.float32) for c in cells}
        years.append(vectors)
        records += [EmbeddingRecord(EmbeddingRequest("toy", H3Cell(c), TemporalSpec.year(year)), c, v)
                    for c, v in vectors.items()]
    EmbeddingStore(db).write("toy", records, 8)
    return years[0], years[1]


# -- PCA colours ---------------------------------------------------------------------------
def test_pca_colours_follow_the_principal_axes():
    rng = np.random.default_rng(0)
    coords = rng.uniform(-1, 1, size=(200, 3)) * [3.0, 2.0, 1.0]  # variance falls R > G > B
    base, *basis = np.linalg.qr(rng.normal(size=(16, 4)))[0].T  # 4 orthonormal directions in 16-d
    vectors = 100 * base + coords @ np.array(basis)  # far out along another axis: unit scaling barely bends it
    pca = PcaColours.fit(vectors)
    rgb = pca.colours(vectors).astype(int)
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    for channel in range(3):  # each channel orders the points as their coordinate (up to sign; ends clipped)
        rho = np.corrcoef(rank(rgb[:, channel]), rank(coords[:, channel]))[0, 1]
        assert abs(rho) > 0.99, (channel, rho)
    assert rgb.min(axis=0).tolist() == [0, 0, 0] and rgb.max(axis=0).tolist() == [255, 255, 255]  # 2-98 % clip
    assert pca.explained[0] > pca.explained[1] > pca.explained[2]
    # Signs are fixed: the largest loading of every component is positive, so refits agree.
    assert all(c[np.abs(c).argmax()] > 0 for c in pca.components)
    assert np.array_equal(PcaColours.fit(vectors[::-1]).colours(vectors), pca.colours(vectors))
    assert PcaColours.fit(vectors[:1]).colours(vectors[:2]).tolist() == [[128] * 3] * 2  # too few rows: grey


# -- /v1/cells --------------------------------------------------------------------------------
def test_cells_pages_are_stable_and_coloured_by_one_fit(db):
    before, _ = two_years(db)
    with client(db, max_cells=15) as c:
        whole = c.get("/v1/cells", params={"table": "toy", "year": 2017, "limit": 15}, headers=READ)
        assert whole.status_code == 200 and whole.headers["content-type"] == "application/geo+json"
        assert whole.headers["X-Total-Count"] == "37" and whole.headers["X-Next-Offset"] == "15"
        pages, offset = [], 0
        while offset is not None:
            page = c.get("/v1/cells", params={"table": "toy", "year": 2017, "offset": offset}, headers=READ).json()
            pages += page["features"]
            offset = page["properties"]["next_offset"]
        assert page["properties"]["total"] == 37 and page["properties"]["pca"]["fit_rows"] == 37
        props = [f["properties"] for f in pages]
        assert len(props) == 37 and [p["key"] for p in props] == sorted(p["key"] for p in props)
        assert {p["h3"] for p in props} == set(before) and all(p["year"] == 2017 for p in props)
        # Every page is coloured by the fit over the whole view: same as fitting here.
        vectors = np.stack([before[p["h3"]] for p in props])
        assert [p["color"] for p in props] == PcaColours.fit(vectors).colours(vectors).tolist()
        geometry = pages[0]["geometry"]
        assert geometry["type"] == "Polygon" and len(geometry["coordinates"][0]) == 7  # the hexagon

        centre = h3.cell_to_latlng(CENTRE)
        box = [centre[1] - 0.01, centre[0] - 0.006, centre[1] + 0.01, centre[0] + 0.006]
        inside = c.get("/v1/cells", params={"table": "toy", "year": 2021, "bbox": ",".join(map(str, box))},
                       headers=READ).json()["features"]
        assert 0 < len(inside) < 37
        assert all(box[0] <= f["properties"]["lon"] <= box[2] and box[1] <= f["properties"]["lat"] <= box[3]
                   for f in inside)

        arrow = c.get("/v1/cells", params={"table": "toy", "year": 2017, "limit": 5},
                      headers={**READ, "Accept": "application/vnd.apache.arrow.stream"})
        rows = pa.ipc.open_stream(io.BytesIO(arrow.content)).read_all()
        assert rows.num_rows == 5 and rows.schema.field("h3").type == pa.string()
        assert rows["h3"].to_pylist() == [p["h3"] for p in props[:5]]
        assert [[r, g, b] for r, g, b in zip(rows["r"].to_pylist(), rows["g"].to_pylist(), rows["b"].to_pylist())] \
            == [p["color"] for p in props[:5]]


def test_cells_caps_and_errors(db):
    two_years(db)
    with client(db, max_cells=10, max_view_rows=50) as c:
        over = c.get("/v1/cells", params={"table": "toy", "limit": 11}, headers=READ)
        assert over.status_code == 422 and over.json()["error"]["field"] == "limit"
        too_big = c.get("/v1/cells", params={"table": "toy"}, headers=READ)  # 74 rows > 50
        assert too_big.status_code == 413 and too_big.json()["error"]["field"] == "bbox"
        assert "zoom in" in too_big.json()["error"]["message"]
        assert c.get("/v1/cells", params={"table": "toy", "year": 2017}, headers=READ).json()["properties"]["total"] == 37
        assert c.get("/v1/cells", params={"table": "nope"}, headers=READ).status_code == 404
        assert c.get("/v1/cells", params={"table": "toy", "bbox": "1,2,3"}, headers=READ).json()["error"]["field"] \
            == "filters.bbox"
        assert c.get("/v1/cells", params={"table": "toy", "offset": -1}, headers=READ).json()["error"]["field"] == "offset"
        assert c.get("/v1/cells", params={"table": "toy"}).status_code == 401


def test_table_summary_lists_windows_years_and_extent(db):
    two_years(db)
    with client(db) as c:
        table = c.get("/v1/tables/toy", headers=READ).json()
    assert table["years"] == [2017, 2021] and table["h3_res"] == [8] and table["spatial_kinds"] == ["h3"]
    assert table["windows"] == [{"start": "2017-01-01", "end": "2018-01-01", "year": 2017, "rows": 37},
                                {"start": "2021-01-01", "end": "2022-01-01", "year": 2021, "rows": 37}]
    lat, lon = h3.cell_to_latlng(CENTRE)
    minlon, minlat, maxlon, maxlat = table["extent"]
    assert minlon < lon < maxlon and minlat < lat < maxlat and maxlon - minlon < 0.2
    assert table["text_search"] is False


# -- /v1/labels ---------------------------------------------------------------------------------
def test_label_sets_crud_with_scopes(db):
    store = toy_store(db, rings=2)
    rows = store.dataset("toy").to_table(columns=["key", "h3"]).sort_by("key").to_pylist()
    keys = [r["key"] for r in rows]
    body = {"table": "toy", "labels": [{"key": keys[0], "label": "positive"}, {"key": keys[1], "label": "negative"}]}
    with client(db) as c:
        assert c.post("/v1/labels/forest", json=body).status_code == 401
        refused = c.post("/v1/labels/forest", json=body, headers=READ)
        assert refused.status_code == 403 and refused.json()["error"]["field"] == "X-API-Key"
        assert c.get("/v1/labels", headers=READ).json() == {"sets": []}

        made = c.post("/v1/labels/forest", json={**body, "who": "ana"}, headers=WRITE)
        assert made.status_code == 200, made.text
        assert made.json()["written"] == 2 and made.json()["positives"] == 1 and made.json()["negatives"] == 1
        listed = c.get("/v1/labels", headers=READ).json()["sets"]
        assert [(s["name"], s["table"], s["count"]) for s in listed] == [("forest", "toy", 2)]

        one = c.get("/v1/labels/forest", headers=READ).json()
        assert one["table"] == "toy" and [(x["key"], x["label"]) for x in one["labels"]] == \
            [(keys[0], "positive"), (keys[1], "negative")]
        assert one["labels"][0]["who"] == f"ana ({key_id('w1')})" and one["labels"][0]["h3"] == h3.int_to_str(rows[0]["h3"])

        # Relabelling updates in place; the set stays one table's.
        c.post("/v1/labels/forest", json={"table": "toy", "labels": [{"key": keys[1], "label": "positive"}]},
               headers=WRITE)
        geo = c.get("/v1/labels/forest.geojson", headers=READ)
        assert geo.headers["content-type"] == "application/geo+json"
        features = geo.json()["features"]
        assert [(f["id"], f["properties"]["label"]) for f in features] == [(keys[0], "positive"), (keys[1], "positive")]
        assert features[1]["properties"]["who"] == key_id("w1") and features[0]["geometry"]["type"] == "Polygon"
        assert geo.json()["properties"] == {"set": "forest", "table": "toy", "positives": 2, "negatives": 0}

        bad = c.post("/v1/labels/forest", json={"table": "toy", "labels": [{"key": "nope", "label": "positive"}]},
                     headers=WRITE)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "labels"
        wrong = c.post("/v1/labels/forest", json={"table": "toy", "labels": [{"key": keys[0], "label": "maybe"}]},
                       headers=WRITE)
        assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "labels[0].label"
        assert c.post("/v1/labels/no.dots", json=body, headers=WRITE).json()["error"]["field"] == "set"
        assert c.get("/v1/labels/nothing", headers=READ).status_code == 404

        assert c.delete(f"/v1/labels/forest/{keys[0]}", headers=READ).status_code == 403
        assert c.delete(f"/v1/labels/forest/{keys[0]}", headers=WRITE).json() == {"removed": 1}
        assert c.delete(f"/v1/labels/forest/{keys[0]}", headers=WRITE).status_code == 404
        assert [x["key"] for x in c.get("/v1/labels/forest", headers=READ).json()["labels"]] == [keys[1]]
        assert c.delete("/v1/labels/forest", headers=WRITE).json() == {"removed": 1}
        assert c.get("/v1/labels", headers=READ).json() == {"sets": []}
    # The labels live in the store's _labels table, not among the model tables.
    assert EmbeddingStore(db).table_names() == ["toy"] and EmbeddingStore(db).has_table("_labels")


def test_a_label_set_keeps_to_one_table(db):
    toy_store(db, rings=1)
    other = toy_store(db, model="other", rings=1)
    key = other.dataset("other").to_table(columns=["key"])["key"][0].as_py()
    toy_key = EmbeddingStore(db).dataset("toy").to_table(columns=["key"])["key"][0].as_py()
    with client(db) as c:
        c.post("/v1/labels/s1", json={"table": "toy", "labels": [{"key": toy_key, "label": "positive"}]}, headers=WRITE)
        mixed = c.post("/v1/labels/s1", json={"table": "other", "labels": [{"key": key, "label": "positive"}]},
                       headers=WRITE)
        assert mixed.status_code == 422 and mixed.json()["error"]["field"] == "table"


def cli(*args: str, db: str) -> str:
    """``rsembed-db ARGS`` in-process (typer's runner); the output, after checking success."""
    result = CliRunner().invoke(app, [*args, "--db", db])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_labels_cli_add_list_export_delete(db, tmp_path):
    toy_store(db, rings=1)
    keys = sorted(EmbeddingStore(db).dataset("toy").to_table(columns=["key"])["key"].to_pylist())
    cli("labels", "add", "wet", "--table", "toy", "--positive", keys[0], "--negative", keys[1], db=db)
    listed = cli("labels", "list", db=db)
    assert "wet" in listed and "toy" in listed
    out = tmp_path / "wet.geojson"
    cli("labels", "export", "wet", "--out", str(out), db=db)
    features = json.loads(out.read_text())["features"]
    assert sorted((f["properties"]["key"], f["properties"]["label"]) for f in features) == \
        [(keys[0], "positive"), (keys[1], "negative")]
    assert features[0]["properties"]["who"].startswith("cli:")
    cli("labels", "delete", "wet", "--key", keys[0], db=db)
    # The installed command, as a user runs it: export to stdout; errors name the field.
    exported = json.loads(run_cli("labels", "export", "wet", db=Path(db)).stdout)
    assert [f["properties"]["label"] for f in exported["features"]] == ["negative"]
    cli("labels", "delete", "wet", db=db)
    missing = run_cli("labels", "export", "wet", db=Path(db), check=False)
    assert missing.returncode == 3 and "error: set:" in missing.stderr
    bad = CliRunner().invoke(app, ["labels", "add", "x", "--table", "toy", "--positive", "nokey", "--db", db])
    assert bad.exception is not None and bad.exception.field == "labels"


# -- /v1/change -----------------------------------------------------------------------------
def _cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_change_between_two_years(db):
    before, after = two_years(db)
    expected = sorted(((_cosine_distance(before[c], after[c]), c) for c in before), key=lambda x: (-x[0], x[1]))
    with client(db) as c:
        answer = c.post("/v1/change", json={"table": "toy", "from_year": 2017, "to_year": 2021}, headers=READ)
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/geo+json"
        features = answer.json()["features"]
        assert [f["properties"]["h3"] for f in features] == [cell for _, cell in expected]
        np.testing.assert_allclose([f["properties"]["distance"] for f in features], [d for d, _ in expected], atol=1e-6)
        first = features[0]["properties"]
        assert first["start_from"] == "2017-01-01" and first["end_to"] == "2022-01-01"
        assert answer.json()["properties"]["max_distance"] == pytest.approx(expected[0][0], abs=1e-6)

        paged = c.post("/v1/change", json={"table": "toy", "from_year": 2017, "to_year": 2021, "limit": 10, "offset": 30},
                       headers=READ).json()
        assert [f["properties"]["h3"] for f in paged["features"]] == [cell for _, cell in expected[30:]]
        assert paged["properties"]["total"] == 37 and paged["properties"]["next_offset"] is None

        parquet = c.post("/v1/change", json={"table": "toy", "from_year": 2017, "to_year": 2021},
                         headers={**READ, "Accept": "application/vnd.apache.parquet"})
        table = pq.read_table(io.BytesIO(parquet.content))
        assert table.num_rows == 37 and json.loads(table.schema.metadata[b"geo"])["primary_column"] == "geometry"

        same = c.post("/v1/change", json={"table": "toy", "from_year": 2017, "to_year": 2017}, headers=READ)
        assert same.status_code == 422 and same.json()["error"]["field"] == "to_year"
        timed = c.post("/v1/change", json={"table": "toy", "from_year": 2017, "to_year": 2021,
                                           "filters": {"year": 2017}}, headers=READ)
        assert timed.json()["error"]["field"] == "filters.year"
        none = c.post("/v1/change", json={"table": "toy", "from_year": 2017, "to_year": 2019}, headers=READ).json()
        assert none["features"] == [] and none["properties"]["total"] == 0
        assert c.post("/v1/change", json={"table": "toy", "from_year": 2017, "to_year": 2021}).status_code == 401


def test_change_cli_geojson_and_geoparquet(db, tmp_path):
    import geopandas

    before, after = two_years(db, rings=1)
    out = run_cli("change", "--table", "toy", "--from-year", "2017", "--to-year", "2021", "--format", "geojson",
                  db=Path(db)).stdout
    features = json.loads(out)["features"]
    assert len(features) == 7
    by_cell = {f["properties"]["h3"]: f["properties"]["distance"] for f in features}
    assert by_cell == pytest.approx({c: _cosine_distance(before[c], after[c]) for c in before}, abs=1e-6)
    path = tmp_path / "change.parquet"
    cli("change", "--table", "toy", "--from-year", "2017", "--to-year", "2021", "--format", "parquet",
        "--out", str(path), db=db)
    frame = geopandas.read_parquet(path)
    assert len(frame) == 7 and frame.crs.to_epsg() == 4326 and set(frame["h3"]) == set(before)
    bad = CliRunner().invoke(app, ["change", "--table", "toy", "--from-year", "2017", "--to-year", "2021",
                                   "--format", "parquet", "--db", db])
    assert bad.exception is not None and bad.exception.field == "out"


def test_text_search_needs_a_text_tower(db):
    toy_store(db)
    with client(db) as c:
        answer = c.post("/v1/search", json={"table": "toy", "text": "forest"}, headers=READ)
        assert answer.status_code == 422 and answer.json()["error"]["field"] == "text"


# -- the page and its assets ------------------------------------------------------------------
def test_explore_page_and_assets_are_served_without_a_key(db):
    with client(db, basemap_style="https://example.org/style.json?a=1&b=</script>") as c:
        home = c.get("/")
        assert home.status_code == 200 and 'href="/explore"' in home.text
        page = c.get("/explore")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        config = page.text.split('<script id="rsembed-config" type="application/json">')[1].split("</script>")[0]
        assert json.loads(config)["basemap_style"] == "https://example.org/style.json?a=1&b=</script>"
        assert 'src="/explore/static/explorer.js"' in page.text and "cdn" not in page.text.lower()
        script = c.get("/explore/static/explorer.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert "maplibre-gl-worker.js" in script.text  # setWorkerUrl points beside the bundle
        worker = c.get("/explore/static/maplibre-gl-worker.js")
        assert worker.status_code == 200 and "javascript" in worker.headers["content-type"]
        assert c.get("/explore/static/explorer.css").status_code == 200
        assert c.get("/explore/static/countries.geojson").json()["type"] == "FeatureCollection"
        assert "Natural Earth" in c.get("/explore/static/THIRD_PARTY_LICENSES.txt").text
        assert c.get("/explore/static/../app.py").status_code == 404
    with client(db) as c:
        assert json.loads(c.get("/explore").text.split('type="application/json">')[1].split("<")[0])["basemap_style"] is None


def test_page_references_only_its_own_assets():
    """The page names no outside URL (the browser test checks every request a session makes)."""
    page = (ASSETS / "index.html").read_text()
    assert "http://" not in page and "https://" not in page
    licences = (ASSETS / "THIRD_PARTY_LICENSES.txt").read_text()
    for package in ("maplibre-gl", "@deck.gl/core", "@deck.gl/geo-layers", "@deck.gl/mapbox", "h3-js", "world-atlas"):
        assert f"\n{package} " in licences, package


def test_country_outlines_are_split_at_the_antimeridian():
    countries = json.loads((ASSETS / "countries.geojson").read_text())
    assert len(countries["features"]) == 177
    jumps = []
    for feature in countries["features"]:
        for polygon in feature["geometry"]["coordinates"]:
            for ring in polygon:
                assert ring[0] == ring[-1]
                for (x0, y0), (x1, y1) in zip(ring, ring[1:]):
                    assert -180 <= x0 <= 180 and -90 <= y0 <= 90
                    if abs(x1 - x0) > 180 and not (abs(y0) == 90 and y0 == y1):  # along a pole is a straight edge
                        jumps.append((feature["properties"]["name"], x0, x1))
    assert jumps == []
    names = {f["properties"]["name"]: f for f in countries["features"]}
    for name in ("Russia", "Fiji"):  # both sides of the antimeridian, as separate polygons
        xs = [p[0] for poly in names[name]["geometry"]["coordinates"] for p in poly[0]]
        assert min(xs) == -180 and max(xs) == 180


def test_wheel_carries_the_explorer_bundle(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "rsembed_db", src / "rsembed_db", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("rsembed_db-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ("index.html", "explorer.js", "explorer.css", "maplibre-gl-worker.js", "countries.geojson",
                  "THIRD_PARTY_LICENSES.txt"):
        assert f"rsembed_db/service/explorer/{asset}" in names
